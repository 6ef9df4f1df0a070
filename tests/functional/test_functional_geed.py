"""Layer-wise G-EED: hooks, formulas, modes, e2cnn field types."""

import math

import pytest
import torch
from torch import nn

from invreg.functional import geed, geed_terms, orbit_features, orbit_logits
from invreg.groups import ContinuousRotations, CyclicShifts, Rotations
from invreg.models import E2CNN, MLP, TiedMLP

C4 = Rotations(4)
EPS32 = torch.finfo(torch.float32).eps
#: hand-computed cases: exactly representable inputs through a handful of float32 roundings
#: (sums of at most 4 terms, a sqrt, a log-sum-exp), each at most eps relative; 16·eps covers it
HAND = 16 * EPS32


def rounding_tolerance(model, x, group, layer, mode="invariance"):
    """Bound on the normalised cosine G-EED of a layer that is invariant (equivariant) up to
    float32 rounding. The compared features agree to a relative ρ of a few eps, so the true
    1 − cos ≈ ½ρ² is negligible and what remains is the cosine's own rounding: a dot product
    and two norms of D terms, at most (D + 3)·eps (doubled for margin). Normalising divides by
    the random-pair distance R, which is small when the features of different inputs are
    nearly parallel (e.g. 0.003 for a random E2CNN's three logits)."""
    orbit = orbit_features(model, x, group, [layer])
    _, random_pairs = geed_terms(orbit, layer, group, mode)
    features = orbit.features[layer][0, 0].numel()
    return 2 * (features + 3) * EPS32 / random_pairs.mean().item()


def corner_images() -> torch.Tensor:
    """Two 2×2 one-hot images; their C4 orbits are the four one-hot images."""
    x = torch.zeros(2, 1, 2, 2)
    x[0, 0, 0, 0] = 1.0
    x[1, 0, 0, 1] = 1.0
    return x


def identity_model() -> nn.Module:
    return nn.Sequential(nn.Identity())


def test_invariance_by_hand():
    # features = the images: one-hot e_k, orbit centroid = 0.25·1 (all four corners)
    x, model = corner_images(), identity_model()
    # cosine: cos(e_k, 0.25·1) = 0.25 / (1·0.5) = 0.5; random pairs: orthogonal one-hots -> 1
    assert geed(model, x, C4, "0", normalize=False).item() == pytest.approx(0.5, rel=HAND)
    assert geed(model, x, C4, "0").item() == pytest.approx(0.5, rel=HAND)
    # euclidean: ‖e_k − 0.25·1‖ = sqrt(0.75² + 3·0.25²) = sqrt(0.75); random pairs: sqrt(2)
    euclid = geed(model, x, C4, "0", distance="euclidean", normalize=False)
    assert euclid.item() == pytest.approx(math.sqrt(0.75), rel=HAND)
    normalized = geed(model, x, C4, "0", distance="euclidean")
    assert normalized.item() == pytest.approx(math.sqrt(0.75) / math.sqrt(2), rel=HAND)
    # kl: KL(softmax(0.25·1) ‖ softmax(e_k)) = KL(uniform ‖ [e, 1, 1, 1]/(e + 3))
    e = math.e
    kl = 0.25 * math.log(0.25 * (e + 3) / e) + 0.75 * math.log(0.25 * (e + 3))
    assert geed(model, x, C4, "0", distance="kl", normalize=False).item() == pytest.approx(
        kl, rel=HAND
    )
    per_pair = geed(model, x, C4, "0", normalize=False, reduction="none")
    assert per_pair.shape == (2, 3)


def test_equivariance_by_hand():
    x = corner_images()
    # the identity map is equivariant; flatten-then-identity is invariant to nothing
    assert geed(identity_model(), x, C4, "0", mode="equivariance").item() == 0.0
    # a 3×3 all-ones convolution with zero padding commutes with rot90
    conv = nn.Conv2d(1, 1, 3, padding=1, bias=False)
    nn.init.ones_(conv.weight)
    x = torch.randn(4, 1, 6, 6)
    ones = nn.Sequential(conv)
    tol = rounding_tolerance(ones, x, C4, "0", "equivariance")
    assert geed(ones, x, C4, "0", mode="equivariance").item() < tol
    # a random filter does not
    nn.init.normal_(conv.weight)
    assert geed(nn.Sequential(conv), x, C4, "0", mode="equivariance").item() > 1e-2
    # a circular convolution commutes with cyclic shifts, a zero-padded one does not
    shifts = CyclicShifts(3, dim=-1)
    circular = nn.Sequential(nn.Conv2d(1, 2, 3, padding=1, padding_mode="circular"))
    tol = rounding_tolerance(circular, x, shifts, "0", "equivariance")
    assert geed(circular, x, shifts, "0", mode="equivariance").item() < tol
    zero_padded = nn.Conv2d(1, 2, 3, padding=1)
    assert geed(nn.Sequential(zero_padded), x, shifts, "0", mode="equivariance").item() > 1e-3


def test_hidden_orbits_use_the_input_elements():
    model = nn.Sequential(nn.Identity(), nn.Flatten(), nn.Linear(36, 3))
    x = torch.randn(3, 1, 6, 6)
    so2 = ContinuousRotations()
    gen = torch.Generator().manual_seed(0)
    orbit = orbit_features(model, x, so2, ["0", ""], num_samples=4, generator=gen)
    assert orbit.elements.shape == (4,) and orbit.elements[0] == 0
    expected = so2.orbit_from_elements(x, orbit.elements)
    assert torch.equal(orbit.features["0"], expected)
    # the same forward, the same batch: bitwise equal
    assert torch.equal(orbit.features[""], orbit.logits)
    assert torch.equal(orbit.logits, orbit_logits(model, x, so2, elements=orbit.elements))
    chunked = orbit_features(model, x, so2, ["0"], chunk_size=2, elements=orbit.elements)
    assert torch.equal(chunked.features["0"], expected)


def test_invariant_layers_of_weight_tied_and_e2cnn_models():
    torch.manual_seed(0)
    x = torch.randn(6, 1, 9, 9)
    tied = TiedMLP((1, 9, 9), 5, group="c4", hidden_widths=(16, 16)).eval()
    # hidden.0 holds the per-orbit-element features (not invariant); pool onward is
    assert geed(tied, x, C4, "hidden.0").item() > 0.05
    for layer in ("pool", "hidden.1", "head"):
        assert geed(tied, x, C4, layer).item() < rounding_tolerance(tied, x, C4, layer)
    e2 = E2CNN((1, 9, 9), 3, group="c4", channels=(2, 4)).eval()
    for layer in ("blocks.0.conv", "blocks.0", "blocks.1", "group_pool"):
        tol = rounding_tolerance(e2, x, C4, layer, "equivariance")
        assert geed(e2, x, C4, layer, mode="equivariance").item() < tol
    assert geed(e2, x, C4, "blocks.0").item() > 0.05  # regular fields permute, not invariant
    assert geed(e2, x, C4, "head").item() < rounding_tolerance(e2, x, C4, "head")


def test_float64_e2cnn_layers_are_moved_in_float64():
    # the reference g·f(x) keeps the features' dtype: no float32 rounding in a float64 check
    torch.manual_seed(0)
    e2 = E2CNN((1, 9, 9), 3, group="d4", channels=(2, 4)).double().eval()
    x = torch.randn(3, 1, 9, 9, dtype=torch.float64)
    orbit = orbit_features(e2, x, "d4", ["blocks.0.conv"])
    deviations, _ = geed_terms(orbit, "blocks.0.conv", "d4", "equivariance", "euclidean")
    scale = orbit.features["blocks.0.conv"].flatten(start_dim=2).norm(dim=-1).max()
    assert deviations.dtype == torch.float64
    assert deviations.max() < 1e-12 * scale


def test_random_mlp_layers_are_not_invariant():
    torch.manual_seed(0)
    model = MLP((1, 9, 9), 5, hidden_widths=(16, 16)).eval()
    x = torch.randn(6, 1, 9, 9)
    for layer in ("hidden.0", "hidden.1", "head"):
        assert geed(model, x, C4, layer).item() > 0.01


def test_errors():
    model = MLP((1, 4, 4), 3, hidden_widths=(4,))
    x = torch.randn(2, 1, 4, 4)
    with pytest.raises(ValueError, match=r"'hiden.0'.*Did you mean 'hidden.0'.*Available names"):
        geed(model, x, C4, "hiden.0")
    with pytest.raises(ValueError, match="cannot act on layer 'hidden.0'"):
        geed(model, x, C4, "hidden.0", mode="equivariance")
    with pytest.raises(ValueError, match="mode"):
        geed(model, x, C4, "head", mode="covariance")
    with pytest.raises(ValueError, match="distance"):
        geed(model, x, C4, "head", distance="manhattan")
    with pytest.raises(ValueError, match="at least 2 samples"):
        geed(model, x[:1], C4, "head")
    shared = nn.Linear(3, 3)
    twice = nn.Sequential(nn.Flatten(), nn.Linear(16, 3), shared, nn.ReLU(), shared)
    with pytest.raises(ValueError, match="ran 2 times"):
        geed(twice, x, C4, "2")
    orbit = orbit_features(model, x, C4, ["head"])
    with pytest.raises(ValueError, match="was not captured"):
        geed_terms(orbit, "hidden.0", C4)


def scaled_logits_model() -> nn.Module:
    """``x [B, 1, 3] -> x ⊙ (2, 1, 0)`` in float64: logits that are no permutation of each
    other along a cyclic-shift orbit, so the two candidate KL centroids differ."""
    linear = nn.Linear(3, 3, bias=False, dtype=torch.float64)
    with torch.no_grad():
        linear.weight.copy_(torch.diag(torch.tensor([2.0, 1.0, 0.0], dtype=torch.float64)))
    return nn.Sequential(nn.Flatten(), linear)


def softmax(logits):
    exps = [math.exp(v) for v in logits]
    return [v / sum(exps) for v in exps]


def kl(p, q):
    return sum(pk * math.log(pk / qk) for pk, qk in zip(p, q, strict=True))


def test_kl_invariance_compares_with_the_mean_of_softmaxes():
    # 2 samples, orbit of 3 cyclic shifts (rolls by 0, 1, 2), 3 classes, all in float64
    x = torch.tensor([[[1.0, 0.0, 0.0]], [[0.0, 3.0, -1.0]]], dtype=torch.float64)
    weights = (2.0, 1.0, 0.0)
    expected, old = [], []
    for sample in x[:, 0].tolist():
        orbit = [sample[-shift:] + sample[:-shift] for shift in range(3)]  # torch.roll by shift
        logits = [[w * v for w, v in zip(weights, element, strict=True)] for element in orbit]
        probs = [softmax(row) for row in logits]
        centroid = [sum(column) / 3 for column in zip(*probs, strict=True)]
        expected += [kl(centroid, q) for q in probs[1:]]
        mean_logits = [sum(column) / 3 for column in zip(*logits, strict=True)]
        old += [kl(softmax(mean_logits), q) for q in probs[1:]]
    expected_mean, old_mean = sum(expected) / 4, sum(old) / 4
    model, group = scaled_logits_model(), CyclicShifts(3)
    value = geed(model, x, group, "", distance="kl", normalize=False)
    assert value.dtype == torch.float64
    assert value.item() == pytest.approx(expected_mean, abs=1e-6)
    # the softmax of the mean logits is another distribution: this example tells them apart
    assert abs(expected_mean - old_mean) > 1e-2
    assert abs(value.item() - old_mean) > 1e-2
    # normalised: ÷ the mean of KL(p(x_0) ‖ p(x_1)) and KL(p(x_1) ‖ p(x_0))
    first, second = (softmax([w * v for w, v in zip(weights, s, strict=True)]) for s in x[:, 0])
    random_pairs = (kl(first, second) + kl(second, first)) / 2
    normalized = geed(model, x, group, "", distance="kl")
    assert normalized.item() == pytest.approx(expected_mean / random_pairs, abs=1e-6)


def test_kl_invariance_is_zero_on_an_invariant_orbit_and_finite_for_extreme_logits():
    # identical logits (10, 5, 0) on the whole orbit: the centroid is that distribution, KL = 0
    # up to the log-mean-exp's rounding: a few float64 eps of log-probabilities of size ≤ 10
    x = torch.full((2, 1, 3), 5.0, dtype=torch.float64)
    model = scaled_logits_model()
    value = geed(model, x, CyclicShifts(3), "", distance="kl", normalize=False).item()
    assert abs(value) <= 16 * torch.finfo(torch.float64).eps * 10
    # logits so far apart that some probabilities underflow to 0 in float32
    x = torch.tensor([[[100.0, -100.0, 0.0]], [[0.0, 80.0, -90.0]]])
    value = geed(model.float(), x, CyclicShifts(3), "", distance="kl", normalize=False)
    assert torch.isfinite(value) and value > 0
