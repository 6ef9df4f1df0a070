"""HyperInvariances step 1 (upstream): pre-train a hyper-network over sampled descriptors."""

from __future__ import annotations

import math
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor

from invreg.config import build
from invreg.data.augment import background_of
from invreg.losses import InvarianceLoss, ModelInvarianceLoss, get_loss
from invreg.models.hyper import HyperCNN
from invreg.modules.checkpointing import check_weight, restored, save_plain_hyperparameters
from invreg.modules.hyper_common import UPSTREAM_MARK, HyperModuleBase


class HyperUpstreamModule(HyperModuleBase):
    """Pre-train a descriptor-conditioned :class:`~invreg.models.hyper.HyperCNN` over many
    invariance descriptors, with an invariance penalty.

    Every training step draws a descriptor ``d ∈ [0, 1]^k`` — one per sample
    (``descriptor_sampling="sample"``) or one per batch (``"batch"``), uniform on the cube
    (``corner_probability`` sets components to 0 or 1 that often) — augments each input with
    transformations whose strength is its descriptor
    (:meth:`~invreg.models.hyper.InvarianceDescriptor.augment`; a rotation strength ``r``
    rotates by an angle uniform in ``[-180r, 180r]``), and feeds ``d`` to the hyper-network::

        loss = cross_entropy(f(a(x); d), y) + invariance_weight · I(h(a(x); d), h(a'(x); d))

    ``a, a'`` are two independent augmentations drawn with strengths ``d``, ``h`` the features
    (the head's input, ``[B, feature_dim]``) and ``I`` an :mod:`invreg.losses` term
    (``invariance_loss``); the cross-entropy covers both views. With ``invariance_weight > 0``
    a strength of 1 means "penalise non-invariance over the whole range", not only "augment";
    the views coincide where ``d_j = 0``. Validation draws descriptors and augmentations from a
    generator seeded by the batch index, so every evaluation sees the same inputs.

    Logged: ``{train,val,test}/task_loss``, ``/invariance_loss``, ``/loss`` and ``/acc``, the
    keys :class:`~invreg.modules.InvarianceModule` logs. The checkpoint stores the architecture
    (``backbone_config``) next to the weights, so ``load_from_checkpoint(path)`` rebuilds the
    module and :class:`~invreg.modules.HyperDownstreamModule` loads the hyper-network by path.

    Args:
        backbone: the hyper-network to pre-train.
        num_classes: number of classes; the CLI links it from the data module. It must match
            the backbone's (``None``: the backbone's).
        descriptor_sampling: ``"sample"`` (one descriptor per sample) or ``"batch"``.
        corner_probability: probability that a sampled component is set to 0 or 1.
        invariance_weight: weight of the invariance error (0: augmentation only).
        invariance_loss: a loss name from :data:`invreg.losses.LOSSES` or an
            :class:`~invreg.losses.InvarianceLoss` without a ``layer`` (it compares features).
        lr: Adam learning rate.
        weight_decay: Adam weight decay.
        fill: value of pixels that augmentations bring into the frame; ``None`` takes the data
            module's ``background`` once in :meth:`setup`
            (:func:`invreg.data.augment.background_of`, as
            :class:`~invreg.modules.InvarianceModule` does), 0 without a data module.
        backbone_config: ``HyperCNN(**backbone_config)`` instead of ``backbone``; checkpoints
            store it so that ``load_from_checkpoint`` rebuilds the module.
        on_nonfinite_loss: ``"raise"`` (default) stops a run whose loss becomes NaN or
            infinite with :class:`~invreg.modules.NonFiniteLossError`; ``"skip"`` skips such
            training batches with a warning.
    """

    loss_terms = ("task_loss", "invariance_loss", "loss")

    def __init__(
        self,
        backbone: HyperCNN | None = None,
        num_classes: int | None = None,
        descriptor_sampling: Literal["sample", "batch"] = "sample",
        corner_probability: float = 0.0,
        invariance_weight: float = 0.0,
        invariance_loss: str | InvarianceLoss = "normalized_logit_l2",
        lr: float = 3e-3,
        weight_decay: float = 0.0,
        fill: float | None = None,
        backbone_config: dict | None = None,
        on_nonfinite_loss: Literal["raise", "skip"] = "raise",
    ) -> None:
        super().__init__(lr, weight_decay, on_nonfinite_loss)
        if descriptor_sampling not in ("sample", "batch"):
            raise ValueError(
                f"descriptor_sampling: expected 'sample' or 'batch', got {descriptor_sampling!r}"
            )
        if not 0.0 <= corner_probability <= 1.0:
            raise ValueError(f"corner_probability must lie in [0, 1], got {corner_probability}")
        invariance_weight = check_weight("invariance_weight", invariance_weight)
        invariance_loss = restored("invariance_loss", invariance_loss)
        loss = get_loss(build(invariance_loss, InvarianceLoss, "invariance_loss"))
        if isinstance(loss, ModelInvarianceLoss):
            raise ValueError(
                f"invariance_loss: HyperUpstreamModule compares outputs on transformed inputs; "
                f"{type(loss).__name__} needs the model itself (use it with InvarianceModule), "
                f"pass an output-level loss such as 'normalized_logit_l2'"
            )
        if loss.layer is not None:
            raise ValueError(
                f"invariance_loss: HyperUpstreamModule compares the head's input features; "
                f"got a loss on layer {loss.layer!r}, pass one without a layer"
            )
        if (backbone is None) == (backbone_config is None):
            raise ValueError("HyperUpstreamModule needs exactly one of backbone or backbone_config")
        if backbone_config is not None:
            backbone = HyperCNN(**backbone_config)
        if not isinstance(backbone, HyperCNN):
            raise TypeError(f"backbone: expected a HyperCNN, got {type(backbone).__name__}")
        num_classes = num_classes or backbone.num_classes
        if num_classes != backbone.num_classes:
            raise ValueError(
                f"num_classes={num_classes} (from the data) does not match the backbone's "
                f"num_classes={backbone.num_classes}"
            )
        save_plain_hyperparameters(self, ("invariance_loss",))
        # the architecture is stored as backbone_config, the weights in the state_dict
        self.hparams.pop("backbone", None)
        self.hparams["backbone_config"] = backbone.config
        self.backbone = backbone
        self.descriptor_sampling = descriptor_sampling
        self.corner_probability = float(corner_probability)
        self.invariance_weight = float(invariance_weight)
        self.invariance_loss = loss
        if fill is not None:
            fill = float(fill)
            if not math.isfinite(fill):
                raise ValueError(f"fill: expected a finite number or None, got {fill}")
        self.fill = fill
        #: the value passed to the groups as ``fill``: :attr:`fill`, else the data's background
        self.fill_value = 0.0 if fill is None else fill
        self._build_metrics(num_classes)

    def forward(self, x: Tensor, descriptor=None) -> Tensor:
        """Logits ``[B, num_classes]`` under ``descriptor`` (``None``: the backbone's default)."""
        return self.backbone(x, descriptor)

    def sample_descriptors(
        self, x: Tensor, split: str, batch_idx: int
    ) -> tuple[torch.Generator, Tensor]:
        """The step's random generator and descriptors ``d`` ``[B, k]`` for the batch ``x``:
        training draws from the module's generator; validation and test from one seeded by
        ``batch_idx``, so every evaluation sees the same descriptors and transformations."""
        generator = self.random_generator
        if split != "train":
            generator = torch.Generator().manual_seed(batch_idx)
        d = self.backbone.descriptor.sample(
            x.shape[0], self.descriptor_sampling == "sample", self.corner_probability,
            generator, x.device,
        )
        return generator, d

    def step(self, batch: tuple[Tensor, Tensor], split: str, batch_idx: int) -> Tensor | None:
        x, y = batch
        generator, d = self.sample_descriptors(x, split, batch_idx)
        desc = self.backbone.descriptor
        batch_size = x.shape[0]
        per_sample = self.descriptor_sampling == "sample"
        views = [desc.augment(x, d, generator, self.fill_value)]
        if self.invariance_weight > 0 or split != "train":
            views.append(desc.augment(x, d, generator, self.fill_value))
        inputs = torch.cat(views)
        conditioning = torch.cat([d] * len(views)) if per_sample else d[0]
        features = self.backbone.features(inputs, conditioning)
        logits = self.backbone.head(features)
        task_loss = F.cross_entropy(logits, y.repeat(len(views)))
        if len(views) > 1:
            invariance_loss = self.invariance_loss(features[:batch_size], features[batch_size:])
        else:
            invariance_loss = torch.zeros((), device=x.device)
        loss = task_loss + self.invariance_weight * invariance_loss
        terms = dict(task_loss=task_loss, invariance_loss=invariance_loss, loss=loss)
        return self._log_metrics(split, batch_idx, logits[:batch_size], y, terms)

    def parameter_groups(self) -> list[dict[str, Any]]:
        return [dict(params=self.parameters(), lr=self.lr, weight_decay=self.weight_decay)]

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_save_checkpoint(checkpoint)
        checkpoint[UPSTREAM_MARK] = True  # what HyperDownstreamModule checks before loading

    def setup(self, stage: str) -> None:
        """Take the fill value from the data module (set up before the module by Lightning)
        unless ``fill`` was given."""
        if self.fill is None:
            datamodule = getattr(self._trainer, "datamodule", None) if self._trainer else None
            self.fill_value = background_of(datamodule)
