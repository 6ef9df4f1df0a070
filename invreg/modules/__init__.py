"""LightningModules."""

from invreg.modules.checkpointing import NonFiniteLossError
from invreg.modules.hyper import HyperInvarianceModule
from invreg.modules.invariance import InvarianceModule

__all__ = ["HyperInvarianceModule", "InvarianceModule", "NonFiniteLossError"]
