"""Tiny data, models and trainers for the callback tests (each fit takes well under a second).

A plain module (imported as ``callback_helpers``), not a conftest: the suite has one conftest,
``tests/conftest.py``, which holds the callback tests' fixtures (``data``, W&B disabled).
"""

from __future__ import annotations

import pytorch_lightning as pl
import torch
from tiny import tiny_trainer
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from invreg.callbacks import (
    DriftCallback,
    OrbitConsistencyCallback,
    SaliencyCallback,
    SpectralDecayCallback,
)
from invreg.functional import SaliencyRecipe
from invreg.models import MLP, TiedMLP
from invreg.modules import InvarianceModule

NUM_CLASSES = 3
SHAPE = (1, 8, 8)


class TinyData(pl.LightningDataModule):
    """Random 8×8 images; the label is the quadrant of the brightest pixel (mod 3)."""

    def __init__(self, n: int = 96, batch_size: int = 32, seed: int = 0) -> None:
        super().__init__()
        gen = torch.Generator().manual_seed(seed)
        x = torch.randn(n, *SHAPE, generator=gen)
        flat = x.flatten(1).argmax(dim=1)
        y = ((flat // 8 >= 4).long() * 2 + (flat % 8 >= 4).long()) % NUM_CLASSES
        self.datasets = {
            name: TensorDataset(x[i::3].clone(), y[i::3].clone())
            for i, name in enumerate(("train", "val", "test"))
        }
        self.batch_size = batch_size

    def train_dataloader(self):
        return DataLoader(self.datasets["train"], batch_size=self.batch_size, shuffle=True,
                          generator=torch.Generator().manual_seed(0))

    def val_dataloader(self):
        return DataLoader(self.datasets["val"], batch_size=self.batch_size)

    def test_dataloader(self):
        return DataLoader(self.datasets["test"], batch_size=self.batch_size)


def tiny_module(tied: bool = False, group: str = "c4") -> InvarianceModule:
    torch.manual_seed(0)
    cls = TiedMLP if tied else MLP
    extra = {"group": group} if tied else {}
    backbone = cls(SHAPE, NUM_CLASSES, hidden_widths=[16], **extra)
    return InvarianceModule(backbone, group=group, invariance_weight=0.0 if tied else 1.0,
                            lr=1e-2)


def fast_callbacks(every_n_epochs: int = 1, save_local: bool = True) -> list[pl.Callback]:
    return [
        OrbitConsistencyCallback(num_samples=16, every_n_epochs=every_n_epochs,
                                 saliency_samples=4, saliency_steps=4, save_local=save_local),
        SpectralDecayCallback(num_samples=8, every_n_epochs=every_n_epochs, iters=4,
                              save_local=save_local),
        SaliencyCallback(num_samples=2, every_n_epochs=every_n_epochs,
                         recipe=SaliencyRecipe(steps=4, baseline="background"),
                         save_local=save_local),
        DriftCallback(betas=(0.0, 0.5), source="noise", num_samples=16, save_local=save_local),
    ]


def make_trainer(root, callbacks, logger=None, max_epochs: int = 1, **kwargs) -> pl.Trainer:
    """:func:`tiny.tiny_trainer` with ``callbacks``, two training batches and a log per step."""
    options = dict(
        max_epochs=max_epochs,
        limit_train_batches=2,
        logger=logger if logger is not None else False,
        callbacks=callbacks,
        num_sanity_val_steps=0,
        log_every_n_steps=1,
    )
    options.update(kwargs)
    return tiny_trainer(root, **options)


class Linear(nn.Module):
    """``f(x) = W·vec(x)``: the input→logit Jacobian is ``W`` for every sample."""

    def __init__(self, weight: torch.Tensor) -> None:
        super().__init__()
        self.flatten = nn.Flatten()
        self.head = nn.Linear(weight.shape[1], weight.shape[0], bias=False)
        with torch.no_grad():
            self.head.weight.copy_(weight)
        self.num_classes = weight.shape[0]

    def forward(self, x):
        return self.head(self.flatten(x))
