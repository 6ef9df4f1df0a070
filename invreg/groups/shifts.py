"""Cyclic translations of images ``[B, C, H, W]`` or 1-D signals ``[B, C, L]``."""

from __future__ import annotations

import torch
from torch import Tensor

from invreg.groups.base import Group, _input_shape


class CyclicShifts(Group):
    """The cyclic group Z_n acting by circular shifts along one axis.

    Element ``g`` rolls the input by ``g·shift`` positions along ``dim`` (``torch.roll``:
    what leaves one edge re-enters at the other, so nothing is lost and the action is exact).
    For the shifts to form a group, ``n·shift`` must be a multiple of the axis length; with
    ``shift=None`` the shift is ``length // n`` and the length must be divisible by ``n``.
    The paper's T3 is ``CyclicShifts(3)`` on 36-pixel-wide images (shifts of 12 pixels).

    Args:
        n: number of elements.
        shift: pixels per step, or ``None`` for ``length // n``.
        dim: the axis to shift: ``-1`` (x / width / signal length) or ``-2`` (y / height).
    """

    def __init__(self, n: int = 3, shift: int | None = None, dim: int = -1) -> None:
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ValueError(f"CyclicShifts(n): n must be a positive integer, got {n!r}")
        if shift is not None and (
            isinstance(shift, bool) or not isinstance(shift, int) or shift < 1
        ):
            raise ValueError(
                f"CyclicShifts(shift): expected a positive integer or None, got {shift!r}"
            )
        if dim not in (-1, -2):
            raise ValueError(f"CyclicShifts(dim): expected -1 (x) or -2 (y), got {dim!r}")
        self.n = n
        self.order = n
        self.shift = shift
        self.dim = dim

    def step(self, length: int) -> int:
        """Pixels per group step on an axis of ``length`` pixels."""
        return length // self.n if self.shift is None else self.shift

    def _inverse(self, g: Tensor) -> Tensor:
        return (-g) % self.n

    def _compose(self, g: Tensor, h: Tensor) -> Tensor:
        return (g + h) % self.n

    def _sample(self, batch_size, generator, device) -> Tensor:
        return self._finite_sample(batch_size, generator, device)

    def check_input(self, x: Tensor) -> None:
        if not isinstance(x, Tensor):
            raise TypeError(f"{self!r} acts on tensors, got {type(x).__name__}")
        if x.ndim not in (3, 4) or (self.dim == -2 and x.ndim != 4):
            expected = "[B, C, H, W]" if self.dim == -2 else "[B, C, L] or [B, C, H, W]"
            raise ValueError(f"{self!r} acts on {expected}; got a tensor of shape {tuple(x.shape)}")
        length = x.shape[self.dim]
        step = self.step(length)
        if step == 0 or (self.n * step) % length != 0:
            raise ValueError(
                f"{self!r}: n·shift = {self.n}·{step} is not a multiple of the axis length "
                f"{length} (input shape {tuple(x.shape)}), so the shifts do not form a group"
            )

    def check_input_shape(self, shape: tuple[int, ...] | list[int]) -> None:
        """Raise ``ValueError`` naming the valid ``n`` if the shifts do not fit ``shape``.

        With ``shift=None`` the axis length must be divisible by ``n``; the message lists the
        divisors as registry names (``t<n>`` along x, ``ty<n>`` along y).

        >>> CyclicShifts(3).check_input_shape((1, 36, 36))
        >>> CyclicShifts(5).check_input_shape((1, 36, 36))  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        ValueError: t5 needs n dividing 36 (the x axis of inputs (1, 36, 36)): t2, t3, t4, ...
        """
        shape = _input_shape(self, shape)
        if len(shape) not in (2, 3) or (self.dim == -2 and len(shape) != 3):
            super().check_input_shape(shape)
            return
        length = shape[self.dim]
        step = self.step(length)
        if step != 0 and (self.n * step) % length == 0:
            return
        prefix = "t" if self.dim == -1 else "ty"
        axis = "x" if self.dim == -1 else "y"
        if self.shift is None:
            valid = [n for n in range(2, length + 1) if length % n == 0]
            rule = f"n dividing {length}"
        else:
            valid = [n for n in range(2, length + 1) if (n * self.shift) % length == 0]
            rule = f"n·{self.shift} a multiple of {length}"
        choices = ", ".join(f"{prefix}{n}" for n in valid) or "none"
        name = f"{prefix}{self.n}" if self.shift is None else repr(self)
        raise ValueError(f"{name} needs {rule} (the {axis} axis of inputs {shape}): {choices}")

    def _act(self, x: Tensor, g: Tensor) -> Tensor:
        step = self.step(x.shape[self.dim])
        return self._act_grouped(x, g, lambda xs, e: torch.roll(xs, e * step, dims=self.dim))

    def _act_one(self, x: Tensor, element: Tensor) -> Tensor:
        return torch.roll(x, int(element) * self.step(x.shape[self.dim]), dims=self.dim)

    @property
    def is_exact(self) -> bool:
        return True

    def __repr__(self) -> str:
        return f"CyclicShifts(n={self.n}, shift={self.shift}, dim={self.dim})"
