"""The shared shell of every invreg metric: a sum and a count, reduced by summation.

A metric's value is ``sum / count`` over everything :meth:`update` has seen. Both states are
reduced across processes with ``dist_reduce_fx="sum"``, so a DDP result is exactly the
single-process result on the union of the data, and memory does not grow with the dataset.

State names carry the metric's meaning (and, for configurable metrics, a short digest of the
configuration), because ``MetricCollection`` merges metrics whose state names and values
coincide into one compute group — two different metrics must never look alike to it.

``compute()`` before any ``update()`` (count 0, also after DDP reduction) returns ``NaN`` and
warns (``UserWarning``); it does not raise, so an empty validation epoch does not crash a run.
"""

from __future__ import annotations

import warnings
import zlib
from typing import Any

import torch
from torch import Tensor
from torchmetrics import Metric
from torchmetrics.utilities.plot import _AX_TYPE, _PLOT_OUT_TYPE


def config_digest(*config: Any) -> str:
    """A short stable digest of a metric's configuration, for its state names."""
    return f"{zlib.crc32(repr(config).encode()):08x}"


class SumCountMetric(Metric):
    """``value = sum / count`` with both states summed across processes.

    Subclasses call :meth:`_init_states` in ``__init__`` and :meth:`_accumulate` in
    ``update``; ``shape`` gives vector states (one value per layer, for example).
    """

    is_differentiable = False
    full_state_update = False
    plot_lower_bound: float | None = 0.0

    def _init_states(self, total_name: str, count_name: str, shape: tuple[int, ...] = ()) -> None:
        self._total_name, self._count_name = total_name, count_name
        self.add_state(total_name, default=torch.zeros(shape), dist_reduce_fx="sum")
        self.add_state(
            count_name, default=torch.zeros(shape, dtype=torch.long), dist_reduce_fx="sum"
        )

    def _accumulate(self, total: Tensor, count: int | Tensor) -> None:
        state = getattr(self, self._total_name)
        setattr(self, self._total_name, state + total.detach().to(state.dtype))
        setattr(self, self._count_name, getattr(self, self._count_name) + count)

    def _mean(self) -> Tensor:
        total = getattr(self, self._total_name)
        count = getattr(self, self._count_name)
        if (count == 0).any():
            warnings.warn(
                f"{type(self).__name__}.compute(): no samples were seen (count 0, after "
                f"reduction across processes); returning NaN. Call update() first.",
                UserWarning,
                stacklevel=3,
            )
        return torch.where(count > 0, total / count.clamp_min(1), torch.full_like(total, torch.nan))

    def compute(self) -> Tensor:
        return self._mean()

    def plot(self, val: Any = None, ax: _AX_TYPE | None = None) -> _PLOT_OUT_TYPE:
        """Plot a value (or a list of values, one per step) of the metric; ``val=None`` plots
        :meth:`compute`. Needs matplotlib.

        >>> import matplotlib
        >>> matplotlib.use("Agg")
        >>> from invreg.metrics import OrbitConsistency
        >>> metric = OrbitConsistency()
        >>> metric.update(torch.tensor([[[1.0, 0.0], [2.0, 0.0]]]))
        >>> fig, ax = metric.plot()
        """
        return self._plot(val, ax)


class BatchMeans(SumCountMetric):
    """Means of several named scalars over an epoch, each batch weighted by its size.

    ``update(values, weight)`` adds ``weight · values`` (``values``: ``[len(names)]``, one
    value per name, e.g. a batch's loss terms and accuracy; ``weight``: its number of samples)
    to one vector of sums and ``weight`` to the count; ``compute()`` returns ``{name: mean}``.
    One update per batch for all the names, however many: the training loop's epoch means at
    the cost of a single metric update.

    >>> means = BatchMeans(("loss", "acc"))
    >>> means.update(torch.tensor([2.0, 1.0]), 3)
    >>> means.update(torch.tensor([1.0, 0.0]), 1)
    >>> {name: round(value.item(), 4) for name, value in means.compute().items()}
    {'loss': 1.75, 'acc': 0.75}
    """

    def __init__(self, names: tuple[str, ...] | list[str], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        names = tuple(names)
        if not names or len(set(names)) != len(names) or not all(
            isinstance(name, str) and name for name in names
        ):
            raise ValueError(f"names: expected distinct non-empty strings, got {names!r}")
        self.names = names
        digest = config_digest("BatchMeans", names)
        self._init_states(f"batch_total_{digest}", f"batch_count_{digest}", shape=(len(names),))

    def update(self, values: Tensor, weight: int) -> None:
        values = torch.as_tensor(values)
        if values.shape != (len(self.names),):
            raise ValueError(
                f"values: expected shape ({len(self.names)},), one per name {self.names}, got "
                f"{tuple(values.shape)}"
            )
        if isinstance(weight, bool) or not isinstance(weight, int) or weight < 0:
            raise ValueError(f"weight: expected an integer >= 0 (samples), got {weight!r}")
        self._accumulate(values.detach().float() * weight, weight)

    def compute(self) -> dict[str, Tensor]:  # type: ignore[override]
        return dict(zip(self.names, self._mean().unbind(), strict=True))
