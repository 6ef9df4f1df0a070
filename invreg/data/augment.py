"""Random group augmentation of training batches, as a DataLoader ``collate_fn``.

The group does the transforming (:meth:`invreg.groups.Group.act`); this module only decides
*which* element each sample gets, from a seeded generator, and what value fills the pixels a
non-exact action (a bilinear rotation) brings in from outside the frame.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import default_collate, get_worker_info

from invreg.groups import Group


def derive_seed(seed: int, *stream: int) -> int:
    """An independent 63-bit seed for one named random stream of a data module.

    ``derive_seed(seed, a, b)`` and ``derive_seed(seed, a, c)`` are statistically independent,
    so the split, the fixed transforms, the shuffling and the augmentation of a data module
    never share random numbers, and changing one option does not reshuffle the others.

    >>> derive_seed(0, 1) == derive_seed(0, 1) != derive_seed(0, 2)
    True
    """
    state = np.random.SeedSequence(seed, spawn_key=tuple(stream)).generate_state(1, np.uint64)
    return int(state[0]) >> 1


def seeded_generator(seed: int, *stream: int) -> torch.Generator:
    """A CPU ``torch.Generator`` seeded with :func:`derive_seed` ``(seed, *stream)``."""
    return torch.Generator().manual_seed(derive_seed(seed, *stream))


def act_with_fill(group: Group, x: Tensor, g: Tensor, fill: float = 0.0) -> Tensor:
    """``g·x`` as if the plane outside the frame held the value ``fill`` instead of zeros.

    Groups fill what enters the frame with zeros (bilinear rotations; exact actions such as
    ``rot90``, rolls and flips bring nothing in). After standardisation the image background
    is ``-mean/std``, not 0, so a zero fill would draw a visible disc a network could use to
    detect the transformation. For an action that is linear in the pixels,
    ``act(x) + fill·(1 − act(1))`` is exactly the action with fill value ``fill``; for exact
    actions ``act(1) == 1`` and the result equals ``group.act(x, g)`` bit for bit.

    Args:
        group: the group acting on ``x``.
        x: a batch ``[B, C, ...]``.
        g: one element per sample, shape ``[B, *group.element_shape]``.
        fill: the background value.
    """
    out = group.act(x, g)
    if fill == 0.0:
        return out
    coverage = group.act(torch.ones_like(x[:, :1]), g)
    return out + fill * (1.0 - coverage)


class GroupAugmentation:
    """``collate_fn`` that stacks samples, then moves each by a fresh random group element.

    Reproducible and different every epoch: in the main process (``num_workers=0``) the
    elements come from one generator seeded with ``seed`` that lives as long as this object.
    In a worker process each worker seeds its own generator from ``seed`` and the worker's
    ``torch.utils.data.get_worker_info().seed``, which PyTorch draws from the DataLoader's
    ``generator`` for every epoch and differs between workers; a copied generator would
    otherwise repeat the same elements in every worker and every epoch.

    Args:
        group: the group to sample from.
        seed: seed of the element stream.
        fill: background value for pixels entering the frame (see :func:`act_with_fill`).

    >>> from invreg.groups import Rotations
    >>> collate = GroupAugmentation(Rotations(4), seed=0)
    >>> x, y = collate([(torch.ones(1, 2, 2), 0), (torch.zeros(1, 2, 2), 1)])
    >>> x.shape, y.tolist()
    (torch.Size([2, 1, 2, 2]), [0, 1])
    """

    def __init__(self, group: Group, seed: int, fill: float = 0.0) -> None:
        self.group = group
        self.seed = seed
        self.fill = float(fill)
        self._main_generator = seeded_generator(seed)
        self._worker_seed: int | None = None
        self._worker_generator: torch.Generator | None = None

    def generator(self) -> torch.Generator:
        """The generator of the calling process (main process or DataLoader worker)."""
        info = get_worker_info()
        if info is None:
            return self._main_generator
        if self._worker_generator is None or self._worker_seed != info.seed:
            self._worker_seed = info.seed
            self._worker_generator = seeded_generator(self.seed, info.seed % 2**64)
        return self._worker_generator

    def __call__(self, samples: Sequence[Any]) -> tuple[Tensor, Tensor]:
        x, y = default_collate(samples)
        g = self.group.sample(x.shape[0], generator=self.generator(), device=x.device)
        return act_with_fill(self.group, x, g, self.fill), y

    def __repr__(self) -> str:
        return f"GroupAugmentation({self.group!r}, seed={self.seed}, fill={self.fill:g})"
