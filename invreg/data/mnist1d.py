"""MNIST-1D (Greydanus & Steinbach): procedurally generated 1-D digit signals, no download.

The ``mnist1d`` package draws each signal from one of ten fixed 1-D templates with random
padding, scaling, translation, correlated and i.i.d. noise and shear, then resamples it to
``length`` points (40 by default). It is generated here in memory with
``mnist1d.data.make_dataset`` — never ``get_dataset``, which downloads or writes a pickle
to the working directory. Two quirks of the package handled here:

* ``make_dataset`` reseeds the *global* ``numpy.random`` and ``random`` generators; their
  states are saved and restored around the call, so building the data has no side effects;
* it standardises all samples together (train and test); ``standardize=True`` then
  re-standardises with the statistics of our train split, as for every invreg data module.

Inputs are ``[N, 1, length + 2·pad]``; the 1-D groups are cyclic shifts, e.g. ``"t4"``,
``"t5"``, ``"t8"`` (``CyclicShifts(n)`` along the signal; ``length`` must be divisible by n).
"""

from __future__ import annotations

import functools
import random
from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor

from invreg.data.augment import derive_seed
from invreg.data.base import (
    InvarianceDataModule,
    SplitSize,
    Stream,
    check_int,
    check_split_size,
)
from invreg.groups import Group


@functools.lru_cache(maxsize=4)
def generate_mnist1d(num_samples: int, length: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``(signals [num_samples, length] float32, labels [num_samples] int64)``, read-only.

    ``num_samples // 10`` signals per class from ``mnist1d.data.make_dataset`` with the
    package's default arguments otherwise (its default seed is 42); train and test parts of
    the package's split are concatenated. Cached per process.
    """
    from mnist1d.data import get_dataset_args, make_dataset  # imports matplotlib: only on use

    args = get_dataset_args()
    args.num_samples = num_samples
    args.final_seq_length = length
    args.seed = seed
    numpy_state, python_state = np.random.get_state(), random.getstate()
    try:
        data = make_dataset(args)
    finally:
        np.random.set_state(numpy_state)
        random.setstate(python_state)
    signals = np.concatenate([data["x"], data["x_test"]]).astype(np.float32)
    labels = np.concatenate([data["y"], data["y_test"]]).astype(np.int64)
    signals.flags.writeable = labels.flags.writeable = False
    return signals, labels


class MNIST1DDataModule(InvarianceDataModule):
    """MNIST-1D signals as ``[N, 1, length + 2·pad]`` float32 tensors, 10 classes.

    ``num_samples`` signals are generated from ``dataset_seed`` (default: derived from
    ``seed``), then split at random into test, validation and training (the rest), after
    ``remove_classes``. With the defaults: 3,500 / 500 / 1,000 signals of length 40.

    Args:
        num_samples: signals to generate, a multiple of 10 (equal counts per class).
        length: points per signal (``final_seq_length`` of mnist1d).
        val_size: validation samples, a fraction in ``(0, 1)`` or a count.
        test_size: test samples, a fraction in ``(0, 1)`` or a count.
        dataset_seed: seed of the generator, or ``None`` to derive it from ``seed``; fix it
            to keep the same signals while ``seed`` varies the split and augmentation (the
            mnist1d package's own default is 42).
        batch_size, num_workers, seed, transform_group, augment_group, standardize, pad,
            remove_classes: see :class:`~invreg.data.base.InvarianceDataModule`.

    ``split_indices`` index the generated signals.

    >>> dm = MNIST1DDataModule(num_samples=1000, augment_group="t8")
    >>> dm.input_shape, dm.num_classes
    ((1, 40), 10)
    >>> dm.setup()
    >>> x, y = next(iter(dm.train_dataloader()))
    >>> tuple(x.shape), len(dm.train_dataset), len(dm.val_dataset), len(dm.test_dataset)
    ((128, 1, 40), 700, 100, 200)
    """

    def __init__(
        self,
        num_samples: int = 5000,
        length: int = 40,
        val_size: SplitSize = 0.1,
        test_size: SplitSize = 0.2,
        dataset_seed: int | None = None,
        batch_size: int = 128,
        num_workers: int = 0,
        seed: int = 0,
        transform_group: str | Group | None = None,
        augment_group: str | Group | None = None,
        standardize: bool = True,
        pad: int = 0,
        remove_classes: Sequence[int] | None = None,
    ) -> None:
        self.num_samples = check_int("num_samples", num_samples, 10)
        if self.num_samples % 10:
            raise ValueError(
                f"num_samples must be a multiple of 10 (mnist1d makes num_samples // 10 signals "
                f"per class), got {num_samples!r}"
            )
        # mnist1d pads templates to 72 points and resamples them; fewer than 2 points breaks it
        self.length = check_int("length", length, 2)
        self.val_size = check_split_size("val_size", val_size)
        self.test_size = check_split_size("test_size", test_size)
        self.dataset_seed = (
            None if dataset_seed is None else check_int("dataset_seed", dataset_seed, 0)
        )
        if self.dataset_seed is not None and self.dataset_seed >= 2**32:
            raise ValueError(f"dataset_seed must be < 2**32 (numpy's limit), got {dataset_seed}")
        super().__init__(
            batch_size=batch_size,
            num_workers=num_workers,
            seed=seed,
            transform_group=transform_group,
            augment_group=augment_group,
            standardize=standardize,
            pad=pad,
            remove_classes=remove_classes,
        )

    @property
    def generator_seed(self) -> int:
        """The seed handed to ``mnist1d.data.make_dataset``."""
        if self.dataset_seed is not None:
            return self.dataset_seed
        return derive_seed(self.seed, Stream.SOURCE) % 2**32

    def _source_shape(self) -> tuple[int, ...]:
        return (1, self.length)

    def _load_splits(self, generator: torch.Generator) -> dict[str, tuple[Tensor, Tensor, Tensor]]:
        signals, labels = generate_mnist1d(self.num_samples, self.length, self.generator_seed)
        kept, new_labels = self._keep_classes(labels)
        splits = {}
        for name, positions in self._random_splits(
            kept.numel(), self.val_size, self.test_size, generator
        ).items():
            index = kept[positions]
            x = torch.from_numpy(signals[index.numpy()]).unsqueeze(1)
            splits[name] = (x, new_labels[positions], index)
        return splits
