"""The invariance-regularised classifier."""

from __future__ import annotations

from typing import Any, Literal

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from invreg.config import build
from invreg.data.augment import background_of
from invreg.functional.invariance import capture_layers, get_layer, layer_output
from invreg.groups import Group, get_group
from invreg.losses import InvarianceLoss, ModelInvarianceLoss, get_loss
from invreg.metrics.orbit import OrbitMetrics
from invreg.modules.checkpointing import (
    CheckedCheckpoints,
    check_finite_inputs,
    check_finite_loss,
    check_nonfinite_policy,
    check_weight,
    restored,
    save_plain_hyperparameters,
)
from invreg.modules.epoch_logging import EpochMeansLogging
from invreg.modules.streams import RandomStreams
from invreg.modules.weights import (
    InvarianceWeight,
    as_invariance_weight,
    hide_removed_arguments,
    reject_arguments,
    upgrade_state_dict_hook,
    upgraded_checkpoint,
)

#: the loss terms logged under ``{train,val,test}/``
LOSS_TERMS = ("task_loss", "invariance_loss", "loss")
#: attributes of a learned ν that moved to the weight object (:attr:`InvarianceModule.weighting`)
MOVED_ATTRIBUTES = {"invariance_target": "target", "target_metric": "metric",
                    "target_update": "update", "target_lr": "lr",
                    "learned_invariance_weight": "value", "update_invariance_weight": "step",
                    "measured_invariance": "measure"}


class InvarianceModule(EpochMeansLogging, RandomStreams, CheckedCheckpoints,
                       pl.LightningModule):
    """A classifier trained with ``loss = task loss + ν · I(x, g·x)``.

    Each training step (optionally) augments the batch by a random group element per sample,
    then forwards the inputs and their transformed copies in one batch: one copy per sample by
    a non-identity element (``orbit_mode="sample"``) or the whole orbit (``"full"``). The task
    loss (cross-entropy) uses the untransformed inputs; ``I`` is the invariance loss between
    what :meth:`forward_with_features` returns for ``x`` and for ``g·x``. A
    :class:`~invreg.losses.ModelInvarianceLoss` (a Lie derivative) takes the backbone and ``x``
    instead, and the training step forms no copies. Validation and test use the full orbit of
    a finite group, so they are deterministic.

    The group does all sampling and transforming: pixels a resampling group (``so2``, ``c8``,
    translations) brings into the frame take :attr:`fill`, the data module's ``background``
    read in :meth:`setup`. :attr:`group` is the run's group (callbacks read it); a backbone
    built for a group (``TiedMLP``, ``E2CNN``) must be built for the same one.

    To compare something other than the logits, override :meth:`forward_with_features`::

        class ProbabilityInvariance(InvarianceModule):
            def forward_with_features(self, x):
                logits = self.backbone(x)
                return logits, logits.softmax(dim=-1)

    Args:
        backbone: maps inputs ``[B, ...]`` to logits ``[B, num_classes]``.
        group: a :class:`~invreg.groups.Group` or a name such as ``"c4"``, ``"t3"``.
        invariance_loss: an :class:`~invreg.losses.InvarianceLoss` or a name
            (``"logit_l2"``, ``"normalized_logit_l2"``, ``"predictive_kl"``, ``"lie_rotation"``).
        invariance_weight: ν, a number ``≥ 0``; or
            :class:`~invreg.modules.DualAscentWeight` (``DualAscentWeight(target=0.05)``): ν
            learned so that the invariance error settles at the target (``docs/target.md``).
            ν = 0 with ``augment=True`` is the plain augmentation baseline.
        orbit_mode: ``"sample"`` or ``"full"`` (see above).
        orbit_size: orbit elements (identity included) for a continuous group.
        augment: transform every training input by a random group element first.
        num_classes: checked against the backbone's output; the CLI links it from the data
            module.
        lr: Adam learning rate. weight_decay: Adam weight decay.
        on_nonfinite_loss: ``"raise"`` (default) stops a run whose loss turns NaN or infinite
            with :class:`~invreg.modules.NonFiniteLossError`; ``"skip"`` skips such training
            batches with a warning.
        track_invariance: with a fixed ν = 0 the training step forwards the batch alone and
            logs no ``train/invariance_loss``; ``True`` measures and logs it anyway.

    Logged: ``train/<name>_step`` (on the steps the loggers write), ``train/<name>_epoch``,
    ``val/<name>``, ``test/<name>`` for ``task_loss``, ``invariance_loss``, ``loss`` and
    ``acc`` (batch-size weighted means, exact under DDP), and ``train/invariance_weight_*`` for
    a learned ν. A subclass that overrides ``on_{train,validation,test}_epoch_{start,end}``
    calls ``super()``.

    ``InvarianceModule.load_from_checkpoint(path)`` rebuilds the module without the config
    (pass ``backbone=MyNet(...)`` back for a backbone that records no constructor arguments).
    ``backbone``, ``group``, ``invariance_loss`` and ``invariance_weight`` also accept a
    ``{"class_path": ..., "init_args": {...}}`` mapping, as written in a config.
    """

    def __init__(
        self,
        backbone: nn.Module | None = None,
        group: str | Group = "c4",
        invariance_loss: str | InvarianceLoss = "logit_l2",
        invariance_weight: float | InvarianceWeight = 1.0,
        orbit_mode: Literal["sample", "full"] = "sample",
        orbit_size: int | None = None,
        augment: bool = True,
        num_classes: int | None = None,
        lr: float = 8e-4,
        weight_decay: float = 0.0,
        on_nonfinite_loss: Literal["raise", "skip"] = "raise",
        track_invariance: bool = False,
        **removed: Any,
    ) -> None:
        reject_arguments(removed)
        super().__init__()
        backbone = restored("backbone", backbone)
        group = restored("group", group)
        invariance_loss = restored("invariance_loss", invariance_loss)
        invariance_weight = restored("invariance_weight", invariance_weight)
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
        weighting = as_invariance_weight(invariance_weight)
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
        if not isinstance(track_invariance, bool):
            raise TypeError(
                f"track_invariance: expected True or False, got {track_invariance!r}"
            )
        save_plain_hyperparameters(
            self, ("backbone", "group", "invariance_loss", "invariance_weight"))
        self.backbone = backbone
        self.invariance_loss = get_loss(build(invariance_loss, InvarianceLoss, "invariance_loss"))
        if self.invariance_loss.layer is not None:
            self._check_layer(backbone, self.invariance_loss.layer)
        weighting.check_loss(self.invariance_loss)
        #: ν: a :class:`~invreg.modules.weights.FixedWeight` or a learned one
        self.weighting = weighting
        # the one dispatch on the kind of loss: a term of the model itself forms no copies
        # in training, and takes its logits from its own pass when it can
        self._model_loss = isinstance(self.invariance_loss, ModelInvarianceLoss)
        self._one_pass = (self._model_loss and self.invariance_loss.layer is None
                          and type(self).forward_with_features
                          is InvarianceModule.forward_with_features)
        #: a training step that forwards the batch alone: ν fixed at 0, nothing to measure
        self.unweighted = (not weighting.learned and float(weighting) == 0.0
                           and not track_invariance)
        # a learned ν of the earlier layout is the state-dict key learned_invariance_weight
        self.register_load_state_dict_pre_hook(upgrade_state_dict_hook)
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
        learned = ("invariance_weight",) if weighting.learned else ()
        trained = ("task_loss", "loss") if self.unweighted else LOSS_TERMS
        self._build_epoch_means(
            {"train": (*trained, "acc", *learned), "val": LOSS_TERMS, "test": LOSS_TERMS}
        )

    @property
    def invariance_weight(self) -> float:
        """ν now: the fixed weight, or a learned weight's current value."""
        return float(self.weighting)

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
        if stage == "train" and self.unweighted:
            return self._unweighted_step(x, y, batch_idx)
        batch_size = x.shape[0]
        logits, invariance_loss, k = self.logits_and_invariance_loss(x, stage)
        reference_logits = logits[:batch_size]
        task_loss = F.cross_entropy(reference_logits, y)
        learning = stage == "train" and self.weighting.learned
        if learning:  # measured first: a loss term that is not one number is named here
            measured = self.weighting.measure(invariance_loss, self.invariance_loss,
                                              as_orbit(logits.detach(), batch_size, k))
        weight = self.weighting.current()
        loss = task_loss + weight * invariance_loss
        terms = dict(task_loss=task_loss, invariance_loss=invariance_loss, loss=loss)
        if not check_finite_loss(self, stage, batch_idx, terms):
            return None  # on_nonfinite_loss="skip": Lightning skips the optimiser step
        if stage == "train":
            accuracy = (reference_logits.detach().argmax(dim=-1) == y).float().mean()
            values = {**terms, "acc": accuracy}
            if learning:
                values["invariance_weight"] = weight
                self.weighting.step(self._mean_over_processes(measured.detach().float()))
            self._record_batch("train", values, batch_size)
        else:
            self.orbit_metrics[f"{stage}_"].update(as_orbit(logits.detach(), batch_size, k), y)
            self._record_batch(stage, terms, batch_size)
        return loss

    def logits_and_invariance_loss(self, x: Tensor, stage: str) -> tuple[Tensor, Tensor, int]:
        """``(logits, invariance loss, K)``: the logits ``[B·(1 + K), C]`` of ``x`` and of its
        ``K`` transformed copies per sample (``B`` rows of ``x`` first, then sample-major).

        A :class:`~invreg.losses.ModelInvarianceLoss` differentiates the backbone at ``x``:
        in training it forms no copies (``K = 0``) and gives the logits from its own pass
        (``output_and_loss``) unless a loss ``layer`` or an overridden
        :meth:`forward_with_features` decides them.
        """
        batch_size = x.shape[0]
        training = stage == "train"
        if training and self._one_pass:
            logits, invariance_loss = self.invariance_loss.output_and_loss(
                self.backbone, x, fill=self.fill)
            self._check_logits(logits, batch_size)
            return logits, invariance_loss, 0
        if training and self._model_loss:
            copies = x.unsqueeze(1)[:, :0]
        else:
            orbit_mode = self.orbit_mode if training or not self.group.is_finite else "full"
            copies = self.transformed_copies(x, orbit_mode)
        k = copies.shape[1]
        inputs = torch.cat([x, copies.reshape(batch_size * k, *x.shape[1:])])
        logits, features = self.forward_with_features(inputs)
        self._check_logits(logits, inputs.shape[0])
        if self._model_loss:
            return logits, self.invariance_loss(self.backbone, x, fill=self.fill), k
        return logits, self.invariance_loss(as_orbit(features, batch_size, k)), k

    def _unweighted_step(self, x: Tensor, y: Tensor, batch_idx: int) -> Tensor | None:
        """A training step with ν fixed at 0: the task loss on the (augmented) batch alone."""
        logits, _ = self.forward_with_features(x)
        self._check_logits(logits, x.shape[0])
        task_loss = F.cross_entropy(logits, y)
        terms = dict(task_loss=task_loss, loss=task_loss)
        if not check_finite_loss(self, "train", batch_idx, terms):
            return None
        accuracy = (logits.detach().argmax(dim=-1) == y).float().mean()
        self._record_batch("train", {**terms, "acc": accuracy}, x.shape[0])
        return task_loss

    def _mean_over_processes(self, value: Tensor) -> Tensor:
        """``value`` averaged over processes under DDP (every process keeps the same ν)."""
        trainer = self._trainer
        if trainer is not None and trainer.world_size > 1:
            return trainer.strategy.reduce(value, reduce_op="mean")
        return value

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
    @classmethod
    def load_from_checkpoint(cls, checkpoint_path, *args, **kwargs):
        """Lightning's ``load_from_checkpoint``; a checkpoint of the earlier layout of a
        learned ν (``invariance_target`` and its three companions among its hyper-parameters)
        loads as its :class:`~invreg.modules.DualAscentWeight`
        (:func:`~invreg.modules.weights.upgrade_checkpoint`), on the CPU unless
        ``map_location`` says otherwise."""
        return super().load_from_checkpoint(upgraded_checkpoint(checkpoint_path), *args,
                                            **kwargs)

    def __getattr__(self, name: str) -> Any:
        try:
            return super().__getattr__(name)
        except AttributeError:
            if name in MOVED_ATTRIBUTES:
                raise AttributeError(
                    f"InvarianceModule.{name} moved to the weight object: read "
                    f"module.weighting.{MOVED_ATTRIBUTES[name]} (a DualAscentWeight's)"
                ) from None
            raise

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


# the constructor's **removed only names the replacement of the earlier target arguments
hide_removed_arguments(InvarianceModule.__init__)
