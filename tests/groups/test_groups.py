import pytest
import torch

from invreg.groups import (
    ContinuousRotations,
    CyclicShifts,
    Dihedral,
    Flips,
    Group,
    Product,
    Rotations,
    get_group,
)

FINITE = [
    Rotations(4),
    Rotations(2),
    Dihedral(4),
    CyclicShifts(3),
    CyclicShifts(4, dim=-2),
    CyclicShifts(3, shift=4),
    Flips(("horizontal", "vertical")),
    Product(Flips("vertical"), CyclicShifts(4)),
]


def image(batch=3, size=12, channels=2, seed=0):
    return torch.randn(batch, channels, size, size, generator=torch.Generator().manual_seed(seed))


def all_pairs(group: Group):
    g = torch.arange(group.order)
    gg, hh = torch.meshgrid(g, g, indexing="ij")
    return gg.reshape(-1), hh.reshape(-1)


@pytest.mark.parametrize("group", FINITE, ids=repr)
def test_finite_group_axioms_hold_exactly(group):
    g, h = all_pairs(group)
    x = image(batch=g.shape[0])
    identity = group.identity(g.shape[0])
    assert torch.equal(group.act(x, identity), x)
    assert torch.equal(group.act(group.act(x, g), group.inverse(g)), x)
    assert torch.equal(group.act(group.act(x, h), g), group.act(x, group.compose(g, h)))
    assert torch.equal(group.compose(g, group.inverse(g)), identity)


@pytest.mark.parametrize("group", FINITE, ids=repr)
def test_orbit_elements_distinct_identity_first_and_change_input(group):
    x = image(batch=2)
    orbit = group.orbit(x)
    assert orbit.shape == (2, group.order, *x.shape[1:])
    assert torch.equal(orbit[:, 0], x)
    for i in range(group.order):
        for j in range(i + 1, group.order):
            assert not torch.allclose(orbit[:, i], orbit[:, j]), (i, j)
    # the orbit agrees with acting element by element
    for e in range(group.order):
        assert torch.equal(orbit[:, e], group.act(x, e))


def test_rotation_by_90_degrees_is_rot90_counterclockwise():
    x = torch.arange(4.0).reshape(1, 1, 2, 2)
    assert torch.equal(Rotations(4).act(x, 1), torch.tensor([[[[1.0, 3.0], [0.0, 2.0]]]]))
    # elements of C8 that are multiples of 90 degrees use the exact path
    y = image()
    assert torch.equal(Rotations(8).act(y, 2), Rotations(4).act(y, 1))


def smooth_blob(size=33, batch=2):
    coords = torch.linspace(-1, 1, size)
    yy, xx = torch.meshgrid(coords, coords, indexing="ij")
    centres = torch.tensor([[0.15, -0.1], [-0.2, 0.15]])[:batch]
    blobs = [torch.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / 0.1) for cx, cy in centres]
    return torch.stack(blobs).unsqueeze(1)


def test_bilinear_rotation_matches_exact_at_right_angles_and_axioms_hold_approximately():
    x = smooth_blob()
    c8 = Rotations(8)
    # two 45-degree steps agree with one exact 90-degree rotation up to interpolation error
    twice = c8.act(c8.act(x, 1), 1)
    assert (twice - c8.act(x, 2)).abs().max() < 0.05
    back = c8.act(c8.act(x, 1), c8.inverse(torch.tensor([1, 1])))
    assert (back - x).abs().max() < 0.05
    assert not torch.allclose(c8.act(x, 1), x, atol=1e-3)
    # the bilinear path at exactly 90 degrees agrees with rot90
    from invreg.groups.rotations import _rotate_bilinear

    assert torch.allclose(_rotate_bilinear(x, torch.tensor([90.0, 90.0])), c8.act(x, 2), atol=1e-5)


def test_continuous_rotations_sample_inverse_and_orbit():
    group = ContinuousRotations(30)
    gen = torch.Generator().manual_seed(0)
    angles = group.sample(1000, generator=gen)
    assert angles.abs().max() <= 30 and angles.std() > 10
    x = smooth_blob()
    orbit = group.orbit(x, num_samples=4, generator=gen)
    assert orbit.shape == (2, 4, 1, 33, 33)
    assert torch.equal(orbit[:, 0], x)
    g = torch.tensor([20.0, -15.0])
    assert (group.act(group.act(x, g), group.inverse(g)) - x).abs().max() < 0.05
    with pytest.raises(ValueError, match="num_samples"):
        group.orbit(x)
    with pytest.raises(ValueError, match="max_angle"):
        ContinuousRotations(0)


def test_sampling_is_reproducible_and_covers_the_group():
    group = Dihedral(4)
    a = group.sample(500, generator=torch.Generator().manual_seed(1))
    b = group.sample(500, generator=torch.Generator().manual_seed(1))
    assert torch.equal(a, b)
    assert set(a.tolist()) == set(range(8))


def test_cyclic_shifts_on_signals_and_paper_t3():
    signal = torch.randn(2, 1, 40)
    t4 = CyclicShifts(4)
    assert torch.equal(t4.act(signal, 1), torch.roll(signal, 10, dims=-1))
    t3 = get_group("t3")
    x = image(size=36)
    assert torch.equal(t3.act(x, 2), torch.roll(x, 24, dims=-1))
    with pytest.raises(ValueError, match="not a multiple"):
        t3.act(image(size=10), 1)
    with pytest.raises(ValueError, match="not a multiple"):
        CyclicShifts(3, shift=5).act(image(size=12), 1)


def test_mixed_product_with_continuous_factor():
    group = Product(ContinuousRotations(45), Rotations(2))
    assert group.order is None and group.element_shape == (2,)
    x = smooth_blob()
    g = group.sample(2, generator=torch.Generator().manual_seed(0))
    assert g.shape == (2, 2)
    back = group.act(group.act(x, g), group.inverse(g))
    assert (back - x).abs().max() < 0.05
    assert group.orbit(x, num_samples=3).shape == (2, 3, 1, 33, 33)


def test_product_commutation_check():
    x = image()
    assert Product(Flips("vertical"), CyclicShifts(4)).commutes(x)
    with pytest.raises(ValueError, match="do not commute"):
        Product(Rotations(4), CyclicShifts(4))


@pytest.mark.parametrize(
    "name, expected",
    [("c4", Rotations(4)), ("R4", Rotations(4)), ("d4", Dihedral(4)), ("t3", CyclicShifts(3)),
     ("ty3", CyclicShifts(3, dim=-2)), ("flip", Flips()), ("so2", ContinuousRotations(180))],
)
def test_registry(name, expected):
    assert get_group(name) == expected
    assert get_group(expected) is expected


def test_registry_typo_lists_valid_names():
    with pytest.raises(ValueError, match=r"Did you mean 'c4'.*Valid names: c<n>"):
        get_group("c4x")
    with pytest.raises(TypeError):
        get_group(4)


def test_shape_errors_name_the_shape():
    with pytest.raises(ValueError, match=r"\[B, C, H, W\].*\(3, 8, 8\)"):
        Rotations(4).act(torch.randn(3, 8, 8), 1)
    with pytest.raises(ValueError, match=r"square.*\(2, 1, 8, 9\)"):
        Rotations(4).act(torch.randn(2, 1, 8, 9), 1)
    with pytest.raises(ValueError, match=r"shape \(2,\)"):
        Rotations(4).act(torch.randn(2, 1, 8, 8), torch.tensor([1, 2, 3]))
    with pytest.raises(ValueError, match=r"\[0, 4\)"):
        Rotations(4).act(torch.randn(2, 1, 8, 8), 4)
    with pytest.raises(ValueError, match="integers"):
        Rotations(4).act(torch.randn(2, 1, 8, 8), 1.5)
    # flips do not need square images
    assert Flips().act(torch.randn(2, 1, 8, 9), 1).shape == (2, 1, 8, 9)


def test_repr_is_readable():
    assert repr(Dihedral(4)) == "Dihedral(n=4)"
    assert "Flips" in repr(Product(Flips(), CyclicShifts(2)))
