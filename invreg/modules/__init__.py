"""LightningModules."""

from invreg.modules.checkpointing import NonFiniteLossError
from invreg.modules.hyper import (
    HyperDownstreamModule,
    HyperSensitivityUpstreamModule,
    HyperUpstreamModule,
)
from invreg.modules.invariance import InvarianceModule

__all__ = [
    "HyperDownstreamModule",
    "HyperSensitivityUpstreamModule",
    "HyperUpstreamModule",
    "InvarianceModule",
    "NonFiniteLossError",
]
