"""Half-precision inputs: metric states and functional reductions accumulate in float32.

Two references, both float64:

* on the *same* (rounded) half-precision values, upcast exactly: only float32 arithmetic may
  separate the result from it, so the tolerance is a multiple of float32's eps (the number of
  accumulated terms times eps, the classic summation bound) — a bfloat16 or float16 sum would
  be off by 2^-9 relative or more, far outside;
* on the float64 values *before* rounding: the tolerance is what rounding each input to
  bfloat16 (relative error at most 2^-8) can change, propagated through the formula.
"""

import math

import pytest
import torch
from torch import nn

from invreg.functional import (
    geed,
    logit_invariance,
    orbit_accuracy,
    predictive_kl_invariance,
    saliency,
    saliency_similarity,
)
from invreg.groups import Rotations
from invreg.metrics import (
    LogitInvariance,
    OrbitAccuracy,
    OrbitConsistency,
    PredictiveDistributionInvariance,
)
from invreg.testing import parametrize_dtypes

EPS32 = torch.finfo(torch.float32).eps
HALF_DTYPES = [torch.float16, torch.bfloat16]


def make_orbit(dtype, batch=256, n=3, classes=10, scale=8.0, noise=1.0, seed=0):
    """Ordinary logits (|x| up to ~60) rounded to ``dtype``, and the unrounded float64 values:
    a per-sample part shared by the orbit plus ``noise`` times an independent part."""
    gen = torch.Generator().manual_seed(seed)
    shared = torch.randn(batch, 1, classes, generator=gen, dtype=torch.float64)
    own = torch.randn(batch, n, classes, generator=gen, dtype=torch.float64)
    exact = (shared + noise * own) * scale
    return exact.to(dtype), exact


def li_pairs64(orbit, normalized=False):
    """Per-pair LI in float64, written out plainly."""
    o = orbit.double()
    diff2 = (o[:, :1] - o[:, 1:]).pow(2).sum(-1)
    if normalized:
        return diff2 / o[:, :1].pow(2).sum(-1).clamp_min(1e-12)
    return 0.5 * diff2


def kl_pairs64(orbit):
    o = orbit.double()
    log_p = o[:, :1] - o[:, :1].logsumexp(-1, keepdim=True)
    log_q = o[:, 1:] - o[:, 1:].logsumexp(-1, keepdim=True)
    return (log_p.exp() * (log_p - log_q)).sum(-1)


def kl_pair_tolerance(orbit):
    """Float32 error bound of one KL pair: log-softmax errors ``eps·(2M + ln C + 3)`` per entry,
    weighted by ``1 + max|log p − log q|``, plus the C-term sum."""
    o = orbit.double()
    m, c = o.abs().max().item(), o.shape[-1]
    log_p = o[:, :1] - o[:, :1].logsumexp(-1, keepdim=True)
    log_q = o[:, 1:] - o[:, 1:].logsumexp(-1, keepdim=True)
    spread = (log_p - log_q).abs().max().item()
    return 2 * EPS32 * ((2 * m + math.log(c) + 3) * (spread + 2) + c * spread)


@parametrize_dtypes(dtypes=HALF_DTYPES)
def test_logit_invariance_of_half_logits_is_finite_and_exact_to_float32(dtype):
    orbit, _ = make_orbit(dtype)
    metric = LogitInvariance()
    metric.update(orbit)  # one batch of 256 samples × 3 elements (an fp16 sum overflowed: inf)
    value = metric.compute()
    assert value.dtype == torch.float32 and torch.isfinite(value)
    expected = li_pairs64(orbit).mean().item()
    pairs, classes = orbit.shape[0] * (orbit.shape[1] - 1), orbit.shape[2]
    # nonnegative terms: recursive summation of n terms errs by at most n·eps relative
    assert value.item() == pytest.approx(expected, rel=(classes + pairs + 4) * EPS32)


@parametrize_dtypes(dtypes=HALF_DTYPES)
def test_every_orbit_metric_in_batches_matches_float64(dtype):
    orbit, _ = make_orbit(dtype, batch=96, n=4, classes=7, noise=0.2)
    target = orbit[:, 0].argmax(-1)
    target[::3] = (target[::3] + 1) % 7  # some wrong
    metrics = {
        "li": LogitInvariance(),
        "nli": LogitInvariance(normalized=True),
        "di": PredictiveDistributionInvariance(),
        "consistency": OrbitConsistency(),
        "accuracy": OrbitAccuracy(),
    }
    for lo, hi in ((0, 40), (40, 41), (41, 96)):
        for name, metric in metrics.items():
            args = (orbit[lo:hi], target[lo:hi]) if name == "accuracy" else (orbit[lo:hi],)
            metric.update(*args)
    values = {name: metric.compute() for name, metric in metrics.items()}
    assert all(v.dtype == torch.float32 for v in values.values())
    pairs, classes = orbit.shape[0] * (orbit.shape[1] - 1), orbit.shape[2]
    summation = (2 * classes + pairs + 8) * EPS32  # terms accumulated, plus the division
    assert values["li"].item() == pytest.approx(li_pairs64(orbit).mean().item(), rel=summation)
    nli = li_pairs64(orbit, normalized=True).mean().item()
    assert values["nli"].item() == pytest.approx(nli, rel=summation)
    kl = kl_pairs64(orbit)
    kl_tol = kl_pair_tolerance(orbit) + summation * kl.abs().mean().item()
    assert values["di"].item() == pytest.approx(kl.mean().item(), abs=kl_tol)
    pred = orbit.double().argmax(-1)  # exact upcast: the same ties as in half precision
    consistency = (pred == pred[:, :1]).all(1).double().mean().item()
    accuracy = (pred == target[:, None]).all(1).double().mean().item()
    assert values["consistency"].item() == pytest.approx(consistency, rel=2 * EPS32)
    assert values["accuracy"].item() == pytest.approx(accuracy, rel=2 * EPS32)
    assert 0 < accuracy < consistency < 1  # the case is not trivial


def test_bfloat16_logit_invariance_within_the_input_rounding_of_the_exact_value():
    rounded, exact = make_orbit(torch.bfloat16, batch=128, n=4, classes=9)
    value = logit_invariance(rounded).item()
    reference = li_pairs64(exact).mean().item()
    # rounding a and b to bfloat16 moves d = a − b by δ ≤ u(|a| + |b|), u = 2^-8, hence
    # ½d² by at most |d|·δ + ½δ² per class
    u = torch.finfo(torch.bfloat16).eps / 2
    a, b = exact[:, :1], exact[:, 1:]
    delta = u * (a.abs() + b.abs())
    bound = ((a - b).abs() * delta + 0.5 * delta.pow(2)).sum(-1).mean().item()
    pairs, classes = rounded.shape[0] * (rounded.shape[1] - 1), rounded.shape[2]
    assert abs(value - reference) <= bound + (classes + pairs + 4) * EPS32 * reference
    # DI: the gradient of KL(softmax x ‖ softmax y) has L1 norm at most 2 in y and at most
    # 2·max|log p − log q| in x, so moving every logit by at most u·max|x| moves a pair by at
    # most u·max|x|·(2S + 2); twice that covers the second-order terms
    kl = predictive_kl_invariance(rounded).item()
    log_p = exact[:, :1] - exact[:, :1].logsumexp(-1, keepdim=True)
    log_q = exact[:, 1:] - exact[:, 1:].logsumexp(-1, keepdim=True)
    spread = (log_p - log_q).abs().max().item()
    kl_bound = 2 * u * exact.abs().max().item() * (2 * spread + 2)
    assert abs(kl - kl_pairs64(exact).mean().item()) <= kl_bound


def test_functional_reductions_accumulate_in_float32():
    orbit, _ = make_orbit(torch.float16, batch=512, n=4)
    total = logit_invariance(orbit, reduction="sum")
    assert total.dtype == torch.float32 and torch.isfinite(total)
    assert logit_invariance(orbit, reduction="none").dtype == torch.float32
    assert orbit_accuracy(orbit, orbit[:, 0].argmax(-1), reduction="sum").dtype == torch.float32
    assert logit_invariance(orbit.double()).dtype == torch.float64  # float64 stays float64


@parametrize_dtypes(dtypes=HALF_DTYPES)
def test_saliency_similarity_of_half_maps(dtype):
    gen = torch.Generator().manual_seed(0)
    maps = torch.rand(8, 4, 1, 12, 12, generator=gen, dtype=torch.float64).to(dtype)
    value = saliency_similarity(maps, reduction="none")
    assert value.dtype == torch.float32
    flat = maps.double().flatten(2)
    expected = nn.functional.cosine_similarity(flat[:, :1], flat[:, 1:], dim=-1)
    # dot products and norms of D = 144 nonnegative terms: (D + 4)·eps relative each
    torch.testing.assert_close(
        value.double(), expected, rtol=3 * (flat.shape[-1] + 4) * EPS32, atol=0.0
    )


def test_integrated_gradients_of_a_bfloat16_model_are_float32():
    # a linear model: IG = (x − x')·w exactly; the path average of 50 bfloat16 gradients and
    # the product with x − x' are done in float32, not rounded to bfloat16's 8 bits
    gen = torch.Generator().manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(16, 3, bias=False)).to(torch.bfloat16)
    with torch.no_grad():
        model[1].weight.copy_(torch.randn(3, 16, generator=gen))
    x = torch.randn(4, 1, 4, 4, generator=gen).to(torch.bfloat16)
    target = torch.tensor([0, 1, 2, 0])
    maps = saliency(model, x, target, "integrated_gradients", steps=50)
    assert maps.dtype == torch.float32
    w = model[1].weight.double()[target].reshape(4, 1, 4, 4)
    expected = x.double() * w
    # the bfloat16 gradients are w exactly; the mean of 50 equal terms and one product in
    # float32 err by at most (50 + 2)·eps relative
    torch.testing.assert_close(maps.double(), expected, rtol=52 * EPS32, atol=0.0)


@parametrize_dtypes(dtypes=HALF_DTYPES)
def test_geed_of_half_features(dtype):
    gen = torch.Generator().manual_seed(0)
    x = (torch.randn(6, 2, 8, 8, generator=gen, dtype=torch.float64) * 30).to(dtype)
    model = nn.Sequential(nn.Identity())
    value = geed(model, x, Rotations(4), "0", distance="euclidean", normalize=False)
    assert value.dtype == torch.float32
    feats = Rotations(4).orbit(x).double().flatten(2)  # exact: rotations permute entries
    centroid = feats.mean(1, keepdim=True)
    expected = (feats[:, 1:] - centroid).norm(dim=-1).mean().item()
    d, n = feats.shape[-1], feats.shape[1]
    # centroid of N terms (N·eps·max|f| per entry), then a norm of D nonnegative squares
    scale = feats.abs().max().item()
    tol = (d + 4) * EPS32 * expected + math.sqrt(d) * (n + 2) * EPS32 * scale
    assert value.item() == pytest.approx(expected, abs=tol)
