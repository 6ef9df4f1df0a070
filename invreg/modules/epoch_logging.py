"""How invreg's LightningModules log their losses and accuracy, at the cost of one metric update
per batch.

``self.log`` of a torchmetrics object walks the metric's attributes on every call (about a
millisecond each on a CPU), so logging four of them every training step cost more than the
data pipeline. :class:`EpochMeansLogging` keeps each stage's numbers in one
:class:`~invreg.metrics.BatchMeans` (one vector of batch-size weighted sums and a count,
reduced across processes under DDP), logs the epoch means as tensors from the epoch-end hooks,
and the training batch's own values only on the steps the loggers write
(``log_every_n_steps``) — ``loss`` and ``acc`` on every step while a progress bar shows them.

Keys: ``train/<name>_step``, ``train/<name>_epoch``, ``val/<name>``, ``test/<name>``.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from invreg.metrics.base import BatchMeans

STAGES = ("train", "val", "test")


class EpochMeansLogging:
    """Mixin for a LightningModule (before ``pl.LightningModule`` in the bases).

    Call :meth:`_build_epoch_means` in ``__init__`` and :meth:`_record_batch` once per batch;
    override :meth:`_epoch_extras` for values a stage computes elsewhere. A subclass that
    overrides ``on_{train,validation,test}_epoch_{start,end}`` calls ``super()`` there.
    """

    #: names shown in the progress bar (``loss`` not for test)
    progress_bar_names = ("loss", "acc")

    def _build_epoch_means(self, names: dict[str, tuple[str, ...]]) -> None:
        """One :class:`~invreg.metrics.BatchMeans` per stage, over ``names[stage]``."""
        self.epoch_means = nn.ModuleDict(
            {f"{stage}_": BatchMeans(names[stage]) for stage in STAGES}
        )

    def _record_batch(self, stage: str, values: dict[str, Tensor], batch_size: int) -> None:
        """Add one batch's ``values`` (scalars, in the order of the stage's names) to the epoch
        means, and log them as step values on a training step the loggers write."""
        stacked = torch.stack([value.detach().float().reshape(()) for value in values.values()])
        self.epoch_means[f"{stage}_"].update(stacked, batch_size)
        if stage == "train":
            self._log_step_values(values, batch_size)

    def _epoch_extras(self, stage: str) -> dict[str, Tensor]:
        """Epoch values of ``stage`` computed elsewhere (default: none)."""
        return {}

    def _log_epoch_values(self, stage: str) -> None:
        """Log the epoch's means (reduced across processes: every rank logs the same value) and
        :meth:`_epoch_extras`, then reset."""
        means = self.epoch_means[f"{stage}_"]
        if not means.update_called:
            return
        values = {**means.compute(), **self._epoch_extras(stage)}
        means.reset()
        for name, value in values.items():
            key = f"train/{name}_epoch" if stage == "train" else f"{stage}/{name}"
            shown = name in self.progress_bar_names and not (name == "loss" and stage == "test")
            # equal on every rank already: "max" keeps it exact where Lightning syncs it
            self.log(key, value, on_step=False, on_epoch=True, prog_bar=shown,
                     sync_dist=True, reduce_fx="max")

    def _log_step_values(self, values: dict[str, Tensor], batch_size: int) -> None:
        """``train/<name>_step`` on the steps the loggers write; the progress bar's names on
        every step while a progress bar shows them."""
        trainer = self._trainer
        every = trainer.log_every_n_steps if trainer is not None else 1
        written = every > 0 and (self.global_step + 1) % every == 0
        shown = trainer is not None and trainer.progress_bar_callback is not None
        if not (written or shown):
            return
        for name, value in values.items():
            bar = name in self.progress_bar_names
            if written or bar:
                self.log(f"train/{name}_step", value.detach(), on_step=True, on_epoch=False,
                         prog_bar=bar, batch_size=batch_size)

    # ------------------------------------------------------------------ Lightning hooks
    def on_train_epoch_start(self) -> None:
        self.epoch_means["train_"].reset()
        super().on_train_epoch_start()  # type: ignore[misc]

    def on_train_epoch_end(self) -> None:
        self._log_epoch_values("train")
        super().on_train_epoch_end()  # type: ignore[misc]

    def on_validation_epoch_start(self) -> None:
        self.epoch_means["val_"].reset()
        super().on_validation_epoch_start()  # type: ignore[misc]

    def on_validation_epoch_end(self) -> None:
        self._log_epoch_values("val")
        super().on_validation_epoch_end()  # type: ignore[misc]

    def on_test_epoch_start(self) -> None:
        self.epoch_means["test_"].reset()
        super().on_test_epoch_start()  # type: ignore[misc]

    def on_test_epoch_end(self) -> None:
        self._log_epoch_values("test")
        super().on_test_epoch_end()  # type: ignore[misc]
