"""Metrics over the outputs on group orbits: DI, LI, orbit consistency, orbit accuracy,
accuracy.

``update`` takes the precomputed orbit outputs ``orbit`` of shape ``[B, N, C]`` (identity
first), from :func:`invreg.functional.orbit_logits` — one batched forward that all four metrics
share. In a ``MetricCollection`` next to torchmetrics' accuracy, pass keyword arguments; each
metric takes the ones its ``update`` names::

    metrics.update(preds=logits, target=labels, orbit=orbit)

Every value is a mean over samples and (DI, LI) over the ``N − 1`` non-identity orbit elements.
The per-pair formulas run in at least float32 whatever the orbit's dtype (float16 / bfloat16
logits are upcast before squaring, softmax and summing) and the states are float32 sums and
integer counts, so half-precision logits neither overflow nor lose the mean's precision.

``update`` raises ``ValueError`` on a wrong shape or on NaN/Inf outputs and ``TypeError`` /
``ValueError`` on targets of a non-integer dtype or outside ``[0, C)`` (nothing is added to the
state); ``update`` on an empty batch (``B = 0``) leaves the state unchanged; ``compute`` before
any sample was seen returns NaN with a ``UserWarning`` (as torchmetrics' means do).
"""

from __future__ import annotations

from torch import Tensor

from invreg.functional.invariance import (
    accuracy,
    logit_invariance,
    orbit_accuracy,
    orbit_consistency,
    predictive_kl_invariance,
)
from invreg.metrics.base import SumCountMetric


class PredictiveDistributionInvariance(SumCountMetric):
    """Predictive-distribution invariance error DI (task level; lower is better, 0 invariant).

    ``DI = mean_{i, g≠e} KL( softmax f(x_i) ‖ softmax f(g·x_i) )`` (natural log), the mean over
    samples **and** over the ``N − 1`` non-identity group elements
    (:func:`~invreg.functional.predictive_kl_invariance`).

    - ``update(orbit)``: ``orbit`` ``[B, N, C]`` logits on each sample's orbit, identity first.
    - ``compute()``: scalar tensor; NaN with a ``UserWarning`` if nothing was seen.

    States: the sum of per-pair KL and the number of pairs (summed across processes).

    >>> import torch
    >>> metric = PredictiveDistributionInvariance()
    >>> metric.update(torch.tensor([[[0.0, 0.0], [0.0, 0.0], [1.0, -1.0]]]))
    >>> round(metric.compute().item(), 4)  # (0 + KL([.5,.5] ‖ softmax[1,-1])) / 2
    0.2169
    """

    higher_is_better = False

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self._init_states("kl_sum", "kl_pairs")

    def update(self, orbit: Tensor) -> None:
        errors = predictive_kl_invariance(orbit.detach(), reduction="none")
        self._accumulate(errors.sum(), errors.numel())


class LogitInvariance(SumCountMetric):
    """Logit invariance error LI (function level; lower is better, 0 invariant).

    ``LI = mean_{i, g≠e} ½‖f(x_i) − f(g·x_i)‖²``; with ``normalized=True``
    ``mean_{i, g≠e} ‖f(x_i) − f(g·x_i)‖² / ‖f(x_i)‖²`` (scale-free). Means over samples **and**
    over the ``N − 1`` non-identity group elements (:func:`~invreg.functional.logit_invariance`).

    - ``update(orbit)``: ``orbit`` ``[B, N, C]`` logits on each sample's orbit, identity first.
    - ``compute()``: scalar tensor; NaN with a ``UserWarning`` if nothing was seen.

    Args:
        normalized: use the scale-free variant.

    >>> import torch
    >>> metric = LogitInvariance()
    >>> metric.update(torch.tensor([[[1.0, 0.0], [0.0, 1.0], [1.0, 0.0]]]))
    >>> metric.compute()  # (½·2 + 0) / 2
    tensor(0.5000)
    """

    higher_is_better = False

    def __init__(self, normalized: bool = False, **kwargs) -> None:
        super().__init__(**kwargs)
        self.normalized = bool(normalized)
        prefix = "normalized_logit_error" if self.normalized else "logit_error"
        self._init_states(f"{prefix}_sum", f"{prefix}_pairs")

    def update(self, orbit: Tensor) -> None:
        errors = logit_invariance(orbit.detach(), normalized=self.normalized, reduction="none")
        self._accumulate(errors.sum(), errors.numel())


class OrbitConsistency(SumCountMetric):
    """Fraction of samples whose predicted class is the same on every orbit element (higher
    is better; 1 for an invariant model). A per-sample quantity: the mean is over samples, and
    a sample counts only if **all** its ``N`` elements (identity included) agree
    (:func:`~invreg.functional.orbit_consistency`).

    - ``update(orbit)``: ``orbit`` ``[B, N, C]``, identity first (``N >= 1``).
    - ``compute()``: scalar in ``[0, 1]``; NaN with a ``UserWarning`` if nothing was seen.

    >>> import torch
    >>> metric = OrbitConsistency()
    >>> metric.update(torch.tensor([[[2.0, 1.0], [3.0, 0.0]], [[2.0, 1.0], [0.0, 3.0]]]))
    >>> metric.compute()
    tensor(0.5000)
    """

    higher_is_better = True
    plot_upper_bound = 1.0

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self._init_states("consistent_samples", "consistency_samples")

    def update(self, orbit: Tensor) -> None:
        consistent = orbit_consistency(orbit.detach(), reduction="none")
        self._accumulate(consistent.sum(), consistent.numel())


class OrbitAccuracy(SumCountMetric):
    """Fraction of samples classified correctly on **every** orbit element (higher is better).
    The mean is over samples (:func:`~invreg.functional.orbit_accuracy`).

    - ``update(orbit, target)``: ``orbit`` ``[B, N, C]`` identity first, ``target`` ``[B]``
      class indices.
    - ``compute()``: scalar in ``[0, 1]``; NaN with a ``UserWarning`` if nothing was seen.

    >>> import torch
    >>> metric = OrbitAccuracy()
    >>> orbit = torch.tensor([[[2.0, 1.0], [3.0, 0.0]], [[2.0, 1.0], [0.0, 3.0]]])
    >>> metric.update(orbit, torch.tensor([0, 0]))
    >>> metric.compute()
    tensor(0.5000)
    """

    higher_is_better = True
    plot_upper_bound = 1.0
    #: names of the (sum, count) states
    state_names = ("correct_samples", "orbit_accuracy_samples")

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self._init_states(*self.state_names)

    def update(self, orbit: Tensor, target: Tensor) -> None:
        correct = orbit_accuracy(orbit.detach(), target, reduction="none")
        self._accumulate(correct.sum(), correct.numel())


class Accuracy(OrbitAccuracy):
    """Fraction of samples classified correctly on the untransformed input, micro-averaged
    (higher is better): :class:`OrbitAccuracy` of the identity element ``orbit[:, :1]``
    (:func:`~invreg.functional.accuracy`; the value of torchmetrics'
    ``MulticlassAccuracy(average="micro")``).

    - ``update(orbit, target)``: ``orbit`` ``[B, N, C]`` identity first (``N >= 1``;
      ``logits.unsqueeze(1)`` for plain logits), ``target`` ``[B]`` class indices.
    - ``compute()``: scalar in ``[0, 1]``; NaN with a ``UserWarning`` if nothing was seen.

    >>> import torch
    >>> metric = Accuracy()
    >>> orbit = torch.tensor([[[2.0, 1.0], [0.0, 3.0]], [[0.0, 1.0], [0.0, 3.0]]])
    >>> metric.update(orbit, torch.tensor([0, 0]))
    >>> metric.compute()
    tensor(0.5000)
    """

    state_names = ("correct_identity_samples", "accuracy_samples")

    def update(self, orbit: Tensor, target: Tensor) -> None:
        correct = accuracy(orbit.detach(), target, reduction="none")
        self._accumulate(correct.sum(), correct.numel())
