"""Loss names → loss terms: the one module that knows every loss by name.

It imports both loss modules (:mod:`invreg.losses.invariance`, whose orbit losses are named in
:data:`LOSSES`, and :mod:`invreg.losses.lie`, whose Lie derivative terms are named in
:data:`LIE_LOSSES`), so neither loss module needs the other's names.
"""

from __future__ import annotations

from invreg.losses.invariance import LOSSES, InvarianceLoss
from invreg.losses.lie import LIE_LOSSES, LieDerivativeL2

__all__ = ["LIE_LOSSES", "LOSSES", "get_loss"]


def get_loss(loss: str | InvarianceLoss) -> InvarianceLoss:
    """Resolve a loss name (a key of :data:`LOSSES`: ``logit_l2``, ``normalized_logit_l2``,
    ``predictive_kl``)."""
    if isinstance(loss, InvarianceLoss):
        return loss
    if isinstance(loss, str) and loss in LOSSES:
        return LOSSES[loss]()
    if isinstance(loss, str) and loss in LIE_LOSSES:
        return LieDerivativeL2(LIE_LOSSES[loss])
    raise ValueError(
        f"Unknown invariance loss {loss!r}; valid names: {sorted(LOSSES) + sorted(LIE_LOSSES)}, "
        f"or an InvarianceLoss instance such as FeatureL2(layer=...)"
    )
