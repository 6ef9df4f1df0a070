"""Input drift: the blend ``x_β = (1 − β)·x + β·drift``, the β grid and ``Acc(β) / Acc(0)``.

Moskalev et al. (2023, Fig. 4) blend every input with a drift sample and watch DI and the
accuracy ratio as ``β`` grows. The formulas live here once; :class:`invreg.metrics.DriftMetrics`
aggregates them, and the drift callback, ``invreg report`` and the ``genuine-drift``
experiment feed it. Drift *sources* (what ``drift`` is) are in :mod:`invreg.data.drift`.

>>> x, drift = torch.zeros(2, 3), torch.ones(2, 3)
>>> blend(x, drift, 0.25)[0].tolist()
[0.25, 0.25, 0.25]
>>> check_betas([0.5, 0.1, 0.5])
(0.0, 0.1, 0.5)
>>> accuracy_ratio(torch.tensor([0.8, 0.4]), torch.tensor(0.8)).tolist()
[1.0, 0.5]
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterable

import torch
from torch import Tensor


def check_beta(beta: float, name: str = "beta") -> float:
    """``beta`` as a float if it is a real number in ``[0, 1]``, else ``ValueError`` naming
    ``name``."""
    if isinstance(beta, bool) or not isinstance(beta, numbers.Real) or not 0.0 <= beta <= 1.0:
        raise ValueError(f"{name} must lie in [0, 1], got {beta!r} (a blending weight)")
    return float(beta)


def check_betas(betas: Iterable[float], name: str = "betas") -> tuple[float, ...]:
    """The β grid of a drift measurement: the distinct values of ``betas`` sorted, with ``0``
    (the clean inputs, the denominator of the accuracy ratio) added first if missing.

    Every value must be a real number in ``[0, 1]`` and there must be at least one; otherwise
    ``ValueError`` naming ``name`` and the values received.
    """
    if isinstance(betas, (str, bytes)) or not isinstance(betas, Iterable):
        raise ValueError(f"{name}: expected a sequence of values in [0, 1], got {betas!r}")
    given = list(betas)
    if not given or any(
        isinstance(b, bool) or not isinstance(b, numbers.Real) or not 0.0 <= b <= 1.0
        for b in given
    ):
        raise ValueError(f"{name}: expected values in [0, 1], got {given!r}")
    values = tuple(sorted({float(b) for b in given}))
    return values if values[0] == 0.0 else (0.0, *values)


def blend(x: Tensor, drift: Tensor, beta: float) -> Tensor:
    """``(1 − β)·x + β·drift``, pixel-wise; ``β = 0`` returns ``x`` itself (not a copy).

    Args:
        x: inputs ``[B, ...]``.
        drift: drift samples of the same shape (cast to ``x``'s dtype and device).
        beta: blending weight in ``[0, 1]``.
    """
    beta = check_beta(beta)
    if drift.shape != x.shape:
        raise ValueError(
            f"drift: expected the shape of x, {tuple(x.shape)}, got {tuple(drift.shape)}"
        )
    if beta == 0:
        return x
    return (1.0 - beta) * x + beta * drift.to(dtype=x.dtype, device=x.device)


def accuracy_ratio(accuracy: Tensor, clean: Tensor) -> Tensor:
    """``Acc(β) / Acc(0)`` in float64 (the division of Python floats); NaN where the clean
    accuracy is not positive (or NaN), since the ratio is then undefined.

    Args:
        accuracy: accuracies ``Acc(β)``, any shape.
        clean: the clean accuracy ``Acc(0)``, broadcastable to ``accuracy``.
    """
    accuracy = torch.as_tensor(accuracy).double()
    clean = torch.as_tensor(clean, device=accuracy.device).double()
    ratio = accuracy / clean.where(clean > 0, torch.ones_like(clean))
    return ratio.where(clean > 0, torch.full_like(ratio, math.nan))
