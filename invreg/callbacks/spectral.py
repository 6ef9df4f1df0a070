"""Spectral decay over training: σ_max of the input→logit Jacobian, and of the weight matrices."""

from __future__ import annotations

from typing import Any

import pytorch_lightning as pl
import torch
from torch import Tensor

from invreg.callbacks.base import InvarianceCallback, Split, Subset
from invreg.functional.spectral import (
    SPECTRAL_METHODS,
    jacobian_spectral_norm,
    weight_singular_values,
)
from invreg.plotting import (
    DEFAULT_DPI,
    check_dpi,
    check_figure_format,
    integer_ticks,
    log_figure,
    log_histogram,
    log_line_series,
    model_title,
    new_figure,
    scale_for,
    write_csv,
)

QUANTILES = {"p10": 0.1, "median": 0.5, "p90": 0.9}


class SpectralDecayCallback(InvarianceCallback):
    """Log the sensitivity of the model to *all* input perturbations as it trains.

    Per evaluation (formulas in :mod:`invreg.functional.spectral`):

    * ``spectral/<split>/jacobian_sigma_max`` — mean over the subset of ``σ_max(∂f(x)/∂x)``,
      by batched Lanczos (or power) iteration with ``torch.func`` jvp/vjp, never forming the
      Jacobian; also ``..._std``, ``..._p10``, ``..._median``, ``..._p90``, ``..._max``, and
      the whole distribution as a histogram (``spectral/<split>/jacobian_sigma_max_hist`` on
      W&B and TensorBoard);
    * ``spectral/first_layer_sigma_max`` — ``σ_max`` of the first weight matrix, on its own;
    * ``spectral/weights/<parameter>/sigma_<i>`` — the ``top_k`` largest singular values of
      every weight matrix (``i = 1`` is the largest);
    * on W&B, ``spectral/<split>/over_training``: a line plot of the mean ``σ_max(J)`` and the
      first layer's ``σ_max`` against the step, over the whole :attr:`history`.

    Local files (``save_local``, any logger): ``spectral/jacobian_sigma_max.csv`` (every sample's
    value at every evaluation) and, at the end of each run, ``spectral/spectral_decay_<split>.png``
    (both curves over training and the last distribution; ``.pdf``/``.svg`` with
    ``figure_format``).

    Args:
        iters: iteration steps; Lanczos is exact for ``iters ≥`` the number of logits.
        method: ``"auto"`` (exact Jacobian for ``C ≤ iters`` outputs, else Lanczos),
            ``"exact"``, ``"lanczos"`` or ``"power"``.
        top_k: singular values kept per weight matrix.
        chunk_size: samples per jvp/vjp pass (bounds memory); ``None`` all at once.
        dpi, figure_format: resolution and file format (``"png"``, ``"pdf"``, ``"svg"``) of
            the local figure file; the loggers always get a PNG image.
        num_samples, every_n_epochs, split, seed, at_end, save_local: see
            :class:`~invreg.callbacks.base.InvarianceCallback`.
    """

    prefix = "spectral"

    def __init__(
        self,
        num_samples: int = 128,
        every_n_epochs: int = 1,
        split: Split = "auto",
        seed: int = 0,
        iters: int = 20,
        method: str = "auto",
        top_k: int = 3,
        chunk_size: int | None = None,
        at_end: bool = True,
        save_local: bool = True,
        dpi: int = DEFAULT_DPI,
        figure_format: str = "png",
    ) -> None:
        super().__init__(num_samples, every_n_epochs, split, seed, at_end, save_local)
        self.dpi, self.figure_format = check_dpi(dpi), check_figure_format(figure_format)
        if method not in SPECTRAL_METHODS:
            raise ValueError(f"method must be one of {SPECTRAL_METHODS}, got {method!r}")
        if isinstance(iters, bool) or not isinstance(iters, int) or iters < 1:
            raise ValueError(f"iters must be a positive integer, got {iters!r}")
        if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1:
            raise ValueError(f"top_k must be a positive integer, got {top_k!r}")
        self.iters, self.method, self.top_k, self.chunk_size = iters, method, top_k, chunk_size
        self._last_distribution: Tensor | None = None

    def evaluate(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, subset: Subset, split: str
    ) -> dict[str, Any]:
        generator = torch.Generator().manual_seed(self.seed)
        sigma = jacobian_spectral_norm(
            pl_module, subset.x, self.iters, self.method,  # type: ignore[arg-type]
            chunk_size=self.chunk_size, generator=generator,
        ) if len(subset) else subset.x.new_zeros(0)
        sigma = sigma.to(torch.float64)
        sums = torch.stack([sigma.sum(), sigma.pow(2).sum(), sigma.new_tensor(len(subset))])
        total, squares, count = self.reduce_sum(trainer, sums).tolist()
        distribution = self.gather_per_sample(trainer, subset, sigma).cpu()
        mean = total / count
        record: dict[str, Any] = {
            "jacobian_sigma_max": mean,
            "jacobian_sigma_max_std": max(squares / count - mean**2, 0.0) ** 0.5,
            "jacobian_sigma_max_max": distribution.max().item(),
        }
        for name, q in QUANTILES.items():
            record[f"jacobian_sigma_max_{name}"] = distribution.quantile(q).item()
        weights = weight_singular_values(pl_module, self.top_k)
        if weights:
            record["first_layer_sigma_max"] = next(iter(weights.values()))[0].item()
        step = self.step(trainer)
        scalars = {self.key(split, k): v for k, v in record.items() if k.startswith("jacobian")}
        if "first_layer_sigma_max" in record:
            scalars[f"{self.prefix}/first_layer_sigma_max"] = record["first_layer_sigma_max"]
        for name, values in weights.items():
            for i, value in enumerate(values.tolist(), start=1):
                scalars[f"{self.prefix}/weights/{name}/sigma_{i}"] = value
        self.log_scalars(trainer, scalars)
        log_histogram(trainer, self.key(split, "jacobian_sigma_max_hist"), distribution, step)
        self._last_distribution = distribution
        curve = self._curve(split) + [record | {"step": step}]
        series = {"jacobian σ_max (mean)": [h["jacobian_sigma_max"] for h in curve]}
        if "first_layer_sigma_max" in record:
            series["first layer σ_max"] = [h.get("first_layer_sigma_max", float("nan"))
                                           for h in curve]
        log_line_series(trainer, self.key(split, "over_training"), [h["step"] for h in curve],
                        series, step, title="Spectral decay", xname="step")
        path = self.local_path(trainer, "jacobian_sigma_max.csv")
        if path is not None:
            rows = [(step, split, i, v) for i, v in enumerate(distribution.tolist())]
            write_csv(path, ("step", "split", "sample", "sigma_max"), rows, append=True)
        return record

    def finalize(self, trainer: pl.Trainer, pl_module: pl.LightningModule, split: str) -> None:
        path = self.local_path(trainer, f"spectral_decay_{split}.{self.figure_format}")
        curve = self._curve(split)
        if path is None or not curve:
            return
        figure = summary_figure(curve, self._last_distribution,
                                f"Spectral decay ({split}): {model_title(pl_module)}")
        log_figure(trainer, self.key(split, "summary"), figure, self.step(trainer), path,
                   dpi=self.dpi, figure_format=self.figure_format)

    def _curve(self, split: str) -> list[dict[str, Any]]:
        """This split's evaluations in step order, one per step (the latest)."""
        by_step = {h["step"]: h for h in self.history if h.get("split") == split}
        return [by_step[s] for s in sorted(by_step)]


def summary_figure(curve: list[dict[str, Any]], distribution: Tensor | None, title: str) -> Any:
    """Left: mean ``σ_max(J)`` over the steps of ``curve`` (its records: ``step``,
    ``jacobian_sigma_max`` and its ``_p10``/``_p90``, optionally ``first_layer_sigma_max``)
    with the 10–90 % band of the samples (error bars when there is a single step); right: the
    last per-sample distribution. Legend below the axes, integer step ticks, a log axis when
    the values span decades."""
    figure = new_figure(9.0, 3.9)
    left, right = figure.subplots(1, 2)
    steps = [h["step"] for h in curve]
    mean = [h["jacobian_sigma_max"] for h in curve]
    low = [h["jacobian_sigma_max_p10"] for h in curve]
    high = [h["jacobian_sigma_max_p90"] for h in curve]
    left.plot(steps, mean, "o-", label="input→logit Jacobian σ_max (mean over samples)")
    if len(steps) > 1:
        left.fill_between(steps, low, high, alpha=0.2, label="10–90 % of samples")
    else:
        left.errorbar(steps, mean, yerr=[[m - lo for m, lo in zip(mean, low, strict=True)],
                                         [hi - m for m, hi in zip(mean, high, strict=True)]],
                      fmt="none", capsize=5, color="C0", alpha=0.6, label="10–90 % of samples")
        left.set_xlim(steps[0] - 1, steps[0] + 1)
    values = mean + low + high
    if "first_layer_sigma_max" in curve[-1]:
        first = [h.get("first_layer_sigma_max", float("nan")) for h in curve]
        left.plot(steps, first, "s--", label="first weight matrix σ_max")
        values += first
    scale_for(left, values)
    if len(steps) <= 8:  # few evaluations: a tick at each
        left.set_xticks(steps)
    else:
        integer_ticks(left)
    left.set(xlabel="training step", ylabel="σ_max", title="over training")
    left.legend(loc="upper center", bbox_to_anchor=(0.5, -0.2), fontsize=8, frameon=False)
    if distribution is not None and distribution.numel():
        right.hist(distribution.numpy(), bins=min(30, max(5, distribution.numel() // 4)))
    right.set(xlabel="σ_max(J) per sample", ylabel="samples",
              title=f"distribution at step {curve[-1]['step']}")
    figure.suptitle(title, fontsize=10)
    return figure
