"""Amortised invariance learning (HyperInvariances): upstream pre-training over invariance
descriptors, downstream descriptor fitting.

Chavhan, Gouk, Stühmer, Hospedales (2022, arXiv 2207.08304). See :mod:`invreg.models.hyper`
for the hyper-network and the meaning of a descriptor, and ``docs/hyper.md`` for a walkthrough.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from pytorch_lightning.loggers import WandbLogger
from torch import Tensor, nn
from torchmetrics import MeanMetric
from torchmetrics.classification import MulticlassAccuracy

from invreg.losses import LOSSES, get_loss
from invreg.models.hyper import HyperCNN
from invreg.modules.checkpointing import (
    check_finite_loss,
    check_nonfinite_policy,
    check_weight,
    save_plain_hyperparameters,
)
from invreg.modules.streams import RandomStreams

Stage = Literal["upstream", "downstream"]


def load_upstream_backbone(path: str | Path) -> HyperCNN:
    """The pre-trained :class:`~invreg.models.hyper.HyperCNN` of an upstream checkpoint.

    The architecture comes from the checkpoint's hyper-parameters (``backbone_config``, saved
    by ``HyperInvarianceModule(stage="upstream")``), the weights from its ``state_dict``.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"upstream_checkpoint: no file at {str(path)!r}. Train the hyper-network first, "
            f"e.g. `invreg fit --config configs/hyper/upstream.yaml`, and point "
            f"upstream_checkpoint at the .ckpt it writes"
        )
    checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    hparams = checkpoint.get("hyper_parameters", {}) if isinstance(checkpoint, dict) else {}
    if hparams.get("stage") != "upstream" or "backbone_config" not in hparams:
        raise ValueError(
            f"upstream_checkpoint: {str(path)!r} is not a checkpoint of "
            f"HyperInvarianceModule(stage='upstream') (its hyper-parameters have no "
            f"backbone_config)"
        )
    backbone = HyperCNN(**hparams["backbone_config"])
    prefix = "backbone."
    state = {k[len(prefix):]: v for k, v in checkpoint["state_dict"].items()
             if k.startswith(prefix)}
    backbone.load_state_dict(state)
    return backbone


class HyperInvarianceModule(RandomStreams, pl.LightningModule):
    """Train a descriptor-conditioned :class:`~invreg.models.hyper.HyperCNN` (upstream), or fit
    a descriptor and a linear head on top of a frozen one (downstream).

    **Upstream** (``stage="upstream"``, needs ``backbone``). Every training step draws a
    descriptor ``d ∈ [0, 1]^k`` — one per sample (``descriptor_sampling="sample"``) or one per
    batch (``"batch"``), uniform on the cube (``corner_probability`` sets components to 0 or 1
    that often) — augments each input with transformations whose strength is its descriptor
    (:meth:`~invreg.models.hyper.InvarianceDescriptor.augment`; a rotation strength ``r``
    rotates by an angle uniform in ``[-180r, 180r]``), and feeds ``d`` to the hyper-network::

        loss = cross_entropy(f(a(x); d), y) + invariance_weight · I(h(a(x); d), h(a'(x); d))

    ``a, a'`` are two independent augmentations drawn with strengths ``d`` and ``h`` the
    features (the head's input). With ``invariance_weight > 0`` a strength of 1 means
    "penalise non-invariance over the whole range", not only "augment"; the descriptor weights
    the penalty through the spread of its two views, which coincide where ``d_j = 0``. ``I``
    is an :mod:`invreg.losses` term (``invariance_error``); the cross-entropy covers both views.
    Validation draws descriptors and augmentations from a generator seeded by the batch index.

    **Downstream** (``stage="downstream"``, needs ``upstream_checkpoint``). Loads the
    pre-trained hyper-network, freezes all of it (embedding, generators, norms; kept in eval
    mode), and learns a descriptor ``d`` (an ``nn.Parameter`` of shape ``[k]``, clamped to
    ``[0, 1]`` after every optimiser step) together with a new linear head, by gradient descent
    on the training loss ``cross_entropy(head(h(x; d)), y)`` — ``d`` gets its gradient through
    the generated weights. ``learn_descriptor=False`` keeps ``d = descriptor_init`` fixed
    (the fixed-descriptor baselines). No augmentation downstream.

    Logged: ``{train,val,test}/loss``, ``/acc``; upstream also ``/task_loss`` and
    ``/invariance_loss``; downstream ``descriptor/<name>`` every training step (the
    trajectory as scalars, for any logger) and, at the end of training, a W&B line plot
    ``descriptor/trajectory`` for each :class:`~pytorch_lightning.loggers.WandbLogger`.
    :attr:`descriptor_history` keeps ``(global_step, [d_1, ..., d_k])`` pairs.

    Args:
        stage: ``"upstream"`` or ``"downstream"``.
        backbone: the hyper-network to pre-train (upstream only).
        upstream_checkpoint: path of an upstream ``.ckpt`` (downstream only).
        num_classes: number of classes; the CLI links it from the data module. Upstream it
            must match the backbone; downstream it sizes the new head.
        descriptor_sampling: ``"sample"`` (one descriptor per sample) or ``"batch"``.
        corner_probability: upstream, probability that a sampled component is set to 0 or 1.
        invariance_weight: upstream weight of the invariance error (0: augmentation only).
        invariance_error: a loss name from :data:`invreg.losses.LOSSES`.
        descriptor_init: downstream starting descriptor: a number (every component), a list,
            or ``{name: strength}``.
        learn_descriptor: downstream, learn ``d`` (else keep ``descriptor_init``).
        descriptor_lr: Adam learning rate of the descriptor.
        descriptor_warmup_epochs: downstream, keep ``d`` at ``descriptor_init`` for this many
            epochs while the head fits: early on, with a random head, the gradient in ``d``
            says little about which invariance suits the task.
        lr: Adam learning rate of the network (upstream) or the head (downstream).
        weight_decay: Adam weight decay (not applied to the descriptor).
        fill: value of pixels that augmentations bring into the frame; ``None`` takes the data
            module's ``background`` when there is one, else 0.
        backbone_config: ``HyperCNN(**backbone_config)`` instead of ``backbone``; checkpoints
            store it so that ``load_from_checkpoint`` can rebuild the module. Downstream it
            replaces ``upstream_checkpoint`` only when loading a checkpoint (the architecture
            comes from it, the frozen weights from the checkpoint's ``state_dict``):
            :meth:`load_from_checkpoint` does that, so a downstream checkpoint loads in one
            line even where the upstream file is gone.
        on_nonfinite_loss: ``"raise"`` (default) stops a run whose loss becomes NaN or
            infinite with :class:`~invreg.modules.NonFiniteLossError`; ``"skip"`` skips such
            training batches with a warning.
    """

    def __init__(
        self,
        stage: Stage = "upstream",
        backbone: HyperCNN | None = None,
        upstream_checkpoint: str | None = None,
        num_classes: int | None = None,
        descriptor_sampling: Literal["sample", "batch"] = "sample",
        corner_probability: float = 0.0,
        invariance_weight: float = 0.0,
        invariance_error: str = "normalized_logit_l2",
        descriptor_init: float | list[float] | dict[str, float] = 0.5,
        learn_descriptor: bool = True,
        descriptor_lr: float = 0.05,
        descriptor_warmup_epochs: int = 0,
        lr: float = 3e-3,
        weight_decay: float = 0.0,
        fill: float | None = None,
        backbone_config: dict | None = None,
        on_nonfinite_loss: Literal["raise", "skip"] = "raise",
    ) -> None:
        super().__init__()
        if stage not in ("upstream", "downstream"):
            raise ValueError(f"stage: expected 'upstream' or 'downstream', got {stage!r}")
        if descriptor_sampling not in ("sample", "batch"):
            raise ValueError(
                f"descriptor_sampling: expected 'sample' or 'batch', got {descriptor_sampling!r}"
            )
        if not 0.0 <= corner_probability <= 1.0:
            raise ValueError(f"corner_probability must lie in [0, 1], got {corner_probability}")
        warmup = descriptor_warmup_epochs
        if isinstance(warmup, bool) or not isinstance(warmup, int) or warmup < 0:
            raise ValueError(f"descriptor_warmup_epochs must be an integer >= 0, got {warmup!r}")
        invariance_weight = check_weight("invariance_weight", invariance_weight)
        lr = check_weight("lr", lr)
        descriptor_lr = check_weight("descriptor_lr", descriptor_lr)
        weight_decay = check_weight("weight_decay", weight_decay)
        check_nonfinite_policy(on_nonfinite_loss)
        self.on_nonfinite_loss = on_nonfinite_loss
        if invariance_error not in LOSSES:
            raise ValueError(
                f"invariance_error: expected one of {sorted(LOSSES)}, got {invariance_error!r}"
            )
        save_plain_hyperparameters(self, ())
        # the architecture is stored as backbone_config (below), the weights in the state_dict
        self.hparams.pop("backbone", None)
        self.stage: Stage = stage
        self.descriptor_sampling = descriptor_sampling
        self.corner_probability = float(corner_probability)
        self.invariance_weight = float(invariance_weight)
        self.invariance_loss = get_loss(invariance_error)
        self.learn_descriptor = learn_descriptor
        self.descriptor_lr, self.lr, self.weight_decay = descriptor_lr, lr, weight_decay
        self.descriptor_warmup_epochs = descriptor_warmup_epochs
        self.fill = fill
        self.descriptor_history: list[tuple[int, list[float]]] = []

        if stage == "upstream":
            self.backbone = self._upstream_backbone(backbone, backbone_config, upstream_checkpoint)
            num_classes = num_classes or self.backbone.num_classes
            if num_classes != self.backbone.num_classes:
                raise ValueError(
                    f"num_classes={num_classes} (from the data) does not match the backbone's "
                    f"num_classes={self.backbone.num_classes}"
                )
            # the checkpoint must be able to rebuild the hyper-network on its own
            self.hparams["backbone_config"] = self.backbone.config
        else:
            if backbone is not None:
                raise ValueError(
                    "stage='downstream' builds the backbone from upstream_checkpoint; do not "
                    "pass backbone"
                )
            if backbone_config is not None:
                if upstream_checkpoint is not None:
                    raise ValueError(
                        "stage='downstream' takes upstream_checkpoint (training) or "
                        "backbone_config (loading a downstream checkpoint), not both"
                    )
                self.backbone = HyperCNN(**backbone_config)
            elif not upstream_checkpoint:
                raise ValueError("stage='downstream' needs upstream_checkpoint (a .ckpt path)")
            else:
                self.backbone = load_upstream_backbone(upstream_checkpoint)
            self.hparams["backbone_config"] = self.backbone.config
            self.backbone.requires_grad_(False)
            self.backbone.eval()
            if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 2:
                raise ValueError(
                    f"num_classes: downstream needs the task's number of classes (>= 2), got "
                    f"{num_classes!r}"
                )
            self.head = nn.Linear(self.backbone.feature_dim, num_classes)
            initial = self.backbone.descriptor.as_tensor(descriptor_init)
            if initial.ndim != 1:
                raise ValueError(
                    f"descriptor_init: expected one descriptor, got {descriptor_init!r}"
                )
            self.descriptor = nn.Parameter(initial.clone(), requires_grad=learn_descriptor)
        self.num_classes = num_classes
        # the fraction of samples classified correctly, as InvarianceModule logs it (torchmetrics'
        # default for MulticlassAccuracy is the macro average over classes)
        self.accuracy = nn.ModuleDict({
            split: MulticlassAccuracy(num_classes, average="micro")
            for split in ("train_", "val_", "test_")
        })
        # epoch means as metric states (sum, count), reduced across processes under DDP
        terms = ("task_loss", "invariance_loss", "loss") if stage == "upstream" else ("loss",)
        self.loss_means = nn.ModuleDict(
            {
                split: nn.ModuleDict({term: MeanMetric() for term in terms})
                for split in ("train_", "val_", "test_")
            }
        )

    @classmethod
    def load_from_checkpoint(cls, checkpoint_path, *args, **kwargs):
        """Lightning's ``load_from_checkpoint``; a downstream checkpoint is rebuilt from its
        own ``backbone_config`` and weights, without the upstream file it was trained from."""
        checkpoint = torch.load(checkpoint_path, map_location="cpu", weights_only=True)
        hparams = checkpoint.get("hyper_parameters", {})
        if hparams.get("stage") == "downstream" and hparams.get("backbone_config"):
            kwargs.setdefault("upstream_checkpoint", None)
        return super().load_from_checkpoint(checkpoint_path, *args, **kwargs)

    @staticmethod
    def _upstream_backbone(backbone, backbone_config, upstream_checkpoint) -> HyperCNN:
        if upstream_checkpoint is not None:
            raise ValueError("upstream_checkpoint is for stage='downstream'")
        if (backbone is None) == (backbone_config is None):
            raise ValueError("stage='upstream' needs exactly one of backbone or backbone_config")
        if backbone_config is not None:
            return HyperCNN(**backbone_config)
        if not isinstance(backbone, HyperCNN):
            raise TypeError(f"backbone: expected a HyperCNN, got {type(backbone).__name__}")
        return backbone

    @property
    def descriptor_names(self) -> tuple[str, ...]:
        return self.backbone.descriptor.names

    # ------------------------------------------------------------------ the research
    def forward(self, x: Tensor, descriptor=None) -> Tensor:
        """Logits; downstream uses the learned descriptor unless one is given."""
        if self.stage == "upstream":
            return self.backbone(x, descriptor)
        return self.head(self.backbone.features(x, self.descriptor if descriptor is None
                                                else descriptor))

    def upstream_step(self, batch: tuple[Tensor, Tensor], split: str, batch_idx: int) -> Tensor:
        x, y = batch
        generator = self.random_generator
        if split != "train":  # the same descriptors and augmentations at every validation
            generator = torch.Generator().manual_seed(batch_idx)
        desc = self.backbone.descriptor
        batch_size = x.shape[0]
        per_sample = self.descriptor_sampling == "sample"
        d = desc.sample(batch_size, per_sample, self.corner_probability, generator, x.device)
        views = [desc.augment(x, d, generator, self._fill())]
        if self.invariance_weight > 0 or split != "train":
            views.append(desc.augment(x, d, generator, self._fill()))
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

    def downstream_step(
        self, batch: tuple[Tensor, Tensor], split: str, batch_idx: int = 0
    ) -> Tensor | None:
        x, y = batch
        logits = self(x)
        loss = self._log_metrics(split, batch_idx, logits, y,
                                 dict(loss=F.cross_entropy(logits, y)))
        if split == "train" and loss is not None:
            values = self.descriptor.detach().unbind()
            for name, value in zip(self.descriptor_names, values, strict=True):
                self.log(f"descriptor/{name}", value, on_step=True, on_epoch=False)
        return loss

    def shared_step(self, batch, split: str, batch_idx: int) -> Tensor:
        x, _ = batch
        if not torch.isfinite(x).all():
            raise ValueError(f"{split} batch contains NaN or Inf inputs")
        if self.stage == "upstream":
            return self.upstream_step(batch, split, batch_idx)
        return self.downstream_step(batch, split, batch_idx)

    def training_step(self, batch, batch_idx):
        return self.shared_step(batch, "train", batch_idx)

    def validation_step(self, batch, batch_idx):
        return self.shared_step(batch, "val", batch_idx)

    def test_step(self, batch, batch_idx):
        return self.shared_step(batch, "test", batch_idx)

    def predict_step(self, batch, batch_idx, dataloader_idx=0):
        x = batch[0] if isinstance(batch, tuple | list) else batch
        return self(x).argmax(dim=-1)

    # ------------------------------------------------------------------ optimisation
    def configure_optimizers(self):
        if self.stage == "upstream":
            return torch.optim.Adam(self.parameters(), lr=self.lr, weight_decay=self.weight_decay)
        groups = [dict(params=self.head.parameters(), lr=self.lr, weight_decay=self.weight_decay)]
        if self.learn_descriptor:
            groups.append(dict(params=[self.descriptor], lr=self.descriptor_lr, weight_decay=0.0))
        return torch.optim.Adam(groups)

    def on_before_optimizer_step(self, optimizer) -> None:
        warming_up = self.current_epoch < self.descriptor_warmup_epochs
        if self.stage == "downstream" and self.learn_descriptor and warming_up:
            self.descriptor.grad = None  # Adam skips a parameter without a gradient

    def optimizer_step(self, *args, **kwargs) -> None:
        super().optimizer_step(*args, **kwargs)
        if self.stage == "downstream":
            with torch.no_grad():
                self.descriptor.clamp_(0.0, 1.0)

    def train(self, mode: bool = True):
        super().train(mode)
        if self.stage == "downstream":
            self.backbone.eval()  # frozen: norms and any dropout behave as at inference
        return self

    # ------------------------------------------------------------------ trajectory
    def on_train_batch_end(self, outputs, batch, batch_idx) -> None:
        if self.stage == "downstream":
            self.descriptor_history.append(
                (self.global_step, self.descriptor.detach().cpu().tolist())
            )

    def on_train_end(self) -> None:
        if self.stage == "downstream" and self.descriptor_history:
            self.log_descriptor_trajectory()

    def log_descriptor_trajectory(self) -> None:
        """A W&B line plot of every descriptor component against the training step."""
        wandb_loggers = [lg for lg in self.loggers if isinstance(lg, WandbLogger)]
        if not wandb_loggers:
            return
        import wandb

        steps = [step for step, _ in self.descriptor_history]
        history = [values for _, values in self.descriptor_history]
        series = [list(component) for component in zip(*history, strict=True)]
        chart = wandb.plot.line_series(
            xs=steps, ys=series, keys=list(self.descriptor_names),
            title="invariance descriptor", xname="step",
        )
        for logger in wandb_loggers:
            logger.log_metrics({"descriptor/trajectory": chart}, step=self.trainer.global_step)

    # ------------------------------------------------------------------ plumbing
    def _fill(self) -> float:
        if self.fill is not None:
            return float(self.fill)
        datamodule = getattr(self._trainer, "datamodule", None) if self._trainer else None
        return float(getattr(datamodule, "background", 0.0))

    def _log_metrics(self, split: str, batch_idx: int, logits: Tensor, y: Tensor,
                     terms: dict[str, Tensor]) -> Tensor | None:
        """Log the loss terms and accuracy; the loss, or ``None`` to skip a non-finite
        training batch (``on_nonfinite_loss="skip"``)."""
        if not check_finite_loss(self, split, batch_idx, terms):
            return None
        accuracy = self.accuracy[f"{split}_"]
        accuracy(logits, y)
        batch_size = y.shape[0]
        log = dict(on_step=split == "train", on_epoch=True, batch_size=batch_size)
        for name, value in terms.items():
            mean = self.loss_means[f"{split}_"][name]
            mean(value.detach(), batch_size)
            self.log(f"{split}/{name}", mean, prog_bar=name == "loss" and split != "test", **log)
        self.log(f"{split}/acc", accuracy, prog_bar=True, **log)
        return terms["loss"]
