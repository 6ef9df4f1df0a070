"""Invariance errors of a model's outputs over group orbits.

Conventions (used by every metric and loss in invreg):

* an *orbit tensor* has shape ``[B, N, C]``: for each of ``B`` samples, the outputs on its
  ``N`` orbit elements, the identity first (see :func:`orbit_logits`);
* a *pair* error compares the output on the original input, ``orbit[:, 0]``, with the output on
  each transformed input, ``orbit[:, j]`` for ``j >= 1``;
* ``reduction="mean"`` averages over samples **and** over the ``N - 1`` non-identity elements
  (the papers write sums but report means); ``"sum"`` sums both; ``"none"`` returns the
  per-pair errors ``[B, N - 1]``.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor, nn

from invreg.groups import Group

Reduction = Literal["mean", "sum", "none"]

#: keeps the normalised logit error finite when ``f(x) = 0``
NORM_EPS = 1e-12


# --------------------------------------------------------------------------- pair errors
def logit_l2(reference: Tensor, transformed: Tensor) -> Tensor:
    """``½‖f(x) − f(g·x)‖²`` over the last axis, per pair."""
    _check_pair(reference, transformed)
    return 0.5 * (reference - transformed).pow(2).sum(dim=-1)


def normalized_logit_l2(reference: Tensor, transformed: Tensor) -> Tensor:
    """``‖f(x) − f(g·x)‖² / ‖f(x)‖²`` over the last axis, per pair (scale-free logit error)."""
    _check_pair(reference, transformed)
    num = (reference - transformed).pow(2).sum(dim=-1)
    return num / reference.pow(2).sum(dim=-1).clamp_min(NORM_EPS)


def predictive_kl(reference: Tensor, transformed: Tensor) -> Tensor:
    """``KL(softmax f(x) ‖ softmax f(g·x))`` from logits, per pair (natural log)."""
    _check_pair(reference, transformed)
    log_p = torch.log_softmax(reference, dim=-1)
    log_q = torch.log_softmax(transformed, dim=-1)
    return (log_p.exp() * (log_p - log_q)).sum(dim=-1)


PAIR_ERRORS = {
    "logit_l2": logit_l2,
    "normalized_logit_l2": normalized_logit_l2,
    "predictive_kl": predictive_kl,
}


# --------------------------------------------------------------------------- orbits
def orbit_logits(
    model: nn.Module,
    x: Tensor,
    group: Group,
    chunk_size: int | None = None,
    num_samples: int | None = None,
    generator: torch.Generator | None = None,
    elements: Tensor | None = None,
) -> Tensor:
    """Outputs of ``model`` on every orbit element of every sample: ``[B, N, C]``.

    All ``B·N`` transformed inputs go through ``model`` in one batched forward, or in forwards
    of at most ``chunk_size`` samples' orbits (``chunk_size·N`` inputs) when ``chunk_size`` is
    set. ``N`` is the group's order, or ``num_samples`` (identity plus sampled elements) for a
    continuous group; every sample sees the same elements. ``elements`` (shape ``[N]``,
    identity first) fixes the elements explicitly and overrides ``num_samples``.

    >>> from invreg.groups import Rotations
    >>> model = nn.Sequential(nn.Flatten(), nn.Linear(4, 3))
    >>> orbit_logits(model, torch.randn(5, 1, 2, 2), Rotations(4)).shape
    torch.Size([5, 4, 3])
    """
    if chunk_size is not None and chunk_size < 1:
        raise ValueError(f"chunk_size must be a positive integer or None, got {chunk_size}")
    group.check_input(x)
    elems = resolve_elements(group, x, num_samples, generator, elements)
    outputs = []
    step = x.shape[0] if chunk_size is None else chunk_size
    for start in range(0, x.shape[0], max(step, 1)):
        chunk = group.orbit_from_elements(x[start : start + step], elems)
        b, n = chunk.shape[:2]
        out = model(chunk.reshape(b * n, *chunk.shape[2:]))
        outputs.append(out.reshape(b, n, *out.shape[1:]))
    return torch.cat(outputs, dim=0)


def resolve_elements(
    group: Group,
    x: Tensor,
    num_samples: int | None = None,
    generator: torch.Generator | None = None,
    elements: Tensor | None = None,
) -> Tensor:
    """The orbit elements ``[N]`` (identity first) on ``x``'s device: ``elements`` if given,
    else ``group.elements(num_samples, generator)``."""
    if elements is None:
        return group.elements(num_samples, generator=generator, device=x.device)
    if not isinstance(elements, Tensor) or elements.ndim != 1 + len(group.element_shape):
        expected = "".join(f", {d}" for d in group.element_shape)
        got = tuple(elements.shape) if isinstance(elements, Tensor) else type(elements).__name__
        raise ValueError(
            f"elements: expected a tensor of shape [N{expected}] (N group elements, identity "
            f"first), got {got}"
        )
    identity = group.identity(1, device=elements.device).to(elements.dtype)[0]
    if elements.shape[0] < 1 or not torch.equal(elements[0], identity):
        raise ValueError(
            f"elements: the first element must be the identity {identity.tolist()}, got "
            f"{elements[:1].tolist()}"
        )
    return elements.to(x.device)


def orbit_pair_errors(orbit: Tensor, error: str = "logit_l2") -> Tensor:
    """Per-pair errors ``[B, N - 1]`` between ``orbit[:, 0]`` and each ``orbit[:, j]``."""
    check_orbit(orbit)
    if error not in PAIR_ERRORS:
        raise ValueError(f"error must be one of {sorted(PAIR_ERRORS)}, got {error!r}")
    reference = orbit[:, :1].expand_as(orbit[:, 1:])
    return PAIR_ERRORS[error](reference, orbit[:, 1:])


def logit_invariance(
    orbit: Tensor, normalized: bool = False, reduction: Reduction = "mean"
) -> Tensor:
    """Logit invariance error LI.

    ``LI = mean_{i, g≠e} ½‖f(x_i) − f(g·x_i)‖²``; with ``normalized=True``,
    ``mean_{i, g≠e} ‖f(x_i) − f(g·x_i)‖² / ‖f(x_i)‖²``.

    Args:
        orbit: ``[B, N, C]`` outputs over orbits, identity first (``N >= 2``).
        normalized: use the scale-free variant.
        reduction: ``"mean"`` | ``"sum"`` over samples and non-identity elements, or ``"none"``.

    >>> orbit = torch.tensor([[[1.0, 0.0], [0.0, 1.0], [1.0, 0.0]]])
    >>> logit_invariance(orbit)
    tensor(0.5000)
    """
    name = "normalized_logit_l2" if normalized else "logit_l2"
    return _reduce(orbit_pair_errors(orbit, name), reduction)


def predictive_kl_invariance(orbit: Tensor, reduction: Reduction = "mean") -> Tensor:
    """Predictive-distribution invariance error DI.

    ``DI = mean_{i, g≠e} KL(softmax f(x_i) ‖ softmax f(g·x_i))`` (natural log).

    >>> orbit = torch.zeros(2, 4, 3)
    >>> predictive_kl_invariance(orbit)
    tensor(0.)
    """
    return _reduce(orbit_pair_errors(orbit, "predictive_kl"), reduction)


def orbit_consistency(orbit: Tensor, reduction: Reduction = "mean") -> Tensor:
    """Fraction of samples whose predicted class (argmax) is the same on the whole orbit.

    ``reduction="none"`` gives a bool per sample; ``"sum"`` the count.

    >>> orbit = torch.tensor([[[2.0, 1.0], [3.0, 0.0]], [[2.0, 1.0], [0.0, 3.0]]])
    >>> orbit_consistency(orbit)
    tensor(0.5000)
    """
    check_orbit(orbit, min_elements=1)
    pred = orbit.argmax(dim=-1)
    per_sample = (pred == pred[:, :1]).all(dim=1)
    return _reduce(per_sample, reduction)


def orbit_accuracy(orbit: Tensor, target: Tensor, reduction: Reduction = "mean") -> Tensor:
    """Fraction of samples classified correctly on every orbit element.

    >>> orbit = torch.tensor([[[2.0, 1.0], [3.0, 0.0]], [[2.0, 1.0], [0.0, 3.0]]])
    >>> orbit_accuracy(orbit, torch.tensor([0, 0]))
    tensor(0.5000)
    """
    check_orbit(orbit, min_elements=1)
    if target.shape != orbit.shape[:1]:
        raise ValueError(
            f"target: expected shape ({orbit.shape[0]},) to match orbit {tuple(orbit.shape)}, "
            f"got {tuple(target.shape)}"
        )
    per_sample = (orbit.argmax(dim=-1) == target.unsqueeze(1)).all(dim=1)
    return _reduce(per_sample, reduction)


# --------------------------------------------------------------------------- checks
def check_orbit(orbit: Tensor, min_elements: int = 2) -> None:
    """Validate an orbit tensor ``[B, N, C]``: shape, at least ``min_elements``, finite."""
    if not isinstance(orbit, Tensor):
        raise TypeError(f"orbit: expected a Tensor, got {type(orbit).__name__}")
    if orbit.ndim != 3:
        raise ValueError(
            f"orbit: expected shape [B, N, C] (samples, orbit elements, outputs), got "
            f"{tuple(orbit.shape)}"
        )
    if orbit.shape[1] < min_elements:
        raise ValueError(
            f"orbit: expected at least {min_elements} orbit elements (identity first) on dim 1, "
            f"got shape {tuple(orbit.shape)}"
        )
    if not torch.isfinite(orbit).all():
        raise ValueError("orbit: contains NaN or Inf values; the model's outputs are not finite")


def _check_pair(reference: Tensor, transformed: Tensor) -> None:
    if reference.shape != transformed.shape:
        raise ValueError(
            f"reference and transformed outputs must have the same shape, got "
            f"{tuple(reference.shape)} and {tuple(transformed.shape)}"
        )


def _reduce(values: Tensor, reduction: Reduction) -> Tensor:
    if reduction == "none":
        return values
    if reduction == "sum":
        return values.sum(dtype=torch.get_default_dtype() if values.dtype == torch.bool else None)
    if reduction == "mean":
        return values.float().mean() if values.dtype == torch.bool else values.mean()
    raise ValueError(f"reduction must be 'mean', 'sum' or 'none', got {reduction!r}")
