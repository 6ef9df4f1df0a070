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

from torch import Tensor, nn

from invreg.config import RecordsInit
from invreg.functional import PAIR_ERRORS


class InvarianceLoss(nn.Module, RecordsInit):
    """Mean pair error between reference outputs and outputs on transformed inputs.

    ``forward(reference, transformed)`` with ``reference`` of shape ``[B, *D]`` (outputs on
    ``x``) and ``transformed`` of shape ``[B, *D]`` (one ``g·x`` per sample) or ``[B, K, *D]``
    (``K`` transformed copies per sample, e.g. a full orbit without its identity). Returns the
    mean over samples and copies of ``pair_error(reference, transformed)``, computed on the
    flattened ``D`` axes in at least float32 (a float32 scalar for float16 / bfloat16 inputs).
    An empty batch (``B = 0``) raises ``ValueError``: its mean is undefined.

    Attributes:
        pair_error: key into :data:`invreg.functional.PAIR_ERRORS`.
        layer: name of a backbone submodule whose output is compared instead of the logits
            (``None``: compare logits). The LightningModule captures it with a forward hook.
    """

    pair_error: str = "logit_l2"

    def __init__(self, layer: str | None = None) -> None:
        super().__init__()
        self.layer = layer

    def forward(self, reference: Tensor, transformed: Tensor) -> Tensor:
        if reference.ndim < 1 or reference.shape[0] == 0:
            raise ValueError(
                f"{type(self).__name__}: empty batch, reference outputs have shape "
                f"{tuple(reference.shape)}; the mean over 0 pairs is undefined (skip the term)"
            )
        batch = reference.shape[0]
        ref = reference.reshape(batch, -1)
        if transformed.shape == reference.shape:
            other = transformed.reshape(batch, 1, -1)
        elif transformed.shape[0] == batch and transformed.shape[2:] == reference.shape[1:]:
            other = transformed.reshape(batch, transformed.shape[1], -1)
        else:
            raise ValueError(
                f"{type(self).__name__}: transformed outputs must have shape "
                f"{tuple(reference.shape)} or [B, K, {', '.join(map(str, reference.shape[1:]))}];"
                f" got {tuple(transformed.shape)}"
            )
        errors = PAIR_ERRORS[self.pair_error](ref.unsqueeze(1).expand_as(other), other)
        return errors.mean()

    def extra_repr(self) -> str:
        return f"layer={self.layer!r}" if self.layer is not None else ""


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


LOSSES: dict[str, type[InvarianceLoss]] = {
    "logit_l2": LogitL2,
    "normalized_logit_l2": NormalizedLogitL2,
    "predictive_kl": PredictiveKL,
}


def get_loss(loss: str | InvarianceLoss) -> InvarianceLoss:
    """Resolve a loss name (``logit_l2``, ``normalized_logit_l2``, ``predictive_kl``)."""
    if isinstance(loss, InvarianceLoss):
        return loss
    if isinstance(loss, str) and loss in LOSSES:
        return LOSSES[loss]()
    raise ValueError(
        f"Unknown invariance loss {loss!r}; valid names: {sorted(LOSSES)}, or an InvarianceLoss "
        f"instance such as FeatureL2(layer=...)"
    )
