"""Gruver et al.'s Local Equivariance Error (LEE) against a reference from their formulas.

Reference: their bilinear sampler written out (``align_corners=True`` pixel coordinates
``i = (u + 1)/2 · (W − 1)``, the cell's corner ``floor`` of the point taken as a constant,
indices reflected into the frame by ``W − 1 − |W − 1 − |k||``), their affine maps ``θ(t)``,
``softmax(f(T_t x))`` differentiated at ``t = 0`` by ``torch.func.jvp``, then the mean over
classes of ``|·|``. The sampling point is formed as the pixel centre plus its displacement
``(θ(t) − θ(0))·(u, v, 1)`` so that at ``t = 0`` it sits exactly on the centre (their floor in
exact arithmetic). Float64 throughout: both sides are a few float64 operations per pixel plus
the same model's forward, so they agree far within 1e-6 relative.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.func import jvp

from invreg.functional.lie import (
    LEE_TRANSFORM_NAMES,
    lee_tangent,
    lie_tangent,
    local_equivariance_error,
)
from invreg.models import SmallCNN

RTOL = 1e-6


def theta(transform: str, t: torch.Tensor) -> torch.Tensor:
    """Their ``lee/transforms.py`` affine maps ``[2, 3]``."""
    one, zero = torch.ones_like(t), torch.zeros_like(t)
    rows = {
        "translate_x": [[one, zero, t], [zero, one, zero]],
        "translate_y": [[one, zero, zero], [zero, one, t]],
        "rotation": [[t.cos(), t.sin(), zero], [-t.sin(), t.cos(), zero]],
        "shear_x": [[one, t, zero], [zero, one, zero]],
        "shear_y": [[one, zero, zero], [t, one, zero]],
        "hyperbolic_rotation": [[t.cosh(), t.sinh(), zero], [t.sinh(), t.cosh(), zero]],
        "scale": [[1 - t, zero, zero], [zero, 1 - t, zero]],
    }[transform]
    return torch.stack([torch.stack(row) for row in rows])


def reference_transform(x: torch.Tensor, transform: str, t: torch.Tensor) -> torch.Tensor:
    if transform == "saturate":
        return x * (1 + t)
    b, c, h, w = x.shape
    u = torch.linspace(-1, 1, w, dtype=torch.float64).expand(h, w)
    v = torch.linspace(-1, 1, h, dtype=torch.float64)[:, None].expand(h, w)
    points = torch.stack([u, v, torch.ones_like(u)])  # [3, H, W]
    shift = torch.einsum("ij,jhw->ihw", theta(transform, t) - theta(transform, 0 * t), points)
    cols = torch.arange(w, dtype=torch.float64).expand(h, w)
    rows = torch.arange(h, dtype=torch.float64)[:, None].expand(h, w)
    ix = cols + shift[0] * (w - 1) / 2
    iy = rows + shift[1] * (h - 1) / 2
    x0, y0 = ix.detach().floor(), iy.detach().floor()

    def reflect(k, size):
        return (size - 1 - (size - 1 - k.abs()).abs()).long()

    def read(col, row):
        return x[..., reflect(row, h), reflect(col, w)]

    return (read(x0, y0) * (x0 + 1 - ix) * (y0 + 1 - iy)
            + read(x0 + 1, y0) * (ix - x0) * (y0 + 1 - iy)
            + read(x0, y0 + 1) * (x0 + 1 - ix) * (iy - y0)
            + read(x0 + 1, y0 + 1) * (ix - x0) * (iy - y0))


def reference_lee(model, x: torch.Tensor, transform: str) -> torch.Tensor:
    zero = torch.zeros((), dtype=torch.float64)
    _, derivative = jvp(
        lambda t: torch.softmax(model(reference_transform(x, transform, t)), dim=-1),
        (zero,), (torch.ones_like(zero),),
    )
    return derivative.abs().mean(dim=-1)


@pytest.fixture(scope="module")
def cnn():
    torch.manual_seed(0)
    return SmallCNN((2, 9, 8), 5, channels=(4, 6)).double().eval()


@pytest.mark.parametrize("transform", LEE_TRANSFORM_NAMES)
def test_lee_matches_reference_formula(cnn, transform):
    x = torch.randn(3, 2, 9, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    got = local_equivariance_error(cnn, x, transform)
    want = reference_lee(cnn, x, transform)
    assert got.shape == (3,) and got.dtype == torch.float64
    assert (want > 0).all()
    torch.testing.assert_close(got, want, rtol=RTOL, atol=0.0)


def test_lee_is_not_invreg_central_derivative(cnn):
    # the one-sided forward difference differs from lie_derivative's central one
    x = torch.randn(2, 2, 9, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    central = lie_tangent(x, "translate_x") * -(x.shape[-1] - 1) / 2
    assert not torch.allclose(lee_tangent(x, "translate_x"), central)


def test_conversion_on_a_ramp():
    # on a linear ramp, away from the border, forward and central differences agree, so the
    # conversion table's sign and units are exact: LEE translate_x = −(W−1)/2 · invreg's
    # translate_x, translate_y = −(H−1)/2 · invreg's, rotation = −invreg's rotation
    h = w = 9
    rows, cols = torch.meshgrid(torch.arange(h, dtype=torch.float64),
                                torch.arange(w, dtype=torch.float64), indexing="ij")
    x = (0.3 * cols - 0.7 * rows + 0.1 * cols * rows)[None, None]
    inner = (..., slice(1, -1), slice(1, -1))
    eps = 16 * torch.finfo(torch.float64).eps * x.abs().max() * w
    for name, factor in (("translate_x", -(w - 1) / 2), ("translate_y", -(h - 1) / 2),
                         ("rotation", -1.0)):
        torch.testing.assert_close(lee_tangent(x, name)[inner],
                                   factor * lie_tangent(x, name)[inner], rtol=0.0, atol=eps)


def test_invariant_models_give_zero():
    # a model that reads only the centre pixel: their rotation and scale fix it (velocity 0)
    centre = nn.Sequential(nn.Flatten(), nn.Linear(1, 3)).double()
    model = lambda x: centre(x[..., 4:5, 4:5])  # noqa: E731
    x = torch.randn(2, 1, 9, 9, dtype=torch.float64)
    for name in ("rotation", "scale"):
        assert torch.equal(local_equivariance_error(model, x, name), torch.zeros(2).double())
    # logits of the normalised image do not change under saturation x·(1 + t)
    linear = nn.Linear(81, 4).double()
    normalised = lambda x: linear(x.flatten(1) / x.flatten(1).norm(dim=1, keepdim=True))  # noqa
    lee = local_equivariance_error(normalised, x, "saturate")
    assert lee.abs().max() <= 64 * torch.finfo(torch.float64).eps
    # a constant image: every forward difference, reflected, is 0
    constant = torch.full((2, 2, 9, 8), 0.5, dtype=torch.float64)
    for name in LEE_TRANSFORM_NAMES[:-1]:
        assert torch.equal(lee_tangent(constant, name), torch.zeros_like(constant))


def test_model_without_input_dependence_gives_zero():
    model = lambda x: torch.ones(x.shape[0], 3, dtype=x.dtype)  # noqa: E731
    assert torch.equal(local_equivariance_error(model, torch.randn(2, 1, 4, 4), "rotation"),
                       torch.zeros(2))


@pytest.mark.parametrize("bad", ["rotate", "stretch_x", "translate", None, 3])
def test_bad_transform_rejected(bad):
    with pytest.raises(ValueError, match="transform"):
        local_equivariance_error(nn.Flatten(), torch.randn(1, 1, 4, 4), bad)


def test_bad_inputs_rejected():
    model = nn.Flatten()
    with pytest.raises(ValueError, match="x: expected an image batch"):
        local_equivariance_error(model, torch.randn(4, 4), "rotation")
    with pytest.raises(TypeError, match="floating-point"):
        local_equivariance_error(model, torch.ones(1, 1, 4, 4, dtype=torch.long), "rotation")
    with pytest.raises(ValueError, match="at least 2"):
        local_equivariance_error(model, torch.randn(1, 1, 1, 4), "translate_x")
    with pytest.raises(TypeError, match="x: expected a tensor"):
        lee_tangent([[1.0]], "rotation")


def test_lee_is_exported_from_invreg_functional():
    import invreg.functional as functional
    from invreg.functional import lie

    assert functional.local_equivariance_error is lie.local_equivariance_error
    assert functional.lee_tangent is lie.lee_tangent
    assert functional.LEE_TRANSFORM_NAMES == lie.LEE_TRANSFORM_NAMES
