"""What every invreg callback shares: when it runs, on which samples, and how results travel.

**When.** During ``fit``: at the end of the validation that closes every
``every_n_epochs``-th training epoch (at the end of the epoch itself when it has no
validation), and at the end of the last epoch (``at_end``; when training stops early, in
``on_train_end``, unless that step was just evaluated); during ``validate`` and ``test``: once,
at the end of the epoch. Never during the sanity check.

**Where the numbers go.** Every value is logged at the step of the module's own epoch-end
metrics (:func:`logging_step`). The headline scalars (``orbit/val/DI``, ``spectral/val/...``)
go through ``LightningModule.log`` whenever Lightning allows it (the ``*_epoch_end`` hooks
above), so they are logged in the same call as the module's metrics: ``orbit/val/DI`` shares
its row of ``metrics.csv`` with ``val/acc``, ``ModelCheckpoint``/``EarlyStopping`` can monitor
them in the same epoch, and ``invreg validate``/``test`` print them in Lightning's results
table. Per-β and per-layer values, media, and an evaluation in ``on_train_end`` go to the
loggers directly.

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
``dist_reduce_fx="sum"``) that add them across ranks; per-sample values in ``"cat"`` states
(:class:`PerSampleValues`) that gather them.

**State.** ``history`` (one dict of scalars per evaluation, with the evaluation's wall time
under ``"seconds"``) and the last evaluated step are saved in checkpoints
(``state_dict``/``load_state_dict``) so plots over training continue after a resume. All the
callback's time (evaluations and end-of-run figures) is accumulated in ``seconds``, the part
spent at the end of ``fit``/``validate``/``test`` in ``end_seconds``.
"""

from __future__ import annotations

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
from torchmetrics import Metric
from torchmetrics.utilities import dim_zero_cat

from invreg.evaluation import eval_mode
from invreg.groups import Group, get_group
from invreg.plotting import log_scalars, run_directory
from invreg.runs import headline_metrics

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


class PerSampleValues(Metric):
    """Per-sample values of every rank's shard, in the order of the subset.

    ``update(values, positions)``: values ``[n, ...]`` and their positions ``[n]`` in the
    subset. ``compute()``: every rank's values ``[total, ...]`` sorted by position (a single
    value squeezed to ``[]``, as torchmetrics returns one). Both are
    ``"cat"`` states: under DDP torchmetrics gathers the shards, of unequal sizes too, and
    concatenates them rank by rank; the positions put them back in subset order. The values
    are only moved, never computed on: dtype and bits are kept.

    >>> gathered = PerSampleValues()
    >>> gathered.update(torch.tensor([0.5, 2.5]), torch.tensor([1, 0]))
    >>> gathered.compute()
    tensor([2.5000, 0.5000])
    """

    full_state_update = False

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.add_state("values", default=[], dist_reduce_fx="cat")
        self.add_state("positions", default=[], dist_reduce_fx="cat")

    def update(self, values: Tensor, positions: Tensor) -> None:
        self.values.append(values)  # type: ignore[union-attr]
        self.positions.append(positions)  # type: ignore[union-attr]

    def compute(self) -> Tensor:
        positions = dim_zero_cat(self.positions)  # type: ignore[arg-type]
        return dim_zero_cat(self.values)[positions.argsort()]  # type: ignore[arg-type]


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
        self._through_lightning = False

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

    def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        if trainer.state.fn == TrainerFn.FITTING:
            if _closes_epoch(trainer) and self._scheduled(trainer):
                self._invoke(trainer, pl_module, "fit", through_lightning=True,
                             at_end=self._only_at_end(trainer))
        elif trainer.state.fn == TrainerFn.VALIDATING:
            self._invoke(trainer, pl_module, "validate", through_lightning=True, at_end=True)

    def on_test_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._invoke(trainer, pl_module, "test", through_lightning=True, at_end=True)

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # an epoch without validation (no val loader, check_val_every_n_epoch > 1, ...)
        if not trainer.sanity_checking and self._scheduled(trainer):
            self._invoke(trainer, pl_module, "fit", through_lightning=True,
                         at_end=self._only_at_end(trainer))

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # training stopped before its last epoch (early stopping, max_steps, max_time)
        if self.at_end:
            self._invoke(trainer, pl_module, "fit", through_lightning=False, at_end=True)
        self._finalize(trainer, pl_module, "fit")

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.state.fn == TrainerFn.VALIDATING and not trainer.sanity_checking:
            self._finalize(trainer, pl_module, "validate")

    def on_test_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._finalize(trainer, pl_module, "test")

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

    def step(self, trainer: pl.Trainer) -> int:
        """The step this evaluation is logged at (:func:`logging_step`): the step of the
        module's own epoch-end metrics, so files and plots name the same step as the loggers."""
        return logging_step(trainer)

    def log_scalars(self, trainer: pl.Trainer, metrics: dict[str, float]) -> None:
        """Log scalar results at :meth:`step`.

        Inside an ``*_epoch_end`` hook the headline values (names of at most three parts, such
        as ``orbit/val/DI``) go through ``pl_module.log``: one row with the module's epoch-end
        metrics, visible to ``ModelCheckpoint`` and printed in Lightning's results table. The
        detail (per-β, per-layer values such as ``drift/val/DI/beta_0.50``) and every value
        outside those hooks go to the loggers directly (:func:`~invreg.plotting.log_scalars`).
        """
        headline = headline_metrics(metrics) if self._through_lightning else {}
        detail = {key: value for key, value in metrics.items() if key not in headline}
        if detail:
            log_scalars(trainer, detail, self.step(trainer))
        module = trainer.lightning_module
        for key, value in headline.items():
            # identical on every rank (reduced by the metric states): no second reduction
            module.log(key, float(value), on_step=False, on_epoch=True, batch_size=1,
                       add_dataloader_idx=False, sync_dist=False)

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
        ...]`` (a collective call: :class:`PerSampleValues`, synchronised over the default
        ``torch.distributed`` group that the trainer's DDP strategy sets up)."""
        gathered = PerSampleValues().to(values.device)
        gathered.update(values, subset.index.to(values.device))
        # compute() squeezes a one-element result: keep [total, ...]
        return gathered.compute().reshape(subset.total, *values.shape[1:])

    # ------------------------------------------------------------------ machinery
    def _scheduled(self, trainer: pl.Trainer) -> bool:
        """Whether the epoch that just ended is evaluated (``every_n_epochs`` or the last one)."""
        return not self._only_at_end(trainer) or (self.at_end and _last_epoch(trainer))

    def _only_at_end(self, trainer: pl.Trainer) -> bool:
        """Whether ``every_n_epochs`` leaves out the epoch that just ended (evaluating it anyway,
        as the last one, counts as end-of-run time, :attr:`end_seconds`)."""
        epoch = trainer.current_epoch + 1
        return not (self.every_n_epochs and epoch % self.every_n_epochs == 0)

    def _invoke(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str,
                through_lightning: bool, at_end: bool) -> None:
        split = self.resolve_split(stage)
        marker = (split, self.step(trainer))
        if stage == "fit" and self._last_evaluated == marker:
            return  # evaluated at this epoch's validation, or the end of fit right after it
        start = time.perf_counter()
        self._through_lightning = through_lightning
        try:
            with _evaluation_mode(pl_module):
                subset = self._subset(trainer, pl_module, split)
                record = self.evaluate(trainer, pl_module, subset, split)
        finally:
            self._through_lightning = False
        elapsed = time.perf_counter() - start
        self.seconds += elapsed
        if at_end:
            self.end_seconds += elapsed
        self._last_evaluated = marker
        self.history.append(
            {"step": marker[1], "split": split, "stage": stage, **record, "seconds": elapsed}
        )

    def _finalize(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        start = time.perf_counter()
        with _evaluation_mode(pl_module):
            self.finalize(trainer, pl_module, self.resolve_split(stage))
        elapsed = time.perf_counter() - start
        self.seconds += elapsed
        self.end_seconds += elapsed

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
def logging_step(trainer: pl.Trainer) -> int:
    """The step Lightning logs epoch-end metrics at (``val/acc``, ``train/loss_epoch``, ...).

    Lightning counts the batches that stepped and logs an epoch's end (its validation
    included) at the index of its last batch: the count minus one once the epoch's batches are
    done, the count itself while validation runs inside the epoch and in ``validate``/``test``
    (0 for a trainer that has not trained).
    """
    stepped = int(getattr(trainer.fit_loop.epoch_loop, "_batches_that_stepped",
                          trainer.global_step))
    if trainer.state.fn == TrainerFn.FITTING and not trainer.validating:
        return max(stepped - 1, 0)
    return stepped


def _closes_epoch(trainer: pl.Trainer) -> bool:
    """Whether the validation running now is the one at the end of the training epoch (not one
    of ``val_check_interval``'s mid-epoch validations)."""
    return bool(getattr(trainer.fit_loop.epoch_loop.batch_progress, "is_last_batch", True))


def _last_epoch(trainer: pl.Trainer) -> bool:
    """Whether the epoch that just ended is the last one ``max_epochs`` allows."""
    return trainer.max_epochs is not None and 0 < trainer.max_epochs <= trainer.current_epoch + 1


@contextmanager
def _evaluation_mode(module: torch.nn.Module) -> Iterator[None]:
    """:func:`~invreg.evaluation.eval_mode`, gradients on (also inside validate/test), global
    RNG isolated; all restored on exit."""
    with eval_mode(module), torch.inference_mode(False), torch.enable_grad(), isolate_rng():
        yield


def measured_group(group: str | Group | None, pl_module: pl.LightningModule, owner: str) -> Group:
    """The group a callback measures: its own ``group`` if given, else the run's group,
    ``pl_module.group``.

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
