"""What every invreg callback shares: when it runs, on which samples, and how results travel.

**When.** During ``fit``: at the end of every ``every_n_epochs``-th training epoch (after that
epoch's validation) and once more at the end of training (``on_train_end``, while the model is
still on its device) unless that step was just evaluated; during ``validate`` and ``test``:
once, at the end. Never during the sanity check.

**On what.** A fixed, seeded subset of ``num_samples`` samples of one split, drawn once per
split from the data module's loader (``trainer.datamodule.<split>_dataloader()``, else the
trainer's loaders): ``split="auto"`` is the validation split during ``fit`` and ``validate``
and the test split during ``test``. Map-style datasets are sampled with
``torch.randperm(len(dataset), generator=seed)`` and collated with ``default_collate``;
iterable ones give their first ``num_samples`` samples. Batches are ``(x, y)``, ``[x, y, ...]``
or a bare ``x`` (no labels: accuracies are skipped).

**How.** The module is put in ``eval()`` mode, gradients are re-enabled
(``torch.inference_mode(False)`` + ``torch.enable_grad()``, inputs cloned) because ``validate``
and ``test`` run under inference mode, and the global RNG is left untouched (the callbacks draw
from their own seeded generators), so adding a callback does not change training. Under DDP
each rank evaluates its shard (``subset[rank::world_size]``) and the per-rank *sums and
counts* are kept in torchmetrics states (:class:`~invreg.metrics.OrbitMetrics`,
``dist_reduce_fx="sum"``) that add them across ranks; per-sample values are ``all_gather``-ed.

**State.** ``history`` (one dict of scalars per evaluation, with the evaluation's wall time
under ``"seconds"``) and the last evaluated step are saved in checkpoints
(``state_dict``/``load_state_dict``) so plots over training continue after a resume. All the
callback's time (evaluations and end-of-run figures) is accumulated in ``seconds``, the part
spent at the end of ``fit``/``validate``/``test`` in ``end_seconds``.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal

import pytorch_lightning as pl
import torch
from pytorch_lightning.trainer.states import TrainerFn
from pytorch_lightning.utilities.seed import isolate_rng
from torch import Tensor
from torch.utils.data import DataLoader, default_collate

from invreg.evaluation import eval_mode
from invreg.groups import Group, get_group
from invreg.plotting import run_directory

Split = Literal["auto", "train", "val", "test"]
SPLITS = ("auto", "train", "val", "test")


class Subset:
    """One rank's shard of the evaluation subset.

    ``x`` ``[n, ...]``, ``y`` ``[n]`` or ``None``; ``index`` ``[n]``: positions in the full
    subset of ``total`` samples (``rank, rank + world, ...``).
    """

    def __init__(self, x: Tensor, y: Tensor | None, index: Tensor, total: int) -> None:
        self.x, self.y, self.index, self.total = x, y, index, total

    def __len__(self) -> int:
        return self.x.shape[0]

    def first(self, count: int) -> Subset:
        """The part of this shard that belongs to the first ``count`` samples of the subset."""
        keep = self.index < count
        y = None if self.y is None else self.y[keep]
        return Subset(self.x[keep], y, self.index[keep], min(count, self.total))


class InvarianceCallback(pl.Callback):
    """Base class: scheduling, the fixed subset, gradient context, DDP reduction and state.

    Subclasses set :attr:`prefix` and implement :meth:`evaluate` (and optionally
    :meth:`finalize`, called once at the end of ``fit``/``validate``/``test`` on every rank).

    Args:
        num_samples: size of the evaluation subset (all ranks together).
        every_n_epochs: evaluate every this many training epochs; ``0`` only at the end.
        split: ``"auto"``, ``"train"``, ``"val"`` or ``"test"`` (see the module docstring).
        seed: seeds the subset (and any other random choice of the callback).
        at_end: also evaluate at the end of ``fit`` (if that step was not evaluated yet).
        save_local: write PNG/CSV files to the run directory (with any logger).
    """

    #: first part of every logged key
    prefix = "invreg"

    def __init__(
        self,
        num_samples: int = 256,
        every_n_epochs: int = 1,
        split: Split = "auto",
        seed: int = 0,
        at_end: bool = True,
        save_local: bool = True,
    ) -> None:
        super().__init__()
        self.num_samples = _check_int("num_samples", num_samples, 1)
        self.every_n_epochs = _check_int("every_n_epochs", every_n_epochs, 0)
        if split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
        self.split = split
        self.seed = _check_int("seed", seed, 0)
        self.at_end = bool(at_end)
        self.save_local = bool(save_local)
        self.history: list[dict[str, Any]] = []
        #: wall time spent by this callback in total, and in its end-of-run hooks
        self.seconds = 0.0
        self.end_seconds = 0.0
        self._last_evaluated: tuple[str, int] | None = None
        self._subsets: dict[str, tuple[Tensor, Tensor | None]] = {}
        self._run_dir: Path | None = None

    # ------------------------------------------------------------------ subclass API
    def evaluate(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, subset: Subset, split: str
    ) -> dict[str, Any]:
        """Evaluate on this rank's ``subset`` (a collective call on every rank) and log; return
        the scalars to keep in :attr:`history`."""
        raise NotImplementedError

    def finalize(self, trainer: pl.Trainer, pl_module: pl.LightningModule, split: str) -> None:
        """Called on every rank at the end of ``fit``, ``validate`` and ``test`` (e.g. for
        summary figures); the default does nothing."""

    # ------------------------------------------------------------------ hooks
    @property
    def state_key(self) -> str:
        return self._generate_state_key(split=self.split, num_samples=self.num_samples,
                                        seed=self.seed)

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        self._run_dir = run_directory(trainer)

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking or not self.every_n_epochs:
            return
        if (trainer.current_epoch + 1) % self.every_n_epochs == 0:
            self._invoke(trainer, pl_module, "fit")

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._at_end(trainer, pl_module, "fit", evaluate=self.at_end)

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.state.fn == TrainerFn.VALIDATING and not trainer.sanity_checking:
            self._at_end(trainer, pl_module, "validate")

    def on_test_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._at_end(trainer, pl_module, "test")

    def state_dict(self) -> dict[str, Any]:
        return {"history": list(self.history), "last_evaluated": self._last_evaluated}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.history = list(state_dict.get("history", []))
        last = state_dict.get("last_evaluated")
        self._last_evaluated = None if last is None else (str(last[0]), int(last[1]))

    # ------------------------------------------------------------------ helpers for subclasses
    @property
    def run_dir(self) -> Path | None:
        """Where local files go (``None`` before ``setup``)."""
        return self._run_dir

    def local_path(self, trainer: pl.Trainer, *parts: str) -> Path | None:
        """``run_dir/prefix/...`` on rank 0 when ``save_local``, else ``None``."""
        if not (self.save_local and trainer.is_global_zero and self._run_dir is not None):
            return None
        return self._run_dir.joinpath(self.prefix, *parts)

    def key(self, split: str, *parts: str) -> str:
        return "/".join((self.prefix, split, *parts))

    def resolve_split(self, stage: str) -> str:
        if self.split != "auto":
            return self.split
        return "test" if stage == "test" else "val"

    @staticmethod
    def reduce_sum(trainer: pl.Trainer, values: Tensor) -> Tensor:
        """``values`` summed over all ranks (one collective call)."""
        if trainer.world_size <= 1:
            return values
        return trainer.strategy.reduce(values, reduce_op="sum")

    @staticmethod
    def gather_per_sample(trainer: pl.Trainer, subset: Subset, values: Tensor) -> Tensor:
        """Per-sample ``values`` ``[n, ...]`` of every rank's shard, in subset order ``[total,
        ...]`` (a collective call)."""
        world = trainer.world_size
        if world <= 1:
            return values
        width = math.ceil(subset.total / world)
        padded = values.new_full((width, *values.shape[1:]), float("nan"))
        padded[: values.shape[0]] = values
        gathered = trainer.strategy.all_gather(padded)  # [world, width, ...]
        # shard r holds subset positions r, r + world, ...: interleave back
        ordered = gathered.transpose(0, 1).reshape(world * width, *values.shape[1:])
        return ordered[: subset.total]

    # ------------------------------------------------------------------ machinery
    def _invoke(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        split = self.resolve_split(stage)
        marker = (split, int(trainer.global_step))
        if stage == "fit" and self._last_evaluated == marker:
            return  # the end of fit right after an epoch-end evaluation
        start = time.perf_counter()
        with _evaluation_mode(pl_module):
            subset = self._subset(trainer, pl_module, split)
            record = self.evaluate(trainer, pl_module, subset, split)
        elapsed = time.perf_counter() - start
        self.seconds += elapsed
        self._last_evaluated = marker
        self.history.append(
            {"step": marker[1], "split": split, "stage": stage, **record, "seconds": elapsed}
        )

    def _at_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str,
                evaluate: bool = True) -> None:
        before = self.seconds
        if evaluate:
            self._invoke(trainer, pl_module, stage)
        self._finalize(trainer, pl_module, stage)
        self.end_seconds += self.seconds - before

    def _finalize(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        start = time.perf_counter()
        with _evaluation_mode(pl_module):
            self.finalize(trainer, pl_module, self.resolve_split(stage))
        self.seconds += time.perf_counter() - start

    def _subset(self, trainer: pl.Trainer, pl_module: pl.LightningModule, split: str) -> Subset:
        if split not in self._subsets:
            self._subsets[split] = self._draw_subset(trainer, split)
        x, y = self._subsets[split]
        rank, world = trainer.global_rank, trainer.world_size
        index = torch.arange(rank, x.shape[0], world)
        device = pl_module.device
        x_shard = x[index].to(device).clone()
        y_shard = None if y is None else y[index].to(device).clone()
        return Subset(x_shard, y_shard, index.to(device), x.shape[0])

    def _draw_subset(self, trainer: pl.Trainer, split: str) -> tuple[Tensor, Tensor | None]:
        loader = _find_loader(trainer, split)
        dataset = getattr(loader, "dataset", None)
        generator = torch.Generator().manual_seed(self.seed)
        if _is_map_style(dataset):
            order = torch.randperm(len(dataset), generator=generator)[: self.num_samples]
            batch = default_collate([dataset[int(i)] for i in order.sort().values])
        else:
            samples: list[Tensor] = []
            labels: list[Tensor] = []
            for batch in loader:
                x, y = _split_batch(batch)
                samples.append(x)
                if y is not None:
                    labels.append(y)
                if sum(s.shape[0] for s in samples) >= self.num_samples:
                    break
            if not samples:
                raise ValueError(f"{type(self).__name__}: the {split} loader yielded no samples")
            batch = (torch.cat(samples), torch.cat(labels) if labels else None)
        x, y = _split_batch(batch)
        x = x[: self.num_samples].detach().cpu().clone()
        y = None if y is None else y[: self.num_samples].detach().cpu().clone()
        return x, y


# --------------------------------------------------------------------------- functions
@contextmanager
def _evaluation_mode(module: torch.nn.Module) -> Iterator[None]:
    """:func:`~invreg.evaluation.eval_mode`, gradients on (also inside validate/test), global
    RNG isolated; all restored on exit."""
    with eval_mode(module), torch.inference_mode(False), torch.enable_grad(), isolate_rng():
        yield


def resolve_group(group: str | Group | None, pl_module: pl.LightningModule, owner: str) -> Group:
    """The group a callback measures: the run's group, ``pl_module.group``.

    This is the one way callbacks get the group. A module that trains for a group exposes it
    as a :class:`~invreg.groups.Group` attribute ``group``
    (:class:`~invreg.modules.InvarianceModule` does); a module without one (the
    HyperInvariances modules) gets ``ValueError`` naming the callback ``owner``. A callback's
    own ``group`` argument, if given, evaluates another group than the run's (e.g. ``so2`` on a
    model trained for ``c4``); leave it out to measure the run's group.
    """
    if group is not None:
        return get_group(group)
    found = getattr(pl_module, "group", None)
    if isinstance(found, Group):
        return found
    raise ValueError(
        f"{owner}: pass group= (a Group or a name such as 'c4'), or use a LightningModule with "
        f"a `group` attribute (e.g. InvarianceModule); {type(pl_module).__name__} has none"
    )


def fixed_elements(group: Group, orbit_size: int, seed: int) -> Tensor | None:
    """``None`` (the full orbit) for a finite group; for a continuous group, ``orbit_size``
    elements (identity first) drawn once from ``seed`` so every evaluation sees the same ones."""
    if group.is_finite:
        return None
    return group.elements(orbit_size, generator=torch.Generator().manual_seed(seed))


def _find_loader(trainer: pl.Trainer, split: str) -> Any:
    datamodule = trainer.datamodule
    method = getattr(datamodule, f"{split}_dataloader", None) if datamodule is not None else None
    if method is not None:
        try:
            return method()
        except Exception:  # not implemented by this data module: fall back to the trainer's
            pass
    attribute = "train_dataloader" if split == "train" else f"{split}_dataloaders"
    loader = getattr(trainer, attribute, None)
    if isinstance(loader, Sequence) and not isinstance(loader, DataLoader):
        loader = loader[0] if loader else None
    if loader is None:
        raise ValueError(
            f"no {split} data: give the trainer a data module with {split}_dataloader() or "
            f"{split} dataloaders, or choose another split="
        )
    return loader


def _is_map_style(dataset: Any) -> bool:
    return dataset is not None and hasattr(dataset, "__getitem__") and hasattr(dataset, "__len__")


def _split_batch(batch: Any) -> tuple[Tensor, Tensor | None]:
    if isinstance(batch, Tensor):
        return batch, None
    if isinstance(batch, (tuple, list)) and batch and isinstance(batch[0], Tensor):
        y = batch[1] if len(batch) > 1 and isinstance(batch[1], Tensor) else None
        return batch[0], y
    raise ValueError(
        f"invreg callbacks expect batches (x, y), [x, y, ...] or x; got {type(batch).__name__}"
    )


def _check_int(name: str, value: Any, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return value
