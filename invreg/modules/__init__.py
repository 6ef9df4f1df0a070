"""LightningModules."""

from invreg.modules.checkpointing import NonFiniteLossError
from invreg.modules.hyper import (
    HyperDownstreamModule,
    HyperSensitivityUpstreamModule,
    HyperUpstreamModule,
)
from invreg.modules.invariance import InvarianceModule
from invreg.modules.selfsupervised import SelfSupervisedModule, fit_linear_probe
from invreg.modules.weights import DualAscentWeight, FixedWeight, InvarianceWeight

__all__ = [
    "DualAscentWeight",
    "FixedWeight",
    "HyperDownstreamModule",
    "HyperSensitivityUpstreamModule",
    "HyperUpstreamModule",
    "InvarianceModule",
    "InvarianceWeight",
    "NonFiniteLossError",
    "SelfSupervisedModule",
    "fit_linear_probe",
]
