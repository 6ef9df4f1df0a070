"""torchmetrics classes over :mod:`invreg.functional`: stateful, batched, DDP-exact.

Every metric keeps a sum and a count (``dist_reduce_fx="sum"``), so memory does not grow with
the dataset and a multi-process result equals the single-process one. Values are means over
samples and over the non-identity group elements. ``compute()`` with no data returns NaN and
warns. Output-level metrics (DI, LI, consistency, accuracy) take ``update(orbit, ...)`` with
``orbit = invreg.functional.orbit_logits(model, x, group)``; model-level metrics (SI, G-EED)
take ``update(model, x, ...)`` and hold the group. :class:`OrbitMetrics` collects every
output-level value of one orbit forward; the package's modules, callbacks and
:func:`invreg.evaluation.evaluate_invariance` aggregate through it. :class:`DriftMetrics`
holds one per drift weight ``β`` (DI and ``accuracy_ratio`` under input drift).
"""

from invreg.metrics.base import BatchMeans, SumCountMetric
from invreg.metrics.drift import DriftMetrics
from invreg.metrics.invariance import (
    Accuracy,
    LogitInvariance,
    OrbitAccuracy,
    OrbitConsistency,
    PredictiveDistributionInvariance,
)
from invreg.metrics.layers import LayerInvariance
from invreg.metrics.lie import LieDerivativeError
from invreg.metrics.orbit import OrbitMetrics
from invreg.metrics.profile import layer_profile
from invreg.metrics.saliency import SaliencyInvarianceSimilarity

__all__ = [
    "Accuracy",
    "BatchMeans",
    "DriftMetrics",
    "LayerInvariance",
    "LieDerivativeError",
    "LogitInvariance",
    "OrbitAccuracy",
    "OrbitConsistency",
    "OrbitMetrics",
    "PredictiveDistributionInvariance",
    "SaliencyInvarianceSimilarity",
    "SumCountMetric",
    "layer_profile",
]
