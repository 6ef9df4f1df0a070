"""Finite outputs of any magnitude give the correct finite LI, normalised LI and Lie error.

Squaring logits near ``1e20`` overflows float32 (max ``3.4e38``): before the fix LI of such
logits was ``inf`` although its true value is representable, and normalised LI was NaN
(``inf / inf``). References are the same float32 values upcast to float64 exactly; the
formulas differ from them only by float32 rounding of a few operations per entry, so the
tolerances are a small multiple of float32's eps (relative: the values are scale-free).
"""

from __future__ import annotations

import torch
from torch import nn

from invreg.functional import (
    lie_derivative,
    lie_derivative_error,
    logit_invariance,
    logit_l2,
    normalized_logit_l2,
)
from invreg.metrics import LieDerivativeError, LogitInvariance, OrbitMetrics

EPS32 = torch.finfo(torch.float32).eps
#: a few roundings per entry over 10 classes, relative
RTOL32 = 64 * EPS32
FLOAT32_MAX = torch.finfo(torch.float32).max


def huge_orbit(scale: float, batch: int = 16, n: int = 4, classes: int = 10) -> torch.Tensor:
    """Float32 logits of magnitude ``scale``: one shared part plus an orbit-dependent part a
    tenth as large (an ordinary non-invariant model, scaled)."""
    gen = torch.Generator().manual_seed(0)
    shared = torch.randn(batch, 1, classes, generator=gen, dtype=torch.float64)
    moving = 0.1 * torch.randn(batch, n, classes, generator=gen, dtype=torch.float64)
    return ((shared + moving) * scale).float()


def reference(orbit: torch.Tensor, normalized: bool) -> torch.Tensor:
    """LI in float64 on the exact float32 values (per pair ``[B, N − 1]``)."""
    exact = orbit.double()
    diff = (exact[:, :1] - exact[:, 1:]).pow(2).sum(-1)
    if normalized:
        return diff / exact[:, :1].pow(2).sum(-1)
    return 0.5 * diff


def test_normalized_li_of_huge_float32_logits_is_finite_and_correct():
    orbit = huge_orbit(1e20)
    value = logit_invariance(orbit, normalized=True)
    assert value.dtype == torch.float32 and torch.isfinite(value)  # was NaN: inf / inf
    expected = reference(orbit, normalized=True)
    torch.testing.assert_close(value.double(), expected.mean(), rtol=RTOL32, atol=0.0)
    per_pair = normalized_logit_l2(orbit[:, :1].expand_as(orbit[:, 1:]), orbit[:, 1:])
    torch.testing.assert_close(per_pair.double(), expected, rtol=RTOL32, atol=0.0)
    # scale-free: the same logits at an ordinary scale give the same value
    torch.testing.assert_close(
        value, logit_invariance(huge_orbit(1.0), normalized=True), rtol=RTOL32, atol=0.0
    )


def test_li_is_finite_whenever_its_true_value_is_representable():
    # a difference of 2e19 squares to 4e38 > float32 max, but ½·4e38 = 2e38 is representable
    orbit = torch.tensor([[[2e19, 0.0], [0.0, 0.0]], [[0.0, 1e19], [0.0, -1e19]]])
    per_pair = logit_invariance(orbit, reduction="none")
    expected = reference(orbit, normalized=False)
    assert torch.isfinite(per_pair).all()  # was inf
    torch.testing.assert_close(per_pair.double(), expected, rtol=RTOL32, atol=0.0)
    # the mean of values near float32's largest: a plain sum would overflow
    torch.testing.assert_close(logit_invariance(orbit).double(), expected.mean(),
                               rtol=RTOL32, atol=0.0)
    # logits around 1e20 differing by ~1e19 per entry: the true LI (~1e39) exceeds float32,
    # so it is inf (documented), never NaN
    huge = logit_invariance(huge_orbit(1e20))
    assert reference(huge_orbit(1e20), normalized=False).mean() > FLOAT32_MAX
    assert torch.isinf(huge) and huge > 0


def test_float64_beyond_float32_range():
    orbit = huge_orbit(1.0).double()
    tol = 1e3 * torch.finfo(torch.float64).eps
    value = logit_invariance(orbit * 1e160, normalized=True)  # ‖f(x)‖² = 1e320 overflows
    torch.testing.assert_close(value, logit_invariance(orbit, normalized=True), rtol=tol, atol=0)
    li = logit_invariance(orbit * 1e150)
    torch.testing.assert_close(li, logit_invariance(orbit) * 1e300, rtol=tol, atol=0.0)


def test_tiny_reference_keeps_the_clamped_denominator():
    # ‖f(x)‖² = 1e-20 < 1e-12: the denominator is the clamp, as before
    reference_out, moved = torch.tensor([[1e-10, 0.0]]), torch.tensor([[0.0, 0.0]])
    torch.testing.assert_close(normalized_logit_l2(reference_out, moved),
                               torch.tensor([1e-8]), rtol=RTOL32, atol=0.0)


def test_ordinary_values_and_gradients_are_unchanged():
    # the scaling is by powers of two: exact, so the values equal the plain formula's bit for
    # bit, and the gradient is the plain formula's
    orbit = huge_orbit(3.0)
    ref, moved = orbit[:, :1].expand_as(orbit[:, 1:]), orbit[:, 1:]
    assert torch.equal(logit_l2(ref, moved), 0.5 * (ref - moved).pow(2).sum(-1))
    plain = (ref - moved).pow(2).sum(-1) / ref.pow(2).sum(-1).clamp_min(1e-12)
    assert torch.equal(normalized_logit_l2(ref, moved), plain)
    leaf = orbit.clone().requires_grad_()
    logit_invariance(leaf).backward()
    expected = torch.zeros_like(orbit)
    diff = orbit[:, :1] - orbit[:, 1:]
    expected[:, :1] = diff.sum(dim=1, keepdim=True) / diff[..., 0].numel()
    expected[:, 1:] = -diff / diff[..., 0].numel()
    torch.testing.assert_close(leaf.grad, expected, rtol=RTOL32, atol=RTOL32 * 1e-3)
    zeros = logit_invariance(torch.zeros(2, 3, 4), normalized=True)  # ‖f(x)‖ = 0: clamped
    assert zeros == 0


def test_metric_classes_agree_with_the_functional_on_huge_logits():
    orbit = huge_orbit(1e20)
    normalized = LogitInvariance(normalized=True)
    normalized.update(orbit)
    torch.testing.assert_close(normalized.compute(), logit_invariance(orbit, normalized=True),
                               rtol=RTOL32, atol=0.0)
    collection = OrbitMetrics("c4", targets=False)
    collection.update(orbit)
    values = collection.compute()
    torch.testing.assert_close(values["LI_normalized"], normalized.compute())
    assert torch.isinf(values["LI"])  # the true value overflows float32, as the functional's
    # a representable per-pair value reaches the metric's float32 sum state intact
    representable = torch.tensor([[[2e19, 0.0], [0.0, 0.0]]])
    li = LogitInvariance()
    li.update(representable)
    torch.testing.assert_close(li.compute(), logit_invariance(representable))


class Scaled(nn.Module):
    """A linear read-out of the image times ``scale``: its Lie derivative scales with it."""

    def __init__(self, scale: float) -> None:
        super().__init__()
        self.scale = scale
        self.linear = nn.Linear(36, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x.flatten(1)) * self.scale


def test_lie_error_of_a_huge_finite_derivative():
    torch.manual_seed(0)
    model = Scaled(1e20)
    x = torch.randn(4, 1, 6, 6)
    derivative = lie_derivative(model, x, "rotation")
    assert torch.isfinite(derivative).all() and derivative.abs().max() > 1e19
    squared = derivative.double().pow(2).sum(-1)
    assert (squared > FLOAT32_MAX).all()
    # ‖L f‖ ≈ 1e20 is representable in float32 (it was sqrt(inf) = inf); ‖L f‖² is not: inf
    norms = lie_derivative_error(model, x, "rotation", reduction="none", norm="l2")
    torch.testing.assert_close(norms.double(), squared.sqrt(), rtol=RTOL32, atol=0.0)
    assert torch.isinf(lie_derivative_error(model, x, "rotation", reduction="none")).all()
    metric = LieDerivativeError("rotation", norm="l2")
    metric.update(model, x)
    torch.testing.assert_close(metric.compute().double(), squared.sqrt().mean(),
                               rtol=RTOL32, atol=0.0)
