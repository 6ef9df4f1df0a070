"""Invariance-error loss terms, pluggable into any LightningModule.

Each term compares what a model computes on an input ``x`` with what it computes on
transformed copies ``g·x``. The formulas live in :mod:`invreg.functional`; these modules only
choose one, flatten feature maps and average over pairs.

Mixed precision: the pair errors and their mean run in at least float32 (float16 / bfloat16
outputs are upcast before the subtraction), so ½‖f(x) − f(g·x)‖² of ordinary fp16 logits
cannot overflow fp16's 65504 and the mean is not rounded to bfloat16's 8 bits. The loss is a
float32 scalar for half-precision inputs (float64 for float64), like the task losses under
``torch.autocast``; gradients flow back to the inputs in their own dtype. Non-finite outputs
propagate (a NaN loss), so a gradient scaler sees the overflow and skips the step.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from invreg.config import RecordsInit
from invreg.functional import PAIR_ERRORS, orbit_pair_errors


class InvarianceLoss(nn.Module, RecordsInit):
    """Mean pair error over orbits of outputs: ``mean_{i, j≥1} e(orbit[i, 0], orbit[i, j])``.

    ``forward(orbit)``: ``orbit`` of shape ``[B, N, *D]``, what the model computes on each of
    ``N`` orbit elements of ``B`` samples, identity first (``N >= 2``; the orbit convention of
    :mod:`invreg.functional`, e.g. ``orbit_forward(...).logits``). Returns the mean over
    samples and the ``N − 1`` non-identity elements of the pair error ``e`` (a key of
    :data:`invreg.functional.PAIR_ERRORS`), computed on the flattened ``D`` axes in at least
    float32 (a float32 scalar for float16 / bfloat16 inputs). An empty batch (``B = 0``)
    raises ``ValueError``: its mean is undefined.

    ``forward(reference, transformed)`` is the same orbit given as two tensors: ``reference``
    ``[B, *D]`` (the identity element) and ``transformed`` ``[B, *D]`` (one ``g·x`` per
    sample) or ``[B, K, *D]`` (``K`` copies per sample).

    Attributes:
        pair_error: key into :data:`invreg.functional.PAIR_ERRORS`.
        layer: name of a backbone submodule whose output is compared instead of the logits
            (``None``: compare logits). The LightningModule captures it with a forward hook.

    >>> import torch
    >>> LogitL2()(torch.tensor([[[1.0, 0.0], [0.0, 1.0], [1.0, 0.0]]]))  # (½·2 + 0) / 2
    tensor(0.5000)
    """

    pair_error: str = "logit_l2"

    def __init_subclass__(cls, **kwargs) -> None:
        super().__init_subclass__(**kwargs)
        if cls.pair_error not in PAIR_ERRORS:
            raise TypeError(
                f"{cls.__name__}.pair_error: expected one of {sorted(PAIR_ERRORS)}, got "
                f"{cls.pair_error!r}"
            )
        if cls.__dict__.get("needs_model"):
            raise TypeError(
                f"{cls.__name__}.needs_model: a loss that differentiates the model derives from "
                f"invreg.losses.ModelInvarianceLoss (class {cls.__name__}"
                f"(ModelInvarianceLoss)) instead of setting needs_model = True"
            )

    @property
    def needs_model(self) -> bool:
        """Whether the term is computed from the model and the inputs
        (:class:`ModelInvarianceLoss`) instead of an orbit of outputs."""
        return isinstance(self, ModelInvarianceLoss)

    def __init__(self, layer: str | None = None) -> None:
        super().__init__()
        self.layer = layer

    def forward(self, orbit: Tensor, transformed: Tensor | None = None) -> Tensor:
        if transformed is not None:
            orbit = self._as_orbit(orbit, transformed)
        if not isinstance(orbit, Tensor) or orbit.ndim < 2 or orbit.shape[1] < 2:
            got = tuple(orbit.shape) if isinstance(orbit, Tensor) else type(orbit).__name__
            raise ValueError(
                f"{type(self).__name__}: orbit: expected outputs [B, N, ...] with N >= 2 orbit "
                f"elements (identity first), got {got}"
            )
        if orbit.shape[0] == 0:
            raise ValueError(
                f"{type(self).__name__}: empty batch, orbit outputs have shape "
                f"{tuple(orbit.shape)}; the mean over 0 pairs is undefined (skip the term)"
            )
        flat = orbit.reshape(orbit.shape[0], orbit.shape[1], -1)
        return orbit_pair_errors(flat, self.pair_error, allow_nonfinite=True).mean()

    def _as_orbit(self, reference: Tensor, transformed: Tensor) -> Tensor:
        """``[B, 1 + K, *D]`` from the identity outputs and ``K`` (or one) transformed copies."""
        if reference.ndim >= 1 and transformed.shape == reference.shape:
            transformed = transformed.unsqueeze(1)
        elif not (
            reference.ndim >= 1
            and transformed.ndim == reference.ndim + 1
            and transformed.shape[0] == reference.shape[0]
            and transformed.shape[2:] == reference.shape[1:]
        ):
            raise ValueError(
                f"{type(self).__name__}: transformed outputs must have shape "
                f"{tuple(reference.shape)} or [B, K, {', '.join(map(str, reference.shape[1:]))}];"
                f" got {tuple(transformed.shape)}"
            )
        return torch.cat([reference.unsqueeze(1), transformed], dim=1)

    def extra_repr(self) -> str:
        return f"layer={self.layer!r}" if self.layer is not None else ""


class ModelInvarianceLoss(InvarianceLoss):
    """An invariance term computed from the model and the inputs, not from orbits of outputs.

    ``forward(model, x, fill=0.0)``: ``model`` maps ``x`` ``[B, ...]`` to outputs; returns a
    scalar differentiable with respect to the model's parameters. ``fill`` is the value of
    pixels a transformation brings into the frame. :class:`~invreg.modules.InvarianceModule`
    trains with such a term on the (augmented) untransformed batch, forming no transformed
    copies, and takes the task loss's logits from :meth:`output_and_loss`.

    Subclass it for a term of your own; :class:`~invreg.losses.LieDerivativeL2` is one.
    """

    def forward(  # type: ignore[override]
        self, model: nn.Module, x: Tensor | None = None, fill: float = 0.0
    ) -> Tensor:
        raise NotImplementedError(f"{type(self).__name__}.forward(model, x, fill)")

    def output_and_loss(
        self, model: nn.Module, x: Tensor, fill: float = 0.0
    ) -> tuple[Tensor, Tensor]:
        """``(model(x), loss)``: the outputs the task loss needs and the term's value.
        Default: a plain forward, then :meth:`forward`; override it when one pass gives both
        (:meth:`~invreg.losses.LieDerivativeL2.output_and_loss`)."""
        return model(x), self(model, x, fill=fill)


class LogitL2(InvarianceLoss):
    """``½‖f(x) − f(g·x)‖²`` on logits, averaged over pairs (the paper's best regulariser)."""

    pair_error = "logit_l2"


class NormalizedLogitL2(InvarianceLoss):
    """``‖f(x) − f(g·x)‖² / ‖f(x)‖²`` on logits: invariant to the logits' overall scale."""

    pair_error = "normalized_logit_l2"


class PredictiveKL(InvarianceLoss):
    """``KL(softmax f(x) ‖ softmax f(g·x))``: invariance of the predictive distribution."""

    pair_error = "predictive_kl"


class FeatureL2(InvarianceLoss):
    """``½‖h(x) − h(g·x)‖²`` on the output ``h`` of the backbone submodule named ``layer``.

    ``layer`` is a name from ``backbone.named_modules()``, e.g. ``"hidden.2"`` for an
    :class:`~invreg.models.MLP`.
    """

    pair_error = "logit_l2"

    def __init__(self, layer: str) -> None:
        if not layer:
            raise ValueError("FeatureL2(layer): name the backbone submodule to compare")
        super().__init__(layer=layer)


#: one loss class per pair error of :data:`invreg.functional.PAIR_ERRORS`, under the same name
LOSSES: dict[str, type[InvarianceLoss]] = {
    name: next(c for c in (LogitL2, NormalizedLogitL2, PredictiveKL) if c.pair_error == name)
    for name in PAIR_ERRORS
}

