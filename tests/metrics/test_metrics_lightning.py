"""The metrics inside a Lightning validation loop (inference mode), logged as Metric objects."""

import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, TensorDataset
from torchmetrics import MetricCollection
from torchmetrics.classification import MulticlassAccuracy

from invreg.functional import orbit_logits
from invreg.groups import Rotations
from invreg.metrics import (
    LayerInvariance,
    LogitInvariance,
    OrbitConsistency,
    PredictiveDistributionInvariance,
    SaliencyInvarianceSimilarity,
)
from invreg.models import TiedMLP


class Evaluated(pl.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.model = TiedMLP((1, 8, 8), 3, group="c4", hidden_widths=(8,))
        self.group = Rotations(4)
        self.val_metrics = MetricCollection(
            {
                "acc": MulticlassAccuracy(num_classes=3),
                "di": PredictiveDistributionInvariance(),
                "li": LogitInvariance(),
                "consistency": OrbitConsistency(),
                "si": SaliencyInvarianceSimilarity(self.group, steps=4),
            },
            prefix="val/",
        )
        self.val_geed = LayerInvariance(self.group, "pool")

    def validation_step(self, batch, batch_idx):
        x, y = batch
        assert torch.is_inference_mode_enabled()
        orbit = orbit_logits(self.model, x, self.group)
        self.val_metrics.update(preds=orbit[:, 0], target=y, orbit=orbit, model=self.model, x=x)
        self.val_geed.update(self.model, x)
        self.log_dict(self.val_metrics)
        self.log("val/geed_pool", self.val_geed)


def test_validation_loop_in_inference_mode():
    torch.manual_seed(0)
    data = TensorDataset(torch.randn(12, 1, 8, 8), torch.randint(0, 3, (12,)))
    trainer = pl.Trainer(
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    (result,) = trainer.validate(Evaluated(), DataLoader(data, batch_size=4), verbose=False)
    assert result["val/si"] > 0.999
    assert result["val/li"] < 1e-6 and result["val/consistency"] == 1.0
    assert result["val/geed_pool"] < 1e-5
    assert 0.0 <= result["val/acc"] <= 1.0
