"""Integrated gradients' quadrature: the right Riemann sum unchanged bit for bit, the trapezoid
and Gauss–Legendre rules equal to Captum's, each converging at its order on a smooth CNN, the
completeness error measured exactly on a hand-computed case, clear errors for bad input.

"Smooth CNN": :class:`~invreg.models.SmallCNN` with SiLU and average pooling. ReLU and max
pooling (SmallCNN's defaults) make the path integrand jump, so no rule beats ``O(1/S)`` there.
"""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from invreg.functional import (
    QUADRATURES,
    SaliencyRecipe,
    ig_completeness_error,
    orbit_saliency,
    quadrature_rule,
    saliency,
)
from invreg.groups import Rotations
from invreg.metrics import SaliencyInvarianceSimilarity
from invreg.models import SmallCNN

C4 = Rotations(4)
SHAPE = (1, 12, 12)
EPS64 = torch.finfo(torch.float64).eps
EPS32 = torch.finfo(torch.float32).eps
ROOT = Path(__file__).resolve().parents[2]


class Quadratic(nn.Module):
    """f(x) = [Σ x², −Σ x²]: the path integrand 2α·x² is linear in α."""

    def forward(self, x):
        s = x.pow(2).flatten(1).sum(1)
        return torch.stack([s, -s], dim=1)


def cnn(smooth: bool, dtype: torch.dtype = torch.float64, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    model = SmallCNN(SHAPE, 5, channels=(4, 8), activation="silu" if smooth else "relu")
    if smooth:
        for block in model.blocks:
            block.pool = nn.AvgPool2d(2)
    return model.to(dtype).eval()


def inputs(batch: int = 4, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    return torch.randn(batch, *SHAPE, generator=torch.Generator().manual_seed(1), dtype=dtype)


def rounding(expected: torch.Tensor, terms: int, eps: float = EPS64) -> float:
    """Two evaluations of one sum in different orders: each of ~``terms`` terms rounds at most
    eps relative to the magnitude; 4x margin."""
    return 4 * terms * eps * max(expected.abs().max().item(), 1.0)


# --------------------------------------------------------------------------- the rules
@pytest.mark.parametrize("quadrature", QUADRATURES)
def test_rules_integrate_what_their_order_promises(quadrature):
    steps = 5
    nodes, weights = quadrature_rule(quadrature, steps)
    assert nodes.dtype == weights.dtype == torch.float64 and nodes.shape == (steps,)
    assert ((nodes >= 0) & (nodes <= 1)).all()
    # exact for α^k, k < degree: Riemann none beyond constants, trapezoid lines, G-L 2S − 1
    degree = {"riemann_right": 1, "trapezoid": 2, "gauss_legendre": 2 * steps}[quadrature]
    for k in range(degree):
        assert (weights * nodes**k).sum().item() == pytest.approx(1 / (k + 1), abs=16 * EPS64)
    # and no further: the next power misses by far more than rounding (G-L: 1.4e-6)
    assert abs((weights * nodes**degree).sum().item() - 1 / (degree + 1)) > 1e-9


def test_right_riemann_and_trapezoid_nodes_by_hand():
    nodes, weights = quadrature_rule("riemann_right", 4)
    assert nodes.tolist() == [0.25, 0.5, 0.75, 1.0] and weights.tolist() == [0.25] * 4
    nodes, weights = quadrature_rule("trapezoid", 5)
    assert nodes.tolist() == [0.0, 0.25, 0.5, 0.75, 1.0]
    assert weights.tolist() == [0.125, 0.25, 0.25, 0.25, 0.125]


# --------------------------------------------------------------------------- riemann_right
def old_integrated_gradients(model, x, target, steps, baseline):
    """The built-in integrated gradients as they stood before the quadrature option, in one
    pass: points ``x' + ((s + 1)/S)(x − x')`` step-major, their target gradients summed per
    input in step order, divided by S, times ``x − x'``."""
    base = torch.as_tensor(baseline, dtype=x.dtype)
    delta = x - base
    points = torch.cat([torch.add(base, delta, alpha=(s + 1) / steps) for s in range(steps)])
    points.requires_grad_(True)
    selected = model(points).gather(1, target.repeat(steps).view(-1, 1)).sum()
    (grad,) = torch.autograd.grad(selected, points)
    sums = torch.zeros_like(x)
    for s in range(steps):
        sums += grad[s * x.shape[0] : (s + 1) * x.shape[0]]
    return delta * (sums / steps)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_right_riemann_sum_is_bit_identical_to_before(dtype):
    model, x, steps = cnn(smooth=False, dtype=dtype), inputs(3, dtype), 7
    target = torch.tensor([0, 3, 4])
    assert SaliencyRecipe().quadrature == "riemann_right"
    for baseline in (0.0, -0.3):
        expected = old_integrated_gradients(model, x, target, steps, baseline)
        one_pass = {"max_batch_size": steps * x.shape[0], "baseline": baseline}
        default = saliency(model, x, target, steps=steps, **one_pass)
        named = saliency(model, x, target, steps=steps, quadrature="riemann_right", **one_pass)
        assert torch.equal(default, expected) and torch.equal(named, expected)
        # another rule changes the maps: the comparison can fail
        other = saliency(model, x, target, steps=steps, quadrature="trapezoid", **one_pass)
        assert not torch.equal(other, expected)


# --------------------------------------------------------------------------- Captum's rules
def captum_setup():
    model, x = cnn(smooth=False), inputs(3)
    target = torch.tensor([1, 0, 2])
    baseline = torch.randn(3, *SHAPE, dtype=torch.float64,
                           generator=torch.Generator().manual_seed(3))
    return model, x, target, baseline


def test_gauss_legendre_equals_captums_default_integrated_gradients():
    """Captum's default rule is Gauss–Legendre; both sum the same gradients with the same
    float64 weights, so they agree to rounding (~1e-10 here), well inside 1e-6."""
    captum_attr = pytest.importorskip("captum.attr")
    (model, x, target, baseline), steps = captum_setup(), 64
    captums = captum_attr.IntegratedGradients(model).attribute(
        x, baselines=baseline, target=target, n_steps=steps
    )
    ours = saliency(model, x, target, steps=steps, baseline=baseline, quadrature="gauss_legendre")
    torch.testing.assert_close(ours, captums, rtol=0.0, atol=1e-6)
    right = saliency(model, x, target, steps=steps, baseline=baseline)
    assert not torch.allclose(right, captums, rtol=0.0, atol=1e-6)  # the check can fail


def test_trapezoid_is_captums_trapezoid_with_weights_that_sum_to_one():
    """Captum's "riemann_trapezoid" puts its nodes 1/(S − 1) apart but weighs them 1/S, so its
    weights sum to (S − 1)/S and it misses f(x) − f(x') by ~1/S of it; the trapezoid rule here
    weighs them 1/(S − 1): the same sum times S/(S − 1)."""
    captum_attr = pytest.importorskip("captum.attr")
    (model, x, target, baseline), steps = captum_setup(), 16
    captums = captum_attr.IntegratedGradients(model).attribute(
        x, baselines=baseline, target=target, n_steps=steps, method="riemann_trapezoid"
    )
    ours = saliency(model, x, target, steps=steps, baseline=baseline, quadrature="trapezoid")
    expected = captums * steps / (steps - 1)
    torch.testing.assert_close(ours, expected, rtol=0.0, atol=rounding(expected, steps + 144))


def test_orbit_maps_use_the_rule_on_every_element():
    """Batched over the orbit: element j's map equals the map of g_j·x (with g_j·x' as its
    baseline) mapped back, for the same target class."""
    model, x, steps = cnn(smooth=True), inputs(2), 6
    baseline = torch.randn(2, *SHAPE, dtype=torch.float64)
    raw = {"absolute": False, "threshold": None, "blur": False}
    target = torch.tensor([1, 3])
    maps = orbit_saliency(model, x, target, C4, steps=steps, baseline=baseline,
                          quadrature="gauss_legendre", **raw)
    for j, g in enumerate(C4.elements()):
        gs = g.expand(2, *g.shape)
        alone = saliency(model, C4.act(x, gs), target, steps=steps,
                         baseline=C4.act(baseline, gs), quadrature="gauss_legendre")
        expected = C4.act(alone, C4.inverse(gs))
        torch.testing.assert_close(maps[:, j], expected, rtol=0.0,
                                   atol=rounding(expected, steps + 144))


# --------------------------------------------------------------------------- completeness
def test_completeness_error_by_hand():
    """f = Σ x², baseline 0: Σ IG over the right sum is Σ x² (S + 1)/S, so its error is Σx²/S;
    the trapezoid and Gauss–Legendre rules integrate the linear integrand exactly."""
    x = torch.tensor([[[1.0, -2.0, 3.0]], [[0.5, 0.0, 1.0]]], dtype=torch.float64)
    squares = x.pow(2).flatten(1).sum(1)
    for steps in (1, 4, 10):
        error = ig_completeness_error(Quadratic(), x, torch.tensor([0, 1]), steps=steps)
        torch.testing.assert_close(error, squares / steps, rtol=0.0,
                                   atol=rounding(squares, steps + 8))
    for quadrature in ("trapezoid", "gauss_legendre"):
        error = ig_completeness_error(Quadratic(), x, None, steps=3, quadrature=quadrature)
        assert error.shape == (2,) and (error <= rounding(squares, 16)).all()


def test_gauss_legendre_at_64_steps_is_complete_on_a_smooth_cnn():
    model, x = cnn(smooth=True), inputs()
    gauss = ig_completeness_error(model, x, steps=64, quadrature="gauss_legendre")
    right = ig_completeness_error(model, x, steps=64)
    assert gauss.dtype == torch.float64 and gauss.shape == (4,)
    assert (gauss <= 1e-6).all()
    assert (right > 1e-5).all()  # the right Riemann sum is not: the check can fail


def test_relu_and_max_pooling_keep_gauss_legendre_from_completeness():
    """ReLU and max pooling (SmallCNN's defaults) make the integrand jump: Gauss–Legendre at 64
    steps stays far from the smooth CNN's rounding-level error."""
    gauss = ig_completeness_error(cnn(smooth=False), inputs(), steps=64,
                                  quadrature="gauss_legendre")
    assert gauss.max() > 1e-6


def test_orders_of_convergence_on_a_smooth_cnn():
    """Four times the steps: the right sum's error falls ~4x (first order), the trapezoid's
    ~16x (second order; measured 4.0x and 17.6x)."""
    model, x = cnn(smooth=True), inputs()

    def error(quadrature, steps):
        return ig_completeness_error(model, x, steps=steps, quadrature=quadrature).sum().item()

    right = error("riemann_right", 16) / error("riemann_right", 64)
    trapezoid = error("trapezoid", 16) / error("trapezoid", 64)
    assert 3.0 < right < 5.5
    assert 10.0 < trapezoid < 26.0


def test_completeness_error_of_captum_and_in_inference_mode():
    captum_attr = pytest.importorskip("captum.attr")
    model, x = cnn(smooth=True), inputs(2)
    with torch.inference_mode():  # as in a validation loop
        builtin = ig_completeness_error(model, x, steps=64, quadrature="gauss_legendre")
        captum = ig_completeness_error(model, x, None, captum_attr.IntegratedGradients, steps=64)
    assert (builtin <= 1e-6).all() and (captum <= 1e-6).all()


def test_completeness_error_of_an_empty_batch_and_float32():
    empty = ig_completeness_error(cnn(smooth=True), torch.zeros(0, *SHAPE))
    assert empty.shape == (0,) and empty.dtype == torch.float32
    # float32: the rule's error sits below float32 rounding of logits of magnitude ~1
    model, x = cnn(smooth=True, dtype=torch.float32), inputs(dtype=torch.float32)
    gauss = ig_completeness_error(model, x, steps=64, quadrature="gauss_legendre")
    assert gauss.dtype == torch.float32
    assert (gauss <= rounding(gauss.new_ones(()), 144, EPS32)).all()


# --------------------------------------------------------------------------- recipe and errors
def test_quadrature_is_part_of_the_recipe():
    right, gauss = SaliencyRecipe(), SaliencyRecipe(quadrature="gauss_legendre")
    assert right != gauss and hash(right) != hash(gauss)
    assert SaliencyRecipe(quadrature="riemann_right") == right
    assert hash(SaliencyRecipe(quadrature="riemann_right")) == hash(right)
    assert "quadrature='gauss_legendre'" in repr(gauss)
    metric = SaliencyInvarianceSimilarity(C4, quadrature="gauss_legendre", baseline=0.0)
    assert metric.recipe.quadrature == "gauss_legendre"


def test_bad_quadratures_are_refused():
    model, x = cnn(smooth=True), inputs(1)
    with pytest.raises(ValueError, match=r"quadrature must be one of \('riemann_right', 'trap"):
        SaliencyRecipe(quadrature="simpson")
    with pytest.raises(ValueError, match="quadrature must be one of"):
        saliency(model, x, None, quadrature="gausslegendre")  # Captum's spelling
    with pytest.raises(ValueError, match="quadrature must be one of"):
        quadrature_rule("midpoint", 4)
    with pytest.raises(ValueError, match="trapezoid rule needs at least 2 path points"):
        SaliencyRecipe(steps=1, quadrature="trapezoid")
    with pytest.raises(ValueError, match="steps must be a positive integer"):
        quadrature_rule("gauss_legendre", 0)
    with pytest.raises(ValueError, match="completeness holds for integrated gradients"):
        ig_completeness_error(model, x, None, "gradient")


def test_captum_methods_take_their_rule_in_attribution_kwargs():
    captum_attr = pytest.importorskip("captum.attr")
    with pytest.raises(ValueError, match=r"a Captum method takes its own in attribution_kwargs"):
        SaliencyRecipe(method=captum_attr.IntegratedGradients, quadrature="gauss_legendre")


def test_benchmark_tiny_run_agrees():
    """``python benchmarks/bench_quadrature.py --tiny`` (the command docs/metrics.md names)
    prints the table and exits 0 only when Gauss–Legendre is complete on the smooth CNN."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    result = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "bench_quadrature.py"), "--tiny"],
        capture_output=True, text=True, cwd=ROOT, env=env, timeout=120,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    rows = [line for line in result.stdout.splitlines() if line.startswith("| SmallCNN")]
    assert len(rows) == 2 * 2 * len(QUADRATURES)  # two models, two dtypes, every rule
