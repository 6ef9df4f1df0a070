"""LightningModules."""

from invreg.modules.checkpointing import NonFiniteLossError
from invreg.modules.hyper import HyperDownstreamModule, HyperUpstreamModule
from invreg.modules.invariance import InvarianceModule

__all__ = [
    "HyperDownstreamModule",
    "HyperUpstreamModule",
    "InvarianceModule",
    "NonFiniteLossError",
]
