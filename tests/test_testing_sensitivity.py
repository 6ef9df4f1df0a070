"""invreg.testing at the float floor: small leaks fail, exact networks pass, C4 is not C8.

Before: the tolerance was ``16·eps·sqrt(D)·max|f|``, about 100× the rounding of exact
networks, so a non-equivariant path of relative size 10⁻⁵ passed; on C8 a network built for C4
passed within 4× a round-trip floor measured on the largest sample; bfloat16 was refused.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from invreg.models import E2CNN
from invreg.testing import (
    CALIBRATED_PATH,
    RECOMPUTE_PATH,
    STORAGE_FACTOR,
    CheckFailed,
    assert_equivariant,
    assert_invariant,
    random_input,
)

pytest.importorskip("e2cnn")
FLOAT32_EPS = torch.finfo(torch.float32).eps


def tiny_e2cnn(group: str, seed: int) -> E2CNN:
    torch.manual_seed(seed)
    return E2CNN((1, 9, 9), 3, group=group, channels=(2, 3)).eval()


def inputs(seed: int, size: int = 9) -> torch.Tensor:
    return torch.randn(4, 1, size, size, generator=torch.Generator().manual_seed(seed))


class LogitLeak(nn.Module):
    """``model(x) + c·L(x)``: ``L`` a random (not invariant) linear map of the input, ``c`` set so
    that the leak's largest value on ``x`` is ``leak`` times the model's largest output."""

    def __init__(self, model: nn.Module, x: torch.Tensor, leak: float, seed: int = 0) -> None:
        super().__init__()
        self.model = model
        generator = torch.Generator().manual_seed(seed)
        weight = torch.randn(3, x[0].numel(), generator=generator, dtype=x.dtype)
        with torch.no_grad():
            ratio = model(x).abs().max() / (x.flatten(1) @ weight.T).abs().max()
        self.register_buffer("weight", weight * (leak * ratio))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x) + x.flatten(1) @ self.weight.T


class ConvLeak(nn.Module):
    """An E2CNN whose first equivariant convolution gets ``c·conv(x)`` added, ``conv`` a plain
    3×3 ``Conv2d`` and ``c`` set so that the leak is ``leak`` times the layer's output on x."""

    def __init__(self, model: E2CNN, x: torch.Tensor, leak: float, seed: int = 0) -> None:
        super().__init__()
        from e2cnn.nn import GeometricTensor

        self.model = model
        first = model.blocks[0].conv
        torch.manual_seed(seed)
        self.conv = nn.Conv2d(x.shape[1], first.out_type.size, 3, padding=1).to(x.dtype)
        with torch.no_grad():
            layer = first(GeometricTensor(x, model.in_type)).tensor.abs().max()
            self.scale = float(leak * layer / self.conv(x).abs().max())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        from e2cnn.nn import GeometricTensor

        model = self.model
        h = GeometricTensor(x, model.in_type)
        for i, block in enumerate(model.blocks):
            for name, layer in block._modules.items():
                h = layer(h)
                if i == 0 and name == "conv":
                    h = GeometricTensor(h.tensor + self.scale * self.conv(x), h.type)
        return model.head(model.pool(model.group_pool(h).tensor))


# ------------------------------------------------------------------ leaks of 1e-6 fail
@pytest.mark.parametrize("group", ["c4", "d4"])
def test_float32_leak_of_1e_6_of_the_output_is_caught(group):
    model, x = tiny_e2cnn(group, 0), inputs(0)
    report = assert_invariant(LogitLeak(model, x, 0.0), group, x)  # the exact network passes
    assert report.path == RECOMPUTE_PATH and report.margin < 1e-6
    with pytest.raises(AssertionError, match=r"margin \d.*path: float64 recompute") as info:
        assert_invariant(LogitLeak(model, x, 1e-6), group, x)
    assert margin_of(info) > 1.5  # caught with room, not by a hair
    # the calibrated bound, computed in float32, cannot see it (why the recompute exists)
    assert_invariant(LogitLeak(model, x, 1e-6), group, x, recompute=False)


@pytest.mark.parametrize("group", ["c4", "d4"])
def test_float32_conv_leak_of_1e_5_of_the_layer_is_caught(group):
    # a plain Conv2d at 1e-5 of the first equivariant layer: e2cnn's check_equivariance
    # catches it, the former bound (16·eps·sqrt(D)·max|f|) passed it
    model, x = tiny_e2cnn(group, 0), inputs(0)
    assert_invariant(ConvLeak(model, x, 0.0), group, x)
    with pytest.raises(AssertionError, match="path: float64 recompute") as info:
        assert_invariant(ConvLeak(model, x, 1e-5), group, x)
    assert margin_of(info) > 5


def margin_of(info: pytest.ExceptionInfo) -> float:
    assert isinstance(info.value, CheckFailed) and f"margin {info.value.report.margin:.3g}" in str(
        info.value
    )
    return info.value.report.margin


def test_the_tolerance_of_the_recompute_is_storage_rounding():
    model, x = tiny_e2cnn("c4", 0), inputs(0)
    report = assert_invariant(model, "c4", x)
    # float64 rounding is ~1e-15 of it: the float32 storage term is the whole tolerance
    assert report.tolerance == pytest.approx(STORAGE_FACTOR * FLOAT32_EPS * report.scale, 1e-6)
    assert report.max_error < 1e-13 * report.scale  # float32 rounding is gone in float64


# ------------------------------------------------------------------ exact networks pass
@pytest.mark.parametrize("group", ["c4", "d4"])
def test_exact_networks_pass_for_100_initialisations_and_inputs(group):
    worst = 0.0
    for net_seed in range(10):
        model = tiny_e2cnn(group, net_seed)
        for input_seed in range(10):
            report = assert_invariant(model, group, inputs(100 + input_seed))
            worst = max(worst, report.margin)
    assert worst < 1e-6  # float64 rounding against a tolerance set by float32 storage


@pytest.mark.parametrize("group", ["c4", "d4"])
def test_exact_networks_pass_the_calibrated_bound(group):
    worst = 0.0
    for seed in range(10):
        report = assert_invariant(tiny_e2cnn(group, seed), group, inputs(seed), recompute=False)
        assert report.path == CALIBRATED_PATH
        worst = max(worst, report.margin)
    assert 0.01 < worst < 0.5  # float32 rounding, measured against its calibrated bound


# ------------------------------------------------------------------ C4 is not C8
def test_a_c4_network_fails_c8_through_its_45_degree_elements():
    # one block of 8 fields, 33×33; random_input is band-limited and fades out at the disc
    for seed in range(3):
        torch.manual_seed(seed)
        c4 = E2CNN((1, 33, 33), 3, group="c4", channels=(8,))
        torch.manual_seed(seed)
        c8 = E2CNN((1, 33, 33), 3, group="c8", channels=(8,))
        x = random_input(c4, "c8", batch_size=16, seed=seed)
        passed = assert_invariant(c8, "c8", x)
        assert passed.floor is not None and passed.margin < 0.5
        with pytest.raises(AssertionError, match=r"g=[1357] \(\d+°\).*interpolation floor") as info:
            assert_invariant(c4, "c8", x)
        assert margin_of(info) > 1.4


def test_band_limited_inputs_have_a_small_floor():
    torch.manual_seed(0)
    c8 = E2CNN((1, 33, 33), 3, group="c8", channels=(8,))
    smooth = assert_invariant(c8, "c8")
    white = assert_invariant(c8, "c8", torch.randn(4, 1, 33, 33), floor_factor=100.0)
    assert smooth.floor < white.floor / 5  # white noise loses far more to bilinear resampling
    assert smooth.floor / smooth.scale < 0.05


# ------------------------------------------------------------------ low precision
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_low_precision_models_are_checked_against_their_eps(dtype):
    x = inputs(0)
    eps = torch.finfo(dtype).eps
    small = LogitLeak(tiny_e2cnn("c4", 0), x, 0.1 * eps).to(dtype)
    report = assert_invariant(small, "c4", x.to(dtype))
    assert report.path == RECOMPUTE_PATH and report.dtype == dtype
    assert report.tolerance == pytest.approx(STORAGE_FACTOR * eps * report.scale, 1e-6)
    large = LogitLeak(tiny_e2cnn("c4", 0), x, 30 * eps).to(dtype)  # ~10× the tolerance
    with pytest.raises(AssertionError, match=f"path: float64 recompute.*dtype {dtype}"):
        assert_invariant(large, "c4", x.to(dtype))


# ------------------------------------------------------------------ the path is reported
class Float32Weights(nn.Module):
    """``x·w`` with ``w`` a plain float32 attribute: ``.to(float64)`` does not reach it, and a
    float64 input then fails in the matrix product."""

    def __init__(self, weights: torch.Tensor) -> None:
        super().__init__()
        self.weights = weights  # [D, 1], not a buffer

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.flatten(1) @ self.weights


def test_a_model_that_cannot_run_in_float64_falls_back_and_says_why():
    x = inputs(0, 8)
    summing = Float32Weights(torch.ones(64, 1))  # invariant: the sum of the pixels
    report = assert_invariant(summing, "c4", x)
    assert report.path == CALIBRATED_PATH and "float64 copy raised RuntimeError" in report.path_note
    corner = Float32Weights(torch.eye(64)[:, :1])  # the top-left pixel: not invariant
    with pytest.raises(AssertionError, match="path: calibrated bound .no float64 recompute"):
        assert_invariant(corner, "c4", x)
    with pytest.raises(AssertionError, match=r"path: calibrated bound \(recompute=False\)"):
        assert_invariant(corner, "c4", x, recompute=False)
    with pytest.raises(TypeError, match="recompute: expected True or False"):
        assert_invariant(summing, "c4", x, recompute="yes")


def test_equivariance_is_recomputed_with_geometric_tensors():
    from e2cnn import nn as enn

    model = tiny_e2cnn("c4", 0)
    conv = model.blocks[0].conv
    x = enn.GeometricTensor(inputs(0), model.in_type)
    report = assert_equivariant(conv, "c4", x)
    assert report.path == RECOMPUTE_PATH and report.compute_dtype == torch.float64
    assert conv.weights.dtype == torch.float32  # the model itself is left as it was
