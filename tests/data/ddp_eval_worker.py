"""Run by test_ddp_eval_counts.py: ``python ddp_eval_worker.py OUT.json``.

Validates and tests a tiny InvarianceModule on the digits data module with odd split sizes
(271 validation, 135 test samples) under DDP on two CPU processes (gloo). Every rank counts the
samples its loader handed over and the samples its metrics saw; rank 0 writes the totals
summed over ranks, and the logged accuracies, to OUT.json.
"""

import json
import sys

import pytorch_lightning as pl
import torch
import torch.distributed as dist

from invreg.data import DigitsDataModule
from invreg.models import MLP
from invreg.modules import InvarianceModule


class CountSamples(pl.Callback):
    """Samples per stage that reached this rank's module."""

    def __init__(self) -> None:
        self.counts = {"val": 0, "test": 0}

    def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx,
                                dataloader_idx=0):
        self.counts["val"] += len(batch[1])

    def on_test_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0):
        self.counts["test"] += len(batch[1])


def run(out: str, devices: int) -> dict:
    torch.set_num_threads(1)
    pl.seed_everything(0)
    data = DigitsDataModule(val_size=271, test_size=135, batch_size=64, seed=0)
    module = InvarianceModule(MLP((1, 8, 8), 10, hidden_widths=[16]), group="c4")
    counter = CountSamples()
    trainer = pl.Trainer(accelerator="cpu", devices=devices,
                         strategy="ddp" if devices > 1 else "auto", logger=False,
                         enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, callbacks=[counter])
    result = {}
    for stage, evaluate in (("val", trainer.validate), ("test", trainer.test)):
        logged = evaluate(module, data, verbose=False)[0]
        metric = module.orbit_metrics[f"{stage}_"]["accuracy"]
        counts = torch.tensor([counter.counts[stage], int(getattr(metric, metric._count_name))])
        if devices > 1:
            dist.all_reduce(counts)
        result[stage] = {"loaded": int(counts[0]), "counted": int(counts[1]),
                         "acc": logged[f"{stage}/acc"], "loss": logged[f"{stage}/loss"]}
    if trainer.is_global_zero:
        with open(out, "w") as handle:
            json.dump(result, handle)
    return result


if __name__ == "__main__":
    run(sys.argv[1], 2)
