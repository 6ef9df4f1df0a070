"""The shared base of invreg's data modules: classes, splits, padding, groups, standardisation.

Every data module runs the same pipeline, in this order:

1. **load** the source, drop ``remove_classes`` and relabel the remaining classes ``0..K-1``
   in increasing order (``classes[k]`` is the source label of class ``k``);
2. **split** into train / val / test with a generator seeded from ``seed``;
3. **resize** (module specific, e.g. ``DigitsDataModule(upscale=2)``), then **pad** every
   spatial axis with ``pad`` zeros on each side. Padding comes before any group action, so a
   rotation or shift moves the digit inside an empty frame instead of cutting it off;
4. **transform_group** ("Transforming-MNIST"): each sample of each split is replaced, once,
   by ``g·x`` for one element ``g`` drawn from a generator seeded from ``seed``; the same
   images come back every epoch and every reload. The group acts on the unstandardised
   images, whose background is 0, the value the group fills in;
5. **standardize**: one scalar mean and std over every value of the padded, transformed
   *train* split (``mean``, ``std``), applied to all three splits;
6. **augment_group** (training batches only): a fresh element per sample and epoch
   (:class:`~invreg.data.augment.GroupAugmentation`), pixels entering the frame set to the
   standardised background ``-mean/std``, so it is as if it ran before step 5.

The training order and the augmentation of epoch ``e`` are functions of ``(seed, e)``
(:mod:`invreg.data.epochs`): a run resumed from a checkpoint sees the batches the
uninterrupted run saw, with or without DataLoader workers.

Steps 4 and 6 can be combined (fixed transformed data, then augmentation on top).
Datasets hold the model-ready float32 tensors of steps 1–5; every loader yields ``(x, y)``
with ``x`` of shape ``[B, *input_shape]`` and ``y`` a ``LongTensor`` ``[B]``. Under DDP the
validation and test loaders hand each sample to exactly one process (no padding duplicates), so
evaluation counts every sample once (:func:`evaluation_sampler`).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence, Sized
from enum import IntEnum
from numbers import Integral

import numpy as np
import pytorch_lightning as pl
import torch
import torch.distributed as dist
import torch.nn.functional as F
from pytorch_lightning.overrides.distributed import UnrepeatedDistributedSampler
from torch import Tensor
from torch.utils.data import DataLoader, Sampler, TensorDataset

from invreg.config import try_config
from invreg.data.augment import GroupAugmentation, derive_seed, seeded_generator
from invreg.data.epochs import EpochDataset, ShuffledEpochs, collate
from invreg.groups import Group, group_argument

SPLITS = ("train", "val", "test")

#: a split size: a count ``>= 1`` (an int) or a fraction of the available samples in ``(0, 1)``
#: (a float). ``int`` comes first: the CLI / YAML parser (jsonargparse) tries a union's types in
#: order, so ``--data.val_size 270`` is the count 270, not the float 270.0, and ``0.2`` (not an
#: int) falls through to the fraction
SplitSize = int | float


class Stream(IntEnum):
    """Independent random streams of a data module, all derived from its ``seed``."""

    SPLIT = 0
    TRANSFORM = 1
    SHUFFLE = 2
    AUGMENT = 3
    SOURCE = 4
    LOADER = 5


def check_int(name: str, value: object, minimum: int) -> int:
    """``value`` as an int, or ``ValueError`` naming the argument."""
    if isinstance(value, bool) or not isinstance(value, Integral) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def check_split_size(name: str, size: object, allow_none: bool = False) -> SplitSize | None:
    """Validate a split size on its own: a fraction in ``(0, 1)`` or a count ``>= 1``."""
    if size is None and allow_none:
        return None
    if isinstance(size, float) and not isinstance(size, bool):
        if not 0.0 < size < 1.0:
            count = (f"; for a count of samples write an integer, e.g. {name}={int(size)}"
                     if size >= 1 and size.is_integer() else "")
            raise ValueError(f"{name} as a fraction must lie in (0, 1), got {size!r}{count}")
        return size
    hint = " or None" if allow_none else ""
    if isinstance(size, bool) or not isinstance(size, Integral) or size < 1:
        raise ValueError(f"{name} must be a fraction in (0, 1), a count >= 1{hint}; got {size!r}")
    return int(size)


def resolve_split_size(name: str, size: SplitSize, available: int) -> int:
    """The number of samples ``size`` stands for when ``available`` samples are left."""
    count = round(size * available) if isinstance(size, float) else int(size)
    if count < 1:
        raise ValueError(f"{name}={size!r} selects no sample out of {available}")
    if count > available:
        raise ValueError(f"{name}={size!r} asks for {count} samples but only {available} are left")
    return count


def evaluation_sampler(dataset: Sized) -> Sampler | None:
    """The sampler of a validation / test loader: ``None`` (in order) in one process; under
    ``torch.distributed`` with more than one process, each rank's strided share of the samples
    in order, every sample exactly once (``UnrepeatedDistributedSampler``: rank ``r`` of ``W``
    reads samples ``r, r + W, ...``, so shares differ by at most one).

    Lightning replaces a loader's sampler by a ``DistributedSampler`` that pads the split with
    repeated samples to a multiple of the world size (272 of a 271-sample split on two
    processes: one sample counted twice); it keeps a sampler that already is one, as this is.
    The metrics are sums and counts reduced across ranks, so the epoch values equal those of
    one process.
    """
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() < 2:
        return None
    return UnrepeatedDistributedSampler(
        dataset, num_replicas=dist.get_world_size(), rank=dist.get_rank(), shuffle=False
    )


class InvarianceDataModule(pl.LightningDataModule, ABC):
    """Common options and pipeline of invreg's data modules (see the module docstring).

    Subclasses set their own attributes, call ``super().__init__(...)``, and implement
    :meth:`_source_shape` and :meth:`_load_splits`.

    Args:
        batch_size: samples per batch, for every loader.
        num_workers: DataLoader worker processes.
        seed: seeds the split, the fixed transforms, the shuffling and the augmentation
            (independent streams). Same seed, same tensors and batches.
        transform_group: a group (or its name, e.g. ``"c4"``) applied once per sample to
            every split, fixed by ``seed``.
        augment_group: a group applied with a fresh element per sample to each training batch.
        standardize: subtract the train mean, divide by the train std (scalars).
        pad: zeros added on each side of every spatial axis.
        remove_classes: source labels to drop; the rest are relabelled ``0..K-1``.

    Attributes (after :meth:`setup`): ``train_dataset``, ``val_dataset``, ``test_dataset``
    (``TensorDataset``), ``mean`` and ``std`` (``0.0``/``1.0`` without standardisation),
    ``split_indices`` (per split, the indices of its samples in the module's source arrays)
    and ``transform_elements`` (per split, the ``transform_group`` elements applied).
    """

    #: labels of the source data set, before ``remove_classes``
    source_classes: tuple[int, ...] = tuple(range(10))

    def __init__(
        self,
        batch_size: int = 128,
        num_workers: int = 0,
        seed: int = 0,
        transform_group: str | Group | None = None,
        augment_group: str | Group | None = None,
        standardize: bool = True,
        pad: int = 0,
        remove_classes: Sequence[int] | None = None,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        for key, value in list(self.hparams.items()):
            if isinstance(value, Group):  # plain data: checkpoints load with weights_only=True
                self.hparams[key] = try_config(value) or repr(value)
        self.batch_size = check_int("batch_size", batch_size, 1)
        self.num_workers = check_int("num_workers", num_workers, 0)
        self.seed = check_int("seed", seed, 0)
        self.pad = check_int("pad", pad, 0)
        if not isinstance(standardize, bool):
            raise ValueError(f"standardize must be True or False, got {standardize!r}")
        self.standardize = standardize
        self.remove_classes = self._check_remove_classes(remove_classes)
        self.classes = [c for c in self.source_classes if c not in self.remove_classes]
        self.transform_group = group_argument("transform_group", transform_group)
        self.augment_group = group_argument("augment_group", augment_group)
        for name, group in (
            ("transform_group", self.transform_group),
            ("augment_group", self.augment_group),
        ):
            self._check_group(name, group)

        self.train_dataset: TensorDataset | None = None
        self.val_dataset: TensorDataset | None = None
        self.test_dataset: TensorDataset | None = None
        self.mean, self.std = 0.0, 1.0
        self.split_indices: dict[str, Tensor] = {}
        self.transform_elements: dict[str, Tensor] = {}
        self._train_sampler: ShuffledEpochs | None = None
        self._train_augmentation: GroupAugmentation | None = None
        self._epoch_to_load: int | None = None

    # ------------------------------------------------------------------ subclass hooks
    @abstractmethod
    def _source_shape(self) -> tuple[int, ...]:
        """Shape of one sample after resizing and before padding: ``(C, H, W)`` or ``(C, L)``."""

    @abstractmethod
    def _load_splits(self, generator: torch.Generator) -> dict[str, tuple[Tensor, Tensor, Tensor]]:
        """Per split name, ``(x, y, indices)``: float32 inputs ``[N, *_source_shape()]``,
        labels already relabelled by :meth:`_keep_classes`, and the samples' indices in the
        source arrays. Draw every random choice from ``generator``."""

    # ------------------------------------------------------------------ properties
    @property
    def num_classes(self) -> int:
        """Number of classes after ``remove_classes``."""
        return len(self.classes)

    @property
    def input_shape(self) -> tuple[int, ...]:
        """Shape of one model input: ``(C, H, W)`` or ``(C, L)``, padding included."""
        channels, *spatial = self._source_shape()
        return (channels, *(size + 2 * self.pad for size in spatial))

    @property
    def background(self) -> float:
        """The value of an empty (zero) pixel in the data the model sees (float32-exact)."""
        return self.normalize(torch.zeros(())).item()

    # ------------------------------------------------------------------ pipeline
    def setup(self, stage: str | None = None) -> None:
        """Build all three splits (once; later calls do nothing)."""
        if self.train_dataset is not None:
            return
        splits = self._load_splits(seeded_generator(self.seed, Stream.SPLIT))
        inputs: dict[str, Tensor] = {}
        for index, name in enumerate(SPLITS):
            x, y, source_index = splits[name]
            if x.shape[0] == 0:
                raise ValueError(
                    f"{type(self).__name__}: the {name} split is empty after "
                    f"remove_classes={list(self.remove_classes)}"
                )
            expected = self._source_shape()
            if tuple(x.shape[1:]) != expected:
                raise ValueError(
                    f"{type(self).__name__}: {name} split has samples of shape "
                    f"{tuple(x.shape[1:])}, expected {expected}"
                )
            x = self.pad_inputs(x.to(torch.float32))
            if self.transform_group is not None:
                generator = seeded_generator(self.seed, Stream.TRANSFORM, index)
                elements = self.transform_group.sample(x.shape[0], generator=generator)
                x = self.transform_group.act(x, elements)
                self.transform_elements[name] = elements
            inputs[name] = x
            self.split_indices[name] = source_index
        if self.standardize:
            train = inputs["train"].double()
            self.mean, self.std = train.mean().item(), train.std().item()
            if not self.std > 0:
                raise ValueError("standardize=True but the train split is constant (std = 0)")
        datasets = {
            name: TensorDataset(self.normalize(inputs[name]), splits[name][1].long())
            for name in SPLITS
        }
        self.val_dataset, self.test_dataset = datasets["val"], datasets["test"]
        num_train = len(datasets["train"])
        self._train_sampler = ShuffledEpochs(num_train, derive_seed(self.seed, Stream.SHUFFLE))
        if self._epoch_to_load is not None:
            self._train_sampler.set_epoch(self._epoch_to_load)
        if self.augment_group is not None:
            # elements depend on (seed, epoch, sample): distributed ranks, which load
            # different samples, draw independent elements without a per-rank stream
            self._train_augmentation = GroupAugmentation(
                self.augment_group, num_train, derive_seed(self.seed, Stream.AUGMENT),
                self.background,
            )
        self.train_dataset = datasets["train"]

    def pad_inputs(self, x: Tensor) -> Tensor:
        """Zero-pad every spatial axis of ``x`` (``[N, C, ...]``) by ``pad`` on each side."""
        if self.pad == 0:
            return x
        return F.pad(x, [self.pad] * (2 * (x.ndim - 2)))

    def normalize(self, x: Tensor) -> Tensor:
        """Standardise unstandardised inputs with the train statistics (identity if off)."""
        if not self.standardize:
            return x
        return x.sub(self.mean).div_(self.std)

    def _keep_classes(self, labels: np.ndarray | Tensor) -> tuple[Tensor, Tensor]:
        """Indices of the samples whose label is kept, and their labels relabelled 0..K-1."""
        labels = torch.from_numpy(np.array(labels, dtype=np.int64))
        lookup = torch.full((max(self.source_classes) + 1,), -1, dtype=torch.long)
        lookup[torch.tensor(self.classes)] = torch.arange(len(self.classes))
        unknown = (labels < 0) | (labels >= lookup.numel())
        if unknown.any():
            raise ValueError(
                f"{type(self).__name__}: labels must lie in {list(self.source_classes)}, "
                f"found {labels[unknown].unique().tolist()}"
            )
        kept = torch.nonzero(lookup[labels] >= 0).flatten()
        return kept, lookup[labels[kept]]

    def _random_splits(
        self,
        available: int,
        val_size: SplitSize,
        test_size: SplitSize,
        generator: torch.Generator,
    ) -> dict[str, Tensor]:
        """Split ``range(available)`` at random into test, val and train (the rest)."""
        n_val = resolve_split_size("val_size", val_size, available)
        n_test = resolve_split_size("test_size", test_size, available)
        if n_val + n_test >= available:
            raise ValueError(
                f"val_size={val_size!r} and test_size={test_size!r} take {n_val} + {n_test} of "
                f"the {available} samples, leaving none to train on"
            )
        order = torch.randperm(available, generator=generator)
        return {
            "test": order[:n_test],
            "val": order[n_test : n_test + n_val],
            "train": order[n_test + n_val :],
        }

    # ------------------------------------------------------------------ loaders
    def train_dataloader(self) -> DataLoader:
        """Shuffled training batches, augmented by ``augment_group`` if given.

        Each pass over the loader is the next epoch (Lightning sets the epoch explicitly
        through the sampler's ``set_epoch``); ``loader.dataset[i]`` is the untransformed
        sample ``i`` of :attr:`train_dataset`.
        """
        self.setup("fit")
        dataset = EpochDataset(self.train_dataset, self._train_augmentation)
        return self._loader(dataset, sampler=self._train_sampler)

    def val_dataloader(self) -> DataLoader:
        """Validation batches in a fixed order (``loader.dataset[i]``: sample ``i`` of
        :attr:`val_dataset`); under DDP each sample once (:func:`evaluation_sampler`)."""
        self.setup("validate")
        dataset = EpochDataset(self.val_dataset)
        return self._loader(dataset, sampler=evaluation_sampler(dataset))

    def test_dataloader(self) -> DataLoader:
        """Test batches in a fixed order (``loader.dataset[i]``: sample ``i`` of
        :attr:`test_dataset`); under DDP each sample once (:func:`evaluation_sampler`)."""
        self.setup("test")
        dataset = EpochDataset(self.test_dataset)
        return self._loader(dataset, sampler=evaluation_sampler(dataset))

    def _loader(self, dataset: EpochDataset, sampler: Sampler | None = None) -> DataLoader:
        # a batch is one indexing of the stored tensors, handed over as is (epochs.collate)
        return DataLoader(
            dataset,
            batch_size=self.batch_size,
            sampler=sampler,
            collate_fn=collate,
            num_workers=self.num_workers,
            # worker seeds come from this generator, not from the global RNG; nothing in the
            # pipeline reads them (every random choice is keyed by seed, epoch and sample)
            generator=seeded_generator(self.seed, Stream.LOADER),
            persistent_workers=self.num_workers > 0,
        )

    # ------------------------------------------------------------------ checkpoints
    def state_dict(self) -> dict[str, int]:
        """``{"train_epoch": e}``: the epoch the next pass over the training loader draws.

        Saved by Lightning in checkpoints. Lightning also sets the epoch itself on resume; this
        covers loops that do not (a sampler wrapped for distributed training, a manual loop).
        """
        if self._train_sampler is not None:
            return {"train_epoch": self._train_sampler.epoch}
        if self._epoch_to_load is not None:
            return {"train_epoch": self._epoch_to_load}
        return {}

    def load_state_dict(self, state_dict: dict[str, int]) -> None:
        """Restore :meth:`state_dict` (before or after :meth:`setup`)."""
        if "train_epoch" not in state_dict:
            return
        epoch = check_int("state_dict['train_epoch']", state_dict["train_epoch"], 0)
        self._epoch_to_load = epoch
        if self._train_sampler is not None:
            self._train_sampler.set_epoch(epoch)

    # ------------------------------------------------------------------ validation
    def _check_remove_classes(self, remove_classes: Sequence[int] | None) -> tuple[int, ...]:
        if remove_classes is None:
            return ()
        if isinstance(remove_classes, (str, bytes)) or not isinstance(remove_classes, Sequence):
            raise ValueError(f"remove_classes must be a list of labels, got {remove_classes!r}")
        removed = tuple(remove_classes)
        bad = [c for c in removed if isinstance(c, bool) or c not in self.source_classes]
        if bad:
            raise ValueError(
                f"remove_classes={list(removed)}: {bad} are not classes of "
                f"{type(self).__name__}, whose classes are {list(self.source_classes)}"
            )
        if len(set(removed)) != len(removed):
            raise ValueError(f"remove_classes={list(removed)} lists a class twice")
        if len(self.source_classes) - len(removed) < 2:
            raise ValueError(
                f"remove_classes={list(removed)} leaves fewer than 2 of the "
                f"{len(self.source_classes)} classes"
            )
        return tuple(int(c) for c in removed)

    def _check_group(self, name: str, group: Group | None) -> None:
        if group is None:
            return
        try:
            group.check_input(torch.zeros(1, *self.input_shape))
        except ValueError as err:
            raise ValueError(
                f"{name}={group!r} cannot act on this data module's inputs of shape "
                f"{self.input_shape}: {err}"
            ) from err
