"""Direct products of two groups."""

from __future__ import annotations

import torch
from torch import Tensor

from invreg.groups.base import Group, _examples


class Product(Group):
    """The direct product ``first × second``, acting by ``(g1, g2)·x = g1·(g2·x)``.

    This is a group action when the two actions commute on the inputs — for example flips and
    cyclic shifts, shifts along different axes, or rotations and flips of a square image only
    in the dihedral sense (use :class:`~invreg.groups.Dihedral` for that). :meth:`commutes`
    checks a given input numerically.

    Elements: if both factors are finite, the integer ``g1·order(second) + g2`` (order
    ``order(first)·order(second)``); if either is continuous, a float vector ``[g1, g2]``
    (``element_shape == (2,)``), finite components stored as whole numbers. Validation checks
    each component against its factor: a finite component must be a whole number in
    ``[0, order)``, a continuous one a finite number.

    >>> from invreg.groups import ContinuousRotations, Flips
    >>> group = Product(ContinuousRotations(), Flips())
    >>> group.compose(torch.tensor([30.0, 1.0]), torch.tensor([15.0, 1.0]))
    tensor([45.,  0.])
    """

    def __init__(self, first: Group, second: Group) -> None:
        for name, g in (("first", first), ("second", second)):
            if isinstance(g, type) and issubclass(g, Group):
                raise TypeError(
                    f"Product({name}): expected a Group instance, got the class {g.__name__}; "
                    f"instantiate it, e.g. {g.__name__}()"
                )
            if not isinstance(g, Group):
                raise TypeError(f"Product({name}): expected a Group, got {type(g).__name__}")
            if g.element_shape != ():
                raise ValueError(f"Product({name}): nested products are not supported, got {g!r}")
        self.first, self.second = first, second
        finite = first.is_finite and second.is_finite
        self.order = first.order * second.order if finite else None
        self.element_shape = () if finite else (2,)

    @property
    def is_exact(self) -> bool:
        return self.first.is_exact and self.second.is_exact

    def split(self, g: Tensor) -> tuple[Tensor, Tensor]:
        """The two components of a batch of (validated) product elements."""
        if self.is_finite:
            return g // self.second.order, g % self.second.order
        a, b = g[..., 0], g[..., 1]
        a = a.round().long() if self.first.is_finite else a
        b = b.round().long() if self.second.is_finite else b
        return a, b

    def join(self, a: Tensor, b: Tensor) -> Tensor:
        """Product elements from their two components."""
        if self.is_finite:
            return a * self.second.order + b
        dtype = torch.get_default_dtype()
        if a.is_floating_point() or b.is_floating_point():
            dtype = torch.promote_types(dtype, a.dtype if a.is_floating_point() else b.dtype)
        return torch.stack([a.to(dtype), b.to(dtype)], dim=-1)

    def _check_element_values(self, g: Tensor, where: str) -> None:
        super()._check_element_values(g, where)
        if self.is_finite:
            return
        for i, factor in enumerate((self.first, self.second)):
            if not factor.is_finite:
                continue
            component = g[..., i]
            context = f"{where}, component {i} ({factor!r})"
            fractional = component != component.round()
            if fractional.any():
                raise ValueError(
                    f"{context}: expected whole numbers, got {_examples(component[fractional])}"
                )
            factor._check_element_values(component.long(), context)

    def _inverse(self, g: Tensor) -> Tensor:
        a, b = self.split(g)
        return self.join(self.first.inverse(a), self.second.inverse(b))

    def _compose(self, g: Tensor, h: Tensor) -> Tensor:
        (a1, b1), (a2, b2) = self.split(g), self.split(h)
        return self.join(self.first.compose(a1, a2), self.second.compose(b1, b2))

    def _sample(self, batch_size, generator, device) -> Tensor:
        a = self.first.sample(batch_size, generator=generator, device=device)
        b = self.second.sample(batch_size, generator=generator, device=device)
        return self.join(a, b)

    def check_input(self, x: Tensor) -> None:
        self.first.check_input(x)
        self.second.check_input(x)

    def check_input_shape(self, shape: tuple[int, ...] | list[int]) -> None:
        """Both factors must act on ``shape``; the first that cannot raises its message."""
        self.first.check_input_shape(shape)
        self.second.check_input_shape(shape)

    def _act(self, x: Tensor, g: Tensor) -> Tensor:
        a, b = self.split(g)
        return self.first._act(self.second._act(x, b), a)

    def commutes(self, x: Tensor, atol: float = 1e-5) -> bool:
        """Whether the factors' actions commute on ``x`` for every pair of sampled elements."""
        self.check_input(x)
        gen = torch.Generator().manual_seed(0)
        a = self.first.sample(x.shape[0], generator=gen, device=x.device)
        b = self.second.sample(x.shape[0], generator=gen, device=x.device)
        ab = self.first._act(self.second._act(x, b), a)
        ba = self.second._act(self.first._act(x, a), b)
        return bool(torch.allclose(ab, ba, atol=atol))

    def __repr__(self) -> str:
        return f"Product({self.first!r}, {self.second!r})"
