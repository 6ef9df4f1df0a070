"""Drift sources, blend and match_statistics (invreg.data.drift); FashionMNIST folders are in
test_fashion_drift.py, the DriftCallback in tests/callbacks/test_drift_callback.py."""

import pytest
import torch

from invreg.data.drift import (
    DRIFT_SOURCES,
    MNIST1DDrift,
    NaturalImageDrift,
    NoiseDrift,
    TensorDrift,
    blend,
    get_drift_source,
    match_statistics,
)

EPS64 = torch.finfo(torch.float64).eps


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


# --------------------------------------------------------------------------- sources


@pytest.mark.parametrize("name", ["natural_images", "mnist1d", "noise"])
@pytest.mark.parametrize("shape", [(1, 8, 8), (3, 12, 12), (1, 40), (2, 20)])
def test_every_source_is_offline_seeded_and_shaped(name, shape):
    source = get_drift_source(name)
    a = source.sample(5, shape, torch.Generator().manual_seed(0))
    b = source.sample(5, shape, torch.Generator().manual_seed(0))
    assert a.shape == (5, *shape) and a.dtype == torch.float32
    assert torch.equal(a, b)
    assert torch.isfinite(a).all() and a.std() > 0  # not a constant image
    assert not torch.equal(a[0], a[1])  # samples differ


def test_natural_images_are_photograph_patches_in_unit_range():
    patches = NaturalImageDrift(patch_scale=2).sample(8, (1, 16, 16),
                                                      torch.Generator().manual_seed(1))
    assert 0.0 <= patches.min() and patches.max() <= 1.0
    # natural images are smooth: neighbouring pixels correlate, unlike noise
    left, right = patches[..., :-1].flatten(), patches[..., 1:].flatten()
    assert torch.corrcoef(torch.stack([left, right]))[0, 1] > 0.5
    rgb = NaturalImageDrift().sample(2, (3, 8, 8))
    assert not torch.equal(rgb[:, 0], rgb[:, 1])  # colour channels kept for C = 3


def test_tensor_source_and_errors(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no data/fashion-mnist to fall back to
    pool = torch.arange(12.0).reshape(3, 1, 2, 2)
    drawn = TensorDrift(pool).sample(6, (1, 2, 2), torch.Generator().manual_seed(0))
    assert all(any(torch.equal(d, p) for p in pool) for d in drawn)
    with pytest.raises(ValueError, match="shape"):
        TensorDrift(pool).sample(2, (1, 3, 3))
    with pytest.raises(ValueError, match="source"):
        get_drift_source("fashion_mnist")
    with pytest.raises(ValueError, match="kind"):
        NoiseDrift("poisson")
    with pytest.raises(ValueError, match="pool_size"):
        MNIST1DDrift(pool_size=5)
    with pytest.raises(ValueError, match="shape"):
        NoiseDrift().sample(2, (8,))


def test_blend_and_statistics():
    x = torch.randn(4, 1, 8, 8) * 3 + 1
    drift = torch.rand(4, 1, 8, 8)
    assert torch.equal(blend(x, drift, 0.0), x)
    torch.testing.assert_close(blend(x, drift, 1.0), drift)
    torch.testing.assert_close(blend(x, drift, 0.25), 0.75 * x + 0.25 * drift)
    matched = match_statistics(drift, x)
    torch.testing.assert_close(matched.mean(), x.mean(), rtol=0, atol=1e-5)
    torch.testing.assert_close(matched.std(), x.std(), rtol=1e-5, atol=0)
    with pytest.raises(ValueError, match="beta"):
        blend(x, drift, 1.5)
    with pytest.raises(ValueError, match="drift"):
        blend(x, drift[:2], 0.5)


def test_noise_kinds_and_the_registry_pass_options_through():
    uniform = get_drift_source("noise", kind="uniform").sample(64, (1, 8, 8), gen())
    assert 0.0 <= uniform.min() and uniform.max() <= 1.0 and uniform.min() < 0.1
    gaussian = get_drift_source("noise").sample(64, (1, 8, 8), gen())
    assert gaussian.min() < 0.0  # standard normal, not [0, 1]
    source = NoiseDrift("uniform")
    assert get_drift_source(source) is source
    with pytest.raises(ValueError, match=r"options \['kind'\] apply to a source name"):
        get_drift_source(source, kind="gaussian")
    with pytest.raises(ValueError, match="source: expected a DriftSource or one of"):
        get_drift_source("fashion")
    assert set(DRIFT_SOURCES) == {"natural_images", "mnist1d", "noise", "fashion_mnist", "letters"}


@pytest.mark.parametrize("num", [0, -1, True, 2.0])
def test_sample_needs_a_positive_integer_count(num):
    with pytest.raises(ValueError, match=f"num must be a positive integer, got {num!r}"):
        NoiseDrift().sample(num, (1, 4, 4))


def test_mnist1d_signals_repeat_over_channels_and_images_stack_different_signals():
    signals = MNIST1DDrift(pool_size=100).sample(4, (3, 40), gen())
    assert torch.equal(signals[:, 0], signals[:, 1]) and torch.equal(signals[:, 0], signals[:, 2])
    images = MNIST1DDrift(pool_size=100).sample(4, (2, 6, 40), gen())
    assert torch.equal(images[:, 0], images[:, 1])
    rows = images[:, 0].flatten(0, 1)  # 24 rows drawn from a pool of 100 signals
    assert len({tuple(r.tolist()) for r in rows}) > 1


@pytest.mark.parametrize("channels", [1, 2, 4])
def test_natural_images_are_grey_repeated_over_channels_unless_rgb(channels):
    patches = NaturalImageDrift().sample(3, (channels, 8, 8), gen(2))
    for c in range(1, channels):
        assert torch.equal(patches[:, c], patches[:, 0])


# --------------------------------------------------------------------------- blend, statistics


def test_blend_is_the_convex_mix_in_the_dtype_of_x():
    x = torch.randn(3, 1, 5, 5, generator=gen(), dtype=torch.float64)
    drift = torch.rand(3, 1, 5, 5, generator=gen(1))  # float32
    assert blend(x, drift, 0.0) is x
    mixed = blend(x, drift, 0.3)
    assert mixed.dtype == torch.float64
    # one product and one sum per entry of magnitude <= |x| + |drift|: a few eps of it
    tol = 4 * EPS64 * (x.abs().max() + 1.0).item()
    torch.testing.assert_close(mixed, 0.7 * x + 0.3 * drift.double(), rtol=0, atol=tol)
    with pytest.raises(ValueError, match="beta must lie in \\[0, 1\\], got -0.1"):
        blend(x, drift, -0.1)


def test_match_statistics_gives_the_reference_mean_and_std():
    reference = 3.0 * torch.randn(2, 1, 6, 6, generator=gen(), dtype=torch.float64) - 5.0
    drift = torch.rand(4, 1, 6, 6, generator=gen(1), dtype=torch.float64)
    matched = match_statistics(drift, reference)
    assert matched.shape == drift.shape
    # float64 means and stds over 144 entries of magnitude ~10: a few hundred eps of it
    tol = 256 * EPS64 * reference.abs().max().item()
    torch.testing.assert_close(matched.mean(), reference.mean(), rtol=0, atol=tol)
    torch.testing.assert_close(matched.std(), reference.std(), rtol=0, atol=tol)
    # an affine map of the drift: its standardised values are kept
    standard = (drift - drift.mean()) / drift.std()
    back = (matched - reference.mean()) / reference.std()
    torch.testing.assert_close(back, standard, rtol=0, atol=tol)


def test_match_statistics_of_a_constant_drift_is_the_reference_mean():
    reference = torch.randn(2, 1, 4, 4, generator=gen(), dtype=torch.float64)
    matched = match_statistics(torch.full((2, 1, 4, 4), 0.5, dtype=torch.float64), reference)
    assert torch.isfinite(matched).all()
    torch.testing.assert_close(matched, torch.full_like(matched, reference.mean().item()),
                               rtol=0, atol=4 * EPS64 * reference.abs().max().item())
