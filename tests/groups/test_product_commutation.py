"""``Product`` refuses factors whose actions do not commute: ``(g1, g2)·x = g1·(g2·x)`` is an
action of the direct product only when they do (``Rotations(4) × Flips`` is the dihedral group,
not a direct product)."""

import pytest
import torch

from invreg.config import from_config, to_config
from invreg.groups import (
    ContinuousRotations,
    CyclicShifts,
    Dihedral,
    FiniteGroup,
    Flips,
    Group,
    Product,
    Rotations,
    Scalings,
)


def test_rotations_and_flips_are_refused_pointing_to_dihedral():
    with pytest.raises(ValueError, match=r"Product\(Rotations\(n=4\), Flips\(axes=\('horizontal',"
                                         r"\)\)\): the factors do not commute, so \(g1, g2\)·x = "
                                         r"g1·\(g2·x\) is not an action of the direct product: "
                                         r"for g1 = 1 of Rotations\(n=4\) and g2 = 1 of Flips.*"
                                         r"use Dihedral\(4\) \(name 'd4'\) instead"):
        Product(Rotations(4), Flips())
    # what the refused product claimed: (1, 1)·x is not (1, 0)·((0, 1)·x) for rotations and flips
    x = torch.randn(1, 1, 6, 6, generator=torch.Generator().manual_seed(0))
    rotated_then_flipped = Rotations(4).act(Flips().act(x, 1), 1)
    assert not torch.equal(rotated_then_flipped, Flips().act(Rotations(4).act(x, 1), 1))
    assert torch.equal(rotated_then_flipped, Dihedral(4).act(x, 5))  # Dihedral composes right


@pytest.mark.parametrize(
    ("first", "second"),
    [(ContinuousRotations(), Flips()), (ContinuousRotations(45), Flips()),
     (ContinuousRotations(2), Flips()), (Rotations(8), Flips()), (Dihedral(4), Rotations(4)),
     (Flips(), CyclicShifts(3)), (Rotations(4), CyclicShifts(3)),
     (Flips("vertical"), CyclicShifts(3, dim=-2)), (Rotations(4), Flips("vertical"))],
    ids=repr,
)
def test_non_commuting_factors_are_refused(first, second):
    with pytest.raises(ValueError, match="the factors do not commute"):
        Product(first, second)


@pytest.mark.parametrize(
    ("first", "second"),
    [(Flips("vertical"), CyclicShifts(3)), (Flips(), CyclicShifts(3, dim=-2)),
     (CyclicShifts(3), CyclicShifts(4, dim=-2)), (Flips(), CyclicShifts(2)),
     (Rotations(2), Flips()), (Rotations(2), Flips(("horizontal", "vertical"))),
     (ContinuousRotations(), Scalings()), (ContinuousRotations(45), Scalings(3.0)),
     (Rotations(8), Scalings()), (Rotations(4), Scalings()), (Dihedral(4), Scalings()),
     (Flips(), Scalings()), (ContinuousRotations(45), Rotations(2)),
     (ContinuousRotations(), Rotations(8)), (Flips(), Flips("vertical"))],
    ids=repr,
)
def test_commuting_factors_are_accepted(first, second):
    group = Product(first, second)
    assert group.first is first and group.second is second


def test_custom_factors_are_checked_on_their_input_shape():
    def shift(x):
        return torch.roll(x, 1, dims=-1)

    def negate(x):
        return -x

    def reverse(x):
        return torch.flip(x, dims=(-1,))

    shifts = FiniteGroup.from_generator(shift, order=6, input_shape=(2, 6))
    signs = FiniteGroup.from_generator(negate, order=2, input_shape=(2, 6))
    reversal = FiniteGroup.from_generator(reverse, order=2, input_shape=(2, 6))
    Product(shifts, signs)
    with pytest.raises(ValueError, match=r"do not commute.*random probe of shape \(2, 6\)"):
        Product(shifts, reversal)


class Transposes(Group):
    """Z_2 swapping the two axes of 7 × 7 images: no probe shape Product tries fits it."""

    order = 2

    def _inverse(self, g):
        return g.clone()

    def _compose(self, g, h):
        return torch.bitwise_xor(g, h)

    def _sample(self, batch_size, generator, device):
        return self._finite_sample(batch_size, generator, device)

    def check_input(self, x):
        if x.ndim != 4 or tuple(x.shape[-2:]) != (7, 7):
            raise ValueError(f"{self!r} acts on [B, C, 7, 7], got {tuple(x.shape)}")

    def _act(self, x, g):
        return self._act_grouped(x, g, lambda xs, e: xs.transpose(-1, -2) if e else xs.clone())

    @property
    def is_exact(self):
        return True

    def __repr__(self):
        return "Transposes()"


def test_without_a_common_probe_shape_the_first_input_is_checked():
    # a transpose and a quarter turn do not commute; no shape was found to check at
    # construction, so the first input shape the group is asked about is checked
    group = Product(Transposes(), Rotations(4))
    with pytest.raises(ValueError, match=r"do not commute.*random probe of shape \(1, 7, 7\)"):
        group.check_input_shape((1, 7, 7))
    with pytest.raises(ValueError, match="do not commute"):
        Product(Transposes(), Rotations(4)).act(torch.zeros(2, 1, 7, 7), 3)
    commuting = Product(Transposes(), Rotations(2))  # a half turn commutes with a transpose
    x = torch.randn(2, 1, 7, 7)
    assert torch.equal(commuting.act(x, 3), torch.rot90(x, 2, dims=(-2, -1)).transpose(-1, -2))


def test_configs_still_round_trip():
    group = Product(Rotations(2), Flips(("vertical",)))
    assert from_config(to_config(group), object, "group") == group
