"""Tiny trainers and the tiny hyper-network the tests share (see ``tests/conftest.py``).

A plain module, not a conftest: test files and the DDP worker scripts import it by name
(``from tiny import tiny_trainer``); ``tests/`` is on ``sys.path`` through its conftest.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, TensorDataset

from invreg.models.hyper import HyperCNN

#: what every test trainer does unless told otherwise: CPU, quiet, nothing written to disk
TINY_TRAINER_DEFAULTS: dict[str, Any] = dict(
    max_epochs=1,
    accelerator="cpu",
    devices=1,
    logger=False,
    enable_checkpointing=False,
    enable_progress_bar=False,
    enable_model_summary=False,
)


def tiny_trainer(root: str | Path | None = None, **options: Any) -> pl.Trainer:
    """A quiet CPU ``pl.Trainer``: :data:`TINY_TRAINER_DEFAULTS` updated with ``options``;
    ``root`` is its ``default_root_dir`` (``None``: the working directory, which stays
    untouched as long as there is no logger and no checkpointing)."""
    if root is not None:
        options.setdefault("default_root_dir", str(root))
    return pl.Trainer(**{**TINY_TRAINER_DEFAULTS, **options})


def hyper_backbone() -> HyperCNN:
    """The tests' HyperCNN: 8×8 grey inputs, 3 classes, descriptor (rotation, flip); seeded."""
    torch.manual_seed(0)
    return HyperCNN((1, 8, 8), num_classes=3, descriptor=["rotation", "flip"], channels=(4, 8),
                    embedding_dim=8, embedding_hidden=8)


def hyper_loader(n: int = 64, num_classes: int = 3, seed: int = 0,
                 shuffle: bool = True) -> DataLoader:
    """``n`` noisy 8×8 images whose class ``y`` is a bright pixel at ``(2y, 2y)``."""
    gen = torch.Generator().manual_seed(seed)
    y = torch.randint(num_classes, (n,), generator=gen)
    x = 0.3 * torch.randn(n, 1, 8, 8, generator=gen)
    x[torch.arange(n), 0, 2 * y, 2 * y] += 3.0
    return DataLoader(TensorDataset(x, y), batch_size=16, shuffle=shuffle, generator=gen)
