import csv

import pytest
import torch
from callback_helpers import make_trainer, tiny_module
from pytorch_lightning.loggers import CSVLogger

from invreg.callbacks import DriftCallback
from invreg.data.drift import NoiseDrift, blend, match_statistics
from invreg.functional import orbit_logits, predictive_kl_invariance
from invreg.groups import Rotations

# --------------------------------------------------------------------------- callback


def test_drift_curve_matches_a_direct_computation(tmp_path, data):
    callback = DriftCallback(betas=(0.5, 0.25), source="noise", num_samples=12, seed=1)
    logger = CSVLogger(tmp_path)
    module = tiny_module()
    trainer = make_trainer(tmp_path, [callback], logger=logger)
    trainer.fit(module, data)
    rows = callback.history[-1]["table"]
    assert [r[0] for r in rows] == [0.0, 0.25, 0.5]  # beta = 0 always measured, sorted
    assert rows[0][4] == 1.0  # Acc(0)/Acc(0)
    x = callback._subsets["val"][0]
    drift = NoiseDrift().sample(12, (1, 8, 8), torch.Generator().manual_seed(1))
    drift = match_statistics(drift, x)
    module.eval()
    with torch.no_grad():
        orbit = orbit_logits(module, blend(x, drift, 0.5), Rotations(4))
    assert rows[2][1] == pytest.approx(predictive_kl_invariance(orbit).item(), rel=1e-5)
    run = tmp_path / "lightning_logs" / "version_0"
    with open(run / "drift" / "val_step000000.csv") as handle:
        table = list(csv.DictReader(handle))
    assert list(table[0]) == ["beta", "DI", "LI", "accuracy", "accuracy_ratio", "consistency"]
    assert len(table) == 3
    assert (run / "drift" / "val_step000000.png").stat().st_size > 0
    with open(run / "metrics.csv") as handle:
        logged = [r for r in csv.DictReader(handle) if r.get("drift/val/DI/beta_0.50")]
    assert len(logged) == 1 and float(logged[0]["drift/val/accuracy_ratio/beta_0.00"]) == 1.0


def test_weight_tied_model_stays_invariant_under_drift(tmp_path, data):
    callback = DriftCallback(source="natural_images", num_samples=16)
    module = tiny_module(tied=True)
    trainer = make_trainer(tmp_path, [callback])
    trainer.fit(module, data)
    trainer.test(module, data)
    for record in callback.history:
        assert all(row[1] < 1e-6 and row[5] == 1.0 for row in record["table"])
    assert [h["split"] for h in callback.history] == ["val", "test"]


def test_only_at_the_end_by_default(tmp_path, data):
    callback = DriftCallback(betas=(0.0, 1.0), source="noise", num_samples=8)
    make_trainer(tmp_path, [callback], max_epochs=3).fit(tiny_module(), data)
    assert [h["step"] for h in callback.history] == [2]  # the last epoch (one batch each)


def test_invalid_betas():
    with pytest.raises(ValueError, match="betas"):
        DriftCallback(betas=(0.0, 2.0))
    with pytest.raises(ValueError, match="betas"):
        DriftCallback(betas=())
