"""Training order and augmentation as functions of ``(seed, epoch)``, so a resumed run replays
exactly what the uninterrupted run drew.

A random stream that lives in an object (a generator advanced batch after batch) is lost when
training stops, and is copied, not shared, into DataLoader worker processes. Here nothing
advances: :class:`ShuffledEpochs` draws the order of epoch ``e`` from a generator seeded with
``(seed, e)`` and yields *keys* ``(e, i)``; :class:`EpochDataset` turns a batch of keys into
samples, augmented with the elements :class:`~invreg.data.augment.GroupAugmentation` assigns
to ``(e, i)``. The epoch travels inside the keys, so worker processes (persistent or not) need
no state either. A batch of keys is read with one indexing of the stored tensors
(:class:`StackedSamples`), and :func:`collate` hands it to the model as it is, with no
per-sample copies and no re-stacking. Lightning tells the sampler the epoch (``set_epoch``)
before each training epoch, also after resuming from a checkpoint; the sampler also counts
epochs itself for loops that do not, and the data module keeps that count in its
``state_dict``.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import Dataset, Sampler, TensorDataset, default_collate

from invreg.data.augment import GroupAugmentation, seeded_generator

#: ``(epoch, index)``: sample ``index`` of the data set, as drawn in epoch ``epoch``
EpochKey = tuple[int, int]


class ShuffledEpochs(Sampler[EpochKey]):
    """A fresh permutation of ``range(num_samples)`` per epoch, as ``(epoch, index)`` keys.

    The order of epoch ``e`` is ``torch.randperm(num_samples)`` drawn from a generator seeded
    with ``(seed, e)``. :meth:`set_epoch` chooses the epoch of the next pass (Lightning calls
    it before every training epoch); without it each pass takes the next epoch.

    Args:
        num_samples: size of the data set.
        seed: seed of the shuffling stream.

    >>> sampler = ShuffledEpochs(4, seed=0)
    >>> first, second = list(sampler), list(sampler)
    >>> [e for e, _ in first + second], sorted(i for _, i in first)
    ([0, 0, 0, 0, 1, 1, 1, 1], [0, 1, 2, 3])
    >>> sampler.set_epoch(1)
    >>> list(sampler) == second
    True
    """

    def __init__(self, num_samples: int, seed: int) -> None:
        if isinstance(num_samples, bool) or not isinstance(num_samples, int) or num_samples < 1:
            raise ValueError(f"num_samples must be an integer >= 1, got {num_samples!r}")
        self.num_samples = num_samples
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """The epoch of the next pass."""
        if isinstance(epoch, bool) or not isinstance(epoch, int) or epoch < 0:
            raise ValueError(f"epoch must be an integer >= 0, got {epoch!r}")
        self.epoch = epoch

    def order(self, epoch: int) -> Tensor:
        """The sample indices of epoch ``epoch``, in the order they are drawn: ``[num_samples]``."""
        return torch.randperm(self.num_samples, generator=seeded_generator(self.seed, epoch))

    def __iter__(self) -> Iterator[EpochKey]:
        epoch = self.epoch
        self.epoch += 1
        return iter([(epoch, index) for index in self.order(epoch).tolist()])

    def __len__(self) -> int:
        return self.num_samples


class StackedSamples(Sequence):
    """A batch already stacked, ``x`` ``[B, ...]`` and ``y`` ``[B]``, that still reads as the
    sequence of its samples ``(x[i], y[i])``.

    :meth:`EpochDataset.__getitems__` returns it; :func:`collate` turns it into ``(x, y)``
    without copying, and any other collate function (``default_collate``) sees the list of
    samples it expects and re-stacks them to the same batch.
    """

    def __init__(self, x: Tensor, y: Tensor) -> None:
        self.x, self.y = x, y

    def __len__(self) -> int:
        return self.x.shape[0]

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor]:  # type: ignore[override]
        return self.x[index], self.y[index]


def collate(samples: Any) -> Any:
    """The collate function of invreg's loaders: a :class:`StackedSamples` batch as ``(x, y)``
    (as read, no copy), anything else through ``default_collate``.

    >>> batch = StackedSamples(torch.zeros(3, 2), torch.arange(3))
    >>> x, y = collate(batch)
    >>> x.shape, y.tolist()
    (torch.Size([3, 2]), [0, 1, 2])
    >>> all(torch.equal(a, b) for a, b in zip(default_collate(batch), (x, y)))
    True
    """
    if isinstance(samples, StackedSamples):
        return samples.x, samples.y
    return default_collate(samples)


class EpochDataset(Dataset):
    """A :class:`~torch.utils.data.TensorDataset` ``(x, y)`` read through ``(epoch, index)`` keys.

    ``dataset[(e, i)]`` is sample ``i`` moved by the element ``augmentation`` assigns to it in
    epoch ``e`` (unchanged without augmentation); a batch of keys is read and transformed in
    one call (``__getitems__``, which the DataLoader uses; it returns :class:`StackedSamples`).
    ``dataset[i]`` with a plain integer is the untransformed sample ``i``, as from the wrapped
    data set, and a batch of plain integers is those samples, untransformed (how the
    validation and test loaders read their batches).

    Args:
        dataset: a ``TensorDataset`` of inputs ``[N, ...]`` and labels ``[N]``.
        augmentation: the per-epoch group elements, or ``None``.
    """

    def __init__(
        self, dataset: TensorDataset, augmentation: GroupAugmentation | None = None
    ) -> None:
        if not isinstance(dataset, TensorDataset) or len(dataset.tensors) != 2:
            raise TypeError(
                f"dataset: expected a TensorDataset of (inputs, labels), got {dataset!r}"
            )
        if augmentation is not None and augmentation.num_samples != len(dataset):
            raise ValueError(
                f"augmentation: made for {augmentation.num_samples} samples, the data set has "
                f"{len(dataset)}"
            )
        self.dataset = dataset
        self.augmentation = augmentation

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key: int | EpochKey) -> tuple[Tensor, Tensor]:
        if isinstance(key, tuple):
            return self.__getitems__([key])[0]
        return self.dataset[key]

    def __getitems__(self, keys: Sequence[int | EpochKey]) -> StackedSamples:
        if not any(isinstance(key, tuple) for key in keys):
            indices = torch.as_tensor(list(keys), dtype=torch.long)
            return StackedSamples(*(tensor[indices] for tensor in self.dataset.tensors))
        epochs = {epoch for epoch, _ in keys}
        if len(epochs) != 1:
            raise ValueError(f"keys: a batch must come from one epoch, got epochs {sorted(epochs)}")
        (epoch,) = epochs
        indices = torch.tensor([index for _, index in keys], dtype=torch.long)
        x, y = (tensor[indices] for tensor in self.dataset.tensors)
        if self.augmentation is not None:
            x = self.augmentation(x, epoch, indices)
        return StackedSamples(x, y)
