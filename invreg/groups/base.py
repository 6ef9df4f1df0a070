"""The :class:`Group` interface: the one object that knows how to transform a tensor.

Elements of a finite group are integers ``0 .. order - 1`` with ``0`` the identity; a batch of
elements is a ``LongTensor`` of shape ``[B]``, one element per sample. Elements of a continuous
group are real parameters (for example an angle), a floating tensor of shape ``[B]``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import torch
from torch import Tensor

from invreg.config import RecordsInit


class Group(RecordsInit, ABC):
    """A group acting on batches of inputs.

    Subclasses implement :meth:`act`, :meth:`inverse`, :meth:`compose`, :meth:`sample` and
    :meth:`check_input`; :meth:`orbit` and :meth:`elements` are derived from those.

    The action is a *left* action: ``act(act(x, h), g) == act(x, compose(g, h))``.
    """

    #: number of elements, or ``None`` for a continuous group
    order: int | None = None
    #: shape of one element: ``()`` for integers or angles, ``(k,)`` for parameter vectors
    element_shape: tuple[int, ...] = ()

    @property
    def is_finite(self) -> bool:
        return self.order is not None

    # ------------------------------------------------------------------ elements
    def identity(self, batch_size: int = 1, device: torch.device | str | None = None) -> Tensor:
        """The identity element, repeated ``batch_size`` times."""
        dtype = torch.long if self.is_finite else torch.get_default_dtype()
        return torch.zeros(batch_size, *self.element_shape, dtype=dtype, device=device)

    @abstractmethod
    def inverse(self, g: Tensor) -> Tensor:
        """Elementwise inverse ``g⁻¹`` of a batch of elements."""

    @abstractmethod
    def compose(self, g: Tensor, h: Tensor) -> Tensor:
        """Elementwise product ``g·h`` (apply ``h`` first, then ``g``)."""

    @abstractmethod
    def sample(
        self,
        batch_size: int,
        generator: torch.Generator | None = None,
        device: torch.device | str | None = None,
    ) -> Tensor:
        """``batch_size`` elements drawn uniformly (finite) or from the group's sampling law."""

    def elements(
        self,
        num_samples: int | None = None,
        generator: torch.Generator | None = None,
        device: torch.device | str | None = None,
    ) -> Tensor:
        """The elements an orbit is made of, identity first.

        Finite groups: all ``order`` elements (``num_samples`` must be ``None`` or ``order``).
        Continuous groups: the identity followed by ``num_samples - 1`` sampled elements.
        """
        if self.is_finite:
            if num_samples not in (None, self.order):
                raise ValueError(
                    f"{self!r} is finite with order {self.order}; its orbit has all "
                    f"{self.order} elements, got num_samples={num_samples}"
                )
            return torch.arange(self.order, device=device)
        if num_samples is None or num_samples < 2:
            raise ValueError(
                f"{self!r} is continuous: pass num_samples >= 2 (identity plus sampled "
                f"elements), got num_samples={num_samples}"
            )
        sampled = self.sample(num_samples - 1, generator=generator, device=device)
        return torch.cat([self.identity(1, device=device).to(sampled.dtype), sampled])

    # ------------------------------------------------------------------ action
    @abstractmethod
    def check_input(self, x: Tensor) -> None:
        """Raise ``ValueError`` naming the shape if the group cannot act on ``x``."""

    @abstractmethod
    def _act(self, x: Tensor, g: Tensor) -> Tensor:
        """Apply ``g[i]`` to ``x[i]``; inputs already validated, ``g`` of shape
        ``[B, *element_shape]``."""

    def act(self, x: Tensor, g: Tensor | int | float) -> Tensor:
        """Transform each sample ``x[i]`` by the element ``g[i]``.

        Args:
            x: a batch of inputs, shape ``[B, ...]`` (see :meth:`check_input`).
            g: elements of shape ``[B]``, or a single element applied to every sample.

        Returns:
            The transformed batch, same shape, dtype and device as ``x``.
        """
        self.check_input(x)
        g = self._as_elements(g, x.shape[0], x.device)
        return self._act(x, g)

    def orbit(
        self,
        x: Tensor,
        num_samples: int | None = None,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        """All transformed copies of each sample: ``[B, N, *x.shape[1:]]``, identity first.

        ``N`` is the group's order, or ``num_samples`` for a continuous group (see
        :meth:`elements`). Every sample sees the same elements in the same order.
        """
        self.check_input(x)
        elems = self.elements(num_samples, generator=generator, device=x.device)
        return self.orbit_from_elements(x, elems)

    def orbit_from_elements(self, x: Tensor, elems: Tensor) -> Tensor:
        """Apply every element of ``elems`` (shape ``[N]``) to the whole batch: ``[B, N, ...]``."""
        self.check_input(x)
        out = x.new_empty(x.shape[0], elems.shape[0], *x.shape[1:])
        # one device-to-host transfer for all elements; each copy is written in place
        for i, element in enumerate(elems.cpu()):
            out[:, i] = self._act_one(x, element)
        return out

    def _act_one(self, x: Tensor, element: Tensor) -> Tensor:
        """Apply one element (a CPU scalar / vector) to every sample; override for speed."""
        g = element.to(x.device).expand(x.shape[0], *self.element_shape)
        return self._act(x, g)

    # ------------------------------------------------------------------ helpers
    def _as_elements(
        self, g: Tensor | int | float, batch_size: int, device: torch.device
    ) -> Tensor:
        dtype = torch.long if self.is_finite else torch.get_default_dtype()
        g = torch.as_tensor(g, device=device)
        if self.is_finite and g.is_floating_point():
            raise ValueError(f"{self!r} is finite: elements must be integers, got dtype {g.dtype}")
        g = g.to(dtype)
        expected = (batch_size, *self.element_shape)
        if g.shape == self.element_shape:
            g = g.expand(expected)
        if g.shape != expected:
            raise ValueError(
                f"{self!r}: expected one element per sample, shape {expected}, "
                f"got g of shape {tuple(g.shape)}"
            )
        if self.is_finite and ((g < 0).any() or (g >= self.order).any()):
            raise ValueError(
                f"{self!r}: elements must lie in [0, {self.order}), got values "
                f"{g.min().item()}..{g.max().item()}"
            )
        return g

    def _finite_sample(
        self,
        batch_size: int,
        generator: torch.Generator | None,
        device: torch.device | str | None,
    ) -> Tensor:
        assert self.order is not None
        return torch.randint(self.order, (batch_size,), generator=generator).to(device)

    def _act_grouped(self, x: Tensor, g: Tensor, apply_one) -> Tensor:
        """Apply a finite group elementwise by grouping the samples that share an element."""
        out = torch.empty_like(x)
        for element in torch.unique(g).tolist():
            mask = g == element
            out[mask] = apply_one(x[mask], element)
        return out

    def __eq__(self, other: object) -> bool:
        return type(self) is type(other) and repr(self) == repr(other)

    def __hash__(self) -> int:
        return hash(repr(self))


def check_image(group: Group, x: Tensor, square: bool) -> None:
    """Shared validation for groups that act on images ``[B, C, H, W]``."""
    if not isinstance(x, Tensor):
        raise TypeError(f"{group!r} acts on tensors, got {type(x).__name__}")
    if x.ndim != 4:
        raise ValueError(
            f"{group!r} acts on image batches of shape [B, C, H, W]; got a tensor of shape "
            f"{tuple(x.shape)} ({x.ndim} dims)"
        )
    if square and x.shape[-1] != x.shape[-2]:
        raise ValueError(
            f"{group!r} needs square images (H == W) so that rotated images keep their shape; "
            f"got shape {tuple(x.shape)}"
        )
