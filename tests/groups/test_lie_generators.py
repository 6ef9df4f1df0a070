"""Continuous groups own their Lie generators; the Lie derivative is built from them.

A generator's affine map is the one the group's ``act`` resamples with (translations and
scalings bit for bit; rotations up to the rounding of degrees ↔ radians), and a Lie derivative
taken through the group equals the one taken through the generator's name, bit for bit.
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from invreg.functional import lie_derivative, lie_derivative_error, lie_tangent
from invreg.functional.lie import GENERATORS, lie_generator
from invreg.groups import (
    ContinuousRotations,
    CyclicShifts,
    Dihedral,
    FiniteGroup,
    Flips,
    LieGenerator,
    Product,
    Rotations,
    Scalings,
    Translations,
)
from invreg.groups.rotations import resample

FINITE = [
    Rotations(4),
    Rotations(8),
    Dihedral(4),
    CyclicShifts(3),
    Flips(),
    Product(Rotations(2), Flips()),
    FiniteGroup.from_actions([lambda v: v, lambda v: -v], input_shape=(1, 4)),
]


def images(shape=(3, 2, 9, 9), seed=0) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(2, 3, 3), nn.Tanh(), nn.Flatten(), nn.Linear(147, 4)).double()


def test_each_continuous_group_names_its_generators():
    assert list(ContinuousRotations(30).lie_generators()) == ["rotation"]
    assert list(Translations().lie_generators()) == ["translate_x", "translate_y"]
    assert list(Scalings().lie_generators()) == ["scale"]
    assert list(Product(ContinuousRotations(), Scalings()).lie_generators()) == [
        "rotation", "scale"]
    assert list(Product(Rotations(4), Scalings()).lie_generators()) == ["scale"]
    # the shorthands are the generators of the shipped groups
    assert GENERATORS == {
        "rotation": ContinuousRotations().lie_generator(),
        "translate_x": Translations().lie_generator("translate_x"),
        "translate_y": Translations().lie_generator("translate_y"),
        "scale": Scalings().lie_generator(),
    }
    assert all(isinstance(g, LieGenerator) for g in GENERATORS.values())
    assert GENERATORS["rotation"].square and not GENERATORS["scale"].square


CASES = [
    (Translations(), "translate_x", 1.3),
    (Translations(), "translate_y", -2.5),
    (Scalings(), "scale", 0.3),
    (Scalings(), "scale", -0.4),
    (Product(ContinuousRotations(), Scalings()), "scale", 0.2),
    (Product(Rotations(2), Scalings()), "scale", -0.3),
]


@pytest.mark.parametrize(("group", "name", "t"), CASES, ids=lambda v: repr(v)[:30])
def test_the_generator_map_is_the_map_act_resamples_with(group, name, t):
    x = images((2, 2, 9, 9) if isinstance(group, Product) else (2, 2, 9, 11))
    generator = group.lie_generator(name)
    assert generator.group == group
    t = torch.full((x.shape[0],), t, dtype=torch.float64)
    acted = group.act(x, generator.element(t))
    assert torch.equal(acted, resample(x, generator(t, x.shape[-2], x.shape[-1])))
    assert (acted - x).abs().max() > 0.1  # it does move the images


def test_the_rotation_generator_is_the_rotation_of_the_group():
    x = images()
    generator = ContinuousRotations().lie_generator()
    t = torch.tensor([0.3, -1.1, 2.0], dtype=torch.float64)
    assert torch.allclose(generator.element(t), t * 180 / math.pi)
    acted = ContinuousRotations().act(x, generator.element(t))
    flowed = resample(x, generator(t, 9, 9))
    # degrees → radians in the group, radians directly in the flow: float64 rounding apart
    assert (acted - flowed).abs().max() <= 1e-12
    assert (acted - x).abs().max() > 0.1


@pytest.mark.parametrize("group", FINITE, ids=repr)
def test_a_finite_group_has_no_generator_and_says_what_is_accepted(group):
    assert group.lie_generators() == {}
    with pytest.raises(ValueError, match="has no Lie generator") as info:
        group.lie_generator()
    assert "ContinuousRotations ('so2')" in str(info.value)
    with pytest.raises(ValueError, match=r"^group: .* has no Lie generator") as info:
        lie_derivative(model(), images(), group)
    for accepted in ("ContinuousRotations ('so2')", "Translations", "Scalings", "'rotation'"):
        assert accepted in str(info.value)


def test_choosing_among_several_generators():
    with pytest.raises(ValueError, match=r"has 2 Lie generators \('translate_x', 'translate_y'\)"):
        Translations().lie_generator()
    with pytest.raises(ValueError, match=r"has the Lie generators 'rotation', got 'scale'"):
        ContinuousRotations().lie_generator("scale")
    with pytest.raises(ValueError, match=r"'rotation' is a generator name; pass generator="):
        lie_generator(group="rotation")
    with pytest.raises(ValueError, match=r"^group: Unknown group name 'so3'"):
        lie_generator(group="so3")
    with pytest.raises(ValueError, match=r"^generator: expected one of .*'rotation'.*got None"):
        lie_generator()
    with pytest.raises(ValueError, match="pass one group"):
        lie_generator(ContinuousRotations(), group="so2")


GROUP_FORMS = [
    ("rotation", ContinuousRotations()),
    ("rotation", ContinuousRotations(30)),
    ("rotation", Product(ContinuousRotations(), Scalings())),
    ("scale", Scalings(2.0)),
    ("translate_y", Translations().lie_generator("translate_y")),
]


@pytest.mark.parametrize(("name", "given"), GROUP_FORMS, ids=lambda v: repr(v)[:30])
def test_the_group_gives_the_numbers_of_the_generator_name(name, given):
    x, net = images(), model()
    if isinstance(given, Product):
        given = given.lie_generator("rotation")
    for fill in (0.0, -0.4):
        assert torch.equal(lie_tangent(x, given, fill=fill), lie_tangent(x, name, fill=fill))
        assert torch.equal(lie_derivative(net, x, given, fill=fill),
                           lie_derivative(net, x, name, fill=fill))
        assert torch.equal(lie_derivative_error(net, x, given, layer="1", fill=fill),
                           lie_derivative_error(net, x, name, layer="1", fill=fill))
    assert lie_derivative(net, x, name).abs().max() > 1e-3


def test_a_group_name_and_a_generator_of_a_group():
    x, net = images(), model()
    assert torch.equal(lie_derivative(net, x, lie_generator(group="so2")),
                       lie_derivative(net, x, "rotation"))
    translate_y = lie_generator("translate_y", group=Translations(4.0))
    assert torch.equal(lie_derivative(net, x, translate_y), lie_derivative(net, x, "translate_y"))
    # rotation needs square images whichever way it is given
    with pytest.raises(ValueError, match="x: the rotation generator needs square images"):
        lie_derivative(net, x[..., :8], ContinuousRotations())
