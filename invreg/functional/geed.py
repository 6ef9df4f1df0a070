"""Layer-wise invariance and equivariance deviation, G-EED (Kvinge et al., NeurIPS 2022).

For a layer ``i`` with features ``f_i``, a distance ``m`` and orbit elements ``g_0 = e, g_1, …,
g_{N−1}``:

* ``mode="invariance"``: ``D = mean_{x, g≠e} m( c_i(x), f_i(g·x) )`` with the orbit centroid
  ``c_i(x) = (1/N) Σ_g f_i(g·x)`` (all ``N`` elements, identity included); for ``"kl"`` the
  centroid is the mean of the orbit's *distributions*, ``p̄_i(x) = (1/N) Σ_g softmax f_i(g·x)``,
  not the softmax of the mean logits (the two differ whenever the orbit's logits do);
* ``mode="equivariance"``: ``D = mean_{x, g≠e} m( g·f_i(x), f_i(g·x) )``, where ``g`` acts on
  the features as the layer's own field type says for e2cnn ``GeometricTensor`` outputs
  (:func:`invreg.groups.e2cnn.act`, in the features' dtype) and by the group's spatial action
  (``group.act``) on plain feature maps ``[B, C, H, W]``.

Means run over samples **and** over the ``N − 1`` non-identity orbit elements, like every
metric in invreg. Distances act on each sample's flattened features:

* ``"cosine"``: ``1 − cos(a, b)`` (``eps = 1e-8``);
* ``"euclidean"``: ``‖a − b‖₂`` (not squared);
* ``"kl"``: ``KL(softmax a ‖ softmax b) = Σ_k p_k (log p_k − log q_k)``, the features read
  as logits, the reference (centroid, ``g·f_i(x)`` or ``f_i(x_i)``) first and the transformed
  (or other) input's distribution second (the same formula and direction as the
  predictive-distribution error DI, :func:`~invreg.functional.predictive_kl`). In
  ``mode="invariance"`` the first argument is the mean-of-softmax centroid:
  ``KL(p̄_i(x) ‖ softmax f_i(g·x))``.

**Normalised G-EED** divides by the same distance between features of *different* inputs:
``D_norm = D / R`` with ``R = mean_i m( f_i(x_i), f_i(x_{(i+1) mod B}) )``, pairing each sample
of a batch with the next one (a fixed derangement of the batch, identity orbit element, ``B ≥
2``). ``D_norm = 0`` means the layer is invariant (equivariant); ``D_norm ≈ 1`` means
transforming an input moves its features as far as swapping it for another input. (A distance
ratio, not a ratio of similarities, so the scale is the same for all three distances.) ``R``
depends on which samples share a batch; accumulated over a dataset (see
:class:`~invreg.metrics.LayerInvariance`), ``D_norm = (ΣD/n_D) / (ΣR/n_R)``.

Precision: features of any floating dtype are compared in at least float32 (float16 and
bfloat16 are upcast before the centroid, the norms and the softmax), so deviations are float32
(float64 for float64 features). NaN or Inf features raise ``ValueError``. An empty batch
(``B = 0``) runs one forward on the empty input (hooks see empty features) and gives empty
per-pair deviations; ``reduction="mean"`` or ``normalize=True`` then raise ``ValueError``.

Input and hidden orbits are matched by construction: the hidden features are captured with
forward hooks during the ONE orbit forward that also gives the logits, so every ``f_i(g·x)``
belongs to the same ``g`` as the input it came from.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from invreg.functional.invariance import (
    OrbitFeatures,
    Reduction,
    _reduce,
    get_layer,
    orbit_forward,
    predictive_kl,
    upcast,
)
from invreg.groups import Group, get_group
from invreg.groups.e2cnn import act as e2cnn_act

GeedMode = Literal["invariance", "equivariance"]
Distance = Literal["cosine", "euclidean", "kl"]
GEED_MODES = ("invariance", "equivariance")

#: eps of the cosine similarity (torch's convention)
COSINE_EPS = 1e-8


# --------------------------------------------------------------------------- distances
def cosine_distance(reference: Tensor, transformed: Tensor) -> Tensor:
    """``1 − cos(a, b)`` over the last axis (clamped at 0 against rounding; at least float32)."""
    reference, transformed = upcast(reference), upcast(transformed)
    similarity = F.cosine_similarity(reference, transformed, dim=-1, eps=COSINE_EPS)
    return (1.0 - similarity).clamp_min(0.0)


def euclidean_distance(reference: Tensor, transformed: Tensor) -> Tensor:
    """``‖a − b‖₂`` over the last axis (at least float32)."""
    return torch.linalg.vector_norm(upcast(reference) - upcast(transformed), dim=-1)


DISTANCES: dict[str, Callable[[Tensor, Tensor], Tensor]] = {
    "cosine": cosine_distance,
    "euclidean": euclidean_distance,
    "kl": predictive_kl,
}


# --------------------------------------------------------------------------- orbit forward
def orbit_features(
    model: nn.Module,
    x: Tensor,
    group: Group | str,
    layers: Sequence[str],
    chunk_size: int | None = None,
    num_samples: int | None = None,
    generator: torch.Generator | None = None,
    elements: Tensor | None = None,
) -> OrbitFeatures:
    """:func:`~invreg.functional.orbit_forward` with the named ``layers`` captured (G-EED's
    argument order): one orbit forward, hidden orbits on exactly the input orbit's elements."""
    return orbit_forward(
        model, x, get_group(group), elements, chunk_size, layers, num_samples=num_samples,
        generator=generator,
    )


# --------------------------------------------------------------------------- deviations
def geed_terms(
    orbit: OrbitFeatures,
    layer: str,
    group: Group | str,
    mode: GeedMode = "invariance",
    distance: Distance = "cosine",
) -> tuple[Tensor, Tensor]:
    """Per-pair deviations ``[B, N − 1]`` and random-pair distances ``[B]`` (``[0]`` if
    ``B < 2``) of one layer, from :func:`orbit_features`' output (formulas: module docstring)."""
    _check_geed_options(mode, distance)
    group = get_group(group)
    if layer not in orbit.features:
        raise ValueError(f"layer {layer!r} was not captured; captured: {sorted(orbit.features)}")
    feats = orbit.features[layer]
    batch, n = feats.shape[:2]
    if n < 2:
        raise ValueError("G-EED needs at least one non-identity orbit element")
    if not torch.isfinite(feats).all():
        raise ValueError(f"layer {layer!r}: features contain NaN or Inf")
    feats = upcast(feats)  # centroids, norms and softmax in at least float32
    metric = DISTANCES[distance]
    flat = feats.reshape(batch, n, math.prod(feats.shape[2:]))  # explicit size: B may be 0
    if mode == "invariance" and distance == "kl":
        deviations = _kl_to_centroid(flat)
    elif mode == "invariance":
        reference = flat.mean(dim=1, keepdim=True).expand(batch, n - 1, flat.shape[-1])
        deviations = metric(reference, flat[:, 1:])
    else:
        assert orbit.elements is not None
        reference = _act_on_features(
            feats[:, 0], orbit.field_types.get(layer), group, orbit.elements, layer
        ).reshape(batch, n - 1, flat.shape[-1])
        deviations = metric(reference, flat[:, 1:])
    identity = flat[:, 0]
    random_pairs = metric(identity, identity.roll(-1, dims=0)) if batch > 1 else flat.new_zeros(0)
    return deviations, random_pairs


def _kl_to_centroid(logits: Tensor) -> Tensor:
    """``KL(p̄ ‖ softmax logits[:, j])`` for ``j ≥ 1``: ``[B, N − 1]``, from orbit logits
    ``[B, N, K]``, with ``p̄ = mean_j softmax logits[:, j]`` the mean-of-softmax centroid.

    ``log p̄`` is a log-mean-exp of the log-probabilities, finite even where ``p̄`` underflows
    to 0 (that class then adds ``0 · finite = 0``, the limit of ``p log p``)."""
    log_q = torch.log_softmax(logits, dim=-1)  # [B, N, K]
    log_centroid = torch.logsumexp(log_q, dim=1, keepdim=True) - math.log(logits.shape[1])
    return (log_centroid.exp() * (log_centroid - log_q[:, 1:])).sum(dim=-1)


def geed(
    model: nn.Module,
    x: Tensor,
    group: Group | str,
    layer: str,
    mode: GeedMode = "invariance",
    distance: Distance = "cosine",
    normalize: bool = True,
    *,
    reduction: Reduction = "mean",
    chunk_size: int | None = None,
    num_samples: int | None = None,
    generator: torch.Generator | None = None,
    elements: Tensor | None = None,
) -> Tensor:
    """G-EED of one layer: how far its features move when the input is transformed.

    ``D = mean_{x, g≠e} m(ref_g(x), f_i(g·x))`` — mean over samples **and** over the ``N − 1``
    non-identity orbit elements — with ``ref_g(x)`` the orbit centroid (``mode="invariance"``;
    for ``distance="kl"`` the mean of the orbit's softmaxes, ``KL(p̄ ‖ softmax f_i(g·x))``)
    or ``g·f_i(x)`` (``mode="equivariance"``); with ``normalize=True`` divided by the mean
    distance ``R`` between features of random input pairs of this batch (sample ``i`` with
    ``i + 1 mod B``; needs ``B ≥ 2``). Full definitions: the module docstring. 0 is perfectly
    invariant / equivariant; lower is better.

    Args:
        model: any ``nn.Module``; ``layer`` is looked up in ``dict(model.named_modules())``
            (``""`` is the model itself, i.e. its outputs).
        x: inputs ``[B, *D]`` that ``group`` acts on.
        group: the transformations (a Group or its name); for ``mode="equivariance"`` on
            plain feature maps it must be able to act on them (e.g. ``[B, C, H, W]`` with
            ``H == W`` for rotations).
        layer: module name.
        mode: ``"invariance"`` or ``"equivariance"``.
        distance: ``"cosine"``, ``"euclidean"`` or ``"kl"``.
        normalize: divide by the random-pair distance ``R``.
        reduction: ``"mean"``, ``"sum"`` or ``"none"`` (``[B, N − 1]`` per-pair deviations,
            each divided by ``R`` when ``normalize``).
        chunk_size, num_samples, generator, elements: as in
            :func:`~invreg.functional.orbit_logits`.

    >>> from invreg.groups import Rotations
    >>> model = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU())
    >>> x = torch.randn(8, 1, 6, 6)
    >>> geed(model, x, Rotations(4), "0", mode="equivariance") > 0  # a random conv is not
    tensor(True)
    >>> identity = nn.Sequential(nn.Identity())
    >>> geed(identity, x, Rotations(4), "0", mode="equivariance", distance="euclidean")
    tensor(0.)
    """
    group = get_group(group)
    orbit = orbit_features(
        model, x, group, [layer], chunk_size, num_samples, generator, elements=elements
    )
    deviations, random_pairs = geed_terms(orbit, layer, group, mode, distance)
    if normalize:
        if random_pairs.numel() == 0:
            raise ValueError(
                "normalize=True needs at least 2 samples in x to form random pairs, got "
                f"{x.shape[0]}"
            )
        deviations = deviations / random_pairs.mean()
    return _reduce(deviations, reduction)


# --------------------------------------------------------------------------- group on features
def _act_on_features(
    features: Tensor, field_type: Any, group: Group, elements: Tensor, layer: str
) -> Tensor:
    """``g·f(x)`` for every non-identity element: ``[B, N − 1, *features.shape[1:]]``."""
    if field_type is not None:
        from e2cnn.nn import GeometricTensor

        geometric = GeometricTensor(features.detach(), field_type)
        moved = [e2cnn_act(group, geometric, g).tensor for g in elements[1:]]
        return torch.stack(moved, dim=1)
    try:
        group.check_input(features)
    except (ValueError, TypeError) as err:
        raise ValueError(
            f"mode='equivariance': {group!r} cannot act on layer {layer!r}'s output of shape "
            f"{tuple(features.shape)} ({err}). Use feature maps the group acts on, an e2cnn "
            f"layer (GeometricTensor output), or mode='invariance'."
        ) from None
    moved = [group.act(features, g) for g in elements[1:]]
    return torch.stack(moved, dim=1)


def _check_geed_options(mode: str, distance: str) -> None:
    if mode not in GEED_MODES:
        raise ValueError(f"mode must be one of {GEED_MODES}, got {mode!r}")
    if distance not in DISTANCES:
        raise ValueError(f"distance must be one of {sorted(DISTANCES)}, got {distance!r}")


__all__ = [
    "DISTANCES",
    "GEED_MODES",
    "OrbitFeatures",
    "cosine_distance",
    "euclidean_distance",
    "geed",
    "geed_terms",
    "get_layer",
    "orbit_features",
]
