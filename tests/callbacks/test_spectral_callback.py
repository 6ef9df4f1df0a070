import csv

import pytest
import torch
from callback_helpers import Linear, make_trainer, tiny_module
from pytorch_lightning.loggers import CSVLogger

from invreg.callbacks import SpectralDecayCallback
from invreg.modules import InvarianceModule


def linear_module(weight):
    return InvarianceModule(Linear(weight), group="c4", invariance_weight=0.0, lr=0.0)


def test_linear_model_jacobian_sigma_is_the_weight_sigma(tmp_path, data):
    weight = torch.randn(3, 64, generator=torch.Generator().manual_seed(0))
    callback = SpectralDecayCallback(num_samples=10, iters=3, top_k=2)
    logger = CSVLogger(tmp_path)
    module = linear_module(weight)
    trainer = make_trainer(tmp_path, [callback], logger=logger)
    trainer.fit(module, data)  # lr = 0: the weight stays as given
    sigma = torch.linalg.svdvals(weight)
    last = callback.history[-1]
    assert last["jacobian_sigma_max"] == pytest.approx(sigma[0].item(), rel=1e-5)
    assert last["jacobian_sigma_max_std"] == pytest.approx(0.0, abs=1e-4)
    assert last["first_layer_sigma_max"] == pytest.approx(sigma[0].item(), rel=1e-6)
    with open(f"{logger.log_dir}/metrics.csv") as handle:
        rows = list(csv.DictReader(handle))
    row = [r for r in rows if r.get("spectral/val/jacobian_sigma_max")][-1]
    assert row["val/acc"]  # the headline in the row of the module's epoch-end metrics
    assert float(row["spectral/first_layer_sigma_max"]) == pytest.approx(sigma[0].item())
    # per-layer detail: its own row, at the same step
    detail = [r for r in rows if r.get("spectral/weights/backbone.head.weight/sigma_2")][-1]
    assert detail["step"] == row["step"]
    assert float(detail["spectral/weights/backbone.head.weight/sigma_2"]) == pytest.approx(
        sigma[1].item(), rel=1e-6
    )
    # every sample's value, per evaluation, is kept on disk
    with open(f"{logger.log_dir}/spectral/jacobian_sigma_max.csv") as handle:
        samples = list(csv.DictReader(handle))
    assert len(samples) == 10 and {r["split"] for r in samples} == {"val"}
    assert (tmp_path / "lightning_logs/version_0/spectral/spectral_decay_val.png").stat().st_size


def test_history_follows_training_and_quantiles_are_ordered(tmp_path, data):
    callback = SpectralDecayCallback(num_samples=12, iters=3)
    trainer = make_trainer(tmp_path, [callback], max_epochs=3)
    trainer.fit(tiny_module(), data)
    assert [h["step"] for h in callback.history] == [0, 1, 2]
    for h in callback.history:
        assert (h["jacobian_sigma_max_p10"] <= h["jacobian_sigma_max_median"]
                <= h["jacobian_sigma_max_p90"] <= h["jacobian_sigma_max_max"])
        assert h["jacobian_sigma_max"] > 0


def test_power_method_and_chunks_agree_with_lanczos(tmp_path, data):
    results = {}
    for name, kwargs in {"lanczos": {}, "power": {"method": "power", "iters": 200},
                         "chunked": {"chunk_size": 3}}.items():
        callback = SpectralDecayCallback(num_samples=8, **kwargs)
        make_trainer(tmp_path, [callback]).fit(tiny_module(), data)
        results[name] = callback.history[-1]["jacobian_sigma_max"]
    assert results["power"] == pytest.approx(results["lanczos"], rel=1e-3)
    assert results["chunked"] == pytest.approx(results["lanczos"], rel=1e-5)


def test_invalid_arguments_are_named():
    with pytest.raises(ValueError, match="method"):
        SpectralDecayCallback(method="svd")
    with pytest.raises(ValueError, match="top_k"):
        SpectralDecayCallback(top_k=0)
    with pytest.raises(ValueError, match="iters"):
        SpectralDecayCallback(iters=0)
