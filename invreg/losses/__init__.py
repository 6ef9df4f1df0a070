"""Invariance-error terms (``nn.Module``) over :mod:`invreg.functional`'s formulas."""

from invreg.losses.invariance import (
    LOSSES,
    FeatureL2,
    InvarianceLoss,
    LogitL2,
    NormalizedLogitL2,
    PredictiveKL,
    get_loss,
)
from invreg.losses.lie import LIE_LOSSES, LieDerivativeL2

__all__ = [
    "LIE_LOSSES",
    "LOSSES",
    "FeatureL2",
    "InvarianceLoss",
    "LieDerivativeL2",
    "LogitL2",
    "NormalizedLogitL2",
    "PredictiveKL",
    "get_loss",
]
