"""Trained models are cached by configuration and reused across experiments."""

import json

import pytest
import torch

from invreg.experiments.core import model_key, training_description
from invreg.experiments.runner import run


def _per_seed(results):
    return [{k: v for k, v in row.items()} for row in results.per_seed]


def test_a_second_run_reuses_every_model_and_reports_the_same_numbers(tmp_path, monkeypatch):
    import invreg.experiments.core as core

    cache = tmp_path / "models"
    first = run("genuine-table1", scale="smoke", out=tmp_path / "a", cache=cache, groups=["T3"])
    stored = sorted(p.parent.name for p in cache.glob("*/model.ckpt"))
    assert len(stored) == 4  # WT, DA, the one IR of the smoke grid and IR-target
    assert not list(cache.glob("*.partial"))
    description = json.loads((cache / stored[0] / "description.json").read_text())
    assert {"module", "data", "epochs", "seed", "device"} <= set(description)

    def no_training(*args, **kwargs):
        raise AssertionError("a cached model was trained again")

    monkeypatch.setattr(core.pl.Trainer, "fit", no_training)
    second = run("genuine-table1", scale="smoke", out=tmp_path / "b", cache=cache, groups=["T3"])
    assert _per_seed(second) == _per_seed(first)


def test_drift_evaluates_the_table1_models_from_the_cache(tmp_path, monkeypatch):
    import invreg.experiments.core as core

    cache = tmp_path / "models"
    run("genuine-table1", scale="smoke", out=tmp_path / "table1", cache=cache, groups=["R4"])
    monkeypatch.setattr(core.pl.Trainer, "fit", lambda *a, **k: (_ for _ in ()).throw(
        AssertionError("drift trained a model Table 1 had trained")))
    results = run("genuine-drift", scale="smoke", out=tmp_path / "drift", cache=cache,
                  groups=["R4"])
    assert {r["model"] for r in results.rows} == {"WT", "DA", "IR"}


def test_the_key_changes_with_anything_that_changes_the_weights(tmp_path):
    from invreg.experiments.core import Settings, get_scale
    from invreg.experiments.genuine import build

    settings = Settings(get_scale("genuine-table1", "smoke"), tmp_path, 1, 1)

    def key(kind="IR", group="c4", weight=1.0, seed=0, epochs=1, batch_size=None):
        settings.epochs = epochs
        module, data = build(kind, group, settings, seed, weight)
        if batch_size:
            data.hparams["batch_size"] = batch_size
        return model_key(training_description(module, data, settings, seed))

    base = key()
    assert key() == base  # a description is a function of the configuration alone
    changed = [key(kind="DA"), key(group="t3"), key(weight=2.0), key(seed=1), key(epochs=2),
               key(batch_size=256)]
    assert len({base, *changed}) == 1 + len(changed)


def test_a_folder_left_half_written_is_not_read(tmp_path):
    cache = tmp_path / "models"
    first = run("genuine-table1", scale="smoke", out=tmp_path / "a", cache=cache, groups=["T3"])
    folder = next(cache.glob("*/model.ckpt")).parent
    # an interrupted write leaves only <key>.partial; the model is trained again and stored
    folder.rename(folder.with_name(folder.name + ".partial"))
    second = run("genuine-table1", scale="smoke", out=tmp_path / "b", cache=cache, groups=["T3"])
    assert (folder / "model.ckpt").is_file() and not list(cache.glob("*.partial"))
    assert _per_seed(second) == _per_seed(first)
    assert torch.load(folder / "model.ckpt", weights_only=True)["state_dict"]


def test_spectral_decay_reuses_table1s_da_and_l2_models(tmp_path, monkeypatch):
    import invreg.experiments.core as core
    from invreg.experiments.genuine import mnist

    cache = tmp_path / "models"
    table1 = run("genuine-table1", scale="smoke", out=tmp_path / "t", cache=cache, groups=["T3"])
    fits = []
    original = core.pl.Trainer.fit
    monkeypatch.setattr(core.pl.Trainer, "fit",
                        lambda self, module, *a, **k: (fits.append(module.hparams.invariance_loss),
                                                       original(self, module, *a, **k)))
    spectral = run("spectral-decay", scale="smoke", out=tmp_path / "s", cache=cache,
                   groups=["T3"])
    assert sorted(fits) == ["normalized_logit_l2", "predictive_kl"]  # one ν each at smoke scale
    rows = {r["regulariser"]: r for r in spectral.per_seed}
    assert list(rows) == ["KL", "normalised L2", "DA", "L2"]
    by_model = {r["model"]: r for r in table1.per_seed}
    assert rows["DA"]["acc"] == by_model["DA"]["acc"] and rows["L2"]["acc"] == by_model["IR"]["acc"]
    assert rows["L2"]["nu"] == by_model["IR"]["nu"]
    data = mnist(core.Settings(core.get_scale("spectral-decay", "smoke"), tmp_path, 1, 1), 0)
    data.setup("fit")
    for row in rows.values():  # raw pixel units: the chain rule through x_std = (x − μ) / σ
        for key in ("jacobian_sigma_max", "first_layer_sigma_max"):
            assert row[f"{key}_raw"] == pytest.approx(row[key] / data.std, rel=1e-6)
