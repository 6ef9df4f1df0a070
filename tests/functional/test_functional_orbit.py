"""orbit_logits and the output-level invariance errors (LI, DI, consistency, accuracy)."""

import math

import pytest
import torch
from torch import nn

from invreg.functional import (
    logit_invariance,
    orbit_accuracy,
    orbit_consistency,
    orbit_forward,
    orbit_logits,
    predictive_kl_invariance,
)
from invreg.groups import ContinuousRotations, CyclicShifts, Rotations
from invreg.models import MLP, TiedMLP

C4 = Rotations(4)
EPS32 = torch.finfo(torch.float32).eps
#: hand-computed cases: small exact inputs through a few float32 roundings (eps relative each)
HAND = 16 * EPS32


def rounding(values, terms):
    """How far two float32 evaluations of the same network may differ (batch size or element
    order changes the summation order): each dot product of n terms errs by at most about
    n·eps times its magnitude, so ``terms`` (the fan-ins along the network) · eps · max|values|.
    """
    return terms * EPS32 * values.abs().max().item()


class CountingModel(nn.Module):
    """Records the batch size of every forward."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net
        self.batches: list[int] = []

    def forward(self, x):
        self.batches.append(x.shape[0])
        return self.net(x)


def test_hand_computed_errors():
    # one sample, orbit of 3: f(x) = [1, 0], f(g1 x) = [0, 1], f(g2 x) = [2, 0]
    orbit = torch.tensor([[[1.0, 0.0], [0.0, 1.0], [2.0, 0.0]]])
    # LI = mean(½·2, ½·1) = 0.75; normalised: mean(2/1, 1/1) = 1.5
    assert logit_invariance(orbit).item() == pytest.approx(0.75, rel=HAND)
    assert logit_invariance(orbit, normalized=True).item() == pytest.approx(1.5, rel=HAND)
    # DI = mean over the two pairs of KL(softmax[1,0] ‖ softmax f(g x))
    p = [math.exp(1) / (math.exp(1) + 1), 1 / (math.exp(1) + 1)]

    def kl(q):
        return sum(pi * math.log(pi / qi) for pi, qi in zip(p, q, strict=True))

    q1 = [p[1], p[0]]
    q2 = [math.exp(2) / (math.exp(2) + 1), 1 / (math.exp(2) + 1)]
    expected = (kl(q1) + kl(q2)) / 2
    assert predictive_kl_invariance(orbit).item() == pytest.approx(expected, rel=HAND)
    # argmax 0, 1, 0: not consistent; correct everywhere for neither class
    assert orbit_consistency(orbit).item() == 0.0
    assert orbit_accuracy(orbit, torch.tensor([0])).item() == 0.0
    assert logit_invariance(orbit, reduction="none").shape == (1, 2)
    assert logit_invariance(orbit, reduction="sum").item() == pytest.approx(1.5, rel=HAND)


def test_orbit_logits_matches_a_loop_and_chunks():
    torch.manual_seed(0)
    model = MLP((1, 6, 6), 4, hidden_widths=(8,)).eval()
    x = torch.randn(5, 1, 6, 6)
    orbit = orbit_logits(model, x, C4)
    assert orbit.shape == (5, 4, 4)
    tol = rounding(orbit, 36 + 8)  # fan-ins 36 and 8
    for g in range(4):
        torch.testing.assert_close(orbit[:, g], model(C4.act(x, g)), rtol=0, atol=tol)
    for chunk in (1, 2, 5, 7):
        chunked = orbit_logits(model, x, C4, chunk_size=chunk)
        torch.testing.assert_close(chunked, orbit, rtol=0, atol=tol)


def test_one_batched_forward_or_chunks():
    counting = CountingModel(MLP((1, 6, 6), 3, hidden_widths=(4,)))
    orbit_logits(counting, torch.randn(5, 1, 6, 6), C4, chunk_size=5)
    assert counting.batches == [20]
    counting.batches.clear()
    orbit_logits(counting, torch.randn(5, 1, 6, 6), C4, chunk_size=2)
    assert counting.batches == [8, 8, 4]


def output_bytes_per_input(model, x):
    """Bytes of every module output (the model's own included) for one input."""
    sizes: list[int] = []

    def record(module, args, out):
        sizes.append(out.numel() * out.element_size())

    hooks = [module.register_forward_hook(record) for module in model.modules()]
    with torch.no_grad():
        model(x[:1])
    for hook in hooks:
        hook.remove()
    return sum(sizes)


def test_default_chunks_by_activation_memory(monkeypatch):
    import invreg.functional.invariance as invariance

    torch.manual_seed(0)
    counting = CountingModel(MLP((1, 6, 6), 3, hidden_widths=(32, 32))).eval()
    x = torch.randn(11, 1, 6, 6)
    reference = orbit_logits(counting, x, C4, chunk_size=11)
    assert counting.batches == [44]
    features = orbit_forward(counting, x, C4, chunk_size=11, layers=["net.hidden.0"]).features
    # small activations: the first sample's orbit measured alone, then the other 10 orbits
    counting.batches.clear()
    default = orbit_forward(counting, x, C4, layers=["net.hidden.0"])
    assert counting.batches == [4, 40]
    tol = rounding(reference, 36 + 64)
    torch.testing.assert_close(default.logits, reference, rtol=0, atol=tol)
    torch.testing.assert_close(
        default.features["net.hidden.0"], features["net.hidden.0"], rtol=0, atol=tol
    )
    # a budget of twelve inputs' activations: orbits of 3 samples after the first one
    per_input = output_bytes_per_input(counting, x)
    monkeypatch.setitem(invariance.AUTO_CHUNK_BYTES, "cpu", 12 * per_input + per_input // 2)
    counting.batches.clear()
    chunked = orbit_logits(counting, x, C4)
    assert counting.batches == [4, 12, 12, 12, 4]
    torch.testing.assert_close(chunked, reference, rtol=0, atol=tol)


def test_default_never_chunks_a_model_that_couples_samples(monkeypatch):
    import invreg.functional.invariance as invariance

    monkeypatch.setitem(invariance.AUTO_CHUNK_BYTES, "cpu", 1)
    net = nn.Sequential(nn.Flatten(), nn.Linear(36, 8), nn.BatchNorm1d(8), nn.Linear(8, 3))
    counting = CountingModel(net).train()  # batch statistics: chunks would change the outputs
    orbit_logits(counting, torch.randn(5, 1, 6, 6), C4)
    assert counting.batches == [20]
    counting.eval()  # running statistics: samples are independent again
    counting.batches.clear()
    orbit_logits(counting, torch.randn(5, 1, 6, 6), C4)
    assert counting.batches == [4] * 5


def test_auto_chunk_size_rule():
    from invreg.functional.invariance import AUTO_CHUNK_BYTES, auto_chunk_size

    cpu = AUTO_CHUNK_BYTES["cpu"]
    assert auto_chunk_size(cpu // 7, "cpu") == 7
    assert auto_chunk_size(2 * cpu, "cpu") == 1  # one sample's orbit at least
    assert auto_chunk_size(cpu // 7, "meta") > 7  # accelerators: a wider bound


def test_explicit_elements_and_continuous_groups():
    model = MLP((1, 6, 6), 3, hidden_widths=(4,))
    x = torch.randn(2, 1, 6, 6)
    elems = torch.tensor([0, 2])
    orbit = orbit_logits(model, x, C4, elements=elems)
    tol = rounding(orbit, 36 + 4)  # fan-ins 36 and 4
    torch.testing.assert_close(orbit[:, 1], model(C4.act(x, 2)), rtol=0, atol=tol)
    with pytest.raises(ValueError, match="identity"):
        orbit_logits(model, x, C4, elements=torch.tensor([1, 2]))
    with pytest.raises(ValueError, match=r"elements: expected a tensor of shape \[N\]"):
        orbit_logits(model, x, C4, elements=torch.zeros(2, 2, dtype=torch.long))
    so2 = ContinuousRotations()
    gen = torch.Generator().manual_seed(0)
    assert orbit_logits(model, x, so2, num_samples=3, generator=gen).shape == (2, 3, 3)


@pytest.mark.parametrize("group", ["c4", "t3"])
def test_exactly_invariant_model(group):
    torch.manual_seed(0)
    g = C4 if group == "c4" else CyclicShifts(3)
    model = TiedMLP((1, 6, 6), 5, group=group, hidden_widths=(16, 16)).eval()
    orbit = orbit_logits(model, torch.randn(8, 1, 6, 6), g)
    # invariant up to rounding: logits differ by at most d (fan-ins 36 + 16 + 16, |G| pooled)
    classes, top = orbit.shape[2], orbit.abs().max().item()
    d = rounding(orbit, 36 + 16 + 16 + 8)
    assert logit_invariance(orbit).item() <= 0.5 * classes * d**2
    smallest = orbit[:, 0].pow(2).sum(-1).min().item()
    assert logit_invariance(orbit, normalized=True).item() <= classes * d**2 / smallest
    # KL: the float32 log-softmax rounding, eps·(2·max|x| + ln C + 3) per entry (twice), plus
    # its sensitivity to the logits (gradient L1 norm at most 2)
    kl_tol = 4 * EPS32 * (2 * top + math.log(classes) + 3) + 2 * d
    assert predictive_kl_invariance(orbit).abs().item() <= kl_tol
    assert orbit_consistency(orbit).item() == 1.0


def test_random_mlp_is_not_invariant():
    torch.manual_seed(0)
    model = MLP((1, 6, 6), 5, hidden_widths=(16, 16)).eval()
    orbit = orbit_logits(model, torch.randn(8, 1, 6, 6), C4)
    assert logit_invariance(orbit).item() > 1e-4
    assert predictive_kl_invariance(orbit).item() > 1e-6


def test_bad_orbits():
    with pytest.raises(ValueError, match=r"\[B, N, C\]"):
        logit_invariance(torch.zeros(4, 3))
    with pytest.raises(ValueError, match="at least 2"):
        logit_invariance(torch.zeros(4, 1, 3))
    bad = torch.zeros(2, 3, 4)
    bad[0, 1, 2] = float("nan")
    with pytest.raises(ValueError, match="NaN or Inf"):
        predictive_kl_invariance(bad)
    bad[0, 1, 2] = float("inf")
    with pytest.raises(ValueError, match="NaN or Inf"):
        orbit_consistency(bad)
    with pytest.raises(ValueError, match="target"):
        orbit_accuracy(torch.zeros(2, 3, 4), torch.zeros(3, dtype=torch.long))
    with pytest.raises(ValueError, match="chunk_size"):
        orbit_logits(nn.Flatten(), torch.zeros(2, 1, 4, 4), C4, chunk_size=0)
