"""LightningModules."""

from invreg.modules.invariance import InvarianceModule

__all__ = ["InvarianceModule"]
