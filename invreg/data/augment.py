"""Random group augmentation of training samples, and the background value a run fills in.

The group does the transforming (:meth:`invreg.groups.Group.act`, whose ``fill`` is the value
of pixels a non-exact action, such as a bilinear rotation, brings in from outside the frame);
this module only decides *which* element each sample gets, from a generator seeded by the
epoch, and where the fill value of a run comes from (:func:`background_of`).
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor

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


def background_of(datamodule: object) -> float:
    """The fill value of a run: its data module's ``background``, else ``0.0``.

    ``background`` is the value of an empty pixel in the data the model sees (``-mean/std``
    after standardisation; see :class:`~invreg.data.InvarianceDataModule`), known once the
    data module is set up. The LightningModules that transform inputs
    (:class:`~invreg.modules.InvarianceModule`, :class:`~invreg.modules.HyperUpstreamModule`)
    read it here, once, in their ``setup()`` (Lightning sets the data module up first), and
    pass it as ``fill`` to :meth:`~invreg.groups.Group.act`. Without a data module, or with
    one that has no ``background`` (plain dataloaders, a foreign data module), the fill is 0.

    Raises:
        ValueError: ``background`` is not a finite number.

    >>> from invreg.data import DigitsDataModule
    >>> data = DigitsDataModule(standardize=True)
    >>> data.setup()
    >>> background_of(data) == data.background < 0, background_of(None)
    (True, 0.0)
    """
    value = getattr(datamodule, "background", 0.0) if datamodule is not None else 0.0
    try:
        value = float(value)
    except (TypeError, ValueError) as err:
        raise ValueError(
            f"{type(datamodule).__name__}.background: expected a number, got {value!r}"
        ) from err
    if not math.isfinite(value):
        raise ValueError(f"{type(datamodule).__name__}.background: expected a finite number, "
                         f"got {value}")
    return value


class GroupAugmentation:
    """A fresh random group element for every sample of a data set in every epoch.

    The element of sample ``i`` in epoch ``e`` is entry ``i`` of ``group.sample(num_samples)``
    drawn from a generator seeded with ``(seed, e)``: a function of ``(seed, e, i)`` alone. So
    the elements do not depend on the batch a sample lands in, on the DataLoader worker that
    loads it, on the process rank, nor on how many epochs ran before in this process, and a
    run resumed from a checkpoint at epoch ``e`` draws exactly what the uninterrupted run drew.
    The table of one epoch is cached (one element per sample: ``num_samples`` ints for a
    finite group).

    Args:
        group: the group to sample from.
        num_samples: the size of the data set being augmented.
        seed: seed of the element stream.
        fill: background value for pixels entering the frame (``fill`` of
            :meth:`~invreg.groups.Group.act`).

    >>> from invreg.groups import Rotations
    >>> augment = GroupAugmentation(Rotations(4), num_samples=10, seed=0)
    >>> index = torch.tensor([3, 7])
    >>> torch.equal(augment.elements(0, index), augment.elements(0, index))
    True
    >>> augment(torch.ones(2, 1, 2, 2), epoch=0, indices=index).shape
    torch.Size([2, 1, 2, 2])
    """

    def __init__(self, group: Group, num_samples: int, seed: int, fill: float = 0.0) -> None:
        if isinstance(num_samples, bool) or not isinstance(num_samples, int) or num_samples < 1:
            raise ValueError(f"num_samples must be an integer >= 1, got {num_samples!r}")
        self.group = group
        self.num_samples = num_samples
        self.seed = seed
        self.fill = float(fill)
        self._epoch: int | None = None
        self._table: Tensor | None = None

    def table(self, epoch: int) -> Tensor:
        """All elements of epoch ``epoch``: ``[num_samples, *group.element_shape]``."""
        if isinstance(epoch, bool) or not isinstance(epoch, int) or epoch < 0:
            raise ValueError(f"epoch must be an integer >= 0, got {epoch!r}")
        if self._epoch != epoch or self._table is None:
            generator = seeded_generator(self.seed, epoch)
            self._table = self.group.sample(self.num_samples, generator=generator)
            self._epoch = epoch
        return self._table

    def elements(self, epoch: int, indices: Tensor) -> Tensor:
        """The elements of the samples ``indices`` (``[B]``, ints) in epoch ``epoch``."""
        return self.table(epoch)[indices]

    def __call__(self, x: Tensor, epoch: int, indices: Tensor) -> Tensor:
        """``g·x`` for the batch ``x`` (``[B, ...]``) of samples ``indices`` (``[B]``)."""
        if indices.shape != x.shape[:1]:
            raise ValueError(
                f"indices: expected one data set index per sample, shape [{x.shape[0]}], got "
                f"{list(indices.shape)}"
            )
        g = self.elements(epoch, indices).to(x.device)
        return self.group.act(x, g, fill=self.fill)

    def __repr__(self) -> str:
        return (
            f"GroupAugmentation({self.group!r}, num_samples={self.num_samples}, "
            f"seed={self.seed}, fill={self.fill:g})"
        )
