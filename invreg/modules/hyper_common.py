"""What the two HyperInvariances modules share: the logged loss means and accuracy, the step
plumbing, the Adam optimiser, and reading the hyper-network out of an upstream checkpoint."""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import pytorch_lightning as pl
import torch
from torch import Tensor

from invreg.checkpoints import verify_checkpoint
from invreg.models.hyper import HyperCNN
from invreg.modules.checkpointing import (
    CheckedCheckpoints,
    check_finite_inputs,
    check_finite_loss,
    check_nonfinite_policy,
    check_weight,
)
from invreg.modules.epoch_logging import EpochMeansLogging
from invreg.modules.streams import RandomStreams

#: checkpoint entry that marks a checkpoint of :class:`~invreg.modules.HyperUpstreamModule`
UPSTREAM_MARK = "invreg_hyper_upstream"

SPLITS = ("train", "val", "test")


def load_upstream_backbone(path: str | Path) -> HyperCNN:
    """The pre-trained :class:`~invreg.models.hyper.HyperCNN` of an upstream checkpoint.

    The architecture comes from the checkpoint's hyper-parameters (``backbone_config``, saved
    by :class:`~invreg.modules.HyperUpstreamModule`), the weights from its ``state_dict``.
    Checkpoints written by the former ``HyperInvarianceModule(stage="upstream")`` load too.
    The file is checked whole first (:func:`invreg.checkpoints.verify_checkpoint`): an empty,
    truncated or corrupted file is a ``ValueError`` naming ``upstream_checkpoint``.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"upstream_checkpoint: no file at {str(path)!r}. Train the hyper-network first, "
            f"e.g. `invreg fit --config configs/hyper/upstream.yaml`, and point "
            f"upstream_checkpoint at the .ckpt it writes"
        )
    verify_checkpoint(path, "upstream_checkpoint")  # torch.load does not check the CRCs
    checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    checkpoint = checkpoint if isinstance(checkpoint, dict) else {}
    hparams = checkpoint.get("hyper_parameters", {})
    upstream = checkpoint.get(UPSTREAM_MARK, False) or hparams.get("stage") == "upstream"
    if not upstream or "backbone_config" not in hparams:
        raise ValueError(
            f"upstream_checkpoint: {str(path)!r} is not a checkpoint of HyperUpstreamModule; "
            f"pass the .ckpt of the upstream run (configs/hyper/upstream.yaml)"
        )
    backbone = HyperCNN(**hparams["backbone_config"])
    prefix = "backbone."
    state = {k[len(prefix):]: v for k, v in checkpoint["state_dict"].items()
             if k.startswith(prefix)}
    backbone.load_state_dict(state)
    return backbone


class HyperModuleBase(EpochMeansLogging, RandomStreams, CheckedCheckpoints,
                      pl.LightningModule):
    """The common shell of :class:`~invreg.modules.HyperUpstreamModule` and
    :class:`~invreg.modules.HyperDownstreamModule`.

    A subclass sets :attr:`loss_terms`, assigns ``self.backbone`` (a
    :class:`~invreg.models.hyper.HyperCNN`), calls :meth:`_build_metrics`, and implements
    :meth:`step` (one batch of one split → the loss, through :meth:`_log_metrics`) and
    :meth:`parameter_groups` (what Adam trains, at which learning rate).

    Logged per split (:mod:`invreg.modules.epoch_logging`, as
    :class:`~invreg.modules.InvarianceModule` logs): each of :attr:`loss_terms` and ``acc``,
    the fraction of samples classified correctly (micro average), as ``train/<name>_step``,
    ``train/<name>_epoch``, ``val/<name>`` and ``test/<name>``; epoch means are batch-size
    weighted and reduced across processes under DDP.
    """

    #: loss terms logged as ``<split>/<term>``; ``"loss"`` is the one optimised
    loss_terms: ClassVar[tuple[str, ...]] = ("loss",)
    backbone: HyperCNN

    def __init__(self, lr: float, weight_decay: float, on_nonfinite_loss: str) -> None:
        super().__init__()
        self.lr = check_weight("lr", lr)
        self.weight_decay = check_weight("weight_decay", weight_decay)
        self.on_nonfinite_loss = check_nonfinite_policy(on_nonfinite_loss)

    def _build_metrics(self, num_classes: int) -> None:
        self.num_classes = num_classes
        names = (*self.loss_terms, "acc")
        self._build_epoch_means({split: names for split in SPLITS})

    @property
    def descriptor_names(self) -> tuple[str, ...]:
        """The descriptor's component names, in order."""
        return self.backbone.descriptor.names

    # ------------------------------------------------------------------ steps
    def step(self, batch: tuple[Tensor, Tensor], split: str, batch_idx: int) -> Tensor | None:
        """The loss of one batch of ``split`` (``None`` skips a non-finite training batch)."""
        raise NotImplementedError

    def _checked_step(self, batch, split: str, batch_idx: int) -> Tensor | None:
        check_finite_inputs(batch[0], split)
        return self.step(batch, split, batch_idx)

    def training_step(self, batch, batch_idx):
        return self._checked_step(batch, "train", batch_idx)

    def validation_step(self, batch, batch_idx):
        return self._checked_step(batch, "val", batch_idx)

    def test_step(self, batch, batch_idx):
        return self._checked_step(batch, "test", batch_idx)

    def predict_step(self, batch, batch_idx, dataloader_idx=0):
        x = batch[0] if isinstance(batch, tuple | list) else batch
        return self(x).argmax(dim=-1)

    def _log_metrics(self, split: str, batch_idx: int, logits: Tensor, y: Tensor,
                     terms: dict[str, Tensor]) -> Tensor | None:
        """Log the loss terms and accuracy; the loss, or ``None`` to skip a non-finite
        training batch (``on_nonfinite_loss="skip"``)."""
        if not check_finite_loss(self, split, batch_idx, terms):
            return None
        accuracy = (logits.detach().argmax(dim=-1) == y).float().mean()
        self._record_batch(split, {**terms, "acc": accuracy}, y.shape[0])
        return terms["loss"]

    # ------------------------------------------------------------------ optimisation
    def parameter_groups(self) -> list[dict[str, Any]]:
        """Adam's parameter groups (``params``, ``lr``, ``weight_decay``)."""
        raise NotImplementedError

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameter_groups())
