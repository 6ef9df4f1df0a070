"""The experiments build their models and data from the configs in ``configs/``."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from invreg.data import MNISTDataModule
from invreg.data.idx import write_idx
from invreg.experiments import configs
from invreg.experiments.core import Settings, get_scale, model_key, training_description
from invreg.experiments.genuine import build, config_file, mnist
from invreg.models import MLP, TiedMLP
from invreg.modules import InvarianceModule

FULL = get_scale("genuine-table1", "full")


def full_settings(tmp_path: Path) -> Settings:
    return Settings(FULL, tmp_path, seeds=4, epochs=300, accelerator="cpu")


# model cache keys of Table 1's models at the full scale, computed before the models were
# built from the configs: trained models are stored under them and must stay valid. WT and DA
# (ν = 0) changed once, on purpose, when their training step stopped forwarding the unused
# transformed copies (a different random stream: the hyper-parameter track_invariance=False)
PINNED_KEYS = {
    ("WT", "c4", 0, 2.0, "logit_l2"): "fbd3b51692bc56ad",
    ("DA", "t3", 1, 2.0, "logit_l2"): "d946f1983e85a8ee",
    ("DA", "c4", 0, 2.0, "predictive_kl"): "954e39dd55df4035",
    ("IR", "c4", 0, 50.0, "logit_l2"): "59296142f253e25f",
    ("IR", "t3", 1, 2.0, "predictive_kl"): "61044ebe7f5e33d8",
}


@pytest.mark.parametrize("case", list(PINNED_KEYS), ids=lambda c: "-".join(map(str, c)))
def test_model_cache_keys_are_those_of_the_trained_models(tmp_path, case):
    kind, group, seed, weight, loss = case
    settings = full_settings(tmp_path)
    module, data = build(kind, group, settings, seed, weight, loss)
    description = training_description(module, data, settings, seed)
    assert model_key(description) == PINNED_KEYS[case]


def python_model(kind: str, group: str, seed: int, weight: float, loss: str):
    """The paper's model written out in Python: what the configs must build."""
    data = MNISTDataModule(train_size=FULL.train_size, val_size=FULL.val_size,
                           test_size=FULL.test_size, batch_size=512, seed=seed)
    torch.manual_seed(seed)
    widths = (128,) * 5
    backbone = (TiedMLP((1, 36, 36), 9, group=group, hidden_widths=widths) if kind == "WT"
                else MLP((1, 36, 36), 9, hidden_widths=widths))
    module = InvarianceModule(backbone, group=group, invariance_loss=loss,
                              invariance_weight=weight if kind == "IR" else 0.0, augment=True,
                              num_classes=9, lr=8e-4)
    return module, data


@pytest.mark.parametrize("kind, group, seed", [("WT", "t3", 1), ("DA", "c4", 0), ("IR", "t3", 0),
                                               ("IR", "c4", 1)])
def test_configs_build_the_python_model_with_the_same_initial_weights(tmp_path, kind, group,
                                                                      seed):
    settings = full_settings(tmp_path)
    expected, expected_data = python_model(kind, group, seed, 5.0, "logit_l2")
    torch.manual_seed(seed + 100)  # the config's seed_everything seeds the generator itself
    module, data = build(kind, group, settings, seed, 5.0, "logit_l2")
    described = [json.dumps(training_description(m, d, settings, seed), sort_keys=True,
                            default=repr)  # as the cache hashes it: a tuple reads as a list
                 for m, d in ((module, data), (expected, expected_data))]
    assert described[0] == described[1]
    got, want = module.state_dict(), expected.state_dict()
    assert list(got) == list(want)
    for name in want:  # the same generator draws, so the same bits: no tolerance
        assert torch.equal(got[name], want[name]), name


def test_a_change_in_a_config_changes_the_experiment(tmp_path, monkeypatch):
    settings = Settings(get_scale("genuine-table1", "smoke"), tmp_path, 1, 1)
    original = config_file("DA", "t3").read_text()
    assert "hidden_widths: [128, 128, 128, 128, 128]" in original
    (tmp_path / "genuine").mkdir()
    (tmp_path / "genuine" / "da_t3.yaml").write_text(
        original.replace("hidden_widths: [128, 128, 128, 128, 128]", "hidden_widths: [32]")
                .replace("batch_size: 512", "batch_size: 64"))
    monkeypatch.setattr(configs, "CONFIGS", tmp_path)
    module, data = build("DA", "t3", settings, 0)
    assert [layer.out_features for layer in module.backbone.modules()
            if isinstance(layer, torch.nn.Linear)] == [32, 9]
    assert data.hparams["batch_size"] == 64


def test_the_overrides_reach_module_and_data(tmp_path):
    for split, n in (("train", 400), ("t10k", 200)):  # a small MNIST-format folder
        write_idx(tmp_path / f"{split}-images-idx3-ubyte", np.zeros((n, 28, 28), np.uint8))
        write_idx(tmp_path / f"{split}-labels-idx1-ubyte", np.arange(n, dtype=np.uint8) % 10)
    settings = Settings(get_scale("genuine-table1", "smoke"), tmp_path, 1, 3,
                        extra={"data_dir": str(tmp_path)})
    scale = settings.scale
    module, data = build("IR", "c4", settings, 7, 0.05, "predictive_kl")
    assert module.hparams["invariance_weight"] == 0.05
    assert module.hparams["invariance_loss"] == "predictive_kl"
    assert data.hparams["seed"] == 7 and data.hparams["data_dir"] == str(tmp_path)
    assert (data.hparams["train_size"], data.hparams["val_size"], data.hparams["test_size"]) == (
        scale.train_size, scale.val_size, scale.test_size)
    assert build("DA", "c4", settings, 7, 0.05)[0].hparams["invariance_weight"] == 0.0


def test_every_genuine_config_reads_the_same_data(tmp_path):
    settings = Settings(get_scale("genuine-table1", "smoke"), tmp_path, 1, 1)
    expected = dict(mnist(settings, 0).hparams)
    for kind in ("WT", "DA", "IR"):
        for group in ("c4", "t3"):
            assert dict(build(kind, group, settings, 0)[1].hparams) == expected, (kind, group)


def test_unknown_kind_group_or_missing_configs_are_named(tmp_path, monkeypatch):
    with pytest.raises(ValueError, match="kind: expected one of"):
        config_file("CNN", "c4")
    with pytest.raises(ValueError, match="group: expected one of"):
        config_file("DA", "so2")
    monkeypatch.setattr(configs, "CONFIGS", tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError, match="source checkout"):
        config_file("DA", "c4")
