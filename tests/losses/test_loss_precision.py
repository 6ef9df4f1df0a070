"""Invariance losses under mixed precision: reductions in float32, no fp16 overflow."""

import math

import pytest
import torch

from invreg.losses import FeatureL2, LogitL2, NormalizedLogitL2, PredictiveKL
from invreg.testing import parametrize_dtypes

EPS32 = torch.finfo(torch.float32).eps


def logits(dtype, shape, scale, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return (torch.randn(*shape, generator=gen, dtype=torch.float64) * scale).to(dtype)


def test_fp16_logit_l2_does_not_overflow():
    # |logits| ~ 200 over 10 classes: ½‖d‖² ≈ 4e5 per pair, beyond fp16's largest 65504, while
    # every logit and every difference is an ordinary fp16 number
    ref = logits(torch.float16, (64, 10), 200.0).requires_grad_(True)
    other = logits(torch.float16, (64, 3, 10), 200.0, seed=1)
    for loss_cls in (LogitL2, NormalizedLogitL2):
        loss = loss_cls()(ref, other)
        assert loss.dtype == torch.float32 and torch.isfinite(loss), loss_cls.__name__
        d2 = (ref.detach().double()[:, None] - other.double()).pow(2).sum(-1)
        if loss_cls is LogitL2:
            expected = 0.5 * d2.mean()
        else:
            expected = (d2 / ref.detach().double().pow(2).sum(-1, keepdim=True)).mean()
        # nonnegative terms: n accumulated terms err by at most n·eps relative (+ a division)
        terms = 10 + 64 * 3 + 4
        assert loss.item() == pytest.approx(expected.item(), rel=terms * EPS32)
    loss = LogitL2()(ref, other)
    loss.backward()
    assert ref.grad.dtype == torch.float16 and torch.isfinite(ref.grad).all()


@parametrize_dtypes(dtypes=(torch.float16, torch.bfloat16))
def test_half_losses_match_float64_on_the_same_values(dtype):
    ref = logits(dtype, (128, 9), 6.0)
    other = logits(dtype, (128, 4, 9), 6.0, seed=1)
    r, o = ref.double()[:, None], other.double()
    log_p = r - r.logsumexp(-1, keepdim=True)
    log_q = o - o.logsumexp(-1, keepdim=True)
    kl = (log_p.exp() * (log_p - log_q)).sum(-1)
    # float32 log-softmax errs by eps·(2·max|x| + ln C + 3) per entry, weighted by the spread
    # of log p − log q, plus the C-term sum and the accumulation over pairs
    spread = (log_p - log_q).abs().max().item()
    scale = 2 * r.abs().max().item() + math.log(9) + 3
    kl_tol = 2 * EPS32 * (scale * (spread + 2) + 9 * spread) + 520 * EPS32 * kl.mean().item()
    value = PredictiveKL()(ref, other)
    assert value.dtype == torch.float32
    assert value.item() == pytest.approx(kl.mean().item(), abs=kl_tol)
    l2 = 0.5 * (r - o).pow(2).sum(-1).mean().item()
    assert LogitL2()(ref, other).item() == pytest.approx(l2, rel=(9 + 512 + 4) * EPS32)
    features = FeatureL2("hidden.0")(ref.reshape(128, 3, 3), other.reshape(128, 4, 3, 3))
    assert features.item() == pytest.approx(l2, rel=(9 + 512 + 4) * EPS32)


def test_float64_losses_stay_float64():
    ref, other = torch.randn(4, 3, dtype=torch.float64), torch.randn(4, 3, dtype=torch.float64)
    assert LogitL2()(ref, other).dtype == torch.float64


def test_empty_batch_is_rejected():
    with pytest.raises(ValueError, match="empty batch"):
        LogitL2()(torch.zeros(0, 5), torch.zeros(0, 5))
    with pytest.raises(ValueError, match="empty batch"):
        PredictiveKL()(torch.zeros(0, 5), torch.zeros(0, 2, 5))


def test_integer_outputs_are_rejected():
    with pytest.raises(TypeError, match="orbit: expected floating-point"):
        LogitL2()(torch.zeros(2, 5, dtype=torch.long), torch.zeros(2, 5, dtype=torch.long))
    with pytest.raises(TypeError, match="orbit: expected floating-point"):
        LogitL2()(torch.zeros(2, 3, 5, dtype=torch.long))
