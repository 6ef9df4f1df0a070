"""``Group.element_labels`` and ``Group.fixed_elements``: each group names its own elements and
draws its own fixed evaluation elements.

The expected values are those the saliency figure and the callbacks showed and measured
before the two became group methods, per group: shipped groups, products and custom groups.
"""

from __future__ import annotations

import pytest
import torch

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
    Translations,
)


def custom_cyclic() -> FiniteGroup:
    return FiniteGroup.from_generator(lambda v: torch.roll(v, 2, -1), 5, input_shape=(1, 10))


def custom_sign() -> FiniteGroup:
    return FiniteGroup.from_actions([lambda v: v, lambda v: -v], input_shape=(1, 4))


#: finite groups: the labels of all their elements
FINITE_LABELS = [
    (Rotations(4), ["0°", "90°", "180°", "270°"]),
    (Rotations(8), ["0°", "45°", "90°", "135°", "180°", "225°", "270°", "315°"]),
    (Rotations(3), ["0°", "120°", "240°"]),
    (Dihedral(4), [f"g={i}" for i in range(8)]),
    (CyclicShifts(3), ["g=0", "g=1", "g=2"]),
    (CyclicShifts(4, dim=-2), ["g=0", "g=1", "g=2", "g=3"]),
    (Flips(), ["g=0", "g=1"]),
    (Flips(("horizontal", "vertical")), ["g=0", "g=1", "g=2", "g=3"]),
    (Product(Rotations(2), Flips()), ["g=0", "g=1", "g=2", "g=3"]),
    (Product(CyclicShifts(3), CyclicShifts(3, dim=-2)), [f"g={i}" for i in range(9)]),
    (custom_cyclic(), ["g=0", "g=1", "g=2", "g=3", "g=4"]),
    (custom_sign(), ["g=0", "g=1"]),
]

#: continuous groups: fixed_elements(4, seed=0), its labels, and the labels of float64 draws
CONTINUOUS = [
    (ContinuousRotations(), [0.0, -1.3476276397705078, 96.55984497070312, -148.1481170654297],
     ["g=0", "g=-1.35", "g=96.6", "g=-148"], ["g=92.7", "g=-79.4", "g=-34.9"]),
    (ContinuousRotations(30), [0.0, -0.22460460662841797, 16.093307495117188,
                               -24.691354751586914],
     ["g=0", "g=-0.225", "g=16.1", "g=-24.7"], ["g=15.5", "g=-13.2", "g=-5.82"]),
    (Scalings(), [0.0, -0.0030356443021446466, 0.21750915050506592, -0.3337160646915436],
     ["g=0", "g=-0.00304", "g=0.218", "g=-0.334"], ["g=0.209", "g=-0.179", "g=-0.0786"]),
    (Translations(), [[0.0, 0.0], [-0.014973640441894531, 1.0728871822357178],
                      [-1.6460902690887451, -1.4718780517578125],
                      [-0.7703087329864502, 0.5363147258758545]],
     ["g0", "g1", "g2", "g3"], ["g0", "g1", "g2"]),
    (Product(ContinuousRotations(), Scalings()),
     [[0.0, 0.0], [-1.3476276397705078, -0.29839760065078735],
      [96.55984497070312, -0.1561666578054428], [-148.1481170654297, 0.10872845351696014]],
     ["g0", "g1", "g2", "g3"], ["g0", "g1", "g2"]),
    (Product(Rotations(4), Scalings()),
     [[0.0, 0.0], [0.0, -0.29839760065078735], [3.0, -0.1561666578054428],
      [1.0, 0.10872845351696014]],
     ["g0", "g1", "g2", "g3"], ["g0", "g1", "g2"]),
]


@pytest.mark.parametrize(("group", "labels"), FINITE_LABELS, ids=lambda v: repr(v)[:40])
def test_finite_group_labels_and_full_orbit(group: Group, labels: list[str]):
    assert group.element_labels(group.elements()) == labels
    assert group.element_labels(group.elements().int()) == labels  # any integer dtype
    for count, seed in ((4, 0), (6, 3)):
        assert group.fixed_elements(count, seed) is None  # the full orbit


@pytest.mark.parametrize(("group", "elements", "labels", "labels64"), CONTINUOUS,
                         ids=lambda v: repr(v)[:40])
def test_continuous_group_fixed_elements_and_labels(group, elements, labels, labels64):
    fixed = group.fixed_elements(4, seed=0)
    assert fixed.dtype == torch.float32 and fixed.tolist() == elements
    assert torch.equal(fixed, group.fixed_elements(4, seed=0))  # the same on every call
    assert not torch.equal(fixed, group.fixed_elements(4, seed=1))
    assert group.element_labels(fixed) == labels
    drawn = group.sample(3, generator=torch.Generator().manual_seed(1)).double()
    assert group.element_labels(drawn) == labels64


def test_labels_reject_what_is_not_a_batch_of_elements():
    with pytest.raises(ValueError, match=r"element_labels\(elements\): expected a batch"):
        Rotations(4).element_labels(torch.tensor(1))
    with pytest.raises(ValueError, match=r"element_labels\(elements\): expected elements in"):
        Rotations(4).element_labels(torch.tensor([0, 4]))
    with pytest.raises(ValueError, match=r"expected a batch of shape \[N, 2\]"):
        Translations().element_labels(torch.zeros(2))
