"""Saliency maps and the saliency invariance similarity SI."""

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from invreg.functional import (
    gaussian_blur,
    orbit_saliency,
    postprocess_saliency,
    saliency,
    saliency_invariance,
    saliency_similarity,
)
from invreg.groups import CyclicShifts, Dihedral, Rotations
from invreg.models import E2CNN, MLP, TiedMLP

C4 = Rotations(4)
EPS32 = torch.finfo(torch.float32).eps
#: hand-computed cases: small exact inputs through a few float32 roundings (eps relative each)
HAND = 16 * EPS32


def assert_rounding_close(actual, expected, terms):
    """Equal up to float32 rounding of ``terms`` accumulated operations, relative to the scale
    of ``expected`` (n terms err by at most n·eps times their magnitude)."""
    tol = terms * EPS32 * max(expected.abs().max().item(), 1.0)
    torch.testing.assert_close(actual, expected, rtol=0.0, atol=tol)


METHODS = ["gradient", "gradient_x_input", "integrated_gradients"]


class Counting(nn.Module):
    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net
        self.batches: list[int] = []

    def forward(self, x):
        self.batches.append(x.shape[0])
        return self.net(x)


class Quadratic(nn.Module):
    """f(x) = [Σ x², −Σ x²]: invariant to every permutation of the pixels."""

    def forward(self, x):
        s = x.pow(2).flatten(1).sum(1)
        return torch.stack([s, -s], dim=1)


def linear_model(weight: torch.Tensor) -> nn.Module:
    layer = nn.Linear(weight.shape[1], weight.shape[0], bias=False)
    with torch.no_grad():
        layer.weight.copy_(weight)
    return nn.Sequential(nn.Flatten(), layer)


# --------------------------------------------------------------------------- hand-computed
def test_methods_on_a_linear_model():
    w = torch.tensor([[1.0, -2.0, 0.5, 3.0], [0.0, 1.0, 1.0, -1.0]])
    model = linear_model(w)
    x = torch.tensor([[[[2.0, 1.0], [-1.0, 0.5]]]])
    target = torch.tensor([0])
    w0 = w[0].reshape(1, 1, 2, 2)
    assert_rounding_close(saliency(model, x, target, "gradient"), w0, 16)
    assert_rounding_close(saliency(model, x, target, "gradient_x_input"), x * w0, 16)
    # IG of a linear model is exact for any number of steps: (x − x')·w
    ig = saliency(model, x, target, "integrated_gradients", baseline=1.0, steps=3)
    assert_rounding_close(ig, (x - 1.0) * w0, 16)
    # target=None explains the predicted class: f(x) = [-2.5+... ] -> compute it
    predicted = model(x).argmax(1)
    assert_rounding_close(
        saliency(model, x, None, "gradient"), w[predicted].reshape(1, 1, 2, 2), 16
    )


def test_integrated_gradients_right_riemann_sum():
    # f = Σ x²: ∂f/∂x = 2x; right sum over α = s/S: x · (1/S) Σ 2 (s/S) x = x² (S + 1)/S
    x = torch.tensor([[[1.0, -2.0, 3.0]]])
    for steps in (1, 4, 50):
        ig = saliency(Quadratic(), x, torch.tensor([0]), steps=steps)
        assert_rounding_close(ig, x.pow(2) * (steps + 1) / steps, steps + 16)  # S-term mean


def test_postprocessing_by_hand():
    m = torch.tensor([[[-4.0, 3.0, 1.0, 3.7]]])
    assert torch.equal(postprocess_saliency(m, absolute=True), m.abs())
    # max |m| = 4: keep entries >= 3.6
    expected = torch.tensor([[[4.0, 0.0, 0.0, 3.7]]])
    assert torch.equal(postprocess_saliency(m, absolute=True, threshold=0.9), expected)
    # without abs the max is 3.7: keep >= 3.33
    expected = torch.tensor([[[0.0, 0.0, 0.0, 3.7]]])
    assert torch.equal(postprocess_saliency(m, threshold=0.9), expected)
    # a delta blurred by the normalised 3-tap Gaussian (σ = 1) in both axes
    delta = torch.zeros(1, 1, 5, 5)
    delta[0, 0, 2, 2] = 1.0
    e = math.exp(-0.5)
    taps = torch.tensor([e, 1.0, e]) / (1 + 2 * e)
    expected = torch.zeros(1, 1, 5, 5)
    expected[0, 0, 1:4, 1:4] = torch.outer(taps, taps)
    assert_rounding_close(postprocess_saliency(delta, blur=True), expected, 16)
    assert_rounding_close(gaussian_blur(delta[:, :, 2]), expected[:, :, 2] / taps[1], 16)
    with pytest.raises(ValueError, match="odd"):
        gaussian_blur(delta, kernel_size=2)
    with pytest.raises(ValueError, match="threshold"):
        postprocess_saliency(m, threshold=1.5)


def test_si_of_a_linear_model_by_hand():
    # the gradient of a linear model is its weight map w for every input, so
    # SI = mean_g cos(w, g⁻¹·w), with g⁻¹ a rotation by −90°·g
    torch.manual_seed(0)
    w = torch.randn(2, 16)
    model = linear_model(w)
    x = torch.randn(3, 1, 4, 4)
    target = torch.tensor([0, 0, 0])
    w0 = w[0].reshape(4, 4)
    expected = (
        sum(
            F.cosine_similarity(w0.flatten(), torch.rot90(w0, -k, dims=(0, 1)).flatten(), dim=0)
            for k in (1, 2, 3)
        )
        / 3
    )
    si = saliency_invariance(
        model, x, target, C4, "gradient", absolute=False, threshold=None, blur=False
    )
    assert si.item() == pytest.approx(expected.item(), abs=2 * (16 + 4) * EPS32)  # 16-pixel cos


# --------------------------------------------------------------------------- batching
@pytest.mark.parametrize("group", [C4, CyclicShifts(3), Dihedral(4)], ids=repr)
@pytest.mark.parametrize("method", METHODS)
def test_batched_si_equals_an_explicit_loop(group, method):
    torch.manual_seed(1)
    model = MLP((1, 6, 6), 4, hidden_widths=(16,), activation="tanh").eval()
    x = torch.randn(3, 1, 6, 6)
    target = torch.tensor([0, 3, 1])
    options = dict(steps=4, absolute=True, threshold=None, blur=True)
    batched = saliency_invariance(model, x, target, group, method, reduction="none", **options)
    reference = saliency(model, x, target, method, steps=4)
    expected = []
    for g in range(1, group.order):
        m = saliency(model, group.act(x, g), target, method, steps=4)
        back = group.act(m, group.inverse(torch.tensor(g)))
        a = postprocess_saliency(reference, absolute=True, blur=True).flatten(1)
        b = postprocess_saliency(back, absolute=True, blur=True).flatten(1)
        expected.append(F.cosine_similarity(a, b, dim=1))
    # one batch against a loop: float32 gradients differ by (fan-ins 36 + 16)·eps relative, a
    # cosine over 36 pixels rounds by 36·eps, plus the blur's few terms
    assert_rounding_close(batched, torch.stack(expected, dim=1), 2 * (36 + 16 + 36 + 8))


def counted_full_pass():
    """A counting MLP, 5 inputs and targets, and their SI from one pass of all 120 points."""
    torch.manual_seed(0)
    model = Counting(MLP((1, 6, 6), 3, hidden_widths=(8,)).eval())
    x = torch.randn(5, 1, 6, 6)
    target = torch.tensor([0, 1, 2, 0, 1])
    full = saliency_invariance(
        model, x, target, C4, steps=6, reduction="none", max_batch_size=120
    )
    return model, x, target, full


def test_one_backward_and_chunks():
    model, x, target, full = counted_full_pass()
    assert model.batches == [5 * 4 * 6]  # orbit and IG steps in ONE forward/backward
    model.batches.clear()
    chunked = saliency_invariance(
        model, x, target, C4, steps=6, reduction="none", max_batch_size=32
    )
    assert model.batches == [32] * 3 + [24]
    assert_rounding_close(full, chunked, 2 * (36 + 8 + 36 + 8))  # as in the loop comparison
    model.batches.clear()
    saliency_invariance(model, x, None, C4, "gradient", max_batch_size=20)
    assert model.batches == [5, 20]  # the prediction on x, then the orbit


def test_default_passes_are_bounded_by_activation_memory(monkeypatch):
    import invreg.functional.invariance as invariance

    model, x, target, full = counted_full_pass()
    # small activations: the first path point alone (measured), then the other 119 at once
    model.batches.clear()
    default = saliency_invariance(model, x, target, C4, steps=6, reduction="none")
    assert model.batches == [1, 119]
    assert_rounding_close(default, full, 2 * (36 + 8 + 36 + 8))
    # a budget of 25 inputs' activations, each counted twice for the backward: passes of 12
    # after the measured first point
    with invariance.count_output_bytes(model) as measured:
        model(x[:1])
    per_input = measured[0]
    monkeypatch.setitem(invariance.AUTO_CHUNK_BYTES, "cpu", 25 * per_input)
    model.batches.clear()
    bounded = saliency_invariance(model, x, target, C4, steps=6, reduction="none")
    assert model.batches == [1] + [12] * 9 + [11]
    assert_rounding_close(bounded, full, 2 * (36 + 8 + 36 + 8))


def test_maps_are_in_the_frame_of_x():
    torch.manual_seed(0)
    model = MLP((1, 6, 6), 3, hidden_widths=(8,)).eval()
    x = torch.randn(2, 1, 6, 6)
    maps = orbit_saliency(model, x, None, C4)
    assert maps.shape == (2, 4, 1, 6, 6)
    assert (maps >= 0).all()  # |IG|
    # SI from the same maps, without a second backward
    si = saliency_invariance(model, x, None, C4, reduction="none")
    assert_rounding_close(saliency_similarity(maps, reduction="none"), si, 16)  # same maps
    with pytest.raises(ValueError, match="N >= 2"):
        saliency_similarity(maps[:, :1])


# --------------------------------------------------------------------------- invariance
@pytest.mark.parametrize("method", METHODS)
def test_exactly_invariant_models_score_one(method):
    torch.manual_seed(0)
    x = torch.randn(6, 1, 9, 9)
    tied = TiedMLP((1, 9, 9), 5, group="c4", hidden_widths=(16, 16)).eval()
    e2cnn = E2CNN((1, 9, 9), 3, group="c4", channels=(2, 4)).eval()
    for model in (tied, e2cnn):
        assert saliency_invariance(model, x, None, C4, method, steps=8).item() > 0.999


def test_random_mlp_is_below_one():
    torch.manual_seed(0)
    model = MLP((1, 9, 9), 5, hidden_widths=(16, 16)).eval()
    x = torch.randn(6, 1, 9, 9)
    assert saliency_invariance(model, x, None, C4, steps=8).item() < 0.9


def test_tensor_baseline_moves_with_its_sample():
    torch.manual_seed(0)
    x = torch.randn(3, 1, 6, 6)
    baseline = torch.randn(3, 1, 6, 6)
    si = saliency_invariance(Quadratic(), x, None, C4, baseline=baseline, steps=4)
    assert si.item() > 0.999


def test_works_under_inference_mode_and_leaves_parameters_alone():
    torch.manual_seed(0)
    model = MLP((1, 6, 6), 3, hidden_widths=(8,)).eval()
    with torch.inference_mode():
        x = torch.randn(2, 1, 6, 6)
        si = saliency_invariance(model, x, None, C4, steps=4)
        maps = saliency(model, x, None)
    with torch.no_grad():
        si_no_grad = saliency_invariance(model, x.clone(), None, C4, steps=4)
    assert torch.isfinite(si) and si.item() == pytest.approx(si_no_grad.item(), rel=HAND)
    assert maps.shape == x.shape
    assert all(p.grad is None for p in model.parameters())


# --------------------------------------------------------------------------- bad input
def test_bad_input():
    model = MLP((1, 4, 4), 3, hidden_widths=(4,))
    x = torch.randn(2, 1, 4, 4)
    with pytest.raises(ValueError, match=r"target: expected class indices of shape \(2,\)"):
        saliency(model, x, torch.tensor([0, 1, 2]))
    with pytest.raises(TypeError, match=r"target: expected integer.*float32"):
        saliency(model, x, torch.tensor([0.0, 1.0]))
    with pytest.raises(ValueError, match=r"lie in \[0, 3\)"):
        saliency(model, x, torch.tensor([0, 3]))
    with pytest.raises(ValueError, match="method"):
        saliency(model, x, None, "occlusion")
    with pytest.raises(ValueError, match="steps"):
        saliency(model, x, None, steps=0)
    with pytest.raises(ValueError, match="baseline"):
        saliency(model, x, None, baseline=torch.zeros(3, 1, 4, 4))
    with pytest.raises(ValueError, match="square"):
        saliency_invariance(model, torch.randn(2, 1, 4, 5), None, C4)

    class NaNModel(nn.Module):
        def forward(self, x):
            return torch.full((x.shape[0], 3), float("nan")) + x.flatten(1)[:, :3]

    with pytest.raises(ValueError, match="NaN or Inf"):
        saliency(NaNModel(), x, torch.tensor([0, 1]))
    with pytest.raises(ValueError, match=r"logits \[B, C\]"):
        saliency(nn.Identity(), x, torch.tensor([0, 1]))
