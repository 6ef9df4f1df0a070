"""Training-time observability: invariance, spectral decay, saliency and drift, on any logger.

* :class:`OrbitConsistencyCallback` — DI, LI, SI, orbit consistency and orbit accuracy on a
  fixed held-out subset, every few epochs (``orbit/...``);
* :class:`SpectralDecayCallback` — σ_max of the input→logit Jacobian per sample and the top
  singular values of every weight matrix (``spectral/...``);
* :class:`SaliencyCallback` — a grid of saliency maps over the orbit, mapped back with g⁻¹
  (``saliency/...``);
* :class:`DriftCallback` — DI and Acc(β)/Acc(0) on inputs blended with drift (``drift/...``);
* :class:`MetricsHistory` — every scalar per epoch in ``metrics.csv``, whatever the logger, and
  DI/LI/SI/accuracy over training in ``metrics_over_training.png`` (the ``invreg`` CLI adds it).

All run under ``fit``, ``validate`` and ``test``, with CSV, TensorBoard and W&B loggers (or
none), with or without ``wandb`` installed, and under DDP (each rank evaluates its shard; sums
and counts are reduced). Their cost is bounded by ``num_samples`` and ``every_n_epochs``.
"""

from invreg.callbacks.base import InvarianceCallback
from invreg.callbacks.descriptor import DescriptorTrajectoryCallback
from invreg.callbacks.drift import DriftCallback
from invreg.callbacks.history import MetricsHistory
from invreg.callbacks.orbit import OrbitConsistencyCallback
from invreg.callbacks.saliency import SaliencyCallback
from invreg.callbacks.spectral import SpectralDecayCallback

__all__ = [
    "DescriptorTrajectoryCallback",
    "DriftCallback",
    "InvarianceCallback",
    "MetricsHistory",
    "OrbitConsistencyCallback",
    "SaliencyCallback",
    "SpectralDecayCallback",
]
