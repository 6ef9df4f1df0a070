"""Downstream tasks on the 8×8 digits that want opposite amounts of rotation invariance.

* :class:`RotatedDigitsDataModule` — classify digits shown at random rotations: rewards a
  rotation-invariant representation.
* :class:`DigitOrientationDataModule` — tell by how many quarter turns a digit was rotated:
  a rotation-invariant representation cannot solve it.

Both are :class:`~invreg.data.DigitsDataModule` pipelines with a fixed per-sample
``transform_group`` (each image gets one rotation, drawn once from ``seed``), so with the same
``seed`` (and ``val_size``, ``test_size``, ``remove_classes``) they split the digits exactly
like a plain ``DigitsDataModule`` — a model pre-trained on that module's train split has never
seen a test digit of these tasks.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch.utils.data import TensorDataset

from invreg.data.base import SPLITS, SplitSize
from invreg.data.digits import DigitsDataModule
from invreg.groups import ContinuousRotations, Group, Rotations


class RotatedDigitsDataModule(DigitsDataModule):
    """Digit classification, each image rotated by a fixed angle uniform in
    ``[-max_angle, max_angle]`` degrees (bilinear, zeros outside the frame, before
    standardisation). Labels are the digits, ``num_classes = 10 - len(remove_classes)``.

    The default ``upscale=2, pad=2`` gives ``[N, 1, 20, 20]`` images, so the rotated digit
    keeps most of its corners. Other arguments: see :class:`~invreg.data.DigitsDataModule`.

    >>> dm = RotatedDigitsDataModule(batch_size=32)
    >>> dm.input_shape, dm.num_classes
    ((1, 20, 20), 10)
    """

    def __init__(
        self,
        max_angle: float = 180.0,
        upscale: int = 2,
        pad: int = 2,
        val_size: SplitSize = 0.15,
        test_size: SplitSize = 0.15,
        batch_size: int = 128,
        num_workers: int = 0,
        seed: int = 0,
        augment_group: str | Group | None = None,
        standardize: bool = True,
        remove_classes: Sequence[int] | None = None,
    ) -> None:
        self.max_angle = float(max_angle)
        super().__init__(
            upscale=upscale,
            val_size=val_size,
            test_size=test_size,
            batch_size=batch_size,
            num_workers=num_workers,
            seed=seed,
            transform_group=ContinuousRotations(max_angle),
            augment_group=augment_group,
            standardize=standardize,
            pad=pad,
            remove_classes=remove_classes,
        )


class DigitOrientationDataModule(DigitsDataModule):
    """Predict the orientation of a digit: each image is rotated by ``k`` quarter turns
    counter-clockwise (``k`` uniform in ``{0, 1, 2, 3}``, fixed per image, exact ``rot90``) and
    the label is ``k`` (4 classes). The digit itself is kept in :attr:`digit_labels`.

    Some digits look alike after half a turn (0, 1, 8); ``remove_classes=[0, 1, 8]`` makes the
    task well-posed at the price of fewer samples. Other arguments: see
    :class:`~invreg.data.DigitsDataModule` (no ``augment_group``: it would change the labels).

    >>> dm = DigitOrientationDataModule(batch_size=32)
    >>> dm.setup()
    >>> dm.num_classes, sorted(dm.train_dataset.tensors[1].unique().tolist())
    (4, [0, 1, 2, 3])
    """

    def __init__(
        self,
        upscale: int = 2,
        pad: int = 2,
        val_size: SplitSize = 0.15,
        test_size: SplitSize = 0.15,
        batch_size: int = 128,
        num_workers: int = 0,
        seed: int = 0,
        standardize: bool = True,
        remove_classes: Sequence[int] | None = None,
    ) -> None:
        super().__init__(
            upscale=upscale,
            val_size=val_size,
            test_size=test_size,
            batch_size=batch_size,
            num_workers=num_workers,
            seed=seed,
            transform_group=Rotations(4),
            standardize=standardize,
            pad=pad,
            remove_classes=remove_classes,
        )
        self.digit_labels: dict[str, torch.Tensor] = {}

    @property
    def num_classes(self) -> int:
        """Four orientations (0°, 90°, 180°, 270°)."""
        return 4

    def setup(self, stage: str | None = None) -> None:
        """Build the splits, then relabel every sample by its rotation (once)."""
        if self.train_dataset is not None:
            return
        super().setup(stage)
        for name in SPLITS:
            dataset = getattr(self, f"{name}_dataset")
            images, digits = dataset.tensors
            self.digit_labels[name] = digits
            turns = self.transform_elements[name].long()
            setattr(self, f"{name}_dataset", TensorDataset(images, turns))
