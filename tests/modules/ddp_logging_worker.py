"""Run by test_ddp_logging.py: ``python ddp_logging_worker.py OUT.json DEVICES``.

Fits (lr 0: the weights stay at their seeded initialisation, so every batch's losses are
fixed numbers whatever process computes them) and validates a tiny InvarianceModule on 64
samples, then writes the epoch values Lightning logged (rank 0) to OUT.json.
"""

import json
import sys

import pytorch_lightning as pl
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from invreg.modules import InvarianceModule


def run(out: str, devices: int) -> dict:
    torch.set_num_threads(1)
    pl.seed_everything(0)
    backbone = nn.Sequential(nn.Flatten(), nn.Linear(16, 8), nn.Tanh(), nn.Linear(8, 3))
    backbone.num_classes = 3
    module = InvarianceModule(backbone, group="c4", orbit_mode="full", augment=False, lr=0.0,
                              invariance_weight=0.5)
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(64, 1, 4, 4, generator=generator)
    y = torch.randint(0, 3, (64,), generator=generator)
    # batches of unequal size (8, 8, 8, 6 per process): epoch means must weight by samples
    train = DataLoader(TensorDataset(x[:60], y[:60]), batch_size=8)
    val = DataLoader(TensorDataset(x, y), batch_size=12)
    trainer = pl.Trainer(max_epochs=1, accelerator="cpu", devices=devices,
                         strategy="ddp" if devices > 1 else "auto", logger=False,
                         enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, num_sanity_val_steps=0,
                         use_distributed_sampler=True)
    trainer.fit(module, train, val)
    logged = {k: float(v) for k, v in trainer.callback_metrics.items() if k.endswith(
        ("_epoch", "val/loss", "val/task_loss", "val/invariance_loss", "val/acc"))}
    if trainer.is_global_zero:
        with open(out, "w") as handle:
            json.dump(logged, handle)
    return logged


if __name__ == "__main__":
    run(sys.argv[1], int(sys.argv[2]))
