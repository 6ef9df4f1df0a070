"""Continuous translations and isotropic scalings of images ``[B, C, H, W]``.

Both act by resampling the image bilinearly (``grid_sample``, ``align_corners=False``, zeros
outside the frame), like :class:`~invreg.groups.rotations.ContinuousRotations`. Shifts by whole
pixels land exactly on pixel centres, so they move pixels without blurring; content that
leaves the frame is lost (use :class:`~invreg.groups.CyclicShifts` for an exact, lossless
translation group). Group axioms hold up to that loss and the interpolation error.

Resampling runs in float32 (float64 for float64 images) and the result is cast back to the
input dtype; integer images raise ``TypeError`` (convert them first, e.g. ``x.float()``).
Elements must be finite. Elements so large that the whole content leaves the frame are clamped
to a value with the same result (an empty frame, or for a huge zoom-out only the centre pixel),
so the output never overflows.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from invreg.groups.base import Group, LieGenerator, check_image
from invreg.groups.rotations import resample


class Translations(Group):
    """Translations of the plane; an element ``(dx, dy)`` is a shift in pixels.

    ``dx > 0`` moves the content right, ``dy > 0`` moves it down (towards higher row indices).
    :meth:`sample` draws each component uniformly from ``[-max_shift, max_shift]``; the group
    itself is R², whatever ``max_shift``: :meth:`compose` adds shifts, :meth:`inverse` negates.

    >>> x = torch.zeros(1, 1, 3, 3); x[0, 0, 1, 1] = 1.0
    >>> Translations(1.0).act(x, torch.tensor([[1.0, 0.0]]))[0, 0]
    tensor([[0., 0., 0.],
            [0., 0., 1.],
            [0., 0., 0.]])
    """

    order = None
    element_shape = (2,)

    def __init__(self, max_shift: float = 2.0) -> None:
        if not isinstance(max_shift, int | float) or not max_shift > 0:
            raise ValueError(
                f"Translations(max_shift): expected a positive number of pixels, got {max_shift!r}"
            )
        self.max_shift = float(max_shift)

    def _inverse(self, g: Tensor) -> Tensor:
        return -g

    def _compose(self, g: Tensor, h: Tensor) -> Tensor:
        return g + h

    def _sample(self, batch_size, generator, device) -> Tensor:
        u = torch.rand(batch_size, 2, generator=generator, dtype=torch.get_default_dtype())
        return ((2 * u - 1) * self.max_shift).to(device)

    def _sample_with_strength(self, strength, generator) -> Tensor:
        # strength s: dx and dy each uniform in [-s·max_shift, s·max_shift]
        return self._uniform_within_strength(strength, self.max_shift, (2,), generator)

    def check_input(self, x: Tensor) -> None:
        check_image(self, x, square=False)

    def _act(self, x: Tensor, g: Tensor) -> Tensor:
        height, width = x.shape[-2:]
        # a shift past the frame (|t| >= size + 1 pixels) leaves nothing in it; clamping there
        # keeps the same empty result and the grid far from float overflow
        bound = torch.tensor([width + 1.0, height + 1.0], dtype=torch.float64, device=x.device)
        g = torch.clamp(g.to(device=x.device, dtype=torch.float64), -bound, bound)
        return resample(x, translation_theta(g, height, width))

    def lie_generators(self) -> dict[str, LieGenerator]:
        """``"translate_x"`` / ``"translate_y"``: ``t`` in pixels, content moving right /
        down (the elements ``(t, 0)`` / ``(0, t)``)."""
        return {
            "translate_x": LieGenerator("translate_x", self, _translate_x_flow, _along_x,
                                        "pixels, content moving right"),
            "translate_y": LieGenerator("translate_y", self, _translate_y_flow, _along_y,
                                        "pixels, content moving down"),
        }

    def __repr__(self) -> str:
        return f"Translations(max_shift={self.max_shift:g})"


def translation_theta(shift: Tensor, height: int, width: int) -> Tensor:
    """The pull-back affine maps ``[..., 2, 3]`` of shifts ``shift`` ``[..., 2]`` (``(dx,
    dy)`` pixels, content moving right / down) on ``height × width`` images, in ``shift``'s
    dtype: one pixel is ``2/size`` in normalised coordinates, and pulling back reads at
    ``p − t``.

    >>> translation_theta(torch.tensor([1.0, 0.0]), 4, 4)
    tensor([[ 1.0000,  0.0000, -0.5000],
            [ 0.0000,  1.0000, -0.0000]])
    """
    dx, dy = shift[..., 0], shift[..., 1]
    ones, zeros = torch.ones_like(dx), torch.zeros_like(dx)
    # the integer -2: under forward-mode AD a Python float would promote a float32 tangent
    return torch.stack([torch.stack([ones, zeros, -2 * dx / width], -1),
                        torch.stack([zeros, ones, -2 * dy / height], -1)], dim=-2)


def scaling_theta(log_factor: Tensor) -> Tensor:
    """The pull-back affine maps ``[..., 2, 3]`` of zooms by ``exp(log_factor)``
    (``[...]``) about the image centre, in ``log_factor``'s dtype: output location ``p``
    reads the input at ``exp(−s)·p`` (normalised coordinates).

    >>> scaling_theta(torch.tensor(math.log(2.0)))
    tensor([[0.5000, 0.0000, 0.0000],
            [0.0000, 0.5000, 0.0000]])
    """
    shrink = torch.exp(-log_factor)
    zeros = torch.zeros_like(shrink)
    return torch.stack([torch.stack([shrink, zeros, zeros], -1),
                        torch.stack([zeros, shrink, zeros], -1)], dim=-2)


def _along_x(t: Tensor) -> Tensor:
    return torch.stack([t, torch.zeros_like(t)], -1)


def _along_y(t: Tensor) -> Tensor:
    return torch.stack([torch.zeros_like(t), t], -1)


def _translate_x_flow(t: Tensor, height: int, width: int) -> Tensor:
    return translation_theta(_along_x(t), height, width)


def _translate_y_flow(t: Tensor, height: int, width: int) -> Tensor:
    return translation_theta(_along_y(t), height, width)


def _scale_flow(t: Tensor, height: int, width: int) -> Tensor:
    return scaling_theta(t)


def _log_factor(t: Tensor) -> Tensor:
    return t


class Scalings(Group):
    """Isotropic zooms about the image centre; an element is the *natural log* of the factor.

    Element ``s`` magnifies the content by ``exp(s)`` (``s > 0`` zooms in, ``s < 0`` shrinks
    it, leaving zeros at the border). Log-factors make the group additive: the identity is
    ``0``, :meth:`compose` adds, :meth:`inverse` negates. :meth:`sample` draws ``s`` uniformly
    from ``[-log(max_scale), log(max_scale)]``, i.e. factors in ``[1/max_scale, max_scale]``.

    >>> Scalings(2.0).act(torch.ones(1, 1, 4, 4), math.log(0.5))[0, 0]
    tensor([[0., 0., 0., 0.],
            [0., 1., 1., 0.],
            [0., 1., 1., 0.],
            [0., 0., 0., 0.]])
    """

    order = None

    def __init__(self, max_scale: float = 1.5) -> None:
        if not isinstance(max_scale, int | float) or not max_scale > 1:
            raise ValueError(f"Scalings(max_scale): expected a factor > 1, got {max_scale!r}")
        self.max_scale = float(max_scale)

    def _inverse(self, g: Tensor) -> Tensor:
        return -g

    def _compose(self, g: Tensor, h: Tensor) -> Tensor:
        return g + h

    def _sample(self, batch_size, generator, device) -> Tensor:
        u = torch.rand(batch_size, generator=generator, dtype=torch.get_default_dtype())
        return ((2 * u - 1) * math.log(self.max_scale)).to(device)

    def _sample_with_strength(self, strength, generator) -> Tensor:
        # strength s: a log-factor uniform in [-s·log(max_scale), s·log(max_scale)]
        return self._uniform_within_strength(strength, math.log(self.max_scale), (), generator)

    def check_input(self, x: Tensor) -> None:
        check_image(self, x, square=False)

    def _act(self, x: Tensor, g: Tensor) -> Tensor:
        # output pixel p reads the input at exp(-s)·p (normalised coordinates). Once
        # exp(-s) >= size + 2 every pixel but a centre one reads outside the frame, so clamping
        # there keeps the result and avoids inf·0 = NaN at the centre
        limit = math.log(max(x.shape[-2:]) + 2.0)
        g = torch.clamp(g.to(device=x.device, dtype=torch.float64), min=-limit)
        return resample(x, scaling_theta(g))

    def lie_generators(self) -> dict[str, LieGenerator]:
        """``"scale"``: the factor ``e^t`` about the centre (the element ``t``)."""
        return {"scale": LieGenerator("scale", self, _scale_flow, _log_factor,
                                      "log-factor: a zoom by e^t about the centre")}

    def __repr__(self) -> str:
        return f"Scalings(max_scale={self.max_scale:g})"
