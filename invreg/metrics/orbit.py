"""Every output-level invariance value from ONE orbit forward: :class:`OrbitMetrics`.

The package's measurement paths (the module's validation and test, the orbit and drift
callbacks, :func:`invreg.evaluation.evaluate_invariance`) all aggregate through this
collection: each state is a sum or a count reduced by torchmetrics with
``dist_reduce_fx="sum"``, so a DDP value equals the single-process value on the union of the
data, and accumulating over batches equals one batch.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torchmetrics import MetricCollection

from invreg.functional.invariance import check_orbit, check_target, orbit_logits
from invreg.groups import Group, get_group
from invreg.metrics.invariance import (
    Accuracy,
    LogitInvariance,
    OrbitAccuracy,
    OrbitConsistency,
    PredictiveDistributionInvariance,
)

#: the values that need class targets
TARGET_METRICS = ("orbit_accuracy", "accuracy")


class OrbitMetrics(MetricCollection):
    """DI, LI, normalised LI, orbit consistency, orbit accuracy and accuracy of one model.

    Keys of :meth:`compute` (each a mean; DI and LI over samples **and** the ``N − 1``
    non-identity orbit elements, the others over samples):

    * ``DI`` — ``mean KL(softmax f(x) ‖ softmax f(g·x))``
      (:class:`~invreg.metrics.PredictiveDistributionInvariance`);
    * ``LI`` — ``mean ½‖f(x) − f(g·x)‖²``; ``LI_normalized`` — ``mean ‖f(x) − f(g·x)‖² /
      ‖f(x)‖²`` (:class:`~invreg.metrics.LogitInvariance`);
    * ``consistency`` — fraction of samples predicted the same on the whole orbit;
    * ``orbit_accuracy`` — fraction correct on every orbit element;
    * ``accuracy`` — fraction correct on the untransformed input (micro-averaged).

    ``orbit_accuracy`` and ``accuracy`` are members only with ``targets=True``.

    - ``update(orbit, target=None)``: ``orbit`` ``[B, N, C]`` logits over each sample's orbit,
      identity first (``N >= 2``), from :func:`~invreg.functional.orbit_logits`; ``target``
      ``[B]`` class indices (required with ``targets=True``). An empty batch changes nothing.
    - ``update_from_model(model, x, target=None, elements=None)``: the orbit forward itself
      (``torch.no_grad``, ``chunk_size`` samples per forward), then ``update``; returns the
      orbit ``[B, N, C]``.
    - ``compute()``: ``{key: scalar tensor}`` (with ``prefix`` / ``postfix``); NaN with a
      ``UserWarning`` for a value without data.

    Args:
        group: the group (or its name) :meth:`update_from_model` forwards orbits of.
        num_classes: checked against the orbit's ``C`` when given.
        targets: include the accuracies (``update`` then needs ``target``).
        chunk_size, num_samples: of the orbit forward, see
            :func:`~invreg.functional.orbit_logits`.
        prefix, postfix: added to every key (``MetricCollection``).

    >>> from invreg.groups import Rotations
    >>> metrics = OrbitMetrics(Rotations(4), num_classes=2)
    >>> orbit = torch.tensor([[[2.0, 0.0], [2.0, 0.0], [0.0, 2.0], [2.0, 0.0]]])
    >>> metrics.update(orbit, torch.tensor([0]))
    >>> {key: round(value.item(), 4) for key, value in metrics.compute().items()}
    {'DI': 0.5077, 'LI': 1.3333, 'LI_normalized': 0.6667, 'accuracy': 1.0, 'consistency': 0.0,
     'orbit_accuracy': 0.0}
    """

    def __init__(
        self,
        group: Group | str,
        num_classes: int | None = None,
        *,
        targets: bool = True,
        chunk_size: int | None = None,
        num_samples: int | None = None,
        prefix: str | None = None,
        postfix: str | None = None,
    ) -> None:
        if num_classes is not None and (
            isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1
        ):
            raise ValueError(
                f"num_classes: expected a positive integer or None, got {num_classes!r}"
            )
        if chunk_size is not None and chunk_size < 1:
            raise ValueError(f"chunk_size: expected a positive integer or None, got {chunk_size!r}")
        metrics = {
            "DI": PredictiveDistributionInvariance(),
            "LI": LogitInvariance(),
            "LI_normalized": LogitInvariance(normalized=True),
            "consistency": OrbitConsistency(),
        }
        if targets:
            metrics |= {"orbit_accuracy": OrbitAccuracy(), "accuracy": Accuracy()}
        super().__init__(metrics, prefix=prefix, postfix=postfix, compute_groups=False)
        self.group = get_group(group)
        self.num_classes = num_classes
        self.targets = bool(targets)
        self.chunk_size, self.num_samples = chunk_size, num_samples

    def update(self, orbit: Tensor, target: Tensor | None = None) -> None:  # type: ignore[override]
        check_orbit(orbit)
        if self.num_classes is not None and orbit.shape[2] != self.num_classes:
            raise ValueError(
                f"orbit: expected {self.num_classes} outputs per element (num_classes), got shape "
                f"{tuple(orbit.shape)}"
            )
        if self.targets:
            if target is None:
                raise ValueError(
                    "target: required for orbit_accuracy and accuracy (or build "
                    "OrbitMetrics(..., targets=False))"
                )
            check_target(target, orbit.shape[0], orbit.shape[2])
        for name, metric in self.items(keep_base=True, copy_state=False):
            if name in TARGET_METRICS:
                metric.update(orbit, target)
            else:
                metric.update(orbit)

    def update_from_model(
        self,
        model: nn.Module,
        x: Tensor,
        target: Tensor | None = None,
        elements: Tensor | None = None,
    ) -> Tensor:
        """One orbit forward of ``model`` on ``x`` ``[B, *D]`` (no gradients; put the model in
        ``eval()`` mode, e.g. with :func:`invreg.evaluation.eval_mode`), then :meth:`update`.
        ``elements`` (``[N]``, identity first) fixes the orbit; returns it ``[B, N, C]``."""
        with torch.no_grad():
            orbit = orbit_logits(
                model, x, self.group, self.chunk_size, self.num_samples, elements=elements
            )
        self.update(orbit, target)
        return orbit
