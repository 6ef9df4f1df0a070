"""The image tangent of the Lie derivative equals the symmetric derivative of ``grid_sample``.

Reference: the one-sided derivatives of the bilinear resampling read from ``grid_sample``
itself, by reverse mode on the identity grid offset by ±½ pixel along each axis (the middle of
the cell on either side of each pixel centre, where the interpolation is smooth), averaged and
dotted with the grid velocity. Both are sums of a few float64 products of the same numbers, so
they agree to float64 rounding relative to the tangent's magnitude.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch.func import jvp

from invreg.functional import GENERATORS, lie_tangent

#: float64 rounding of a handful of operations, relative to the largest entry compared
TOL = 64 * torch.finfo(torch.float64).eps


def grid_sample_tangent(x: torch.Tensor, generator: str, fill: float = 0.0) -> torch.Tensor:
    b, c, h, w = x.shape
    zero = torch.zeros((), dtype=torch.float64)
    grid0, velocity = jvp(
        lambda t: F.affine_grid(GENERATORS[generator](t, h, w)[None], [1, 1, h, w],
                                align_corners=False),
        (zero,), (torch.ones_like(zero),),
    )
    half = torch.tensor([[1 / w, 0.0], [-1 / w, 0.0], [0.0, 1 / h], [0.0, -1 / h]],
                        dtype=torch.float64)
    grids = (grid0 + half[:, None, None, :]).repeat_interleave(b * c, dim=0).requires_grad_()
    image = (x - fill).reshape(1, b * c, 1, h, w).expand(4, -1, -1, -1, -1)
    sampled = F.grid_sample(image.reshape(4 * b * c, 1, h, w), grids, mode="bilinear",
                            padding_mode="zeros", align_corners=False)
    (partials,) = torch.autograd.grad(sampled.sum(), grids)
    partials = partials.reshape(4, b * c, h, w, 2)
    slope_x = 0.5 * (partials[0, ..., 0] + partials[1, ..., 0])
    slope_y = 0.5 * (partials[2, ..., 1] + partials[3, ..., 1])
    return (slope_x * velocity[..., 0] + slope_y * velocity[..., 1]).reshape(b, c, h, w)


CASES = [(name, (2, 3, 7, 7)) for name in sorted(GENERATORS)] + [
    (name, (1, 1, 5, 9)) for name in sorted(GENERATORS) if name != "rotation"  # square only
]


@pytest.mark.parametrize("generator, shape", CASES)
def test_tangent_equals_the_grid_sample_symmetric_derivative(generator, shape):
    x = torch.randn(*shape, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    for fill in (0.0, -0.7):
        expected = grid_sample_tangent(x, generator, fill)
        tangent = lie_tangent(x, generator, fill=fill)
        assert expected.abs().max() > 0.1
        assert (tangent - expected).abs().max() <= TOL * expected.abs().max()


def test_tangent_is_differentiable_in_x_and_keeps_float32():
    x = torch.randn(2, 1, 6, 6, requires_grad=True)
    tangent = lie_tangent(x, "rotation")
    assert tangent.dtype == torch.float32
    (grad,) = torch.autograd.grad(tangent.pow(2).sum(), x)
    # the tangent is linear in x: ⟨∇_x ‖T x‖², x⟩ = 2‖T x‖², two float32 sums of 72 products
    expected = 2 * tangent.pow(2).sum()
    assert torch.isclose((grad * x).sum(), expected, rtol=72 * torch.finfo(torch.float32).eps)
