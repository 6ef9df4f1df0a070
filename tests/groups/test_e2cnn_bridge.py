"""invreg.groups.e2cnn: gspaces, fibre elements and the action on GeometricTensors agree with
the groups' own pixel action."""

import subprocess
import sys

import pytest
import torch

from invreg.groups import (
    ContinuousRotations,
    CyclicShifts,
    Dihedral,
    Flips,
    Rotations,
    Translations,
)
from invreg.groups.e2cnn import (
    E2CNN_MISSING,
    MIRROR_AXIS,
    act,
    fibre_element,
    gspace_of,
    is_geometric_tensor,
    missing_gspace,
)

enn = pytest.importorskip("e2cnn.nn")
gspaces = pytest.importorskip("e2cnn.gspaces")

#: every kind of group with a gspace; c8 resamples, the others permute pixels
GSPACE_GROUPS = [
    Rotations(1),
    Rotations(2),
    Rotations(4),
    Rotations(8),
    Dihedral(1),
    Dihedral(2),
    Dihedral(4),
    Flips("horizontal"),
    Flips("vertical"),
    Flips(("horizontal", "vertical")),
    Flips(("vertical", "horizontal")),
]
EXACT_GROUPS = [group for group in GSPACE_GROUPS if group.is_exact]


def geometric(x, gspace, repr_name):
    representation = getattr(gspace, repr_name)
    channels = x.shape[1] // representation.size
    return enn.GeometricTensor(x, enn.FieldType(gspace, channels * [representation]))


@pytest.mark.parametrize("group", EXACT_GROUPS, ids=repr)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_trivial_fields_move_like_the_image(group, dtype):
    gspace = gspace_of(group)
    x = torch.randn(2, 3, 5, 5, dtype=dtype)
    tensor = geometric(x, gspace, "trivial_repr")
    for g in range(group.order):
        moved = act(group, tensor, torch.tensor(g))
        assert moved.type == tensor.type and moved.tensor.dtype == dtype
        assert torch.equal(moved.tensor, group.act(x, g))  # both permute the pixels: exact


@pytest.mark.parametrize("group", EXACT_GROUPS, ids=repr)
def test_regular_fields_move_the_image_and_permute_the_fibre(group):
    gspace = gspace_of(group)
    fiber = gspace.fibergroup
    index = {element: i for i, element in enumerate(fiber.elements)}
    x = torch.randn(2, 2 * fiber.order(), 5, 5, dtype=torch.float64)
    tensor = geometric(x, gspace, "regular_repr")
    for g in range(group.order):
        e = fibre_element(group, g, gspace)
        moved = act(group, tensor, g).tensor.unflatten(1, (2, fiber.order()))
        fields = x.unflatten(1, (2, fiber.order()))
        for h, k in index.items():  # ρ(g) e_h = e_{g·h}
            expected = group.act(fields[:, :, k], g)
            # e2cnn builds ρ(g) from irreps numerically: a permutation up to float64 rounding
            torch.testing.assert_close(
                moved[:, :, index[fiber.combine(e, h)]], expected, atol=1e-12, rtol=0
            )
    # a regular field is not a set of scalars: the channels do move (unless the group is trivial)
    if group.order > 1:
        plain = group.act(x, 1)
        assert not torch.equal(act(group, tensor, 1).tensor, plain)


@pytest.mark.parametrize("group", GSPACE_GROUPS, ids=repr)
def test_fibre_elements_compose_like_the_group(group):
    gspace = gspace_of(group)
    fiber = gspace.fibergroup
    elements = group.elements()
    assert fibre_element(group, elements[0], gspace) == fiber.identity
    mapped = [fibre_element(group, g, gspace) for g in elements]
    assert len(set(mapped)) == group.order == fiber.order()  # one to one, onto
    for g in elements:
        for h in elements:
            expected = fibre_element(group, group.compose(g, h), gspace)
            assert fiber.combine(fibre_element(group, g, gspace), mapped[int(h)]) == expected
            assert fiber.inverse(mapped[int(g)]) == fibre_element(group, group.inverse(g), gspace)


@pytest.mark.parametrize(
    ("group", "gspace", "expected"),
    [
        (Rotations(4), lambda: gspaces.Rot2dOnR2(8), [0, 2, 4, 6]),  # a subgroup of C_8
        (ContinuousRotations(), lambda: gspaces.Rot2dOnR2(-1, maximum_frequency=2), None),
        (Dihedral(2), lambda: gspaces.FlipRot2dOnR2(4), [(0, 0), (0, 2), (1, 0), (1, 2)]),
    ],
)
def test_elements_map_into_larger_fibre_groups(group, gspace, expected):
    gspace = gspace()
    if expected is None:
        assert fibre_element(group, torch.tensor(90.0), gspace) == pytest.approx(torch.pi / 2)
        return
    assert [fibre_element(group, g, gspace) for g in group.elements()] == expected
    x = torch.randn(1, 1, 5, 5)
    tensor = geometric(x, gspace, "trivial_repr")
    for g in group.elements():
        assert torch.equal(act(group, tensor, g).tensor, group.act(x, g))


def test_the_mirror_axis_is_the_left_right_mirror():
    assert gspace_of(Dihedral(1)).axis == MIRROR_AXIS == gspace_of(Dihedral(4)).axis
    x = torch.randn(1, 1, 4, 4)
    mirrored = act(Dihedral(1), geometric(x, gspace_of(Dihedral(1)), "trivial_repr"), 1).tensor
    assert torch.equal(mirrored, x.flip(-1)) and not torch.equal(mirrored, x.flip(-2))


@pytest.mark.parametrize(
    "group", [CyclicShifts(3), ContinuousRotations(), Translations(), Dihedral(3)], ids=repr
)
def test_a_group_without_a_gspace_is_a_clear_error(group):
    reason = missing_gspace(group)
    assert reason
    with pytest.raises(ValueError, match=r"has no e2cnn gspace: ") as error:
        gspace_of(group)
    assert repr(group) in str(error.value) and reason in str(error.value)
    assert all(missing_gspace(g) is None for g in GSPACE_GROUPS)
    with pytest.raises(TypeError, match="group: expected an invreg Group"):
        gspace_of("c4")


def test_elements_outside_the_fibre_group_are_errors():
    with pytest.raises(NotImplementedError, match="no mapping"):
        fibre_element(CyclicShifts(3), torch.tensor(1), gspaces.Rot2dOnR2(4))
    with pytest.raises(NotImplementedError, match="no mapping"):  # a half turn is no mirror
        fibre_element(Rotations(2), 1, gspaces.Flip2dOnR2(MIRROR_AXIS))
    with pytest.raises(NotImplementedError, match="no mapping"):  # the other mirror
        fibre_element(Flips("horizontal"), 1, gspaces.Flip2dOnR2(0.0))
    with pytest.raises(ValueError, match="45° is not an element"):
        fibre_element(Rotations(8), torch.tensor(1), gspaces.Rot2dOnR2(4))
    with pytest.raises(ValueError, match="not an element"):  # a rotation of D_4 in a mirror
        fibre_element(Dihedral(4), 5, gspaces.Flip2dOnR2(MIRROR_AXIS))


def test_is_geometric_tensor():
    x = torch.randn(1, 1, 3, 3)
    assert is_geometric_tensor(geometric(x, gspace_of(Rotations(4)), "trivial_repr"))
    assert not is_geometric_tensor(x)


def test_make_gspace_names_its_new_home():
    from invreg.models.gcnn import make_gspace

    with pytest.raises(TypeError, match=r"invreg\.groups\.e2cnn\.gspace_of"):
        make_gspace(Rotations(4))


def test_importing_the_groups_does_not_import_e2cnn():
    code = (
        "import sys, invreg.groups, invreg.groups.e2cnn; "
        "print('e2cnn' in sys.modules)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "False"


def test_missing_e2cnn_is_an_import_error_naming_the_fix(monkeypatch):
    from invreg.models import E2CNN

    monkeypatch.setitem(sys.modules, "e2cnn", None)  # `import e2cnn` now raises ImportError
    assert "pip install e2cnn" in E2CNN_MISSING
    with pytest.raises(ImportError, match="pip install e2cnn"):
        gspace_of(Rotations(4))
    with pytest.raises(ImportError, match="pip install e2cnn"):
        E2CNN((1, 9, 9), 3, group="c4", channels=(2,))
    assert missing_gspace(Rotations(4)) is None  # deciding needs no e2cnn
