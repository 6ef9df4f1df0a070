"""HyperInvariances step 1 with two sides: a descriptor component at 0 asks for *sensitivity*
to its transformation, at 1 for *invariance* to it."""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from invreg.functional import relative_invariance_error
from invreg.losses import InvarianceLoss
from invreg.models.hyper import HyperCNN
from invreg.modules.checkpointing import check_weight
from invreg.modules.hyper_upstream import HyperUpstreamModule


class HyperSensitivityUpstreamModule(HyperUpstreamModule):
    """Pre-train a :class:`~invreg.models.hyper.HyperCNN` whose family spans feature extractors
    from *sensitive* to *invariant*, component by component.

    :class:`~invreg.modules.HyperUpstreamModule` only asks for invariance: at ``d_j = 0`` the
    features are free to forget transformation ``j``, and a classifier trained upstream does
    forget what its task never needs (the orientation of a digit). Here every input is first
    transformed by an element ``g_j`` drawn at *full* strength for every component ``j``, so
    every family member sees the same inputs, and::

        a = g·x,   b = t·a  with t drawn at strengths d   (b = a where d = 0)
        loss = CE(f(a; d), y) + CE(f(b; d), y)
               + invariance_weight  · I(h(a; d), h(b; d))
               + sensitivity_weight · mean_i Σ_j (1 − d_ij) · ℓ_j(p_j(h(a; d))_i, g_ij)

    ``h`` are the features ``[B, feature_dim]``, ``I`` the invariance error, ``p_j`` a linear
    head per component that predicts the applied element and ``ℓ_j`` its loss
    (:meth:`~invreg.models.hyper.DescriptorComponent.prediction_loss`: squared error to
    ``(cos θ, sin θ)`` for a rotation, to the scaled log-factor or shift for a scale or a
    translation, binary cross-entropy of "mirrored" for a flip). At ``d_j = 1`` the features are
    pushed to be invariant to ``j`` and nothing asks them to encode it; at ``d_j = 0`` they must
    encode ``g_j`` linearly and nothing asks for invariance.

    With ``relative_invariance=True`` (the default) ``I`` is the change between the views
    relative to the spread of the batch::

        I = Σ_i ‖h(a_i) − h(b_i)‖² / Σ_i ‖h(a_i) − mean_k h(a_k)‖²

    (:func:`invreg.functional.relative_invariance_error`), which a constant offset of the
    features cannot shrink — the ``‖h(a_i)‖²`` in the denominator of ``normalized_logit_l2``
    can be inflated by one large constant feature while the others keep the transformation
    (so measured on this objective: the rotation-invariant member still told quarter turns
    apart as well as the sensitive one). ``False`` uses ``invariance_loss``.

    The prediction heads (:attr:`transformation_heads`) are part of this module, not of the
    backbone: :class:`~invreg.modules.HyperDownstreamModule` loads the hyper-network alone.

    Logged: ``{train,val,test}/task_loss``, ``/invariance_loss``, ``/sensitivity_loss``,
    ``/loss`` and ``/acc`` (the digit accuracy on the view ``a``).

    Args:
        sensitivity_weight: weight of the transformation-prediction term (0: the objective of
            :class:`~invreg.modules.HyperUpstreamModule` on fully transformed inputs).
        relative_invariance: measure the invariance error against the batch's spread (see
            above) instead of with ``invariance_loss``.
        Others: see :class:`~invreg.modules.HyperUpstreamModule`.
    """

    loss_terms = ("task_loss", "invariance_loss", "sensitivity_loss", "loss")

    def __init__(
        self,
        backbone: HyperCNN | None = None,
        num_classes: int | None = None,
        descriptor_sampling: Literal["sample", "batch"] = "sample",
        corner_probability: float = 0.0,
        invariance_weight: float = 1.0,
        sensitivity_weight: float = 1.0,
        relative_invariance: bool = True,
        invariance_loss: str | InvarianceLoss = "normalized_logit_l2",
        lr: float = 3e-3,
        weight_decay: float = 0.0,
        fill: float | None = None,
        backbone_config: dict | None = None,
        on_nonfinite_loss: Literal["raise", "skip"] = "raise",
    ) -> None:
        super().__init__(backbone, num_classes, descriptor_sampling, corner_probability,
                         invariance_weight, invariance_loss, lr, weight_decay, fill,
                         backbone_config, on_nonfinite_loss)
        self.sensitivity_weight = check_weight("sensitivity_weight", sensitivity_weight)
        self.hparams["sensitivity_weight"] = self.sensitivity_weight
        self.relative_invariance = bool(relative_invariance)
        self.hparams["relative_invariance"] = self.relative_invariance
        self.transformation_heads = nn.ModuleDict({
            c.name: nn.Linear(self.backbone.feature_dim, c.target_size)
            for c in self.backbone.descriptor.components
        })

    def step(self, batch: tuple[Tensor, Tensor], split: str, batch_idx: int) -> Tensor | None:
        x, y = batch
        generator, d = self.sample_descriptors(x, split, batch_idx)
        desc = self.backbone.descriptor
        batch_size = x.shape[0]
        per_sample = self.descriptor_sampling == "sample"
        applied = desc.full_range_elements(batch_size, generator, x.device)
        first = desc.act(x, applied, self.fill_value)
        second = desc.augment(first, d, generator, self.fill_value)
        conditioning = torch.cat([d, d]) if per_sample else d[0]
        features = self.backbone.features(torch.cat([first, second]), conditioning)
        logits = self.backbone.head(features)
        task_loss = F.cross_entropy(logits, y.repeat(2))
        first_features = features[:batch_size]
        if self.relative_invariance:
            invariance_loss = relative_invariance_error(first_features, features[batch_size:])
        else:
            invariance_loss = self.invariance_loss(first_features, features[batch_size:])
        sensitivity = torch.zeros(batch_size, device=x.device, dtype=features.dtype)
        for j, component in enumerate(desc.components):
            prediction = self.transformation_heads[component.name](first_features)
            per_sample_loss = component.prediction_loss(prediction, applied[j])
            sensitivity = sensitivity + (1.0 - d[:, j].to(features.dtype)) * per_sample_loss
        sensitivity_loss = sensitivity.mean()
        loss = (task_loss + self.invariance_weight * invariance_loss
                + self.sensitivity_weight * sensitivity_loss)
        terms = dict(task_loss=task_loss, invariance_loss=invariance_loss,
                     sensitivity_loss=sensitivity_loss, loss=loss)
        return self._log_metrics(split, batch_idx, logits[:batch_size], y, terms)
