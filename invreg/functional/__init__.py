"""Pure tensor functions: the single source of every formula in invreg."""

from invreg.functional.invariance import (
    PAIR_ERRORS,
    check_orbit,
    logit_invariance,
    logit_l2,
    normalized_logit_l2,
    orbit_accuracy,
    orbit_consistency,
    orbit_logits,
    orbit_pair_errors,
    predictive_kl,
    predictive_kl_invariance,
)

__all__ = [
    "PAIR_ERRORS",
    "check_orbit",
    "logit_invariance",
    "logit_l2",
    "normalized_logit_l2",
    "orbit_accuracy",
    "orbit_consistency",
    "orbit_logits",
    "orbit_pair_errors",
    "predictive_kl",
    "predictive_kl_invariance",
]
