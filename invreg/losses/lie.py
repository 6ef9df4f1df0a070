"""The Lie derivative error as a training loss, for continuous symmetries.

Unlike the orbit losses of :mod:`invreg.losses.invariance`, which compare outputs on ``x`` and
on transformed copies ``g·x``, this term differentiates the model along a one-parameter
transformation ``g_t`` at ``t = 0`` (:func:`invreg.functional.lie.lie_derivative`), so it needs
the model and the inputs: it is a :class:`~invreg.losses.invariance.ModelInvarianceLoss`, which
:class:`~invreg.modules.InvarianceModule` calls as ``loss(backbone, x, fill=...)``.
"""

from __future__ import annotations

from collections.abc import Callable

from torch import Tensor, nn

from invreg.functional.lie import (
    GENERATORS,
    check_lie_input,
    lie_derivative_error,
    lie_derivative_norms,
    lie_derivative_with_output,
    lie_generator,
)
from invreg.groups import Group, LieGenerator
from invreg.losses.invariance import ModelInvarianceLoss


class LieDerivativeL2(ModelInvarianceLoss):
    """``mean_i ‖L f(x_i)‖²`` with ``L f(x) = d/dt f(g_t·x)|_{t=0}``: a penalty on the model's
    sensitivity to an infinitesimal transformation (Gruver et al. 2023).

    ``forward(model, x, fill=0.0)``: ``model`` maps floating images ``x`` ``[B, C, H, W]`` to
    outputs ``[B, *D]``; returns a scalar in at least float32, differentiable with respect to
    the model's parameters. With ``layer`` set, the derivative of that backbone submodule's
    output is penalised instead.

    Args:
        generator: a name of :data:`invreg.functional.lie.GENERATORS` (``"rotation"``,
            ``"translate_x"``, ``"translate_y"``, ``"scale"``), a shorthand for a generator of
            the shipped groups; with ``group``, the name of one of its generators (needed when
            it has several, :class:`~invreg.groups.Translations`).
        layer: name of a backbone submodule (``None``: the logits).
        group: the run's continuous group, or its name (``"so2"``): its own generator
            (:meth:`Group.lie_generator <invreg.groups.Group.lie_generator>`). A finite group
            has none: ``ValueError`` naming what is accepted.

    In :class:`~invreg.modules.InvarianceModule` (``invariance_loss=LieDerivativeL2(
    group="so2")``, or ``LieDerivativeL2("rotation")``) the term is computed on the
    (augmented) untransformed batch; the module's group still drives augmentation and the
    validation orbit metrics. As a training term it runs the model
    in its own mode (batch norm in training mode uses, and updates, the batch statistics: the
    same pass gives the task loss its logits) and lets NaN / Inf propagate into the loss;
    to *measure* a model use :class:`~invreg.metrics.LieDerivativeError`.

    >>> import torch
    >>> model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(9, 2))
    >>> LieDerivativeL2("rotation")(model, torch.randn(4, 1, 3, 3)).shape
    torch.Size([])
    """

    def __init__(
        self,
        generator: str | None = None,
        layer: str | None = None,
        *,
        group: Group | str | None = None,
    ) -> None:
        lie = lie_generator(generator, group)
        if layer is not None and (not isinstance(layer, str) or not layer):
            raise ValueError(f"layer: expected a backbone submodule name or None, got {layer!r}")
        super().__init__(layer=layer)
        #: the generator's name, the generator itself, and the group it came from (or None)
        self.generator: str = lie.name
        self.lie_generator: LieGenerator = lie
        self.group: Group | None = None if group is None else lie.group
        if group is None:  # described as before group= existed: checkpoints and caches stay
            self.__dict__.get("_init_args", {}).pop("group", None)

    def forward(  # type: ignore[override]
        self,
        model: nn.Module | Callable[[Tensor], Tensor],
        x: Tensor | None = None,
        fill: float = 0.0,
    ) -> Tensor:
        if isinstance(model, Tensor) or x is None:
            raise TypeError(
                f"{type(self).__name__} differentiates the model: call it as loss(model, x), got "
                f"{type(model).__name__} and {type(x).__name__}; modules that pass outputs "
                f"(orbits of features) need an orbit loss such as LogitL2"
            )
        # non-finite values propagate: a gradient scaler must see the overflow
        return lie_derivative_error(
            model, x, self.lie_generator, layer=self.layer, fill=fill, allow_nonfinite=True
        )

    def output_and_loss(
        self, model: nn.Module | Callable[[Tensor], Tensor], x: Tensor, fill: float = 0.0
    ) -> tuple[Tensor, Tensor]:
        """``(f(x), loss)`` from one forward-mode pass: the model's output ``[B, *D]`` for the
        task loss, differentiable like a plain forward's, and the value of :meth:`forward`.

        A training step that would run ``f(x)`` for its task loss anyway saves that forward
        and its backward (:func:`~invreg.functional.lie.lie_derivative_with_output`; measured
        in ``benchmarks/bench_lie.py``).

        >>> import torch
        >>> model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(9, 2))
        >>> x = torch.randn(4, 1, 3, 3)
        >>> logits, loss = LieDerivativeL2("rotation").output_and_loss(model, x)
        >>> torch.allclose(logits, model(x)), loss.shape
        (True, torch.Size([]))
        """
        check_lie_input(x, self.lie_generator)
        if x.shape[0] == 0:
            raise ValueError(
                f"x: empty batch {tuple(x.shape)}; the mean over 0 samples is undefined"
            )
        output, derivative = lie_derivative_with_output(
            model, x, self.lie_generator, layer=self.layer, fill=fill
        )
        return output, lie_derivative_norms(derivative).mean()

    def extra_repr(self) -> str:
        layer = f", layer={self.layer!r}" if self.layer is not None else ""
        group = f", group={self.group!r}" if self.group is not None else ""
        return f"generator={self.generator!r}{layer}{group}"


#: loss names for :func:`invreg.losses.get_loss`: ``lie_<generator>``
LIE_LOSSES: dict[str, str] = {f"lie_{name}": name for name in GENERATORS}
