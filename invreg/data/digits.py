"""scikit-learn's bundled 8×8 handwritten digits: real data, no download, loads in a second.

1,797 grey-scale images of the digits 0–9 (about 180 per class), pixel values 0..16, scaled
here to ``[0, 1]``. Small enough for tests, notebooks and CPU-only experiments.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor

from invreg.data.base import InvarianceDataModule, SplitSize, check_int, check_split_size
from invreg.groups import Group


@functools.lru_cache(maxsize=1)
def load_digit_arrays() -> tuple[np.ndarray, np.ndarray]:
    """``(images [1797, 8, 8] float32 in [0, 1], labels [1797] int64)``, read-only, cached."""
    from sklearn.datasets import load_digits  # sklearn is slow to import; only when needed

    digits = load_digits()
    images = (digits.images / 16.0).astype(np.float32)
    labels = digits.target.astype(np.int64)
    images.flags.writeable = labels.flags.writeable = False
    return images, labels


class DigitsDataModule(InvarianceDataModule):
    """The 8×8 digits as ``[N, 1, 8·upscale + 2·pad, 8·upscale + 2·pad]`` float32 images.

    Samples are split at random (fixed by ``seed``) into test, validation and training (the
    rest), after ``remove_classes``. ``upscale`` repeats every pixel ``upscale × upscale``
    times (nearest neighbour) before padding, e.g. 8×8 → 16×16 for ``upscale=2``.

    Args:
        upscale: integer nearest-neighbour upscaling factor.
        val_size: validation samples, a fraction in ``(0, 1)`` or a count.
        test_size: test samples, a fraction in ``(0, 1)`` or a count.
        batch_size, num_workers, seed, transform_group, augment_group, standardize, pad,
            remove_classes: see :class:`~invreg.data.base.InvarianceDataModule`.

    ``split_indices`` index ``sklearn.datasets.load_digits()``.

    >>> dm = DigitsDataModule(upscale=2, pad=2, remove_classes=[9], augment_group="c4")
    >>> dm.input_shape, dm.num_classes
    ((1, 20, 20), 9)
    >>> dm.setup()
    >>> x, y = next(iter(dm.train_dataloader()))
    >>> tuple(x.shape), y.dtype, len(dm.train_dataset), len(dm.val_dataset)
    ((128, 1, 20, 20), torch.int64, 1131, 243)
    """

    def __init__(
        self,
        upscale: int = 1,
        val_size: SplitSize = 0.15,
        test_size: SplitSize = 0.15,
        batch_size: int = 128,
        num_workers: int = 0,
        seed: int = 0,
        transform_group: str | Group | None = None,
        augment_group: str | Group | None = None,
        standardize: bool = True,
        pad: int = 0,
        remove_classes: Sequence[int] | None = None,
    ) -> None:
        self.upscale = check_int("upscale", upscale, 1)
        self.val_size = check_split_size("val_size", val_size)
        self.test_size = check_split_size("test_size", test_size)
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

    def _source_shape(self) -> tuple[int, ...]:
        return (1, 8 * self.upscale, 8 * self.upscale)

    def _load_splits(self, generator: torch.Generator) -> dict[str, tuple[Tensor, Tensor, Tensor]]:
        images, labels = load_digit_arrays()
        kept, new_labels = self._keep_classes(labels)
        splits = {}
        for name, positions in self._random_splits(
            kept.numel(), self.val_size, self.test_size, generator
        ).items():
            index = kept[positions]
            x = torch.from_numpy(images[index.numpy()]).unsqueeze(1)
            x = x.repeat_interleave(self.upscale, dim=-2).repeat_interleave(self.upscale, dim=-1)
            splits[name] = (x, new_labels[positions], index)
        return splits
