"""Invariance of the model over training: DI, LI, SI, orbit consistency and orbit accuracy."""

from __future__ import annotations

from typing import Any, Literal

import pytorch_lightning as pl

from invreg.callbacks.base import (
    InvarianceCallback,
    Split,
    Subset,
    measured_group,
)
from invreg.functional.saliency import SALIENCY_METHODS
from invreg.groups import Group
from invreg.metrics.orbit import OrbitMetrics
from invreg.metrics.saliency import (
    BACKGROUND,
    SaliencyInvarianceSimilarity,
    check_baseline,
    resolve_baseline,
)

#: the :class:`~invreg.metrics.OrbitMetrics` values logged (``LI_normalized`` is not)
LOGGED = ("DI", "LI", "consistency", "orbit_accuracy", "accuracy")


class OrbitConsistencyCallback(InvarianceCallback):
    """Log how invariant the model is, on a fixed held-out subset, as it trains.

    Every ``every_n_epochs`` epochs (and at the end of ``fit``, ``validate`` and ``test``) the
    module's logits on the full orbit of each of ``num_samples`` fixed samples give
    (all formulas in :mod:`invreg.functional`; means over samples and non-identity elements):

    * ``orbit/<split>/DI`` — ``mean KL(softmax f(x) ‖ softmax f(g·x))``;
    * ``orbit/<split>/LI`` — ``mean ½‖f(x) − f(g·x)‖²``;
    * ``orbit/<split>/SI`` — ``mean cos(m(x), g⁻¹·m(g·x))`` of saliency maps of the label's class
      (the paper's recipe: |integrated gradients|, 0.9·max threshold, 3×3 blur), on the first
      ``saliency_samples`` samples of the subset (``0`` turns it off: it costs
      ``saliency_steps`` backward passes per orbit element); integrated gradients start from
      ``saliency_baseline``, and ``orbit/<split>/SI_baseline`` logs the value used;
    * ``orbit/<split>/consistency`` — fraction of samples predicted the same on the whole orbit;
    * ``orbit/<split>/orbit_accuracy`` — fraction correct on the whole orbit;
    * ``orbit/<split>/accuracy`` — plain accuracy on the untransformed samples.

    ``<split>`` is ``val`` during ``fit``/``validate`` and ``test`` during ``test`` (``split``).
    Values are logged with the step of the module's epoch-end metrics to every logger and put in
    ``trainer.callback_metrics`` (so ``ModelCheckpoint(monitor="orbit/val/SI")`` works).

    Args:
        group: the group (or its name); default: ``pl_module.group``.
        orbit_size: orbit elements (identity included) for a continuous group, drawn once.
        saliency_samples: how many of the subset's samples SI is measured on.
        saliency_method: ``"integrated_gradients"``, ``"gradient"`` or ``"gradient_x_input"``.
        saliency_steps: integrated-gradients path points.
        saliency_baseline: integrated gradients' baseline: ``"background"`` (default) is
            ``trainer.datamodule.background``, the value of an empty pixel after
            standardisation (0.0, with a one-time warning, when the data module has none); a
            number is a constant image in the units of the model's inputs (0.0 is a grey image
            on standardised data, so every background pixel gets attribution).
        chunk_size: samples (whole orbits) per forward pass; ``None`` chosen automatically.
        num_samples, every_n_epochs, split, seed, at_end, save_local: see
            :class:`~invreg.callbacks.base.InvarianceCallback`.

    >>> OrbitConsistencyCallback(num_samples=128, every_n_epochs=2).prefix
    'orbit'
    """

    prefix = "orbit"

    def __init__(
        self,
        num_samples: int = 256,
        every_n_epochs: int = 1,
        split: Split = "auto",
        seed: int = 0,
        group: str | Group | None = None,
        orbit_size: int = 8,
        saliency_samples: int = 32,
        saliency_method: str = "integrated_gradients",
        saliency_steps: int = 16,
        saliency_baseline: float | Literal["background"] = BACKGROUND,
        chunk_size: int | None = None,
        at_end: bool = True,
        save_local: bool = True,
    ) -> None:
        super().__init__(num_samples, every_n_epochs, split, seed, at_end, save_local)
        self.group = None if group is None else measured_group(group, None, type(self).__name__)
        if isinstance(orbit_size, bool) or not isinstance(orbit_size, int) or orbit_size < 2:
            raise ValueError(f"orbit_size must be an integer >= 2, got {orbit_size!r}")
        self.orbit_size = orbit_size
        if isinstance(saliency_samples, bool) or not isinstance(saliency_samples, int) or (
            saliency_samples < 0
        ):
            raise ValueError(f"saliency_samples must be an integer >= 0, got {saliency_samples!r}")
        self.saliency_samples = saliency_samples
        if saliency_method not in SALIENCY_METHODS:
            raise ValueError(
                f"saliency_method must be one of {SALIENCY_METHODS}, got {saliency_method!r}"
            )
        self.saliency_method = saliency_method
        if isinstance(saliency_steps, bool) or not isinstance(saliency_steps, int) or (
            saliency_steps < 1
        ):
            raise ValueError(f"saliency_steps must be a positive integer, got {saliency_steps!r}")
        self.saliency_steps = saliency_steps
        check_baseline(saliency_baseline)
        self.saliency_baseline = saliency_baseline
        self._warned = False
        self.chunk_size = chunk_size

    def evaluate(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, subset: Subset, split: str
    ) -> dict[str, Any]:
        group = measured_group(self.group, pl_module, type(self).__name__)
        elements = group.fixed_elements(self.orbit_size, self.seed)
        metrics = OrbitMetrics(group, targets=subset.y is not None, chunk_size=self.chunk_size)
        metrics.to(pl_module.device)
        if len(subset):
            metrics.update_from_model(pl_module, subset.x, subset.y, elements)
        # computed on every rank: torchmetrics adds the sums and counts of all shards
        values = {key: value.item() for key, value in metrics.compute().items()}
        record = {key: values[key] for key in LOGGED if key in values}
        if self.saliency_samples:
            baseline, fell_back = resolve_baseline(
                self.saliency_baseline, trainer.datamodule, type(self).__name__, not self._warned
            )
            self._warned = self._warned or fell_back
            similarity = SaliencyInvarianceSimilarity(
                group, self.saliency_method, steps=self.saliency_steps, baseline=baseline
            ).to(pl_module.device)
            part = subset.first(self.saliency_samples)
            if len(part):
                similarity.update(pl_module, part.x, part.y, elements=elements)
            record["SI"] = similarity.compute().item()
            record["SI_baseline"] = float(baseline)
        self.log_scalars(trainer, {self.key(split, k): v for k, v in record.items()})
        return record
