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
    log_figure,
    log_histogram,
    log_line_series,
    new_figure,
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
    (both curves over training and the last distribution).

    Args:
        iters: iteration steps; Lanczos is exact for ``iters ≥`` the number of logits.
        method: ``"lanczos"`` or ``"power"``.
        top_k: singular values kept per weight matrix.
        chunk_size: samples per jvp/vjp pass (bounds memory); ``None`` all at once.
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
        method: str = "lanczos",
        top_k: int = 3,
        chunk_size: int | None = None,
        at_end: bool = True,
        save_local: bool = True,
    ) -> None:
        super().__init__(num_samples, every_n_epochs, split, seed, at_end, save_local)
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
        path = self.local_path(trainer, f"spectral_decay_{split}.png")
        curve = self._curve(split)
        if path is None or not curve:
            return
        figure = new_figure(8.0, 3.2, layout=None)  # fixed margins: half the rendering time
        figure.subplots_adjust(left=0.08, right=0.98, bottom=0.15, top=0.9, wspace=0.22)
        left, right = figure.subplots(1, 2)
        steps = [h["step"] for h in curve]
        left.plot(steps, [h["jacobian_sigma_max"] for h in curve], "o-",
                  label="input→logit Jacobian σ_max (mean)")
        left.fill_between(steps, [h["jacobian_sigma_max_p10"] for h in curve],
                          [h["jacobian_sigma_max_p90"] for h in curve], alpha=0.2,
                          label="10–90 % of samples")
        if "first_layer_sigma_max" in curve[-1]:
            left.plot(steps, [h.get("first_layer_sigma_max") for h in curve], "s--",
                      label="first layer σ_max")
        left.set(xlabel="step", ylabel="σ_max", title="Spectral decay")
        left.legend(fontsize=7)
        if self._last_distribution is not None:
            right.hist(self._last_distribution.numpy(), bins=30)
        right.set(xlabel="σ_max(J) per sample", ylabel="samples",
                  title=f"{split}, step {curve[-1]['step']}")
        log_figure(trainer, self.key(split, "summary"), figure, self.step(trainer), path)

    def _curve(self, split: str) -> list[dict[str, Any]]:
        """This split's evaluations in step order, one per step (the latest)."""
        by_step = {h["step"]: h for h in self.history if h.get("split") == split}
        return [by_step[s] for s in sorted(by_step)]
