"""The metrics inside a Lightning validation loop (inference mode), logged as Metric objects."""

import pytorch_lightning as pl
import torch
from tiny import tiny_trainer
from torch.utils.data import DataLoader, TensorDataset
from torchmetrics import MetricCollection
from torchmetrics.classification import MulticlassAccuracy

from invreg.functional import geed_terms, orbit_features, orbit_logits
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
    trainer = tiny_trainer()
    module = Evaluated().eval()
    (result,) = trainer.validate(module, DataLoader(data, batch_size=4), verbose=False)
    eps = torch.finfo(torch.float32).eps
    x = data.tensors[0]
    with torch.no_grad():
        orbit = orbit_logits(module.model, x, module.group)
        # the tied model is invariant up to rounding: logits within d = (fan-ins 64 + 8)·eps·max
        d = (64 + 8) * eps * orbit.abs().max().item()
        # cosine G-EED of the pooled features: the cosine's rounding, 2·(D + 3)·eps over the
        # random-pair distance of the batches of 4
        pairs = [
            geed_terms(
                orbit_features(module.model, x[i : i + 4], module.group, ["pool"]),
                "pool",
                module.group,
            )[1]
            for i in range(0, 12, 4)
        ]
    geed_tol = 2 * (8 + 3) * eps / torch.cat(pairs).mean().item()
    assert result["val/si"] > 0.999
    assert result["val/li"] <= 0.5 * 3 * d**2 and result["val/consistency"] == 1.0
    assert result["val/geed_pool"] < geed_tol
    assert 0.0 <= result["val/acc"] <= 1.0
