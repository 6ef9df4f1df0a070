"""Invariance-error terms (``nn.Module``) over :mod:`invreg.functional`'s formulas.

Names resolve through :mod:`invreg.losses.registry` (:func:`get_loss`), which imports both
loss modules; the loss modules do not import each other's names.
"""

from invreg.losses import invariance as _invariance
from invreg.losses.invariance import (
    LOSSES,
    FeatureL2,
    InvarianceLoss,
    LogitL2,
    ModelInvarianceLoss,
    NormalizedLogitL2,
    PredictiveKL,
)
from invreg.losses.lie import LIE_LOSSES, LieDerivativeL2
from invreg.losses.registry import get_loss

# get_loss lived in invreg.losses.invariance: that import path still resolves it, set here
# rather than imported there (the registry imports that module)
_invariance.get_loss = get_loss

__all__ = [
    "LIE_LOSSES",
    "LOSSES",
    "FeatureL2",
    "InvarianceLoss",
    "LieDerivativeL2",
    "LogitL2",
    "ModelInvarianceLoss",
    "NormalizedLogitL2",
    "PredictiveKL",
    "get_loss",
]
