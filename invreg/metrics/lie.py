"""The Lie derivative error as a torchmetrics metric (sum and count, DDP-exact)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch import Tensor, nn

from invreg.functional.lie import (
    GENERATORS,
    LIE_NORMS,
    check_lie_input,
    lie_derivative_error,
)
from invreg.metrics.base import SumCountMetric, config_digest


class LieDerivativeError(SumCountMetric):
    """Mean over samples of ``‖L f(x)‖²``, ``L f(x) = d/dt f(g_t·x)|_{t=0}`` (lower is better, 0
    invariant; :func:`invreg.functional.lie.lie_derivative_error`).

    - ``update(model, x)``: ``model`` maps floating images ``x`` ``[B, C, H, W]`` to outputs
      ``[B, *D]``; adds the ``B`` per-sample values to the sum and ``B`` to the count. Call
      it with the model in ``eval()`` mode (batch norm in training mode couples the samples).
    - ``compute()``: scalar; NaN with a ``UserWarning`` if nothing was seen.

    Args:
        generator: a key of :data:`invreg.functional.lie.GENERATORS` (``"rotation"``,
            ``"translate_x"``, ``"translate_y"``, ``"scale"``).
        layer: differentiate the output of this named submodule of the model instead of its
            output, to locate where invariance breaks (``None``: the model's output).
        norm: ``"squared"`` (the paper's ``‖L f‖²``) or ``"l2"`` (``‖L f‖``).
        fill: the plane's value outside the frame (a data module's ``background``).

    >>> import torch
    >>> metric = LieDerivativeError("rotation")
    >>> model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(9, 2))
    >>> with torch.no_grad():
    ...     _ = model[1].weight.fill_(1.0)  # the sum of the pixels: rotation-invariant inside
    >>> x = torch.zeros(2, 1, 3, 3); x[:, :, 1, 1] = 1.0  # content at the centre
    >>> metric.update(model, x)
    >>> metric.compute()
    tensor(0.)
    """

    higher_is_better = False

    def __init__(
        self,
        generator: str,
        layer: str | None = None,
        norm: str = "squared",
        fill: float = 0.0,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if not isinstance(generator, str) or generator not in GENERATORS:
            raise ValueError(
                f"generator: expected one of {sorted(GENERATORS)}, got {generator!r}"
            )
        if norm not in LIE_NORMS:
            raise ValueError(f"norm: expected one of {list(LIE_NORMS)}, got {norm!r}")
        if layer is not None and (not isinstance(layer, str) or not layer):
            raise ValueError(f"layer: expected a submodule name or None, got {layer!r}")
        self.generator, self.layer, self.norm, self.fill = generator, layer, norm, float(fill)
        digest = config_digest("LieDerivativeError", generator, layer, norm, self.fill)
        self._init_states(f"lie_error_sum_{digest}", f"lie_error_count_{digest}")

    def update(self, model: nn.Module | Callable[[Tensor], Tensor], x: Tensor) -> None:
        check_lie_input(x, self.generator)
        if x.shape[0] == 0:
            return
        values = lie_derivative_error(
            model, x, self.generator, reduction="none", norm=self.norm, layer=self.layer,
            fill=self.fill,
        )
        self._accumulate(values.sum(), x.shape[0])
