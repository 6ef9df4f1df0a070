"""Planar rotations and reflections of square images ``[B, C, H, W]``.

Angles are in degrees, counter-clockwise as the image is displayed (row 0 at the top), the
same sense as ``torch.rot90(x, k=1, dims=(-2, -1))``. Rotations by multiples of 90° use
``torch.rot90`` and are exact. Any other angle resamples the image bilinearly about its centre
(``grid_sample``, ``align_corners=False``, zeros outside the frame). That resampling is *not*
exactly invertible: it blurs (a rotation and its inverse act like a small low-pass filter) and
the corners of the square that leave the frame are lost, so group axioms hold only up to an
interpolation error — small for smooth images whose content sits inside the inscribed disc,
large for pixel-sharp noise. Use ``Rotations(4)`` when exactness matters.

Dtypes: the exact path works on any dtype, integers included. The bilinear path computes the
sampling grid and the interpolation in float32 (float64 for float64 images) and casts the result
back, so a bfloat16 / float16 rotation is the float32 rotation rounded once to the input dtype;
integer images raise ``TypeError`` there (convert them first, e.g. ``x.float()``).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from invreg.groups.base import Group, LieGenerator, check_image, require_floating


def rotate(x: Tensor, angles: Tensor) -> Tensor:
    """Rotate each image ``x[i]`` (``x``: ``[B, C, H, W]``) by ``angles[i]`` degrees (``[B]``).

    Exact (``torch.rot90``) for multiples of 90°, bilinear otherwise (see the module docstring).
    """
    if not torch.isfinite(angles).all():
        raise ValueError(f"rotate: angles must be finite, got {angles.tolist()}")
    quarter = torch.remainder(angles, 360.0) / 90.0
    rounded = quarter.round()
    exact = (quarter - rounded).abs() <= 1e-9
    turns = rounded.long() % 4
    if bool(exact.all()):  # the common case (C4, D4, ...): quarter turns only
        return rotate_quarters(x, turns)
    out = torch.empty_like(x)
    if exact.any():
        out[exact] = rotate_quarters(x[exact], turns[exact])
    out[~exact] = _rotate_bilinear(x[~exact], angles[~exact])
    return out


def rotate_quarters(x: Tensor, turns: Tensor) -> Tensor:
    """Rotate each image ``x[i]`` by ``turns[i]`` quarter turns (``[B]`` integers in 0..3).

    Exact. The samples of each turn are gathered and scattered back by index
    (``index_select``/``index_copy_``), one ``rot90`` per turn present in the batch.
    """
    out = torch.empty_like(x)
    present = torch.bincount(turns, minlength=4).tolist()
    for k, count in enumerate(present):
        if count == 0:
            continue
        if count == x.shape[0]:
            return x.clone() if k == 0 else torch.rot90(x, k, dims=(-2, -1)).contiguous()
        index = (turns == k).nonzero().squeeze(1)
        out.index_copy_(0, index, torch.rot90(x.index_select(0, index), k, dims=(-2, -1)))
    return out


def rotate_all(x: Tensor, angle: float) -> Tensor:
    """Rotate every image of ``x`` by the same ``angle`` degrees (exact for multiples of 90°)."""
    if not math.isfinite(angle):
        raise ValueError(f"rotate_all: angle must be finite, got {angle}")
    quarter = (angle % 360.0) / 90.0
    if abs(quarter - round(quarter)) < 1e-9:
        k = round(quarter) % 4
        return x.clone() if k == 0 else torch.rot90(x, k, dims=(-2, -1))
    return _rotate_bilinear(x, torch.full((x.shape[0],), angle, dtype=torch.float64))


def _rotate_bilinear(x: Tensor, angles: Tensor) -> Tensor:
    """Bilinear rotation of ``x`` ``[B, C, H, W]`` by ``angles`` ``[B]`` degrees, computed in
    float32 (float64 for float64 ``x``) and cast back to ``x.dtype``."""
    require_floating(x, "a rotation by a non-multiple of 90°")
    if x.numel() == 0:  # affine_grid rejects empty sizes; there is nothing to resample
        return torch.empty_like(x)
    # grid_sample pulls: output location p reads the input at R(-θ)·p. In normalised (x right,
    # y down) coordinates a counter-clockwise display rotation by θ reads the input at
    # (cos θ·x − sin θ·y, sin θ·x + cos θ·y). The angle's cosine and sine are taken in float64:
    # in a low-precision dtype they would be off by far more than the result's rounding.
    rad = angles.to(device=x.device, dtype=torch.float64) * (math.pi / 180.0)
    return resample(x, rotation_theta(rad))


def rotation_theta(radians: Tensor) -> Tensor:
    """The pull-back affine maps ``[..., 2, 3]`` of counter-clockwise display rotations by
    ``radians`` ``[...]`` about the image centre (:func:`resample`), in ``radians``' dtype.

    Output location ``p`` reads the input at ``R(−θ)·p``: in normalised (x right, y down)
    coordinates, at ``(cos θ·x − sin θ·y, sin θ·x + cos θ·y)``.

    >>> rotation_theta(torch.tensor(0.0))
    tensor([[1., -0., 0.],
            [0., 1., 0.]])
    """
    cos, sin = torch.cos(radians), torch.sin(radians)
    zeros = torch.zeros_like(cos)
    return torch.stack(
        [torch.stack([cos, -sin, zeros], -1), torch.stack([sin, cos, zeros], -1)], dim=-2
    )


def resample(x: Tensor, theta: Tensor) -> Tensor:
    """``grid_sample`` of floating ``x`` ``[B, C, H, W]`` with one affine map ``theta``
    ``[B, 2, 3]`` per image (pull-back: output location ``p`` reads the input at
    ``theta·[p, 1]`` in normalised coordinates; bilinear, zeros outside the frame,
    ``align_corners=False``).

    Grid and interpolation run in float32, or float64 for float64 ``x``; the result is cast
    back to ``x.dtype``, so bfloat16 / float16 inputs lose only the final rounding.
    """
    require_floating(x, "resample")
    if x.numel() == 0:
        return torch.empty_like(x)
    compute = torch.float64 if x.dtype == torch.float64 else torch.float32
    grid = F.affine_grid(theta.to(device=x.device, dtype=compute), list(x.shape),
                         align_corners=False)
    out = F.grid_sample(x.to(compute), grid, mode="bilinear", padding_mode="zeros",
                        align_corners=False)
    return out.to(x.dtype)


def hflip(x: Tensor) -> Tensor:
    """Mirror images left–right (reverse the width axis)."""
    return torch.flip(x, dims=(-1,))


class Rotations(Group):
    """The cyclic group C_n of rotations by multiples of ``360/n`` degrees.

    Element ``g`` rotates by ``360·g/n`` degrees counter-clockwise. ``Rotations(4)`` (the
    paper's R4) is exact; other ``n`` resample bilinearly for angles that are not multiples of
    90° (see the module docstring for the interpolation error).

    >>> import torch
    >>> x = torch.arange(4.0).reshape(1, 1, 2, 2)
    >>> Rotations(4).act(x, 1)
    tensor([[[[1., 3.],
              [0., 2.]]]])
    """

    def __init__(self, n: int = 4) -> None:
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ValueError(f"Rotations(n): n must be a positive integer, got {n!r}")
        self.n = n
        self.order = n

    def angles(self, g: Tensor) -> Tensor:
        """The rotation angle of each element, in degrees."""
        return g.to(torch.float64) * (360.0 / self.n)

    def element_labels(self, elements: Tensor) -> list[str]:
        """Each element's angle in degrees, e.g. ``["0°", "90°", "180°", "270°"]``."""
        elements = self._element_batch(elements, "element_labels(elements)")
        return [f"{a:g}°" for a in self.angles(elements.cpu()).tolist()]

    def _inverse(self, g: Tensor) -> Tensor:
        return (-g) % self.n

    def _compose(self, g: Tensor, h: Tensor) -> Tensor:
        return (g + h) % self.n

    def _sample(self, batch_size, generator, device) -> Tensor:
        return self._finite_sample(batch_size, generator, device)

    def check_input(self, x: Tensor) -> None:
        check_image(self, x, square=True)

    def _act(self, x: Tensor, g: Tensor) -> Tensor:
        return rotate(x, self.angles(g).to(x.device))

    def _act_one(self, x: Tensor, element: Tensor) -> Tensor:
        return rotate_all(x, float(self.angles(element)))

    @property
    def is_exact(self) -> bool:
        """Exact (``rot90``) when every rotation is a multiple of 90°: ``n`` in 1, 2, 4."""
        return self.n in (1, 2, 4)

    def __repr__(self) -> str:
        return f"Rotations(n={self.n})"


class Dihedral(Group):
    """The dihedral group D_n: ``n`` rotations and ``n`` reflections (order ``2n``).

    Element ``g = r + n·s`` (``0 <= r < n``, ``s ∈ {0, 1}``) first mirrors the image left–right
    if ``s = 1``, then rotates it by ``360·r/n`` degrees. Composition follows from
    ``flip ∘ rot(r) = rot(−r) ∘ flip``.
    """

    def __init__(self, n: int = 4) -> None:
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ValueError(f"Dihedral(n): n must be a positive integer, got {n!r}")
        self.n = n
        self.order = 2 * n

    def _split(self, g: Tensor) -> tuple[Tensor, Tensor]:
        return g % self.n, g // self.n

    def _inverse(self, g: Tensor) -> Tensor:
        r, s = self._split(g)
        # a reflection is its own inverse; a rotation inverts to the opposite rotation
        return torch.where(s == 1, g, (-r) % self.n)

    def _compose(self, g: Tensor, h: Tensor) -> Tensor:
        r1, s1 = self._split(g)
        r2, s2 = self._split(h)
        r = (r1 + torch.where(s1 == 1, -r2, r2)) % self.n
        return r + self.n * ((s1 + s2) % 2)

    def _sample(self, batch_size, generator, device) -> Tensor:
        return self._finite_sample(batch_size, generator, device)

    def check_input(self, x: Tensor) -> None:
        check_image(self, x, square=True)

    def _act(self, x: Tensor, g: Tensor) -> Tensor:
        r, s = self._split(g)
        flipped = torch.where((s == 1).view(-1, *([1] * (x.ndim - 1))), hflip(x), x)
        return rotate(flipped, r.to(torch.float64).to(x.device) * (360.0 / self.n))

    def _act_one(self, x: Tensor, element: Tensor) -> Tensor:
        r, s = divmod(int(element), self.n)[::-1]
        return rotate_all(hflip(x) if s else x, r * 360.0 / self.n)

    @property
    def is_exact(self) -> bool:
        """Exact (``rot90``) when every rotation is a multiple of 90°: ``n`` in 1, 2, 4."""
        return self.n in (1, 2, 4)

    def __repr__(self) -> str:
        return f"Dihedral(n={self.n})"


class ContinuousRotations(Group):
    """Rotations by any angle; elements are angles in degrees.

    :meth:`sample` draws angles uniformly from ``[-max_angle, max_angle]``. The group itself is
    SO(2): :meth:`compose` adds angles and :meth:`inverse` negates them, whatever
    ``max_angle``. Non-right angles resample bilinearly (see the module docstring).
    """

    order = None

    def __init__(self, max_angle: float = 180.0) -> None:
        if isinstance(max_angle, bool) or not isinstance(max_angle, int | float) or not (
            0 < max_angle <= 180
        ):
            raise ValueError(
                f"ContinuousRotations(max_angle): expected 0 < max_angle <= 180 degrees, "
                f"got {max_angle!r}"
            )
        self.max_angle = float(max_angle)

    def _inverse(self, g: Tensor) -> Tensor:
        return -g

    def _compose(self, g: Tensor, h: Tensor) -> Tensor:
        return g + h

    def _sample(self, batch_size, generator, device) -> Tensor:
        u = torch.rand(batch_size, generator=generator, dtype=torch.get_default_dtype())
        return ((2 * u - 1) * self.max_angle).to(device)

    def _sample_with_strength(self, strength, generator) -> Tensor:
        # strength s: an angle uniform in [-s·max_angle, s·max_angle]
        return self._uniform_within_strength(strength, self.max_angle, (), generator)

    def check_input(self, x: Tensor) -> None:
        check_image(self, x, square=True)

    def _act(self, x: Tensor, g: Tensor) -> Tensor:
        return rotate(x, g.to(torch.float64))

    def _act_one(self, x: Tensor, element: Tensor) -> Tensor:
        return rotate_all(x, float(element))

    def lie_generators(self) -> dict[str, LieGenerator]:
        """``"rotation"``: ``t`` in radians, counter-clockwise as displayed (the element
        ``t·180/π`` degrees); square images."""
        return {"rotation": LieGenerator(
            "rotation", self, _rotation_flow, torch.rad2deg,
            "radians, counter-clockwise as displayed, about the centre", square=True,
        )}

    def __repr__(self) -> str:
        return f"ContinuousRotations(max_angle={self.max_angle:g})"


def _rotation_flow(t: Tensor, height: int, width: int) -> Tensor:
    """The affine maps of rotations by ``t`` radians (any image size: normalised coordinates)."""
    return rotation_theta(t)
