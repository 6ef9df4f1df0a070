"""The Lie derivative error as a torchmetrics metric (sum and count, DDP-exact)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import Tensor, nn

from invreg.functional.lie import (
    LIE_NORMS,
    check_lie_input,
    lie_derivative_error,
    lie_generator,
)
from invreg.groups import Group, LieGenerator
from invreg.metrics.base import SumCountMetric, config_digest


class LieDerivativeError(SumCountMetric):
    """Mean over samples of ``‖L f(x)‖²``, ``L f(x) = d/dt f(g_t·x)|_{t=0}`` (lower is better, 0
    invariant; :func:`invreg.functional.lie.lie_derivative_error`).

    - ``update(model, x)``: ``model`` maps floating images ``x`` ``[B, C, H, W]`` to a tensor
      of outputs ``[B, *D]``; adds the ``B`` per-sample values to the sum and ``B`` to the
      count (an empty batch adds nothing). ``ValueError`` naming ``x`` if it holds NaN / Inf,
      and naming the model (or ``layer``) if its output or Lie derivative is NaN / Inf on
      finite inputs: nothing is added, the metric never turns NaN silently.
    - ``compute()``: scalar; NaN with a ``UserWarning`` if nothing was seen.

    A measurement leaves the model as it was. By default (``eval_mode=True``) ``update`` runs an
    ``nn.Module`` in ``eval()`` mode and restores every submodule's train / eval flag after
    (:func:`invreg.evaluation.eval_mode`, as the callbacks measure): batch norm uses its
    running statistics and dropout is off. ``eval_mode=False`` measures the model in the modes
    it has (batch norm in training mode normalises with the batch's statistics) and restores
    the buffers of every module in training mode afterwards, so its running statistics are
    not updated by the measurement. A plain callable is called as it is.

    Args:
        generator: a name of :data:`invreg.functional.lie.GENERATORS` (``"rotation"``,
            ``"translate_x"``, ``"translate_y"``, ``"scale"``), a shorthand for a generator of
            the shipped groups; with ``group``, the name of one of its generators (needed when
            it has several, :class:`~invreg.groups.Translations`).
        layer: differentiate the output of this named submodule of the model instead of its
            output, to locate where invariance breaks (``None``: the model's output).
        norm: ``"squared"`` (the paper's ``‖L f‖²``) or ``"l2"`` (``‖L f‖``).
        fill: the plane's value outside the frame (a data module's ``background``).
        eval_mode: measure an ``nn.Module`` in ``eval()`` mode (default; see above).
        group: the run's continuous group, or its name (``"so2"``): its own generator
            (:meth:`Group.lie_generator <invreg.groups.Group.lie_generator>`). A finite group
            has none: ``ValueError`` naming what is accepted.

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
        generator: str | None = None,
        layer: str | None = None,
        norm: str = "squared",
        fill: float = 0.0,
        eval_mode: bool = True,
        *,
        group: Group | str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        lie = lie_generator(generator, group)
        if norm not in LIE_NORMS:
            raise ValueError(f"norm: expected one of {list(LIE_NORMS)}, got {norm!r}")
        if layer is not None and (not isinstance(layer, str) or not layer):
            raise ValueError(f"layer: expected a submodule name or None, got {layer!r}")
        if not isinstance(eval_mode, bool):
            raise TypeError(f"eval_mode: expected True or False, got {eval_mode!r}")
        self.generator, self.layer, self.norm, self.fill = lie.name, layer, norm, float(fill)
        self.eval_mode = eval_mode
        #: the generator itself, and the group it came from (``None`` for a generator name)
        self.lie_generator: LieGenerator = lie
        self.group: Group | None = None if group is None else lie.group
        # the state names depend on the generator's flow (its name), not on how it was given
        digest = config_digest("LieDerivativeError", lie.name, layer, norm, self.fill)
        self._init_states(f"lie_error_sum_{digest}", f"lie_error_count_{digest}")

    def update(self, model: nn.Module | Callable[[Tensor], Tensor], x: Tensor) -> None:
        check_lie_input(x, self.lie_generator)
        if x.shape[0] == 0:
            return
        with _measuring(model, self.eval_mode):
            values = lie_derivative_error(
                model, x, self.lie_generator, reduction="none", norm=self.norm, layer=self.layer,
                fill=self.fill,
            )
        self._accumulate(values.sum(), x.shape[0])


@contextmanager
def _measuring(model: object, eval_mode: bool) -> Iterator[None]:
    """Run the block with ``model`` in ``eval()`` mode (``eval_mode``), then restore its modes
    and the buffers of its submodules that ran in training mode (batch norm's running
    statistics); nothing for a plain callable."""
    if not isinstance(model, nn.Module):
        yield
        return
    from invreg.evaluation import eval_mode as evaluation_mode  # imports invreg.metrics

    with evaluation_mode(model, eval_mode):
        saved = [
            (buffer, buffer.detach().clone())
            for module in model.modules()
            if module.training
            for buffer in module.buffers(recurse=False)
        ]
        try:
            yield
        finally:
            with torch.no_grad():
                for buffer, value in saved:
                    buffer.copy_(value)
