"""Statistics over per-sample values: confidence intervals of a mean.

Pure functions of tensors and a seed: the same values, resamples, level and seed give the same
interval on every run and machine (the resampling runs on the CPU in float64).
"""

from __future__ import annotations

import numbers

import torch
from torch import Tensor

#: index entries per resampling block of :func:`bootstrap_interval` (``2^22`` int64 indices:
#: ~32 MiB); the block size changes which random indices a seed draws, so it is fixed
BOOTSTRAP_BLOCK_ENTRIES = 2**22


def bootstrap_interval(
    values: Tensor, resamples: int = 2000, confidence: float = 0.95, seed: int = 0
) -> tuple[float, float]:
    """Percentile-bootstrap confidence interval of the mean of ``values``.

    With ``n`` values ``v`` and ``α = (1 − confidence) / 2``::

        m_r = mean_j v[I_rj],   I_rj ~ U{0, …, n − 1}   (r = 1 … resamples, with replacement)
        interval = (quantile_α(m), quantile_{1−α}(m))   (linear interpolation, torch.quantile)

    computed in float64 on the CPU; the indices come from a ``torch.Generator`` seeded with
    ``seed``, drawn in blocks of ``max(1, 2^22 // n)`` resamples (bounds memory; part of the
    seed's meaning). A single value gives ``(v, v)``; NaN values give a NaN interval.

    Args:
        values: per-sample values, any shape (flattened; ``n >= 1``), real dtype, detached.
        resamples: number of bootstrap means, ``>= 1``.
        confidence: level of the interval, in ``(0, 1)``.
        seed: seeds the resampling.

    Returns:
        ``(low, high)`` as Python floats.

    >>> bootstrap_interval(torch.full((10,), 0.5))
    (0.5, 0.5)
    >>> low, high = bootstrap_interval(torch.tensor([0.0, 1.0] * 50), seed=1)  # mean 0.5
    >>> 0.35 < low < 0.5 < high < 0.65
    True
    """
    if not isinstance(values, Tensor):
        raise TypeError(f"values: expected a Tensor of per-sample values, got "
                        f"{type(values).__name__}")
    if values.is_complex() or values.dtype == torch.bool:
        raise TypeError(f"values: expected real numbers, got dtype {values.dtype}")
    if isinstance(resamples, bool) or not isinstance(resamples, numbers.Integral) or resamples < 1:
        raise ValueError(f"resamples: expected a positive integer, got {resamples!r}")
    if (isinstance(confidence, bool) or not isinstance(confidence, numbers.Real)
            or not 0.0 < confidence < 1.0):
        raise ValueError(f"confidence: expected a level in (0, 1), e.g. 0.95, got {confidence!r}")
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
        raise TypeError(f"seed: expected an integer, got {seed!r}")
    values = values.detach().double().flatten().cpu()
    if values.numel() == 0:
        raise ValueError("values: expected at least one value, got an empty tensor")
    generator = torch.Generator().manual_seed(seed)
    means = []
    block = max(1, BOOTSTRAP_BLOCK_ENTRIES // values.numel())
    for start in range(0, resamples, block):
        count = min(block, resamples - start)
        index = torch.randint(values.numel(), (count, values.numel()), generator=generator)
        means.append(values[index].mean(dim=1))
    alpha = (1.0 - confidence) / 2
    low, high = torch.quantile(torch.cat(means), torch.tensor([alpha, 1.0 - alpha],
                                                              dtype=torch.float64))
    return low.item(), high.item()
