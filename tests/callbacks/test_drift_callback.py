import csv

import pytest
import torch
from conftest import make_trainer, tiny_module
from pytorch_lightning.loggers import CSVLogger

from invreg.callbacks import DriftCallback
from invreg.data.drift import (
    MNIST1DDrift,
    NaturalImageDrift,
    NoiseDrift,
    TensorDrift,
    blend,
    get_drift_source,
    match_statistics,
)
from invreg.functional import orbit_logits, predictive_kl_invariance
from invreg.groups import Rotations

# --------------------------------------------------------------------------- sources


@pytest.mark.parametrize("name", ["natural_images", "mnist1d", "noise"])
@pytest.mark.parametrize("shape", [(1, 8, 8), (3, 12, 12), (1, 40), (2, 20)])
def test_every_source_is_offline_seeded_and_shaped(name, shape):
    source = get_drift_source(name)
    a = source.sample(5, shape, torch.Generator().manual_seed(0))
    b = source.sample(5, shape, torch.Generator().manual_seed(0))
    assert a.shape == (5, *shape) and a.dtype == torch.float32
    assert torch.equal(a, b)
    assert torch.isfinite(a).all() and a.std() > 0  # not a constant image
    assert not torch.equal(a[0], a[1])  # samples differ


def test_natural_images_are_photograph_patches_in_unit_range():
    patches = NaturalImageDrift(patch_scale=2).sample(8, (1, 16, 16),
                                                      torch.Generator().manual_seed(1))
    assert 0.0 <= patches.min() and patches.max() <= 1.0
    # natural images are smooth: neighbouring pixels correlate, unlike noise
    left, right = patches[..., :-1].flatten(), patches[..., 1:].flatten()
    assert torch.corrcoef(torch.stack([left, right]))[0, 1] > 0.5
    rgb = NaturalImageDrift().sample(2, (3, 8, 8))
    assert not torch.equal(rgb[:, 0], rgb[:, 1])  # colour channels kept for C = 3


def test_tensor_source_and_errors():
    pool = torch.arange(12.0).reshape(3, 1, 2, 2)
    drawn = TensorDrift(pool).sample(6, (1, 2, 2), torch.Generator().manual_seed(0))
    assert all(any(torch.equal(d, p) for p in pool) for d in drawn)
    with pytest.raises(ValueError, match="shape"):
        TensorDrift(pool).sample(2, (1, 3, 3))
    with pytest.raises(ValueError, match="source"):
        get_drift_source("fashion_mnist")
    with pytest.raises(ValueError, match="kind"):
        NoiseDrift("poisson")
    with pytest.raises(ValueError, match="pool_size"):
        MNIST1DDrift(pool_size=5)
    with pytest.raises(ValueError, match="shape"):
        NoiseDrift().sample(2, (8,))


def test_blend_and_statistics():
    x = torch.randn(4, 1, 8, 8) * 3 + 1
    drift = torch.rand(4, 1, 8, 8)
    assert torch.equal(blend(x, drift, 0.0), x)
    torch.testing.assert_close(blend(x, drift, 1.0), drift)
    torch.testing.assert_close(blend(x, drift, 0.25), 0.75 * x + 0.25 * drift)
    matched = match_statistics(drift, x)
    torch.testing.assert_close(matched.mean(), x.mean(), rtol=0, atol=1e-5)
    torch.testing.assert_close(matched.std(), x.std(), rtol=1e-5, atol=0)
    with pytest.raises(ValueError, match="beta"):
        blend(x, drift, 1.5)
    with pytest.raises(ValueError, match="drift"):
        blend(x, drift[:2], 0.5)


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
    with open(run / "drift" / "val_step000001.csv") as handle:
        table = list(csv.DictReader(handle))
    assert list(table[0]) == ["beta", "DI", "LI", "accuracy", "accuracy_ratio", "consistency"]
    assert len(table) == 3
    assert (run / "drift" / "val_step000001.png").stat().st_size > 0
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
    assert [h["step"] for h in callback.history] == [3]


def test_invalid_betas():
    with pytest.raises(ValueError, match="betas"):
        DriftCallback(betas=(0.0, 2.0))
    with pytest.raises(ValueError, match="betas"):
        DriftCallback(betas=())
