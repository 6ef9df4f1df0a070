"""Invariance under input drift: DI and the accuracy ratio as inputs are blended with drift."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytorch_lightning as pl
import torch
from torch import Tensor

from invreg.callbacks.base import (
    InvarianceCallback,
    Split,
    Subset,
    measured_group,
)
from invreg.data.drift import DriftSource, get_drift_source, match_statistics
from invreg.functional.drift import check_betas
from invreg.groups import Group
from invreg.metrics.drift import DriftMetrics
from invreg.plotting import (
    DEFAULT_DPI,
    check_dpi,
    check_figure_format,
    log_figure,
    log_line_series,
    log_table,
    model_title,
    new_figure,
    scale_for,
)

COLUMNS = ("beta", "DI", "LI", "accuracy", "accuracy_ratio", "consistency")


class DriftCallback(InvarianceCallback):
    """Does the learned invariance survive drift? (Moskalev et al. 2023, Fig. 4.)

    At the end of ``fit``, ``validate`` and ``test`` (and every ``every_n_epochs`` epochs if
    that is not ``0``), every sample ``x`` of a fixed subset is blended with a fixed drift sample
    ``d`` (:func:`invreg.functional.blend`), ``x_β = (1 − β)·x + β·d``, for each ``β`` in
    ``betas``, and on the full orbits of ``x_β`` (:class:`invreg.metrics.DriftMetrics`):

    * ``DI(β)`` — ``mean KL(softmax f(x_β) ‖ softmax f(g·x_β))`` (also ``LI(β)``);
    * ``accuracy_ratio(β) = Acc(β) / Acc(0)`` — accuracy on ``x_β`` relative to clean inputs
      (``Acc(0)`` is always measured);
    * ``consistency(β)`` — orbit consistency.

    A genuinely invariant model keeps ``DI ≈ 0`` for every ``β``; one that learned invariance
    only on the data distribution does not. The drift source is ``"natural_images"``
    (scikit-learn's bundled photographs), ``"mnist1d"``, ``"noise"`` or any
    :class:`~invreg.data.drift.DriftSource`; with ``match_stats`` the drift samples get the
    subset's scalar mean and std first.

    Logged at the step of the module's epoch-end metrics: scalars ``drift/<split>/DI/beta_0.50``
    and
    ``drift/<split>/accuracy_ratio/beta_0.50``; a table ``drift/<split>/table`` (columns
    ``beta, DI, LI, accuracy, accuracy_ratio, consistency``); a line plot
    ``drift/<split>/curve`` (``wandb.plot.line_series`` on W&B, else a matplotlib image).
    Local files (``save_local``): ``drift/<split>_step<step>.csv`` and the figure
    (``.png``, or ``figure_format``).

    Args:
        betas: blending weights in ``[0, 1]``.
        source: the drift source or its name.
        match_stats: match the drift's scalar mean/std to the subset's.
        group: the group (or its name); default: ``pl_module.group``.
        orbit_size: orbit elements for a continuous group (drawn once).
        chunk_size: samples (whole orbits) per forward pass.
        dpi, figure_format: resolution and file format (``"png"``, ``"pdf"``, ``"svg"``) of
            the local figure file; the loggers always get a PNG image.
        num_samples, every_n_epochs, split, seed, at_end, save_local: see
            :class:`~invreg.callbacks.base.InvarianceCallback` (``every_n_epochs=0``: only at
            the end).
    """

    prefix = "drift"

    def __init__(
        self,
        betas: Sequence[float] = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5),
        source: str | DriftSource = "natural_images",
        num_samples: int = 256,
        every_n_epochs: int = 0,
        split: Split = "auto",
        seed: int = 0,
        match_stats: bool = True,
        group: str | Group | None = None,
        orbit_size: int = 8,
        chunk_size: int | None = None,
        at_end: bool = True,
        save_local: bool = True,
        dpi: int = DEFAULT_DPI,
        figure_format: str = "png",
    ) -> None:
        super().__init__(num_samples, every_n_epochs, split, seed, at_end, save_local)
        self.dpi, self.figure_format = check_dpi(dpi), check_figure_format(figure_format)
        self.betas = list(check_betas(betas))
        self.source = get_drift_source(source)
        self.match_stats = bool(match_stats)
        self.group = None if group is None else measured_group(group, None, type(self).__name__)
        self.orbit_size, self.chunk_size = orbit_size, chunk_size
        self._drift: dict[str, Tensor] = {}

    def evaluate(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, subset: Subset, split: str
    ) -> dict[str, Any]:
        group = measured_group(self.group, pl_module, type(self).__name__)
        elements = group.fixed_elements(self.orbit_size, self.seed)
        drift = self._drift_samples(split)[subset.index.cpu()].to(subset.x.device)
        metrics = DriftMetrics(group, self.betas, targets=subset.y is not None,
                               chunk_size=self.chunk_size).to(pl_module.device)
        if len(subset):
            metrics.update_from_model(pl_module, subset.x, drift, subset.y, elements)
        # computed on every rank (torchmetrics adds all shards); unlabelled: accuracies NaN
        nan = float("nan")
        rows = [[row["beta"], row["DI"], row["LI"], row.get("accuracy", nan),
                 row.get("accuracy_ratio", nan), row["consistency"]] for row in metrics.rows()]
        self._log(trainer, split, rows)
        return {"table": rows}

    def _drift_samples(self, split: str) -> Tensor:
        """One fixed drift sample per subset sample (same on every rank), statistics matched."""
        if split not in self._drift:
            x = self._subsets[split][0]
            generator = torch.Generator().manual_seed(self.seed)
            drift = self.source.sample(x.shape[0], tuple(x.shape[1:]), generator).to(x.dtype)
            self._drift[split] = match_statistics(drift, x) if self.match_stats else drift
        return self._drift[split]

    def _log(self, trainer: pl.Trainer, split: str, rows: list[list[float]]) -> None:
        step = self.step(trainer)
        scalars = {}
        for beta, di, _, _, ratio, _ in rows:
            scalars[self.key(split, "DI", f"beta_{beta:.2f}")] = di
            scalars[self.key(split, "accuracy_ratio", f"beta_{beta:.2f}")] = ratio
        self.log_scalars(trainer, scalars)
        stem = f"{split}_step{step:06d}"
        log_table(trainer, self.key(split, "table"), COLUMNS, rows, step,
                  self.local_path(trainer, f"{stem}.csv"))
        betas = [r[0] for r in rows]
        series = {"DI": [r[1] for r in rows], "Acc(β)/Acc(0)": [r[4] for r in rows]}
        sent = log_line_series(trainer, self.key(split, "curve"), betas, series, step,
                               title=f"Drift ({self.source!r})", xname="beta")
        path = self.local_path(trainer, f"{stem}.{self.figure_format}")
        if trainer.is_global_zero:
            module = trainer.lightning_module
            group = measured_group(self.group, module, type(self).__name__)
            figure = drift_figure(betas, series["DI"], series["Acc(β)/Acc(0)"],
                                  f"Drift ({self.source!r}), {split}: {model_title(module, group)}")
            # W&B already has the interactive plot; the other loggers get the image
            log_figure(trainer, self.key(split, "curve"), figure, step, path, to_wandb=not sent,
                       dpi=self.dpi, figure_format=self.figure_format)


def drift_figure(
    betas: Sequence[float], di: Sequence[float], accuracy_ratio: Sequence[float], title: str
) -> Any:
    """DI (left axis; log or symlog when it spans decades, else linear from 0) and
    ``Acc(β)/Acc(0)`` (right axis, from 0) against ``β``; the legend below the axes."""
    figure = new_figure(5.5, 3.6)
    axis = figure.subplots()
    first = axis.plot(betas, di, "o-", color="C0", label="DI = mean KL(p(x) ‖ p(g·x))")
    axis.set_xlabel("β (weight of the drift sample)")
    axis.set_ylabel("DI", color="C0")
    scale_for(axis, di)
    twin = axis.twinx()
    second = twin.plot(betas, accuracy_ratio, "s--", color="C1", label="Acc(β) / Acc(0)")
    twin.set_ylabel("Acc(β) / Acc(0)", color="C1")
    finite = [v for v in accuracy_ratio if v == v]
    twin.set_ylim(0.0, max([1.0, *finite]) * 1.05)
    axis.set_xticks(list(betas), [f"{b:g}" for b in betas])
    axis.set_title(title, fontsize=9)
    figure.legend(handles=first + second, loc="outside lower center", ncols=2, fontsize=8,
                  frameon=False)
    return figure
