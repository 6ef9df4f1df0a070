"""Reflections of images along one or more axes."""

from __future__ import annotations

import torch
from torch import Tensor

from invreg.groups.base import Group, check_image

_AXES = {"horizontal": -1, "vertical": -2}


class Flips(Group):
    """The group (Z_2)^k of mirror images along ``k`` axes of an image ``[B, C, H, W]``.

    Axis names: ``"horizontal"`` mirrors left–right (reverses the width axis), ``"vertical"``
    mirrors top–bottom (reverses the height axis). Element ``g`` is a bit mask: bit ``i`` set
    means "flip along ``axes[i]``". Every element is its own inverse; composition is XOR.
    """

    def __init__(self, axes: tuple[str, ...] | list[str] | str = ("horizontal",)) -> None:
        if isinstance(axes, str):
            axes = (axes,)
        axes = tuple(axes)
        unknown = [a for a in axes if a not in _AXES]
        if not axes or unknown or len(set(axes)) != len(axes):
            raise ValueError(
                f"Flips(axes): expected distinct names from {sorted(_AXES)}, got {axes!r}"
            )
        self.axes = axes
        self.order = 2 ** len(axes)

    def _inverse(self, g: Tensor) -> Tensor:
        return g.clone()

    def _compose(self, g: Tensor, h: Tensor) -> Tensor:
        return torch.bitwise_xor(g, h)

    def _sample(self, batch_size, generator, device) -> Tensor:
        return self._finite_sample(batch_size, generator, device)

    def sample_with_strength(
        self,
        strength: Tensor,
        generator: torch.Generator | None = None,
        probability: float | None = None,
    ) -> Tensor:
        """Strength ``s``: a flip (a uniformly drawn non-identity element) with probability
        ``s·probability``, else the identity.

        ``probability`` is the chance of a flip at full strength; the default ``1 − 1/order``
        (one axis: 0.5) makes ``s = 1`` the uniform law of :meth:`sample`. See
        :meth:`Group.sample_with_strength` for ``strength`` and ``generator``.

        >>> Flips().sample_with_strength(torch.tensor([0.0, 1.0, 1.0]), probability=1.0)
        tensor([0, 1, 1])
        """
        if probability is None:
            probability = 1.0 - 1.0 / self.order
        if isinstance(probability, bool) or not isinstance(probability, int | float) or not (
            0 < probability <= 1
        ):
            raise ValueError(
                f"{self!r}.sample_with_strength(probability): expected 0 < probability <= 1, "
                f"got {probability!r}"
            )
        strength = self.check_strength(strength)
        u = torch.rand(strength.shape[0], generator=generator, dtype=strength.dtype)
        flipped = (u.to(strength.device) < strength * probability).long()
        if self.order == 2:
            return flipped
        which = torch.randint(1, self.order, strength.shape, generator=generator)
        return flipped * which.to(strength.device)

    def check_input(self, x: Tensor) -> None:
        check_image(self, x, square=False)

    def _apply(self, x: Tensor, element: int) -> Tensor:
        dims = tuple(_AXES[a] for i, a in enumerate(self.axes) if element >> i & 1)
        return torch.flip(x, dims=dims) if dims else x.clone()

    def _act(self, x: Tensor, g: Tensor) -> Tensor:
        return self._act_grouped(x, g, self._apply)

    def _act_one(self, x: Tensor, element: Tensor) -> Tensor:
        return self._apply(x, int(element))

    @property
    def is_exact(self) -> bool:
        return True

    def __repr__(self) -> str:
        return f"Flips(axes={self.axes!r})"
