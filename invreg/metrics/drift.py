"""Invariance under input drift, aggregated once: :class:`DriftMetrics`.

The drift callback, the drift section of ``invreg report`` and the ``genuine-drift``
experiment all measure through this class, so the three report the same numbers under the
same names.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

from torch import Tensor, nn

from invreg.functional.drift import accuracy_ratio, blend, check_betas
from invreg.groups import Group
from invreg.metrics.orbit import OrbitMetrics

#: the default β grid (the drift callback's and ``invreg report``'s)
DEFAULT_BETAS = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5)


class DriftMetrics(nn.Module):
    """DI, LI, consistency, accuracy and ``accuracy_ratio`` at every drift weight ``β``.

    For each ``β`` of the grid (:func:`~invreg.functional.check_betas`: sorted, distinct, in
    ``[0, 1]``, ``0`` added first if missing) the inputs are blended with their drift samples,
    ``x_β = (1 − β)·x + β·drift`` (:func:`~invreg.functional.blend`), and one
    :class:`~invreg.metrics.OrbitMetrics` per ``β`` accumulates the orbit values of
    ``x_β`` as sums and counts (so batches, and DDP processes, add up exactly). Then

    * ``DI(β) = mean KL(softmax f(x_β) ‖ softmax f(g·x_β))`` over samples and the non-identity
      orbit elements (also ``LI``, ``LI_normalized``, ``consistency``);
    * ``accuracy(β)`` — accuracy on the untransformed ``x_β`` (with ``targets=True``);
    * ``accuracy_ratio(β) = accuracy(β) / accuracy(0)`` (float64; NaN when ``accuracy(0)`` is
      0), :func:`~invreg.functional.accuracy_ratio`; with ``targets=True`` only.

    - ``update_from_model(model, x, drift, target=None, elements=None)``: ``x`` ``[B, *D]``
      clean inputs, ``drift`` ``[B, *D]`` one drift sample per input (e.g. from a
      :class:`~invreg.data.drift.DriftSource`, statistics matched), ``target`` ``[B]`` class
      indices; one orbit forward per ``β`` (no gradients; put the model in ``eval()`` mode).
    - ``compute()``: ``{β: {key: scalar tensor}}``; :meth:`rows`: the same as a list of
      ``{"beta": β, key: float, ...}``, ``β`` ascending.

    Args:
        group: the group (or its name) whose orbits are forwarded.
        betas: the drift weights (``β = 0`` is always measured).
        num_classes, targets, chunk_size, num_samples: of each
            :class:`~invreg.metrics.OrbitMetrics`.

    >>> import torch
    >>> from invreg.groups import Rotations
    >>> metrics = DriftMetrics(Rotations(4), betas=[0.5])
    >>> model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 3))
    >>> x, drift = torch.randn(8, 1, 4, 4), torch.randn(8, 1, 4, 4)
    >>> metrics.update_from_model(model, x, drift, torch.zeros(8, dtype=torch.long))
    >>> [row["beta"] for row in metrics.rows()], sorted(metrics.rows()[0])
    ([0.0, 0.5], ['DI', 'LI', 'LI_normalized', 'accuracy', 'accuracy_ratio', 'beta', \
'consistency', 'orbit_accuracy'])
    """

    def __init__(
        self,
        group: Group | str,
        betas: Sequence[float] = DEFAULT_BETAS,
        num_classes: int | None = None,
        *,
        targets: bool = True,
        chunk_size: int | None = None,
        num_samples: int | None = None,
    ) -> None:
        super().__init__()
        self.betas = check_betas(betas)
        self.targets = bool(targets)
        self.orbit_metrics = nn.ModuleList(
            OrbitMetrics(group, num_classes, targets=targets, chunk_size=chunk_size,
                         num_samples=num_samples)
            for _ in self.betas
        )

    def update_from_model(
        self,
        model: nn.Module,
        x: Tensor,
        drift: Tensor,
        target: Tensor | None = None,
        elements: Tensor | None = None,
        progress: Callable[[Iterable], Iterable] | None = None,
    ) -> None:
        """One orbit forward of ``model`` on ``blend(x, drift, β)`` per ``β``, accumulated.
        ``elements`` (``[N]``, identity first) fixes the orbit of a continuous group;
        ``progress`` (e.g. ``tqdm``) wraps the loop over the ``β``."""
        if drift.shape != x.shape:
            raise ValueError(
                f"drift: expected one drift sample per input, the shape of x "
                f"{tuple(x.shape)}, got {tuple(drift.shape)}"
            )
        pairs = list(zip(self.betas, self.orbit_metrics, strict=True))
        for beta, metrics in pairs if progress is None else progress(pairs):
            metrics.update_from_model(model, blend(x, drift, beta), target, elements)

    def update(self, orbits: Sequence[Tensor], target: Tensor | None = None) -> None:
        """Accumulate precomputed orbit logits: ``orbits[i]`` ``[B, N, C]`` of the inputs
        blended with ``betas[i]``."""
        if len(orbits) != len(self.betas):
            raise ValueError(
                f"orbits: expected one orbit tensor per beta ({len(self.betas)}: "
                f"{list(self.betas)}), got {len(orbits)}"
            )
        for orbit, metrics in zip(orbits, self.orbit_metrics, strict=True):
            metrics.update(orbit, target)

    def compute(self) -> dict[float, dict[str, Tensor]]:
        values = {beta: dict(metrics.compute())
                  for beta, metrics in zip(self.betas, self.orbit_metrics, strict=True)}
        if self.targets:
            clean = values[0.0]["accuracy"]
            for row in values.values():
                row["accuracy_ratio"] = accuracy_ratio(row["accuracy"], clean)
        return values

    def rows(self) -> list[dict[str, float]]:
        """:meth:`compute` as plain rows, ``{"beta": β, key: float, ...}``, ``β`` ascending."""
        return [{"beta": beta, **{key: value.item() for key, value in row.items()}}
                for beta, row in self.compute().items()]

    def reset(self) -> None:
        for metrics in self.orbit_metrics:
            metrics.reset()
