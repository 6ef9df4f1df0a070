"""torchmetrics classes over :mod:`invreg.functional`: stateful, batched, DDP-exact.

Every metric keeps a sum and a count (``dist_reduce_fx="sum"``), so memory does not grow with
the dataset and a multi-process result equals the single-process one. Values are means over
samples and over the non-identity group elements. ``compute()`` with no data returns NaN and
warns. Output-level metrics (DI, LI, consistency, accuracy) take ``update(orbit, ...)`` with
``orbit = invreg.functional.orbit_logits(model, x, group)``; model-level metrics (SI, G-EED)
take ``update(model, x, ...)`` and hold the group.
"""

from invreg.metrics.base import SumCountMetric
from invreg.metrics.invariance import (
    LogitInvariance,
    OrbitAccuracy,
    OrbitConsistency,
    PredictiveDistributionInvariance,
)
from invreg.metrics.layers import LayerInvariance
from invreg.metrics.saliency import SaliencyInvarianceSimilarity

__all__ = [
    "LayerInvariance",
    "LogitInvariance",
    "OrbitAccuracy",
    "OrbitConsistency",
    "PredictiveDistributionInvariance",
    "SaliencyInvarianceSimilarity",
    "SumCountMetric",
]
