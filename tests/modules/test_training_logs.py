"""What a training run logs: the step values on the steps the loggers write, the epoch values
exact (batch-size weighted over every batch, whichever steps were written)."""

import csv

import pytest
import torch
from pytorch_lightning.loggers import CSVLogger
from tiny import tiny_trainer
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from invreg.modules import InvarianceModule


class Net(nn.Module):
    num_classes = 3

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(16, 3))

    def forward(self, x):
        return self.net(x)


class Recorder(InvarianceModule):
    """Keeps every training batch's loss terms and accuracy (float64, in order)."""

    def __init__(self, **kwargs):
        super().__init__(Net(), group="c4", lr=0.0, **kwargs)  # lr 0: values reproducible
        self.seen = []

    def _log_step_values(self, values, batch_size):
        self.seen.append({**{k: v.item() for k, v in values.items()}, "n": batch_size})
        super()._log_step_values(values, batch_size)


def loader(n=40, batch=8):  # five batches, the last one of 8
    generator = torch.Generator().manual_seed(1)
    x = torch.randn(n, 1, 4, 4, generator=generator)
    y = torch.randint(0, 3, (n,), generator=generator)
    return DataLoader(TensorDataset(x, y), batch_size=batch)


def read(logger):
    with open(f"{logger.log_dir}/metrics.csv") as handle:
        return list(csv.DictReader(handle))


@pytest.mark.parametrize("every", [1, 2])
def test_step_values_on_written_steps_and_exact_epoch_means(tmp_path, every):
    module = Recorder()
    logger = CSVLogger(tmp_path)
    trainer = tiny_trainer(tmp_path, logger=logger, max_epochs=2, log_every_n_steps=every,
                           limit_val_batches=0)
    trainer.fit(module, loader())
    rows = read(logger)
    steps = [int(r["step"]) for r in rows if r.get("train/loss_step")]
    assert steps == [s for s in range(10) if (s + 1) % every == 0]
    for row in (r for r in rows if r.get("train/loss_step")):
        batch = module.seen[int(row["step"])]
        for name in ("task_loss", "invariance_loss", "loss", "acc"):
            value = float(row[f"train/{name}_step"])
            assert value == pytest.approx(batch[name], rel=1e-6, abs=1e-7), name
    epoch_rows = [r for r in rows if r.get("train/loss_epoch")]
    assert len(epoch_rows) == 2
    for epoch, row in enumerate(epoch_rows):
        batches = module.seen[5 * epoch: 5 * epoch + 5]
        total = sum(b["n"] for b in batches)
        for name in ("task_loss", "invariance_loss", "loss", "acc"):
            mean = sum(b[name] * b["n"] for b in batches) / total
            # float32 sums of five values of order 1
            assert float(row[f"train/{name}_epoch"]) == pytest.approx(mean, rel=1e-6), name


def test_uneven_last_batch_weights_the_epoch_mean_by_batch_size(tmp_path):
    module = Recorder()
    trainer = tiny_trainer(tmp_path, max_epochs=1, limit_val_batches=0)
    trainer.fit(module, loader(n=20, batch=8))  # batches of 8, 8, 4
    sizes = [b["n"] for b in module.seen]
    assert sizes == [8, 8, 4]
    mean = sum(b["loss"] * b["n"] for b in module.seen) / 20
    assert trainer.callback_metrics["train/loss_epoch"].item() == pytest.approx(mean, rel=1e-6)
