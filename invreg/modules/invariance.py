"""The invariance-regularised classifier."""

from __future__ import annotations

from typing import Literal

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from invreg.config import build
from invreg.data.augment import background_of
from invreg.functional.invariance import capture_layers, get_layer, layer_output
from invreg.groups import Group, get_group
from invreg.losses import InvarianceLoss, get_loss
from invreg.metrics.orbit import OrbitMetrics
from invreg.modules.checkpointing import (
    check_finite_inputs,
    check_finite_loss,
    check_nonfinite_policy,
    check_weight,
    restored,
    save_plain_hyperparameters,
)
from invreg.modules.epoch_logging import EpochMeansLogging
from invreg.modules.streams import RandomStreams

#: the loss terms logged under ``{train,val,test}/``
LOSS_TERMS = ("task_loss", "invariance_loss", "loss")


class InvarianceModule(EpochMeansLogging, RandomStreams, pl.LightningModule):
    """A classifier trained with ``loss = task loss + invariance_weight · I(x, g·x)``.

    Each step (optionally) augments the batch with a random group element per sample, then
    sends the inputs *and* their transformed copies through the backbone in one batched forward:

    * ``orbit_mode="sample"`` — one transformed copy per sample, ``g`` from
      :meth:`~invreg.groups.Group.sample_non_identity` (uniform over the non-identity elements
      of a finite group, the sampling law of a continuous one);
    * ``orbit_mode="full"`` — the whole orbit (``orbit_size`` elements for a continuous group).

    The group does all the sampling and transforming. Pixels that a resampling group (``so2``,
    ``c8``, translations, zooms) brings into the frame get the value :attr:`fill`: the data
    module's ``background`` (``-mean/std`` on standardised data), read once in :meth:`setup`
    through :func:`invreg.data.augment.background_of` (0 without a data module). Exact groups
    (``c4``, ``t3``, flips) bring nothing in, so for them the fill changes nothing.

    :attr:`group` is the run's group: callbacks that measure invariance read it from the
    module. A backbone built for a group (:class:`~invreg.models.TiedMLP`,
    :class:`~invreg.models.E2CNN`: a ``group`` attribute) must be built for the same one, else
    ``ValueError`` naming both. In a config the group is written once, in
    ``model.init_args.group``; the CLI passes it to such a backbone. ``augment=True`` augments
    by this group; a data module's ``augment_group`` is a separate augmentation of its own.

    The task loss (cross-entropy) uses the untransformed copies; the invariance error ``I`` is
    the :class:`~invreg.losses.InvarianceLoss` between what :meth:`forward_with_features`
    returns for ``x`` and for ``g·x``. With ``invariance_weight=0`` and ``augment=True`` this
    is the plain data-augmentation baseline; the invariance loss is still logged.

    To compare something other than the logits, override :meth:`forward_with_features`::

        class ProbabilityInvariance(InvarianceModule):
            def forward_with_features(self, x):
                logits = self.backbone(x)
                return logits, logits.softmax(dim=-1)

    Logged: ``{train,val,test}/task_loss``, ``/invariance_loss``, ``/loss``, ``/acc`` (the
    fraction of correctly classified samples, micro-averaged). Epoch values are means over
    samples, kept as metric states, so under DDP they equal a single-process run.
    Validation and test use the full orbit for finite groups, so they are deterministic.

    A NaN or infinite loss stops the run with :class:`~invreg.modules.NonFiniteLossError`,
    naming the step and every loss term (``on_nonfinite_loss="skip"`` skips such training
    batches instead, with a warning).

    Checkpoints rebuild the module in one line, without the config:
    ``InvarianceModule.load_from_checkpoint(path)`` (backbone, group and loss are stored as
    their ``class_path``/``init_args`` description; a backbone class that records no
    constructor arguments — not a subclass of :class:`~invreg.models.base.Backbone` or
    :class:`~invreg.config.RecordsInit` — is passed back: ``load_from_checkpoint(path,
    backbone=MyNet())``).

    Args:
        backbone: maps inputs ``[B, ...]`` to logits ``[B, num_classes]``.
        group: a :class:`~invreg.groups.Group` or a name such as ``"c4"``, ``"t3"``.
        invariance_loss: an :class:`~invreg.losses.InvarianceLoss` or a name
            (``"logit_l2"``, ``"normalized_logit_l2"``, ``"predictive_kl"``).
        invariance_weight: ``ν ≥ 0``, the weight of the invariance error.
        orbit_mode: ``"sample"`` or ``"full"`` (see above).
        orbit_size: number of orbit elements (identity included) for continuous groups.
        augment: transform every training input by a random group element first.
        num_classes: number of classes (checked against the backbone's output); the CLI links
            it from the data module.
        lr: Adam learning rate. weight_decay: Adam weight decay.
        on_nonfinite_loss: ``"raise"`` (default) or ``"skip"`` (see above).

    Logged: ``train/<name>_step`` (on the steps the loggers write) and ``train/<name>_epoch``,
    ``val/<name>``, ``test/<name>`` for the loss terms ``task_loss``, ``invariance_loss``,
    ``loss`` and ``acc``; epoch values are batch-size weighted means, exact under DDP. A
    subclass that overrides ``on_{train,validation,test}_epoch_{start,end}`` calls ``super()``
    there: those hooks reset and log the epoch values.

    ``backbone``, ``group`` and ``invariance_loss`` also accept a
    ``{"class_path": ..., "init_args": {...}}`` mapping, as written in a config.
    """

    def __init__(
        self,
        backbone: nn.Module | None = None,
        group: str | Group = "c4",
        invariance_loss: str | InvarianceLoss = "logit_l2",
        invariance_weight: float = 1.0,
        orbit_mode: Literal["sample", "full"] = "sample",
        orbit_size: int | None = None,
        augment: bool = True,
        num_classes: int | None = None,
        lr: float = 8e-4,
        weight_decay: float = 0.0,
        on_nonfinite_loss: Literal["raise", "skip"] = "raise",
    ) -> None:
        super().__init__()
        backbone = restored("backbone", backbone)
        group = restored("group", group)
        invariance_loss = restored("invariance_loss", invariance_loss)
        if backbone is None:
            raise ValueError(
                "backbone: missing. Pass the network to train (in a config: "
                "model.init_args.backbone with a class_path); a checkpoint whose backbone "
                "records no constructor arguments needs it back: "
                "InvarianceModule.load_from_checkpoint(path, backbone=MyNet(...))"
            )
        backbone = build(backbone, nn.Module, "backbone")
        if not isinstance(backbone, nn.Module):
            raise TypeError(f"backbone: expected an nn.Module, got {type(backbone).__name__}")
        invariance_weight = check_weight("invariance_weight", invariance_weight)
        lr = check_weight("lr", lr)
        weight_decay = check_weight("weight_decay", weight_decay)
        check_nonfinite_policy(on_nonfinite_loss)
        if orbit_mode not in ("sample", "full"):
            raise ValueError(f"orbit_mode must be 'sample' or 'full', got {orbit_mode!r}")
        self.group = get_group(build(group, Group, "group"))
        if orbit_mode == "full" and not self.group.is_finite and (orbit_size or 0) < 2:
            raise ValueError(
                f"orbit_mode='full' with the continuous group {self.group!r} needs orbit_size >= 2"
            )
        if self.group.order == 1 and orbit_mode == "sample":
            raise ValueError(f"{self.group!r} has only the identity: nothing to sample")
        check_same_group("backbone.group", getattr(backbone, "group", None), self.group)
        num_classes = num_classes or getattr(backbone, "num_classes", None)
        if not isinstance(num_classes, int) or num_classes < 2:
            raise ValueError(
                f"num_classes: expected an integer >= 2 (or a backbone with a num_classes "
                f"attribute), got {num_classes!r}"
            )
        save_plain_hyperparameters(self, ("backbone", "group", "invariance_loss"))
        self.backbone = backbone
        self.invariance_loss = get_loss(build(invariance_loss, InvarianceLoss, "invariance_loss"))
        if self.invariance_loss.layer is not None:
            self._check_layer(backbone, self.invariance_loss.layer)
        self.invariance_weight = float(invariance_weight)
        self.orbit_mode = orbit_mode
        self.orbit_size = orbit_size
        self.augment = augment
        self.num_classes = num_classes
        self.lr, self.weight_decay = lr, weight_decay
        self.on_nonfinite_loss = on_nonfinite_loss
        #: value of pixels entering the frame under a resampling group; set in :meth:`setup`
        self.fill = 0.0
        # validation / test: every value of the orbit the step forwards anyway
        self.orbit_metrics = nn.ModuleDict(
            {stage: OrbitMetrics(self.group, num_classes) for stage in ("val_", "test_")}
        )
        # epoch means (invreg.modules.epoch_logging); validation and test accuracy come from
        # the orbit metrics, which see every validation batch anyway
        self._build_epoch_means(
            {"train": (*LOSS_TERMS, "acc"), "val": LOSS_TERMS, "test": LOSS_TERMS}
        )

    # ------------------------------------------------------------------ the research
    def forward(self, x: Tensor) -> Tensor:
        return self.backbone(x)

    def forward_with_features(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Return ``(logits, features)``: the invariance error compares ``features``.

        Default: the logits themselves, or the output of the backbone layer named by the
        invariance loss's ``layer``. Override to compare anything else.
        """
        if self.invariance_loss.layer is None:
            logits = self.backbone(x)
            return logits, logits
        with capture_layers(self.backbone, [self.invariance_loss.layer]) as captured:
            logits = self.backbone(x)
        return logits, layer_output(captured, self.invariance_loss.layer)[0]

    def setup(self, stage: str) -> None:
        """Read the fill value from the data module (set up before the module by Lightning) and
        check that the group can act on its inputs before the first batch."""
        datamodule = getattr(self._trainer, "datamodule", None) if self._trainer else None
        self.fill = background_of(datamodule)
        input_shape = getattr(datamodule, "input_shape", None)
        if input_shape is not None:
            self.group.check_input_shape(input_shape)

    def transformed_copies(self, x: Tensor, orbit_mode: str) -> Tensor:
        """Inputs the invariance error is measured on: ``[B, K, ...]`` copies of ``x``.

        ``"full"``: the orbit without its identity, ``[B, |G| − 1, ...]`` (``orbit_size − 1``
        for a continuous group); ``"sample"``: one copy ``[B, 1, ...]`` by an element of
        :meth:`~invreg.groups.Group.sample_non_identity` (the identity would add a zero error).
        Pixels entering the frame get :attr:`fill`.
        """
        if orbit_mode == "full":
            return self.group.orbit(
                x, num_samples=self.orbit_size, generator=self.random_generator, fill=self.fill
            )[:, 1:]
        g = self.group.sample_non_identity(
            x.shape[0], generator=self.random_generator, device=x.device
        )
        return self.group.act(x, g, fill=self.fill).unsqueeze(1)

    def shared_step(
        self, batch: tuple[Tensor, Tensor], stage: str, batch_idx: int = 0
    ) -> Tensor | None:
        x, y = batch
        check_finite_inputs(x, stage)
        if stage == "train" and self.augment:
            g = self.group.sample(x.shape[0], generator=self.random_generator, device=x.device)
            x = self.group.act(x, g, fill=self.fill)
        orbit_mode = self.orbit_mode if stage == "train" or not self.group.is_finite else "full"
        if stage == "train" and getattr(self.invariance_loss, "needs_model", False):
            copies = x.unsqueeze(1)[:, :0]  # the loss differentiates the model: no copies
        else:
            copies = self.transformed_copies(x, orbit_mode)
        batch_size, k = copies.shape[:2]
        inputs = torch.cat([x, copies.reshape(batch_size * k, *x.shape[1:])])
        logits, features = self.forward_with_features(inputs)
        self._check_logits(logits, inputs.shape[0])
        reference_logits = logits[:batch_size]
        task_loss = F.cross_entropy(reference_logits, y)
        if getattr(self.invariance_loss, "needs_model", False):  # e.g. LieDerivativeL2
            invariance_loss = self.invariance_loss(self.backbone, x, fill=self.fill)
        else:
            invariance_loss = self.invariance_loss(as_orbit(features, batch_size, k))
        loss = task_loss + self.invariance_weight * invariance_loss
        terms = dict(task_loss=task_loss, invariance_loss=invariance_loss, loss=loss)
        if not check_finite_loss(self, stage, batch_idx, terms):
            return None  # on_nonfinite_loss="skip": Lightning skips the optimiser step
        if stage == "train":
            accuracy = (reference_logits.detach().argmax(dim=-1) == y).float().mean()
            self._record_batch("train", {**terms, "acc": accuracy}, batch_size)
        else:
            self.orbit_metrics[f"{stage}_"].update(as_orbit(logits.detach(), batch_size, k), y)
            self._record_batch(stage, terms, batch_size)
        return loss

    def _epoch_extras(self, stage: str) -> dict[str, Tensor]:
        if stage == "train":
            return {}
        return {"acc": self.orbit_metrics[f"{stage}_"]["accuracy"].compute()}

    def on_validation_epoch_start(self) -> None:
        self.orbit_metrics["val_"].reset()
        super().on_validation_epoch_start()

    def on_test_epoch_start(self) -> None:
        self.orbit_metrics["test_"].reset()
        super().on_test_epoch_start()

    def training_step(self, batch, batch_idx):
        return self.shared_step(batch, "train", batch_idx)

    def validation_step(self, batch, batch_idx):
        return self.shared_step(batch, "val", batch_idx)

    def test_step(self, batch, batch_idx):
        return self.shared_step(batch, "test", batch_idx)

    def predict_step(self, batch, batch_idx, dataloader_idx=0):
        x = batch[0] if isinstance(batch, (tuple, list)) else batch
        return self.backbone(x).argmax(dim=-1)

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), lr=self.lr, weight_decay=self.weight_decay)

    # ------------------------------------------------------------------ plumbing
    @staticmethod
    def _check_layer(backbone: nn.Module, name: str) -> None:
        if name == "":
            raise ValueError(
                "invariance_loss.layer: '' is the whole backbone; name a submodule, or pass "
                "layer=None to compare the logits"
            )
        try:
            get_layer(backbone, name)
        except ValueError as err:
            raise ValueError(f"invariance_loss.layer: {err}") from None

    def _check_logits(self, logits: Tensor, batch_size: int) -> None:
        if logits.ndim != 2 or logits.shape != (batch_size, self.num_classes):
            raise ValueError(
                f"backbone output: expected logits of shape [{batch_size}, {self.num_classes}] "
                f"(num_classes={self.num_classes}), got {tuple(logits.shape)}"
            )


def check_same_group(name: str, other: object, group: Group) -> None:
    """``ValueError`` naming both groups when ``other`` (a part's group, e.g. the backbone's)
    is a :class:`~invreg.groups.Group` other than the module's ``group``; ``None`` (no group)
    passes."""
    if other is None or not isinstance(other, Group) or other == group:
        return
    raise ValueError(
        f"{name} is {other!r} but the module's group is {group!r}: a run has one group; "
        f"build both for the same one (in a config, write it once as model.init_args.group)"
    )


def as_orbit(outputs: Tensor, batch_size: int, copies: int) -> Tensor:
    """``[B, 1 + K, ...]`` orbit outputs (identity first) from one forward of the batch
    ``[x; copies]``: ``B`` outputs on ``x``, then ``B·K`` on the copies, sample-major."""
    reference = outputs[:batch_size].unsqueeze(1)
    transformed = outputs[batch_size:].reshape(batch_size, copies, *outputs.shape[1:])
    return torch.cat([reference, transformed], dim=1)
