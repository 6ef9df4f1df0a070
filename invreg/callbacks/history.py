"""The run's metrics over training, on disk whatever the logger: ``metrics.csv`` and a figure.

:class:`MetricsHistory` keeps one row per training epoch (and one per ``validate``/``test``
run) of every scalar epoch metric the run has logged so far (Lightning's ``…_step`` values
left out) — the module's ``train/…``, ``val/…``,
``test/…`` keys and the callbacks' ``orbit/…``, ``spectral/…``, ``drift/…`` keys, read with
:func:`invreg.runs.final_metrics` — and writes them to ``<run directory>/metrics.csv`` after
each row. At the end of ``fit`` it draws ``metrics_over_training.<format>``: accuracy, DI, LI,
SI (:class:`~invreg.callbacks.OrbitConsistencyCallback`'s) and the module's invariance loss
against the epoch, one panel per quantity that was logged.

The ``invreg`` CLI adds it to every run, so a W&B or TensorBoard run (whose curves otherwise
live only in a binary file) and a run without a logger have their curves in plain text too. A
run whose CSV logger already writes ``metrics.csv`` into the run folder keeps that file (one
row per logging step); the figure is still drawn from this callback's rows. Rows are saved in
checkpoints, so a resumed run's file and figure start at epoch 0.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
from pytorch_lightning.loggers import CSVLogger

from invreg.plotting import (
    DEFAULT_DPI,
    check_dpi,
    check_figure_format,
    integer_ticks,
    log_figure,
    new_figure,
    write_csv,
)
from invreg.runs import final_metrics, run_directory

METRICS_FILENAME = "metrics.csv"
FIGURE_STEM = "metrics_over_training"

#: the figure's panels: title, then the metric names drawn in it (those that were logged)
PANELS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("accuracy", ("train/acc_epoch", "val/acc", "orbit/val/orbit_accuracy")),
    ("DI: mean KL(p(x) ‖ p(g·x))", ("orbit/val/DI", "orbit/train/DI")),
    ("LI: mean ½‖f(x) − f(g·x)‖²", ("orbit/val/LI", "orbit/train/LI")),
    ("SI: mean cos(m(x), g⁻¹·m(g·x))", ("orbit/val/SI", "orbit/train/SI")),
    ("the module's invariance loss", ("train/invariance_loss_epoch", "val/invariance_loss")),
)


class MetricsHistory(pl.Callback):
    """Write ``metrics.csv`` (one row per epoch) and ``metrics_over_training.png`` into the run
    folder (module docstring).

    Args:
        figure: draw the figure at the end of ``fit``.
        figure_format: ``"png"``, ``"pdf"`` or ``"svg"``.
        dpi: resolution of a PNG.
    """

    def __init__(self, figure: bool = True, figure_format: str = "png",
                 dpi: int = DEFAULT_DPI) -> None:
        super().__init__()
        if not isinstance(figure, bool):
            raise TypeError(f"figure: expected True or False, got {figure!r}")
        self.figure = figure
        self.figure_format = check_figure_format(figure_format)
        self.dpi = check_dpi(dpi)
        self.rows: list[dict[str, float]] = []

    # ------------------------------------------------------------------ rows
    def _record(self, trainer: pl.Trainer, stage: str) -> None:
        row: dict[str, Any] = {"stage": stage, "epoch": trainer.current_epoch,
                               "step": trainer.global_step}
        # epoch values only: a ``_step`` value is the epoch's last batch, noise in this table
        row.update({name: value for name, value in final_metrics(trainer).items()
                    if not name.endswith("_step")})
        self.rows.append(row)
        self._write(trainer)

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not trainer.sanity_checking:
            self._record(trainer, "fit")

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.state.fn == "validate" and not trainer.sanity_checking:
            self._record(trainer, "validate")

    def on_test_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._record(trainer, "test")

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.figure and trainer.is_global_zero:
            figure = history_figure(self.rows)
            if figure is not None:
                log_figure(trainer, FIGURE_STEM, figure, trainer.global_step,
                           path=run_directory(trainer) / f"{FIGURE_STEM}.png",
                           dpi=self.dpi, figure_format=self.figure_format)

    def _write(self, trainer: pl.Trainer) -> None:
        folder = run_directory(trainer)  # collective: every rank calls it
        if not trainer.is_global_zero or _csv_logger_writes(trainer, folder):
            return
        columns = ["stage", "epoch", "step"]
        columns += sorted({name for row in self.rows for name in row} - set(columns))
        write_csv(folder / METRICS_FILENAME, columns,
                  [[row.get(name, "") for name in columns] for row in self.rows])

    # ------------------------------------------------------------------ checkpoints
    def state_dict(self) -> dict[str, Any]:
        return {"rows": [dict(row) for row in self.rows]}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.rows = [dict(row) for row in state_dict.get("rows", [])]


def _csv_logger_writes(trainer: pl.Trainer, folder: Path) -> bool:
    """Whether one of the trainer's CSV loggers writes ``metrics.csv`` into ``folder``."""
    return any(isinstance(logger, CSVLogger) and Path(logger.log_dir).resolve() == folder.resolve()
               for logger in trainer.loggers)


def history_figure(rows: list[dict[str, Any]]) -> Any | None:
    """Accuracy, DI, LI and SI against the epoch from :class:`MetricsHistory`'s ``fit`` rows,
    one panel per quantity with at least one finite value; ``None`` when there is none."""
    rows = [row for row in rows if row.get("stage") == "fit"]
    panels = []
    for title, names in PANELS:
        lines = []
        for name in names:
            points = [(row["epoch"], row[name]) for row in rows
                      if isinstance(row.get(name), float) and math.isfinite(row[name])]
            if points:
                lines.append((name, points))
        if lines:
            panels.append((title, lines))
    if not panels:
        return None
    figure = new_figure(3.2 * len(panels), 2.8)
    axes = figure.subplots(1, len(panels), squeeze=False)[0]
    for axis, (title, lines) in zip(axes, panels, strict=True):
        for name, points in lines:
            epochs, values = zip(*points, strict=True)
            axis.plot(epochs, values, marker="o", markersize=3, label=name)
        axis.set_title(title, fontsize=9)
        axis.set_xlabel("epoch")
        integer_ticks(axis)
        axis.legend(fontsize=7)
    return figure
