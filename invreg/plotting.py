"""Send scalars, figures, histograms, line plots and tables to whatever loggers a run has.

* every logger (CSV, TensorBoard, W&B, ...): scalars via ``logger.log_metrics(..., step)``;
* W&B (``WandbLogger``): ``wandb.Image``, ``wandb.Histogram``, ``wandb.plot.line_series`` and
  ``wandb.Table``, logged with ``step=trainer.global_step`` as ``trainer/global_step``;
* TensorBoard: ``add_image`` (figures), ``add_histogram`` and ``add_text`` (tables);
* the run directory (:func:`invreg.runs.run_directory`: one folder per run, next to its
  ``checkpoints/`` and ``config.yaml``), with any logger or none: figures (PNG, PDF or SVG,
  :func:`save_figure`, tight bounding box) and CSV tables, so a run without W&B keeps the same
  information on disk.

``wandb`` is imported lazily, only when a ``WandbLogger`` is attached; without the package,
W&B media are skipped (once, with a warning) and the local files are still written.
matplotlib is used through its object API (``Figure`` + Agg canvas, never ``pyplot``), so no
figure stays registered anywhere after it is saved.
"""

from __future__ import annotations

import csv
import statistics
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
from pytorch_lightning.loggers import TensorBoardLogger, WandbLogger
from torch import Tensor

from invreg.runs import run_directory as run_directory  # re-exported for the callbacks

_WARNED: set[str] = set()


def import_wandb() -> Any | None:
    """The ``wandb`` module, or ``None`` (with a one-time warning) when it cannot be imported."""
    try:
        import wandb
    except ImportError:
        _warn_once("wandb", "wandb cannot be imported: W&B media are skipped, local files kept")
        return None
    return wandb


def wandb_loggers(trainer: pl.Trainer) -> list[WandbLogger]:
    return [logger for logger in trainer.loggers if isinstance(logger, WandbLogger)]


def tensorboard_writers(trainer: pl.Trainer) -> list[Any]:
    loggers = trainer.loggers
    return [logger.experiment for logger in loggers if isinstance(logger, TensorBoardLogger)]


# --------------------------------------------------------------------------- scalars
def log_scalars(trainer: pl.Trainer, metrics: Mapping[str, float], step: int) -> None:
    """Every logger's ``log_metrics(metrics, step)`` (loggers write on rank 0 only); the values
    also land in ``trainer.callback_metrics``, so ``ModelCheckpoint`` can monitor them."""
    clean = {k: float(v) for k, v in metrics.items()}
    for key, value in clean.items():
        trainer.callback_metrics[key] = torch.tensor(value)
    if not trainer.is_global_zero:
        return
    for logger in trainer.loggers:
        logger.log_metrics(clean, step=step)


# --------------------------------------------------------------------------- media
#: file formats of the local figure files (``figure_format=`` of the figure-producing callbacks,
#: ``--figure-format`` of ``invreg-experiment``); the loggers always get a PNG array
FIGURE_FORMATS = ("png", "pdf", "svg")
#: resolution of saved raster figures: 150 dpi makes a 6-inch figure 900 px wide
DEFAULT_DPI = 150


def check_figure_format(figure_format: str) -> str:
    """``figure_format`` if it is one of :data:`FIGURE_FORMATS`, else ``ValueError``."""
    if not isinstance(figure_format, str) or figure_format.lower() not in FIGURE_FORMATS:
        raise ValueError(
            f"figure_format must be one of {FIGURE_FORMATS}, got {figure_format!r}"
        )
    return figure_format.lower()


def check_dpi(dpi: int) -> int:
    """``dpi`` if it is an integer in ``[20, 1200]``, else ``ValueError``."""
    if isinstance(dpi, bool) or not isinstance(dpi, int) or not 20 <= dpi <= 1200:
        raise ValueError(f"dpi must be an integer in [20, 1200] (e.g. 150), got {dpi!r}")
    return dpi


def new_figure(width: float, height: float, layout: str | None = "constrained") -> Any:
    """A matplotlib ``Figure`` on an Agg canvas, outside pyplot (freed with its last reference)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), dpi=100, layout=layout)
    FigureCanvasAgg(figure)
    return figure


def figure_to_array(figure: Any) -> np.ndarray:
    """The rendered figure as an RGB ``uint8`` array ``[H, W, 3]``."""
    figure.canvas.draw()
    return np.asarray(figure.canvas.buffer_rgba())[..., :3].copy()


def save_figure(
    figure: Any, path: Path, dpi: int = DEFAULT_DPI, figure_format: str | None = None
) -> Path:
    """Save ``figure`` to ``path`` with a tight bounding box (no label is clipped).

    ``figure_format`` (one of :data:`FIGURE_FORMATS`) replaces ``path``'s suffix; ``None``
    keeps the suffix (which must then be one of them). ``dpi`` sets the pixel size of a PNG
    (a ``w × h`` inch figure is about ``w·dpi × h·dpi`` px) and of raster parts of a PDF/SVG.
    Returns the path written.
    """
    path = Path(path)
    figure_format = check_figure_format(figure_format or path.suffix.lstrip(".") or "png")
    path = path.with_suffix(f".{figure_format}")
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=check_dpi(dpi), format=figure_format, bbox_inches="tight",
                   pad_inches=0.05)
    return path


def model_title(module: Any, group: Any = None) -> str:
    """``"<backbone class>, <repr(group)>"`` for a figure title: the module's ``backbone``
    class (else the module's own class) and ``group`` (default ``module.group`` if any)."""
    backbone = getattr(module, "backbone", None)
    name = type(backbone if isinstance(backbone, torch.nn.Module) else module).__name__
    group = getattr(module, "group", None) if group is None else group
    return name if group is None else f"{name}, {group!r}"


def scale_for(axis: Any, values: Sequence[float], which: str = "y", decades: float = 2.0) -> str:
    """A log axis when the finite ``values`` span more than ``decades`` decades; symlog (linear
    within the smallest non-zero magnitude) when they also hold zeros or negatives; else a
    linear axis from 0 (for non-negative values). Returns the scale set."""
    array = np.asarray([v for v in values if v is not None], dtype=float)
    array = array[np.isfinite(array)]
    set_scale = axis.set_yscale if which == "y" else axis.set_xscale
    set_lim = axis.set_ylim if which == "y" else axis.set_xlim
    magnitude = np.abs(array[array != 0])
    spans = magnitude.size > 0 and magnitude.max() / magnitude.min() > 10**decades
    if spans and (array > 0).all():
        set_scale("log")
        return "log"
    if spans:
        threshold = 10 ** np.floor(np.log10(np.quantile(magnitude, 0.05)))
        set_scale("symlog", linthresh=float(threshold))
        return "symlog"
    if array.size and array.min() >= 0:
        set_lim(bottom=0) if which == "y" else set_lim(left=0)
    return "linear"


def integer_ticks(axis: Any, which: str = "x") -> None:
    """Ticks at integers only (steps, epochs, layer indices)."""
    from matplotlib.ticker import MaxNLocator

    target = axis.xaxis if which == "x" else axis.yaxis
    target.set_major_locator(MaxNLocator(integer=True))


def log_figure(
    trainer: pl.Trainer,
    key: str,
    figure: Any,
    step: int,
    path: Path | None = None,
    caption: str | None = None,
    to_wandb: bool = True,
    *,
    dpi: int = DEFAULT_DPI,
    figure_format: str | None = None,
) -> None:
    """A figure as ``wandb.Image`` (W&B, unless ``to_wandb=False``), ``add_image``
    (TensorBoard) and a file at ``path`` (:func:`save_figure`: ``figure_format`` replaces its
    suffix, ``dpi`` its resolution; the loggers always get the PNG array)."""
    if not trainer.is_global_zero:
        return
    if path is not None:
        save_figure(figure, path, dpi, figure_format)
    targets_wandb = wandb_loggers(trainer) if to_wandb else []
    writers = tensorboard_writers(trainer)
    if not (targets_wandb or writers):
        return
    image = figure_to_array(figure)
    for writer in writers:
        writer.add_image(key, image, global_step=step, dataformats="HWC")
    wandb = import_wandb() if targets_wandb else None
    for logger in targets_wandb if wandb is not None else []:
        logger.log_metrics({key: wandb.Image(image, caption=caption)}, step=step)


def log_histogram(trainer: pl.Trainer, key: str, values: Tensor, step: int) -> None:
    """A distribution as ``wandb.Histogram`` (W&B) and ``add_histogram`` (TensorBoard)."""
    if not trainer.is_global_zero or values.numel() == 0:
        return
    array = values.detach().double().cpu().numpy()
    for writer in tensorboard_writers(trainer):
        writer.add_histogram(key, array, global_step=step)
    targets = wandb_loggers(trainer)
    wandb = import_wandb() if targets else None
    for logger in targets if wandb is not None else []:
        logger.log_metrics({key: wandb.Histogram(array)}, step=step)


def log_line_series(
    trainer: pl.Trainer,
    key: str,
    xs: Sequence[float],
    series: Mapping[str, Sequence[float]],
    step: int,
    title: str,
    xname: str,
) -> bool:
    """A line plot as ``wandb.plot.line_series``; ``True`` if some W&B logger received it."""
    targets = wandb_loggers(trainer) if trainer.is_global_zero else []
    wandb = import_wandb() if targets else None
    if wandb is None:
        return False
    plot = wandb.plot.line_series(
        xs=list(xs), ys=[list(v) for v in series.values()], keys=list(series), title=title,
        xname=xname,
    )
    for logger in targets:
        logger.log_metrics({key: plot}, step=step)
    return True


def log_table(
    trainer: pl.Trainer,
    key: str,
    columns: Sequence[str],
    rows: Sequence[Sequence[Any]],
    step: int,
    path: Path | None = None,
) -> None:
    """A table as ``wandb.Table`` (W&B), markdown text (TensorBoard) and a CSV at ``path``."""
    if not trainer.is_global_zero:
        return
    if path is not None:
        write_csv(path, columns, rows)
    for writer in tensorboard_writers(trainer):
        lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
        lines += ["| " + " | ".join(_format(v) for v in row) + " |" for row in rows]
        writer.add_text(key, "\n".join(lines), global_step=step)
    targets = wandb_loggers(trainer)
    wandb = import_wandb() if targets else None
    for logger in targets if wandb is not None else []:
        logger.log_metrics(
            {key: wandb.Table(columns=list(columns), data=[list(r) for r in rows])}, step=step
        )


def write_csv(path: Path, columns: Sequence[str], rows: Sequence[Sequence[Any]],
              append: bool = False) -> None:
    """Write (or append) ``rows`` under a header of ``columns`` to ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    new = not (append and path.exists())
    with path.open("w" if new else "a", newline="") as handle:
        writer = csv.writer(handle)
        if new:
            writer.writerow(columns)
        writer.writerows(rows)


# --------------------------------------------------------------------------- experiment figures
def hyper_figures(
    per_seed: Sequence[Mapping[str, Any]],
    summary: Sequence[Mapping[str, Any]],
    tasks: Sequence[str],
    methods: Sequence[str],
    components: Sequence[str],
) -> dict[str, Any]:
    """The figures of ``invreg-experiment hyper``, one panel per task of ``tasks`` that has
    rows in ``per_seed``.

    * ``descriptor_trajectories``: each seed's fitted descriptor (``trajectory``, one value
      per component of ``components`` and step) of the ``fitted d`` rows;
    * ``accuracy``: test accuracy (``acc``) per method of ``methods`` (the ``summary`` mean,
      ± ``acc_std``), with one dot per seed;
    * ``fixed_descriptors``: :func:`fixed_descriptor_figure`.
    """
    tasks = [t for t in tasks if any(r["task"] == t for r in per_seed)]
    colours = dict(zip(components, ("C0", "C3", "C2"), strict=True))
    trajectories = new_figure(4 * len(tasks), 3.2, layout=None)
    axes = trajectories.subplots(1, len(tasks), squeeze=False, sharey=True)
    for ax, task in zip(axes[0], tasks, strict=True):
        for row in per_seed:
            if row["task"] != task or row["method"] != "fitted d":
                continue
            style = ("-", "--", ":", "-.")[row["seed"] % 4]
            for k, name in enumerate(components):
                ax.plot([values[k] for values in row["trajectory"]], color=colours[name],
                        ls=style, alpha=0.8, lw=1.2, label=name if row["seed"] == 0 else None)
        ax.set_title(task)
        ax.set_xlabel("step (seeds 0, 1, 2: solid, dashed, dotted)")
        ax.set_ylim(-0.03, 1.03)
    axes[0][0].set_ylabel("descriptor strength")
    axes[0][0].legend(fontsize=8)
    trajectories.tight_layout()

    shown_methods = [m for m in methods if any(r["method"] == m for r in summary)]
    bars = new_figure(4 * len(tasks), 3.6, layout=None)
    axes = bars.subplots(1, len(tasks), squeeze=False)
    for ax, task in zip(axes[0], tasks, strict=True):
        rows = {r["method"]: r for r in summary if r["task"] == task}
        shown = [m for m in shown_methods if m in rows]
        means = [rows[m]["acc"] for m in shown]
        stds = [rows[m].get("acc_std", 0.0) for m in shown]
        ax.bar(range(len(shown)), means, yerr=stds, capsize=3,
               color=["C1" if m == "fitted d" else "C7" for m in shown])
        for i, method in enumerate(shown):
            if method == "best fixed d":
                continue
            seeds = [r["acc"] for r in per_seed if r["task"] == task and r["method"] == method]
            ax.scatter([i] * len(seeds), seeds, s=8, color="k", zorder=3)
        ax.set_xticks(range(len(shown)), shown, rotation=60, ha="right", fontsize=8)
        ax.set_title(task)
        ax.set_ylim(min(means) - 15 if means else 0, 100)
    axes[0][0].set_ylabel("test accuracy % (mean ± std, dots: seeds)")
    bars.tight_layout()
    return {"descriptor_trajectories": trajectories, "accuracy": bars,
            "fixed_descriptors": fixed_descriptor_figure(per_seed, tasks, components)}


def fixed_descriptor_figure(
    per_seed: Sequence[Mapping[str, Any]], tasks: Sequence[str], components: Sequence[str]
) -> Any:
    """Per task and component: accuracy of the ``fixed d`` rows against that component's
    strength (``d_<component>``; mean over the other components' grid values and seeds, band:
    ± std over seeds of those means), with the ``fitted d`` mean accuracy as a dashed line."""
    figure = new_figure(4 * len(tasks), 3.2, layout=None)
    axes = figure.subplots(1, len(tasks), squeeze=False)
    colours = dict(zip(components, ("C0", "C3", "C2"), strict=True))
    for ax, task in zip(axes[0], tasks, strict=True):
        fixed = [r for r in per_seed if r["task"] == task and r["method"] == "fixed d"]
        seeds = sorted({r["seed"] for r in fixed})
        for name in components:
            strengths = sorted({r[f"d_{name}"] for r in fixed})
            per_seed_means = [[statistics.fmean(r["acc"] for r in fixed if r["seed"] == seed
                                                and r[f"d_{name}"] == v) for seed in seeds]
                              for v in strengths]
            means = [statistics.fmean(m) for m in per_seed_means]
            stds = [statistics.stdev(m) if len(m) > 1 else 0.0 for m in per_seed_means]
            ax.plot(strengths, means, "o-", color=colours[name], label=name)
            ax.fill_between(strengths, [m - s for m, s in zip(means, stds, strict=True)],
                            [m + s for m, s in zip(means, stds, strict=True)],
                            color=colours[name], alpha=0.15)
        fitted = [r["acc"] for r in per_seed if r["task"] == task and r["method"] == "fitted d"]
        if fitted:
            ax.axhline(statistics.fmean(fitted), color="C1", ls="--", label="fitted d")
        ax.set_title(task)
        ax.set_xlabel("fixed strength of the component")
    axes[0][0].set_ylabel("test accuracy %")
    axes[0][0].legend(fontsize=8)
    figure.tight_layout()
    return figure


def _format(value: Any) -> str:
    return f"{value:.6g}" if isinstance(value, float) else str(value)


def _warn_once(tag: str, message: str) -> None:
    if tag not in _WARNED:
        _WARNED.add(tag)
        warnings.warn(message, UserWarning, stacklevel=3)
