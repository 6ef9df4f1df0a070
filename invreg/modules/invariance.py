"""The invariance-regularised classifier."""

from __future__ import annotations

import math
import warnings
from numbers import Real
from typing import Literal

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from invreg.config import build
from invreg.data.augment import background_of
from invreg.functional.invariance import (
    capture_layers,
    get_layer,
    layer_output,
    orbit_pair_errors,
)
from invreg.groups import Group, get_group
from invreg.losses import InvarianceLoss, get_loss
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

#: the loss terms logged under ``{train,val,test}/``
LOSS_TERMS = ("task_loss", "invariance_loss", "loss")
#: ``target_metric`` names: the orbit metric's name -> its pair error on the training logits
#: (:data:`invreg.functional.PAIR_ERRORS`); ``"loss"`` is the invariance loss term itself
TARGET_METRICS = {"LI": "logit_l2", "LI_normalized": "normalized_logit_l2",
                  "DI": "predictive_kl", "loss": None}
#: ``target_update`` -> the default ``target_lr`` η
DEFAULT_TARGET_LR = {"multiplicative": 0.02, "additive": 1.0}
#: the multiplicative update's ``|log(I/ε)|`` is clipped here: one batch moves ν by at most a
#: factor ``exp(η·3)`` (1.06 at η = 0.02), also when ``I = 0`` exactly
LOG_RATIO_CLIP = 3.0


class InvarianceModule(EpochMeansLogging, RandomStreams, CheckedCheckpoints,
                       pl.LightningModule):
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

    **Invariance as a target.** With ``invariance_target=ε`` the weight ν is no longer fixed: it
    is the Lagrange multiplier of the constraint ``I ≤ ε`` and is updated by dual ascent after
    every training batch, from that batch's measured invariance error ``I`` (detached; the mean
    over processes under DDP), starting from ``ν₀ = invariance_weight``:

    * ``target_update="additive"`` (plain dual ascent): ``ν ← max(0, ν + η·(I − ε))``;
    * ``target_update="multiplicative"`` (default): ``ν ← ν·exp(η·clip(log(I/ε), ±3))``.

    The loss stays ``CE + ν·I``. The multiplicative form is the default because it is
    scale-free: it depends on ``I`` only through ``I/ε`` (the same η serves ε = 0.01 and ε = 10,
    whereas the additive step ``η·(I − ε)`` is proportional to ε for the same relative
    violation ``I/ε``), and it moves ν by factors, so a ν that must travel from 1 to 100 gets
    there as fast as one from 0.01 to 1. Near the target ``log(I/ε) ≈ I/ε − 1``, so it is the
    additive update on ``log ν`` with a normalised violation; the clip keeps a first batch with
    ``I = 1000·ε`` (or ``I = 0``) from changing ν by more than a factor ``exp(3η)``. ν stays
    positive, so it needs ``ν₀ > 0``. The default η = 0.02 was measured on the quickstart run
    (digits, C4, 400 steps): η = 0.05 makes ν oscillate over a decade, η = 0.01 settles slowly
    (``docs/target.md``). The additive default η = 1 was measured there too (LI of 0.05–0.5,
    ν of 0.1–3); elsewhere choose η for the scale of ``I`` and ν: about ``0.02·ν/ε`` moves ν
    as fast as the multiplicative default near the target.

    Numeric guards: a multiplicative ``target_lr`` whose largest factor ``exp(3η)`` overflows
    ν's dtype (η ≥ 29.5 in float32) is refused at construction; an update that would leave
    the dtype's finite range is clamped to it (``[tiny, max]`` multiplicative, so ν never
    reaches 0 and freezes there; ``[0, max]`` additive) with a ``RuntimeWarning``; a
    non-finite measured ``I`` leaves ν as it is, also with a ``RuntimeWarning``.

    ``target_metric`` names the measured ``I``: ``"LI"`` (default), ``"LI_normalized"`` or
    ``"DI"``, the orbit metrics of :class:`~invreg.metrics.orbit.OrbitMetrics` on the training
    step's logits and transformed copies (no extra forward; the invariance loss itself when it
    is the same error on the logits), or ``"loss"``: the invariance loss term, whatever it is
    (a feature-layer or Lie derivative loss; a Lie derivative loss forms no orbit of logits, so
    it needs ``"loss"``). ν is the buffer ``learned_invariance_weight``, saved in checkpoints:
    a resumed run and ``load_from_checkpoint`` continue from it; :attr:`invariance_weight`
    reads it. It is logged as ``train/invariance_weight_step`` (the ν the batch was trained
    with, on the steps the loggers write) and ``train/invariance_weight_epoch`` (its mean).

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
        invariance_target: ``ε > 0``: learn ν so that the invariance error settles at ε
            (see above); ``None`` (default): ν fixed at ``invariance_weight``.
        target_metric: the error held at ε: ``"LI"``, ``"LI_normalized"``, ``"DI"`` or
            ``"loss"``.
        target_update: ``"multiplicative"`` (default) or ``"additive"``.
        target_lr: the dual step size ``η > 0``; default 0.02 multiplicative, 1.0 additive
            (there an absolute step of ν per unit of ``I − ε``).
        track_invariance: with a fixed ``ν = 0`` (augmentation alone, a weight-tied model)
            the invariance term cannot change the gradient, so the training step forwards the
            batch alone (half the work of ``orbit_mode="sample"``) and logs no
            ``train/invariance_loss``; ``True`` measures and logs it anyway. Validation and
            test always measure it over the orbit. No effect when ν > 0 or with a target.

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
        invariance_target: float | None = None,
        target_metric: Literal["LI", "LI_normalized", "DI", "loss"] = "LI",
        target_update: Literal["multiplicative", "additive"] = "multiplicative",
        target_lr: float | None = None,
        track_invariance: bool = False,
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
        self.invariance_target = check_target(
            invariance_target, target_metric, target_update, invariance_weight,
            self.invariance_loss,
        )
        self.target_metric, self.target_update = target_metric, target_update
        self.target_lr = check_target_lr(target_lr, target_update)
        if not isinstance(track_invariance, bool):
            raise TypeError(
                f"track_invariance: expected True or False, got {track_invariance!r}"
            )
        #: a training step that forwards the batch alone: ν fixed at 0, nothing to measure
        self.unweighted = (invariance_target is None and float(invariance_weight) == 0.0
                           and not track_invariance)
        if self.invariance_target is None:
            # a fixed ν: the checkpoint's hyper-parameters (and the experiments' model cache
            # keys, made from them) stay those of a module without the target arguments
            for name in ("invariance_target", "target_metric", "target_update", "target_lr"):
                self.hparams.pop(name, None)
        else:
            # the multiplier ν: a buffer, so checkpoints save it and resuming restores it
            self.register_buffer(
                "learned_invariance_weight", torch.tensor(float(invariance_weight))
            )
        if float(invariance_weight) != 0.0 or invariance_target is not None:
            # track_invariance changes nothing there: a ν > 0 module's hyper-parameters (and
            # cache keys) stay as they were; a ν = 0 one records how it trained
            self.hparams.pop("track_invariance", None)
        self._fixed_invariance_weight = float(invariance_weight)
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
        learned = ("invariance_weight",) if self.invariance_target is not None else ()
        trained = ("task_loss", "loss") if self.unweighted else LOSS_TERMS
        self._build_epoch_means(
            {"train": (*trained, "acc", *learned), "val": LOSS_TERMS, "test": LOSS_TERMS}
        )

    @property
    def invariance_weight(self) -> float:
        """ν: the fixed weight, or with ``invariance_target`` the multiplier's current value."""
        if self.invariance_target is None:
            return self._fixed_invariance_weight
        return float(self.learned_invariance_weight)

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
        orbit_mode = self.orbit_mode if stage == "train" or not self.group.is_finite else "full"
        needs_model = getattr(self.invariance_loss, "needs_model", False)  # LieDerivativeL2
        batch_size = x.shape[0]
        if stage == "train" and needs_model and self._one_pass_lie:
            # the loss differentiates the model: no copies, and its forward-mode pass gives
            # the logits too (LieDerivativeL2.output_and_loss), so no separate forward
            logits, invariance_loss = self.invariance_loss.output_and_loss(
                self.backbone, x, fill=self.fill
            )
            self._check_logits(logits, batch_size)
            k = 0
        else:
            if stage == "train" and needs_model:
                copies = x.unsqueeze(1)[:, :0]  # the loss differentiates the model: no copies
            else:
                copies = self.transformed_copies(x, orbit_mode)
            k = copies.shape[1]
            inputs = torch.cat([x, copies.reshape(batch_size * k, *x.shape[1:])])
            logits, features = self.forward_with_features(inputs)
            self._check_logits(logits, inputs.shape[0])
            if needs_model:
                invariance_loss = self.invariance_loss(self.backbone, x, fill=self.fill)
            else:
                invariance_loss = self.invariance_loss(as_orbit(features, batch_size, k))
        reference_logits = logits[:batch_size]
        task_loss = F.cross_entropy(reference_logits, y)
        learning = stage == "train" and self.invariance_target is not None
        if learning:  # measured first: a loss term that is not one number is named here
            measured = self.measured_invariance(invariance_loss, logits, batch_size, k)
        weight = self._step_invariance_weight()
        loss = task_loss + weight * invariance_loss
        terms = dict(task_loss=task_loss, invariance_loss=invariance_loss, loss=loss)
        if not check_finite_loss(self, stage, batch_idx, terms):
            return None  # on_nonfinite_loss="skip": Lightning skips the optimiser step
        if stage == "train":
            accuracy = (reference_logits.detach().argmax(dim=-1) == y).float().mean()
            values = {**terms, "acc": accuracy}
            if learning:
                values["invariance_weight"] = weight
                self.update_invariance_weight(measured)
            self._record_batch("train", values, batch_size)
        else:
            self.orbit_metrics[f"{stage}_"].update(as_orbit(logits.detach(), batch_size, k), y)
            self._record_batch(stage, terms, batch_size)
        return loss

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

    @property
    def _one_pass_lie(self) -> bool:
        """Whether a training step takes its logits from the Lie loss's forward-mode pass:
        a loss with ``output_and_loss`` on the logits, and the default
        :meth:`forward_with_features` (an override decides the logits itself)."""
        return (hasattr(self.invariance_loss, "output_and_loss")
                and self.invariance_loss.layer is None
                and type(self).forward_with_features is InvarianceModule.forward_with_features)

    # ------------------------------------------------------------------ the learned ν
    def _step_invariance_weight(self) -> float | Tensor:
        """The ν of this step: the fixed float, or a copy of the multiplier (the update after
        the step must not change a tensor the backward pass still needs)."""
        if self.invariance_target is None:
            return self._fixed_invariance_weight
        return self.learned_invariance_weight.clone()

    def measured_invariance(
        self, invariance_loss: Tensor, logits: Tensor, batch_size: int, copies: int
    ) -> Tensor:
        """The batch's invariance error ``I`` held at ``invariance_target`` (detached scalar).

        ``target_metric="loss"``: the invariance loss term; otherwise the named orbit metric
        on ``logits`` ``[B·(1 + K), C]`` (``B`` untransformed rows first, then ``B·K``
        copies, sample-major), the same value the invariance loss computed when it is that
        error on the logits.
        """
        pair_error = TARGET_METRICS[self.target_metric]
        loss_is_it = (self.invariance_loss.layer is None
                      and not getattr(self.invariance_loss, "needs_model", False)
                      and self.invariance_loss.pair_error == pair_error)
        if pair_error is None or loss_is_it:
            measured = invariance_loss.detach()
            if measured.numel() != 1:
                raise ValueError(
                    f"invariance_loss: target_metric={self.target_metric!r} needs one number "
                    f"per batch, but {type(self.invariance_loss).__name__} returned shape "
                    f"{tuple(measured.shape)}; reduce it to a scalar or pick an orbit metric"
                )
            return measured.reshape(())
        orbit = as_orbit(logits.detach(), batch_size, copies)
        return orbit_pair_errors(orbit, pair_error, allow_nonfinite=True).mean()

    @torch.no_grad()
    def update_invariance_weight(self, measured: Tensor) -> None:
        """One dual-ascent step of ν from the batch's invariance error ``measured`` (averaged
        over processes under DDP, so every process keeps the same ν).

        Guards, each with a ``RuntimeWarning``: a non-finite ``measured`` leaves ν as it is;
        an update that leaves the finite range of ν's dtype is clamped to it (``[0, max]``
        additive, ``[tiny, max]`` multiplicative, ``tiny`` the smallest normal number, so a
        multiplicative ν never reaches 0, from which it could not move again).
        """
        measured = measured.detach().float()
        trainer = self._trainer
        if trainer is not None and trainer.world_size > 1:
            measured = trainer.strategy.reduce(measured, reduce_op="mean")
        weight, target = self.learned_invariance_weight, self.invariance_target
        if not bool(torch.isfinite(measured)):
            warnings.warn(
                f"invariance_target: the measured invariance error ({self.target_metric}) is "
                f"{float(measured)}; ν stays at {float(weight):.6g} for this batch. A "
                f"non-finite error means the logits overflow: lower lr, or pick another "
                f"target_metric", RuntimeWarning, stacklevel=2,
            )
            return
        if self.target_update == "additive":
            updated = (weight + self.target_lr * (measured - target)).clamp_min(0.0)
        else:
            log_ratio = torch.log(measured / target).clamp(-LOG_RATIO_CLIP, LOG_RATIO_CLIP)
            updated = weight * torch.exp(self.target_lr * log_ratio)
        info = torch.finfo(weight.dtype)
        low = 0.0 if self.target_update == "additive" else info.tiny
        if not bool((updated >= low) & (updated <= info.max)):  # inf, or below tiny
            clamped = updated.nan_to_num(posinf=info.max).clamp(low, info.max)
            warnings.warn(
                f"invariance_target: the {self.target_update} update moved ν from "
                f"{float(weight):.6g} to {float(updated):.6g}, outside the finite range of "
                f"{weight.dtype}; clamped to {float(clamped):.6g}. target_lr="
                f"{self.target_lr:g} is too large for the measured error {float(measured):.6g} "
                f"(target {target:g}): lower target_lr", RuntimeWarning, stacklevel=2,
            )
            updated = clamped
        weight.copy_(updated)

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


def check_target(
    target: object, metric: object, update: object, initial_weight: float,
    loss: InvarianceLoss,
) -> float | None:
    """``invariance_target`` as a float (``None``: a fixed ν), after checking it and the
    arguments that go with it; ``ValueError`` naming the argument otherwise."""
    if metric not in TARGET_METRICS:
        raise ValueError(f"target_metric: expected one of {list(TARGET_METRICS)}, got {metric!r}")
    if update not in DEFAULT_TARGET_LR:
        raise ValueError(
            f"target_update: expected one of {list(DEFAULT_TARGET_LR)}, got {update!r}"
        )
    if target is None:
        return None
    if isinstance(target, bool) or not isinstance(target, Real):
        raise ValueError(
            f"invariance_target: expected a number > 0 or None, got {target!r} "
            f"({type(target).__name__})"
        )
    if not math.isfinite(target) or target <= 0:
        raise ValueError(f"invariance_target: expected a finite number > 0, got {target!r}")
    if update == "multiplicative" and initial_weight <= 0:
        raise ValueError(
            "invariance_weight: the multiplicative update scales ν, so it must start > 0, got "
            f"{initial_weight!r}; pass e.g. invariance_weight=1.0, or target_update='additive'"
        )
    if metric != "loss" and getattr(loss, "needs_model", False):
        raise ValueError(
            f"target_metric: {type(loss).__name__} forms no orbit of logits to measure "
            f"{metric!r} on; pass target_metric='loss' to hold the loss term itself at the target"
        )
    return float(target)


def check_target_lr(target_lr: object, update: str,
                    dtype: torch.dtype | None = None) -> float:
    """``target_lr`` η as a float (``None``: the update's default); ``ValueError`` unless a
    finite number > 0 and, for the multiplicative update, small enough that one step's largest
    factor ``exp(3·η)`` is finite in ``dtype`` (ν's dtype; default: the default dtype):
    ``η < log(max) / 3``, 29.5 in float32."""
    if target_lr is None:
        return DEFAULT_TARGET_LR[update]
    if isinstance(target_lr, bool) or not isinstance(target_lr, Real):
        raise ValueError(f"target_lr: expected a number > 0, got {target_lr!r} "
                         f"({type(target_lr).__name__})")
    if not math.isfinite(target_lr) or target_lr <= 0:
        raise ValueError(f"target_lr: expected a finite number > 0, got {target_lr!r}")
    if update == "multiplicative":
        dtype = torch.get_default_dtype() if dtype is None else dtype
        limit = math.log(torch.finfo(dtype).max) / LOG_RATIO_CLIP
        if target_lr >= limit:
            raise ValueError(
                f"target_lr: the multiplicative update moves ν by up to a factor "
                f"exp({LOG_RATIO_CLIP:g}·η) per batch, and exp({LOG_RATIO_CLIP:g}·{target_lr:g}) "
                f"overflows {dtype} (ν's dtype); pass target_lr < {limit:.4g} (the default "
                f"{DEFAULT_TARGET_LR['multiplicative']} changes ν by at most 6 % per batch)"
            )
    return float(target_lr)


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
