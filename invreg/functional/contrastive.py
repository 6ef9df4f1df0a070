"""SimCLR's contrastive objective (Chen et al. 2020, "A Simple Framework for Contrastive
Learning of Visual Representations") and the accuracy of its retrieval task.

Two views ``z1, z2`` ``[N, D]`` of the same ``N`` samples form ``2N`` embeddings
``z = [z1; z2]``; the positive of anchor ``i`` is the other view of the same sample
(``i + N`` for ``i < N``, ``i − N`` otherwise) and the other ``2N − 2`` embeddings are its
negatives. Both functions compute in at least float32 (:func:`working_dtype`).
"""

from __future__ import annotations

import math
from numbers import Real

import torch
import torch.nn.functional as F
from torch import Tensor

from invreg.functional.invariance import working_dtype


def nt_xent(z1: Tensor, z2: Tensor, temperature: float = 0.5) -> Tensor:
    """NT-Xent, the normalised temperature-scaled cross-entropy of SimCLR.

    With ``u_k = z_k / ‖z_k‖`` for the ``2N`` embeddings ``z = [z1; z2]``, the similarities
    ``s_kl = u_k·u_l / τ`` and ``p(k)`` the positive of anchor ``k``::

        ℓ_k = −log( exp(s_k,p(k)) / Σ_{l ≠ k} exp(s_kl) )
        loss = (1 / 2N) Σ_k ℓ_k

    Args:
        z1: embeddings of the first view, ``[N, D]`` with ``N ≥ 2``.
        z2: embeddings of the second view, same shape; row ``i`` is the same sample as ``z1[i]``.
        temperature: ``τ > 0``.

    Returns:
        A scalar in the working dtype; differentiable. Its lower bound, reached as the
        positives align and the negatives separate, is 0.

    >>> z = torch.eye(2)
    >>> round(nt_xent(z, z, temperature=0.5).item(), 4)  # log(1 + 2·e^(−2))
    0.2395
    """
    similarities, positives = _similarities(z1, z2, check_temperature(temperature))
    return F.cross_entropy(similarities, positives)


def contrastive_accuracy(z1: Tensor, z2: Tensor) -> Tensor:
    """The fraction of the ``2N`` anchors whose most cosine-similar other embedding is their
    positive (ties go to the lowest index).

    Args:
        z1: embeddings of the first view, ``[N, D]`` with ``N ≥ 2``.
        z2: embeddings of the second view, same shape.

    Returns:
        A scalar in ``[0, 1]`` (working dtype), not differentiable.

    >>> z = torch.eye(3)
    >>> contrastive_accuracy(z, z).item()
    1.0
    """
    with torch.no_grad():
        similarities, positives = _similarities(z1, z2, 1.0)
        return (similarities.argmax(dim=1) == positives).to(similarities.dtype).mean()


def check_temperature(temperature: object) -> float:
    """``temperature`` as a float if it is a finite number ``> 0``, else ``ValueError``."""
    if isinstance(temperature, bool) or not isinstance(temperature, Real):
        raise ValueError(f"temperature: expected a number > 0, got {temperature!r}")
    if not math.isfinite(temperature) or temperature <= 0:
        raise ValueError(f"temperature: expected a finite number > 0, got {temperature!r}")
    return float(temperature)


def _similarities(z1: Tensor, z2: Tensor, temperature: float) -> tuple[Tensor, Tensor]:
    """Cosine similarities ``[2N, 2N]`` divided by ``temperature``, self-similarities set to
    ``−inf``, and the index of each anchor's positive ``[2N]``."""
    for name, z in (("z1", z1), ("z2", z2)):
        if not isinstance(z, Tensor):
            raise TypeError(f"{name}: expected a Tensor, got {type(z).__name__}")
        if z.ndim != 2 or z.shape[0] < 2 or not z.is_floating_point():
            raise ValueError(
                f"{name}: expected floating-point embeddings [N, D] with N >= 2, got shape "
                f"{tuple(z.shape)} ({z.dtype})"
            )
    if z1.shape != z2.shape:
        raise ValueError(
            f"z1, z2: expected the same shape [N, D] (row i of both is one sample), got "
            f"{tuple(z1.shape)} and {tuple(z2.shape)}"
        )
    n = z1.shape[0]
    dtype = working_dtype(torch.promote_types(z1.dtype, z2.dtype))
    unit = F.normalize(torch.cat([z1, z2]).to(dtype), dim=1)
    similarities = unit @ unit.T / temperature
    self_pairs = torch.eye(2 * n, dtype=torch.bool, device=unit.device)
    similarities = similarities.masked_fill(self_pairs, float("-inf"))
    index = torch.arange(n, device=unit.device)
    positives = torch.cat([index + n, index])
    return similarities, positives
