"""Pure tensor functions: the single source of every formula in invreg.

Conventions: an orbit tensor is ``[B, N, ...]`` (identity first); every invariance measure is
a mean over samples **and** over the ``N − 1`` non-identity group elements, computed in at
least float32 whatever the input dtype (:func:`working_dtype`).
"""

from invreg.functional.geed import (
    DISTANCES,
    GEED_MODES,
    cosine_distance,
    euclidean_distance,
    geed,
    geed_terms,
    orbit_features,
)
from invreg.functional.invariance import (
    PAIR_ERRORS,
    OrbitFeatures,
    accuracy,
    capture_layers,
    check_orbit,
    check_target,
    get_layer,
    logit_invariance,
    logit_l2,
    normalized_logit_l2,
    orbit_accuracy,
    orbit_consistency,
    orbit_forward,
    orbit_logits,
    orbit_pair_errors,
    predictive_kl,
    predictive_kl_invariance,
    resolve_elements,
    working_dtype,
)
from invreg.functional.saliency import (
    SALIENCY_METHODS,
    gaussian_blur,
    orbit_saliency,
    postprocess_saliency,
    resolve_target,
    saliency,
    saliency_invariance,
    saliency_similarity,
)
from invreg.functional.spectral import (
    SPECTRAL_METHODS,
    jacobian_spectral_norm,
    weight_matrices,
    weight_singular_values,
)

__all__ = [
    "DISTANCES",
    "GEED_MODES",
    "PAIR_ERRORS",
    "SALIENCY_METHODS",
    "SPECTRAL_METHODS",
    "OrbitFeatures",
    "accuracy",
    "capture_layers",
    "check_orbit",
    "check_target",
    "cosine_distance",
    "euclidean_distance",
    "gaussian_blur",
    "geed",
    "geed_terms",
    "get_layer",
    "jacobian_spectral_norm",
    "logit_invariance",
    "logit_l2",
    "normalized_logit_l2",
    "orbit_accuracy",
    "orbit_consistency",
    "orbit_features",
    "orbit_forward",
    "orbit_logits",
    "orbit_pair_errors",
    "orbit_saliency",
    "postprocess_saliency",
    "predictive_kl",
    "predictive_kl_invariance",
    "resolve_elements",
    "resolve_target",
    "saliency",
    "saliency_invariance",
    "saliency_similarity",
    "weight_matrices",
    "weight_singular_values",
    "working_dtype",
]
