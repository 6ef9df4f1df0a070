"""invreg.testing: invariance / equivariance assertions with dtype-derived tolerances."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from invreg.groups import get_group
from invreg.models import E2CNN, MLP, TiedMLP, max_invariance_deviation
from invreg.testing import (
    TOLERANCE_FACTOR,
    assert_equivariant,
    assert_invariant,
    band_limited_input,
    default_tolerance,
    parametrize_dtypes,
    random_input,
    recompute_tolerance,
)


def tied(group: str = "c4", size: int = 12) -> TiedMLP:
    torch.manual_seed(0)
    return TiedMLP((1, size, size), 5, group=group, hidden_widths=(32, 32))


def e2cnn(group: str = "c4", size: int = 13) -> E2CNN:
    pytest.importorskip("e2cnn")
    torch.manual_seed(0)
    return E2CNN((1, size, size), 5, group=group, channels=(4, 8))


def rot90_symmetric_conv(
    dtype: torch.dtype, in_channels: int = 2, out_channels: int = 3
) -> nn.Conv2d:
    """A 3×3 convolution whose kernel rot90 maps onto itself: exactly C4-equivariant."""
    torch.manual_seed(0)
    conv = nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False).to(dtype)
    with torch.no_grad():  # symmetrised in the dtype it runs in, so symmetric to its precision
        conv.weight.copy_(sum(conv.weight.rot90(k, (2, 3)) for k in range(4)))
    return conv


# ------------------------------------------------------------------ invariant models pass
@parametrize_dtypes()
@pytest.mark.parametrize("group", ["c4", "d4", "t3"])
def test_tied_mlp_passes(dtype, group):
    assert_invariant(tied(group).to(dtype), group)


@parametrize_dtypes()
def test_e2cnn_passes(dtype):
    model = e2cnn().to(dtype)
    assert_invariant(model, "c4")
    assert model(random_input(model, "c4")).dtype == dtype  # pooled features keep the dtype


def test_float64_e2cnn_leaves_other_models_in_float32():
    e2cnn().double()
    model = e2cnn().eval()  # the same kernel bases, built after another model went to float64
    assert model(random_input(model, "c4")).dtype == torch.float32
    assert_invariant(model, "c4")


def test_parametrize_dtypes_runs_float32_and_float64():
    mark = parametrize_dtypes()
    assert mark.args == ("dtype", [torch.float32, torch.float64])
    assert mark.kwargs["ids"] == ["float32", "float64"]
    with pytest.raises(TypeError, match="floating torch dtypes"):
        parametrize_dtypes(dtypes=[torch.int64])


def test_eval_mode_is_restored_and_x_is_used():
    model = tied().train()
    x = torch.randn(3, 1, 12, 12)
    assert_invariant(model, "c4", x)
    assert model.training


# ------------------------------------------------------------------ a plain MLP fails
@parametrize_dtypes()
def test_mlp_fails_naming_element_errors_tolerance_and_dtype(dtype):
    torch.manual_seed(0)
    model = MLP((1, 12, 12), 5, hidden_widths=(32,)).to(dtype)
    with pytest.raises(AssertionError) as info:
        assert_invariant(model, "c4")
    message = str(info.value)
    for part in ("worst element g=", "max error", "mean error", "atol=", f"dtype {dtype}"):
        assert part in message


# ------------------------------------------------------------------ tolerance scales with |f|
def test_tolerance_scales_with_output_magnitude():
    model = tied().double()
    with torch.no_grad():
        model.head.weight.mul_(1e3)
        model.head.bias.mul_(1e3)
    x = random_input(model, "c4")
    scale = float(model(x).detach().abs().max())
    assert scale > 10  # a fixed atol of 1e-5 in float32 would be below the rounding error
    assert_invariant(model.float(), "c4")
    assert_invariant(model, "c4")
    outputs = torch.tensor([scale])
    atol, rtol = default_tolerance(outputs, 144, torch.float32)
    eps = torch.finfo(torch.float32).eps
    # K is calibrated on exact networks (TOLERANCE_FACTOR; it was a fixed 16, ~100× too loose)
    k = TOLERANCE_FACTOR
    assert atol == pytest.approx(k * eps * 12 * scale) and rtol == pytest.approx(k * eps)
    atol, rtol = recompute_tolerance(outputs.double(), 144, torch.float32)
    assert atol == pytest.approx((k * torch.finfo(torch.float64).eps * 12 + 2 * eps) * scale)
    assert rtol == 0.0


def test_scaled_mlp_still_fails():
    torch.manual_seed(0)
    model = MLP((1, 12, 12), 5, hidden_widths=(32,))
    with torch.no_grad():
        model.head.weight.mul_(1e3)
    with pytest.raises(AssertionError, match="not invariant"):
        assert_invariant(model, "c4")


def test_explicit_tolerances_are_used():
    torch.manual_seed(0)
    model = MLP((1, 12, 12), 5, hidden_widths=(32,))
    assert_invariant(model, "c4", atol=1e3)
    with pytest.raises(AssertionError, match="atol=0, rtol=0"):
        assert_invariant(tied(), "c4", atol=0.0, rtol=0.0, x=torch.rand(2, 1, 12, 12) + 10)


# ------------------------------------------------------------------ non-exact groups
@parametrize_dtypes()
def test_c8_e2cnn_passes_within_the_interpolation_floor(dtype):
    assert_invariant(e2cnn("c8", 17).to(dtype), "c8")


def test_c8_mlp_fails_and_reports_the_floor():
    torch.manual_seed(0)
    model = MLP((1, 17, 17), 5, hidden_widths=(32,))
    with pytest.raises(AssertionError, match="interpolation floor") as info:
        assert_invariant(model, "c8")
    assert "Rotations(n=8) resamples" in str(info.value)


@parametrize_dtypes()
def test_c8_fails_when_only_the_resampled_elements_move(dtype):
    # tied over C4: exact on the multiples of 90°, not invariant to 45° (12-14× the floor)
    model = tied("c4", 29).to(dtype)
    with pytest.raises(AssertionError, match=r"g=[1357] \(\d+°\).*interpolation floor"):
        assert_invariant(model, "c8")


@parametrize_dtypes()
def test_continuous_rotations(dtype):
    # C8-equivariant convolutions are close to invariant for every angle: within the floor
    assert_invariant(e2cnn("c8", 17).to(dtype), "so2", num_samples=6)
    torch.manual_seed(0)
    model = MLP((1, 17, 17), 5, hidden_widths=(32,)).to(dtype)
    with pytest.raises(AssertionError, match="ContinuousRotations.*interpolation floor"):
        assert_invariant(model, "so2")


def test_num_samples_only_for_continuous_groups():
    with pytest.raises(ValueError, match="num_samples: .*finite"):
        assert_invariant(tied(), "c4", num_samples=3)


# ------------------------------------------------------------------ equivariance
@parametrize_dtypes()
def test_symmetric_conv_is_equivariant(dtype):
    # symmetrised in float32, the kernel is symmetric only to float32 rounding, which the
    # float64 recompute keeps: the storage term of its tolerance (2·eps(float32)·max|f|) covers it
    x = torch.randn(2, 2, 9, 9, dtype=dtype)
    assert_equivariant(rot90_symmetric_conv(dtype), "c4", x)


def test_random_conv_is_not_equivariant():
    torch.manual_seed(0)
    conv = nn.Conv2d(2, 3, 3, padding=1)
    with pytest.raises(AssertionError, match=r"not equivariant.*worst element g=.*dtype"):
        assert_equivariant(conv, "c4", torch.randn(2, 2, 9, 9))


def test_pointwise_conv_is_equivariant_to_c8():
    torch.manual_seed(0)
    conv = nn.Conv2d(2, 3, 1, bias=False)  # bilinear resampling commutes with 1×1 maps
    x = random_input(MLP((2, 11, 11), 1), "c8")
    assert_equivariant(conv, "c8", x)


def test_custom_actions():
    pool = nn.AdaptiveAvgPool2d(1)  # invariant: the output does not move
    x = torch.randn(2, 3, 8, 8)
    assert_equivariant(pool, "c4", x, out_action=lambda y, g: y)
    # an input action the module ignores (negating) is not matched by the group's act
    with pytest.raises(AssertionError):
        assert_equivariant(
            pool, "c4", x, in_action=lambda v, g: -v if int(g) % 2 else v, out_action=lambda y, g: y
        )


@parametrize_dtypes()
@pytest.mark.parametrize("group", ["c4", "d4"])
def test_e2cnn_geometric_tensors(dtype, group):
    pytest.importorskip("e2cnn")
    from e2cnn import nn as enn

    from invreg.groups.e2cnn import gspace_of

    torch.manual_seed(0)
    gspace = gspace_of(get_group(group))
    in_type = enn.FieldType(gspace, 2 * [gspace.trivial_repr])
    out_type = enn.FieldType(gspace, 3 * [gspace.regular_repr])
    # recompute: a layer of its own basis; e2cnn shares cached ones, and .to(dtype) would cast
    conv = enn.R2Conv(in_type, out_type, 3, padding=1, recompute=True).to(dtype)
    x = enn.GeometricTensor(torch.randn(2, 2, 9, 9, dtype=dtype), in_type)
    assert_equivariant(conv, group, x)
    # comparing with only the spatial rotation of the output is wrong for regular fields
    # (a rotation also permutes each field's channels): the check must notice
    with pytest.raises(AssertionError, match="not equivariant"):
        assert_equivariant(conv, group, x, out_action=lambda y, g: y.tensor.rot90(1, (2, 3)))


# ------------------------------------------------------------------ bad input
def test_bad_input_is_a_clear_error():
    model = tied()
    with pytest.raises(ValueError, match=r"x: expected shape \[B, 1, 12, 12\]"):
        assert_invariant(model, "c4", torch.randn(2, 1, 10, 10))
    with pytest.raises(ValueError, match="Did you mean"):
        assert_invariant(model, "c44x")
    with pytest.raises(TypeError, match="group"):
        assert_invariant(model, 4)
    with pytest.raises(TypeError, match="model.to"):
        assert_invariant(model, "c4", torch.randn(2, 1, 12, 12, dtype=torch.float64))
    with pytest.raises(TypeError, match="model: expected a torch.nn.Module"):
        assert_invariant(lambda x: x, "c4", torch.randn(2, 1, 12, 12))
    with pytest.raises(ValueError, match="atol: expected a finite number >= 0"):
        assert_invariant(model, "c4", atol=-1.0)
    with pytest.raises(ValueError, match="x: .*NaN"):
        assert_invariant(model, "c4", torch.full((2, 1, 12, 12), float("nan")))
    with pytest.raises(ValueError, match="floor_factor: expected a finite number > 0"):
        assert_invariant(model, "c8", floor_factor=0)
    with pytest.raises(ValueError, match="has no input_shape attribute"):
        assert_invariant(nn.Flatten(), "c4")


def test_nan_outputs_are_a_value_error():
    class NaNs(nn.Module):
        def forward(self, x):
            return x.flatten(1) * float("nan")

    with pytest.raises(ValueError, match="model outputs: .*NaN"):
        assert_invariant(NaNs(), "c4", torch.randn(2, 1, 4, 4))
    with pytest.raises(ValueError, match="module outputs: .*NaN"):
        assert_equivariant(NaNs(), "c4", torch.randn(2, 1, 4, 4))


def test_equivariance_needs_an_action_on_the_output():
    with pytest.raises(ValueError, match="pass in_action / out_action"):
        assert_equivariant(nn.Flatten(), "c4", torch.randn(2, 1, 4, 4))


# ------------------------------------------------------------------ magnitudes and arguments
class Scaled(nn.Module):
    """``factor · model(x) + leak · x[:, 0, 0, 0]``: a corner pixel (moved by C4) leaks in."""

    def __init__(self, model: nn.Module, factor: float = 1.0, leak: float = 0.0) -> None:
        super().__init__()
        self.model, self.factor, self.leak = model, factor, leak

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.factor * self.model(x) + self.leak * x[:, :1, 0, 0]


def test_tolerance_follows_float32_outputs_of_size_1e4():
    model = Scaled(tied(), factor=1e4)
    x = random_input(tied(), "c4")
    # float32 rounding of logits of size ~1e4 exceeds a fixed atol of 1e-5 ...
    assert max_invariance_deviation(model, x, "c4") > 1e-5
    assert_invariant(model, "c4", x)  # ... the derived tolerance follows the magnitude
    with pytest.raises(AssertionError, match="not invariant"):
        assert_invariant(Scaled(MLP((1, 12, 12), 5), factor=1e4), "c4", x)


def test_small_float64_violations_are_caught():
    model = Scaled(tied(), leak=1e-7).double()
    x = random_input(tied(), "c4", dtype=torch.float64)
    # a real 1e-7 violation, below a fixed atol of 1e-5 but 10⁶× float64 rounding
    assert 0 < max_invariance_deviation(model, x, "c4") < 1e-5
    with pytest.raises(AssertionError, match="float64"):
        assert_invariant(model, "c4", x)
    assert_invariant(Scaled(tied(), leak=0.0).double(), "c4", x)


def test_atol_alone_with_rtol_zero_eval_mode_and_seed():
    x = random_input(tied(), "c4")
    model = Scaled(tied(), leak=1e-3)
    assert_invariant(model, "c4", x, atol=1e-2, rtol=0.0)  # a bound on |f(g·x) − f(x)|
    with pytest.raises(AssertionError, match="atol=0.0001, rtol=0"):
        assert_invariant(model, "c4", x, atol=1e-4, rtol=0.0)
    dropout = nn.Sequential(nn.Dropout(0.5), nn.AdaptiveAvgPool2d(1), nn.Flatten())
    assert_invariant(dropout, "c4", x)  # eval mode: dropout off, a global mean is invariant
    with pytest.raises(AssertionError):
        assert_invariant(dropout, "c4", x, eval_mode=False)
    assert dropout.training
    smooth = random_input(tied(), "so2")
    assert_invariant(dropout, "so2", smooth, num_samples=3, seed=5)  # seed picks the elements


# ------------------------------------------------------------------ band-limited inputs
def test_band_limited_input_loses_little_to_resampling():
    group = get_group("c8")
    x = band_limited_input((4, 1, 17, 17), seed=1)
    assert x.dtype == torch.float64 and torch.equal(x, band_limited_input((4, 1, 17, 17), seed=1))
    assert torch.equal(random_input(MLP((1, 17, 17), 1), "c8"), band_limited_input(x.shape).float())
    white = torch.randn(4, 1, 17, 17, dtype=torch.float64)
    white = white * band_limited_input((1, 1, 17, 17)).ne(0)  # same disc

    def round_trip(images: torch.Tensor) -> float:
        g = torch.tensor(1)
        back = group.act(group.act(images, g), group.inverse(g))
        return float((back - images).abs().max() / images.abs().max())

    assert round_trip(x) < 0.1 < 0.3 < round_trip(white)


def test_band_limited_input_arguments_are_checked():
    with pytest.raises(ValueError, match=r"shape: expected four positive ints"):
        band_limited_input((4, 17, 17))
    with pytest.raises(ValueError, match="band_limit: expected a finite number > 0"):
        band_limited_input((1, 1, 5, 5), band_limit=0)
    with pytest.raises(ValueError, match="num_waves: expected a positive int"):
        band_limited_input((1, 1, 5, 5), num_waves=0)
