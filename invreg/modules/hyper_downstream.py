"""HyperInvariances step 2 (downstream): fit a descriptor and a head on a frozen hyper-network."""

from __future__ import annotations

from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from invreg.models.hyper import HyperCNN
from invreg.modules.checkpointing import check_weight, save_plain_hyperparameters
from invreg.modules.hyper_common import HyperModuleBase, load_upstream_backbone


class HyperDownstreamModule(HyperModuleBase):
    """Learn an invariance descriptor and a linear head on top of a frozen, pre-trained
    :class:`~invreg.models.hyper.HyperCNN`.

    Loads the hyper-network of an upstream checkpoint
    (:class:`~invreg.modules.HyperUpstreamModule`), freezes all of it (embedding, generators,
    norms; kept in eval mode), and learns a descriptor ``d`` (an ``nn.Parameter`` of shape
    ``[k]``, clamped to ``[0, 1]`` after every optimiser step) together with a new head::

        loss = cross_entropy(head(h(x; d)), y)

    ``h(x; d)`` are the frozen network's features ``[B, feature_dim]``; ``d`` gets its gradient
    through the generated weights. ``learn_descriptor=False`` keeps ``d = descriptor_init``
    fixed (the fixed-descriptor baselines). No augmentation.

    Logged: ``{train,val,test}/loss`` and ``/acc``. The trajectory of ``d`` is logged by
    :class:`~invreg.callbacks.DescriptorTrajectoryCallback`. The checkpoint carries the
    frozen network's architecture (``backbone_config``) and weights:
    ``HyperDownstreamModule.load_from_checkpoint(path)`` needs no upstream file.

    Args:
        upstream_checkpoint: path of an upstream ``.ckpt``.
        num_classes: the task's number of classes (sizes the new head); the CLI links it from
            the data module.
        descriptor_init: starting descriptor: a number (every component), a list, or
            ``{name: strength}``.
        learn_descriptor: learn ``d`` (else keep ``descriptor_init``).
        descriptor_lr: Adam learning rate of the descriptor.
        descriptor_warmup_epochs: keep ``d`` at ``descriptor_init`` for this many epochs while
            the head fits: early on, with a random head, the gradient in ``d`` says little about
            which invariance suits the task.
        lr: Adam learning rate of the head.
        weight_decay: Adam weight decay of the head (never applied to the descriptor).
        backbone_config: the frozen network's architecture, instead of ``upstream_checkpoint``,
            when loading a downstream checkpoint (the weights come from its ``state_dict``);
            :meth:`load_from_checkpoint` passes it.
        on_nonfinite_loss: ``"raise"`` (default) or ``"skip"`` non-finite training batches.
    """

    def __init__(
        self,
        upstream_checkpoint: str | None = None,
        num_classes: int | None = None,
        descriptor_init: float | list[float] | dict[str, float] = 0.5,
        learn_descriptor: bool = True,
        descriptor_lr: float = 0.05,
        descriptor_warmup_epochs: int = 0,
        lr: float = 3e-3,
        weight_decay: float = 0.0,
        backbone_config: dict | None = None,
        on_nonfinite_loss: Literal["raise", "skip"] = "raise",
    ) -> None:
        super().__init__(lr, weight_decay, on_nonfinite_loss)
        warmup = descriptor_warmup_epochs
        if isinstance(warmup, bool) or not isinstance(warmup, int) or warmup < 0:
            raise ValueError(f"descriptor_warmup_epochs must be an integer >= 0, got {warmup!r}")
        descriptor_lr = check_weight("descriptor_lr", descriptor_lr)
        if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 2:
            raise ValueError(
                f"num_classes: expected the task's number of classes (an integer >= 2), got "
                f"{num_classes!r}"
            )
        if backbone_config is not None and upstream_checkpoint is not None:
            raise ValueError(
                "HyperDownstreamModule takes upstream_checkpoint (training) or backbone_config "
                "(loading a downstream checkpoint), not both"
            )
        if backbone_config is not None:
            backbone = HyperCNN(**backbone_config)
        elif not upstream_checkpoint:
            raise ValueError("HyperDownstreamModule needs upstream_checkpoint (a .ckpt path)")
        else:
            backbone = load_upstream_backbone(upstream_checkpoint)
        save_plain_hyperparameters(self, ())
        self.hparams["backbone_config"] = backbone.config
        self.backbone = backbone
        self.backbone.requires_grad_(False)
        self.backbone.eval()
        self.head = nn.Linear(self.backbone.feature_dim, num_classes)
        initial = self.backbone.descriptor.as_tensor(descriptor_init)
        if initial.ndim != 1:
            raise ValueError(f"descriptor_init: expected one descriptor, got {descriptor_init!r}")
        self.descriptor = nn.Parameter(initial.clone(), requires_grad=learn_descriptor)
        self.learn_descriptor = learn_descriptor
        self.descriptor_lr = descriptor_lr
        self.descriptor_warmup_epochs = descriptor_warmup_epochs
        self._build_metrics(num_classes)

    @classmethod
    def load_from_checkpoint(cls, checkpoint_path, *args, **kwargs):
        """Lightning's ``load_from_checkpoint``: the module is rebuilt from the checkpoint's own
        ``backbone_config`` and weights, without the upstream file it was trained from."""
        kwargs.setdefault("upstream_checkpoint", None)
        return super().load_from_checkpoint(checkpoint_path, *args, **kwargs)

    def forward(self, x: Tensor, descriptor=None) -> Tensor:
        """Logits ``[B, num_classes]`` under the learned descriptor, unless one is given."""
        return self.head(self.backbone.features(x, self.descriptor if descriptor is None
                                                else descriptor))

    def step(self, batch: tuple[Tensor, Tensor], split: str, batch_idx: int) -> Tensor | None:
        x, y = batch
        logits = self(x)
        return self._log_metrics(split, batch_idx, logits, y,
                                 dict(loss=F.cross_entropy(logits, y)))

    # ------------------------------------------------------------------ optimisation
    def parameter_groups(self) -> list[dict[str, Any]]:
        groups = [dict(params=self.head.parameters(), lr=self.lr, weight_decay=self.weight_decay)]
        if self.learn_descriptor:
            groups.append(dict(params=[self.descriptor], lr=self.descriptor_lr, weight_decay=0.0))
        return groups

    def on_before_optimizer_step(self, optimizer) -> None:
        if self.learn_descriptor and self.current_epoch < self.descriptor_warmup_epochs:
            self.descriptor.grad = None  # Adam skips a parameter without a gradient

    def optimizer_step(self, *args, **kwargs) -> None:
        super().optimizer_step(*args, **kwargs)
        with torch.no_grad():
            self.descriptor.clamp_(0.0, 1.0)

    def train(self, mode: bool = True):
        super().train(mode)
        self.backbone.eval()  # frozen: norms and any dropout behave as at inference
        return self
