"""Precision and bad input: low-precision and integer images, element validation in every
public method, non-finite parameters, empty batches."""

import math

import pytest
import torch
from torch import nn

from invreg.functional import orbit_logits
from invreg.groups import (
    ContinuousRotations,
    CyclicShifts,
    Dihedral,
    Flips,
    Product,
    Rotations,
    Scalings,
    Translations,
    rotate,
)
from invreg.groups.rotations import resample
from invreg.testing import parametrize_dtypes

RESAMPLING = [
    (ContinuousRotations(), torch.tensor([30.0, -70.0])),
    (Rotations(8), torch.tensor([1, 3])),
    (Dihedral(8), torch.tensor([9, 3])),
    (Translations(), torch.tensor([[0.5, -1.25], [2.3, 0.7]])),
    (Scalings(), torch.tensor([0.3, -0.2])),
]
EXACT = [Rotations(4), Dihedral(4), Flips(("horizontal", "vertical")), CyclicShifts(4),
         Product(Flips("vertical"), CyclicShifts(4))]


def image(batch=2, size=16, seed=0, dtype=torch.float32):
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(batch, 3, size, size, generator=gen).to(dtype)


@parametrize_dtypes(dtypes=(torch.bfloat16, torch.float16))
@pytest.mark.parametrize("group, g", RESAMPLING, ids=lambda v: repr(v) if not
                         isinstance(v, torch.Tensor) else "")
def test_low_precision_resampling_is_the_float32_result_rounded_once(group, g, dtype):
    x = image(dtype=dtype)
    out = group.act(x, g)
    assert out.dtype == dtype
    # the same (exactly representable) input resampled in float64
    reference = group.act(x.double(), g)
    # rounding to the output dtype moves a value by at most half an ulp (eps / 2 relative);
    # the float32 grid puts a sampling point a few float32 ulps of the image size off
    # (4·eps32·size pixels), which moves a bilinear value by that times 2·max|x|
    rounding = torch.finfo(dtype).eps / 2 * reference.abs()
    compute = 8 * torch.finfo(torch.float32).eps * x.shape[-1] * x.double().abs().max()
    assert ((out.double() - reference).abs() <= rounding + compute).all()
    # the orbit's one-element-for-all path agrees with act
    elements = torch.cat([group.identity(1), g[:1].to(group.identity(1).dtype)])
    orbit = group.orbit_from_elements(x, elements)
    assert orbit.dtype == dtype
    assert torch.equal(orbit[:, 1], group.act(x, g[:1].expand_as(g)))


@pytest.mark.parametrize("group, g", RESAMPLING, ids=lambda v: repr(v) if not
                         isinstance(v, torch.Tensor) else "")
@pytest.mark.parametrize("dtype", [torch.uint8, torch.int64, torch.bool], ids=str)
def test_resampling_groups_reject_integer_images(group, g, dtype):
    x = image().gt(0).to(dtype)
    with pytest.raises(TypeError, match=rf"{dtype}.*x\.float\(\)"):
        group.act(x, g)
    with pytest.raises(TypeError, match=str(dtype)):
        group.orbit_from_elements(x, torch.cat([group.identity(1), g[:1].to(
            group.identity(1).dtype)]))


def test_public_rotate_rejects_integer_images_and_non_finite_angles():
    x = torch.arange(16, dtype=torch.uint8).reshape(1, 1, 4, 4)
    # right angles are exact on any dtype
    assert torch.equal(rotate(x, torch.tensor([90.0])), torch.rot90(x, 1, dims=(-2, -1)))
    with pytest.raises(TypeError, match="uint8"):
        rotate(x, torch.tensor([45.0]))
    with pytest.raises(ValueError, match="finite"):
        rotate(x.float(), torch.tensor([float("nan")]))


@pytest.mark.parametrize("group", EXACT, ids=repr)
@pytest.mark.parametrize("dtype", [torch.uint8, torch.int64, torch.bool], ids=str)
def test_exact_groups_act_on_integer_images(group, dtype):
    x = (image(size=12) * 50).clamp(0, 200).to(dtype)
    g = torch.tensor([group.order - 1, 1])
    out = group.act(x, g)
    assert out.dtype == dtype
    assert torch.equal(out, group.act(x.double(), g).to(dtype))
    assert group.orbit(x).dtype == dtype


def test_orbit_logits_rejects_float_elements_for_a_finite_group():
    model = nn.Sequential(nn.Flatten(), nn.Linear(16, 3))
    x = torch.randn(2, 1, 4, 4)
    # a fractional element used to rotate by 1.5 quarter turns (135 degrees)
    with pytest.raises(ValueError, match=r"Rotations\(n=4\).*integers in \[0, 4\).*float32"):
        orbit_logits(model, x, Rotations(4), elements=torch.tensor([0.0, 1.5]))
    with pytest.raises(ValueError, match=r"\[0, 4\).*got 4"):
        Rotations(4).orbit_from_elements(x, torch.tensor([0, 4]))
    with pytest.raises(ValueError, match=r"batch of shape \[N\]"):
        Rotations(4).orbit_from_elements(x, torch.tensor(1))
    with pytest.raises(ValueError, match="finite"):
        ContinuousRotations().orbit_from_elements(x, torch.tensor([0.0, float("nan")]))


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: Flips().inverse(torch.tensor([3, -1])), r"Flips.*inverse\(g\).*\[0, 2\).*3, -1"),
        (lambda: Rotations(4).inverse(1.5), r"Rotations\(n=4\)\.inverse\(g\).*integers"),
        (lambda: Rotations(4).inverse(torch.tensor([True])), "bool"),
        (lambda: Dihedral(4).compose(torch.tensor([9]), torch.tensor([1])), r"compose\(g\).*9"),
        (lambda: Dihedral(4).compose(1, -1), r"compose\(h\).*\[0, 8\)"),
        (lambda: CyclicShifts(3).compose(torch.tensor([1, 2]), torch.tensor([0, 1, 2])),
         r"shapes \(2,\) and \(3,\)"),
        (lambda: Product(Flips("vertical"), CyclicShifts(3)).inverse(torch.tensor([6])),
         r"\[0, 6\)"),
        (lambda: Product(Scalings(), Flips()).inverse(torch.tensor([10.0, 2.0])),
         r"component 1 \(Flips.*\[0, 2\)"),
        (lambda: Product(Scalings(), Flips()).act(image(), torch.tensor([10.0, 0.6])),
         r"component 1.*whole numbers"),
        (lambda: Product(Scalings(), Flips()).compose(
            torch.tensor([float("inf"), 0.0]), torch.tensor([1.0, 1.0])), "finite"),
        (lambda: Translations().inverse(torch.zeros(3)), r"shape \(2,\) or a batch"),
        (lambda: ContinuousRotations().compose(3e38, 3e38), "overflows"),
        (lambda: Rotations(4).identity(-1), "batch_size"),
    ],
)
def test_inverse_and_compose_validate_their_elements(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_type_errors_name_what_was_received():
    with pytest.raises(TypeError, match="str"):
        Rotations(4).inverse("1")
    with pytest.raises(TypeError, match=r"class Flips.*Flips\(\)"):
        Product(Flips, CyclicShifts(3))
    with pytest.raises(TypeError, match="str"):
        Product(Flips(), "c4")
    with pytest.raises(TypeError, match="batch_size"):
        Flips().sample(2.0)


def test_python_numbers_are_elements_and_give_tensors():
    assert torch.equal(Dihedral(4).inverse(1), torch.tensor(3))
    assert torch.equal(Dihedral(4).inverse(5), torch.tensor(5))  # a reflection
    assert torch.equal(Flips().inverse(1), torch.tensor(1))
    assert torch.equal(Rotations(4).compose(3, 2), torch.tensor(1))
    # a single element pairs with every element of a batch
    assert torch.equal(Rotations(4).compose(torch.tensor([0, 1, 2]), 1), torch.tensor([1, 2, 3]))
    assert torch.equal(ContinuousRotations().inverse(30), torch.tensor(-30.0))
    assert torch.equal(Product(Scalings(), Flips()).inverse([30.0, 1.0]),
                       torch.tensor([-30.0, 1.0]))


@pytest.mark.parametrize(
    "group, bad",
    [(ContinuousRotations(), float("nan")), (ContinuousRotations(), float("inf")),
     (Scalings(), float("nan")), (Scalings(), -float("inf")),
     (Translations(), [float("nan"), 0.0]), (Translations(), [0.0, float("inf")]),
     (Product(Scalings(), Flips()), [float("nan"), 1.0])],
    ids=repr,
)
def test_non_finite_parameters_are_rejected(group, bad):
    x = image()
    with pytest.raises(ValueError, match="finite"):
        group.act(x, bad)
    with pytest.raises(ValueError, match="finite"):
        group.inverse(bad)


@pytest.mark.parametrize(
    "group, huge",
    [(Translations(), [1e30, -1e30]), (Scalings(), -1e30), (Scalings(), 1e30),
     (ContinuousRotations(), 1e30)],
    ids=repr,
)
def test_huge_finite_parameters_give_finite_images(group, huge):
    x = image(size=9)
    out = group.act(x, huge)
    assert torch.isfinite(out).all()
    if isinstance(group, Translations):
        assert torch.equal(out, torch.zeros_like(x))  # everything left the frame
    if isinstance(group, Scalings) and huge < 0:
        # shrunk to a point: only the centre pixel of an odd-sized image keeps its value
        expected = torch.zeros_like(x)
        expected[..., 4, 4] = x[..., 4, 4]
        assert torch.allclose(out, expected, atol=8 * torch.finfo(x.dtype).eps)


@pytest.mark.parametrize(
    "group, num_samples",
    [(Rotations(8), None), (Rotations(4), None), (Dihedral(4), None), (Flips(), None),
     (CyclicShifts(4), None), (ContinuousRotations(), 3), (Translations(), 3), (Scalings(), 2),
     (Product(Scalings(), Flips()), 3)],
    ids=repr,
)
def test_empty_batches_give_empty_results(group, num_samples):
    x = torch.zeros(0, 2, 8, 8)
    orbit = group.orbit(x, num_samples=num_samples)
    n = group.order or num_samples
    assert orbit.shape == (0, n, 2, 8, 8) and orbit.dtype == x.dtype
    g = group.sample(0)
    assert g.shape == (0, *group.element_shape)
    assert group.act(x, g).shape == x.shape
    assert group.act(x, group.sample(1)[0]).shape == x.shape


def test_scaling_clamp_keeps_the_result():
    # beyond the clamp, the unclamped resampling gives the same image
    x = image(size=9)
    s = -math.log(9 + 2.0) - 3.0
    theta = torch.tensor([[math.exp(-s), 0.0, 0.0], [0.0, math.exp(-s), 0.0]]).expand(2, 2, 3)
    assert torch.equal(Scalings().act(x, s), resample(x, theta))
