"""``InvarianceModule(invariance_weight=DualAscentWeight(target=ε))``: ν learned by dual
ascent, in a real fit (read back from the logged values), in checkpoints (``load_from_checkpoint``
and a resumed ``invreg fit``), from the command line and a config; checkpoints written when the
target took four arguments of the module load and resume as before; those arguments name their
replacement. The update rules themselves: ``test_weights.py``.
"""

import csv
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
import yaml
from pytorch_lightning.loggers import CSVLogger
from torch.utils.data import DataLoader, TensorDataset

from invreg.losses import InvarianceLoss, LieDerivativeL2
from invreg.models import MLP
from invreg.modules import DualAscentWeight, FixedWeight, InvarianceModule
from invreg.modules.weights import LOG_RATIO_CLIP

ROOT = Path(__file__).resolve().parents[2]
QUICKSTART = ROOT / "configs" / "quickstart.yaml"
# ν is a float32 buffer: one update is a few float32 operations, each within half an ulp
FLOAT32_STEP = 8 * torch.finfo(torch.float32).eps


def _module(**kwargs) -> InvarianceModule:
    backbone = MLP(input_shape=(1, 4, 4), num_classes=3, hidden_widths=[8])
    return InvarianceModule(backbone, group="c4", **kwargs)


def _data(n: int = 48, seed: int = 0) -> DataLoader:
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 1, 4, 4, generator=generator)
    y = torch.randint(0, 3, (n,), generator=generator)
    return DataLoader(TensorDataset(x, y), batch_size=8)


@pytest.mark.parametrize(("kwargs", "named"), [
    ({"invariance_target": 0.1}, "invariance_target"),
    ({"invariance_target": 0.1, "target_lr": 0.5}, "invariance_target, target_lr"),
    ({"target_metric": "DI"}, "target_metric"),
    ({"target_update": "additive"}, "target_update"),
])
def test_the_earlier_target_arguments_name_their_replacement(kwargs, named):
    with pytest.raises(TypeError, match=rf"InvarianceModule: {named} became invariance_weight="
                                        r"DualAscentWeight\(target=ε"):
        _module(**kwargs)
    with pytest.raises(TypeError, match="unexpected keyword argument 'invariance_wieght'"):
        _module(invariance_wieght=1.0)


def test_the_earlier_attributes_name_where_they_moved():
    module = _module(invariance_weight=DualAscentWeight(target=0.1, lr=0.5))
    assert (module.weighting.target, module.weighting.lr) == (0.1, 0.5)
    for name, moved in (("invariance_target", "target"), ("target_lr", "lr"),
                        ("learned_invariance_weight", "value")):
        with pytest.raises(AttributeError, match=rf"InvarianceModule.{name} moved to the weight "
                                                 rf"object: read module.weighting.{moved}"):
            getattr(module, name)
    assert not hasattr(module, "target_metric")
    with pytest.raises(AttributeError, match="has no attribute 'no_such_thing'"):
        module.no_such_thing  # noqa: B018


def test_a_model_loss_is_held_at_the_target_by_its_own_value():
    with pytest.raises(ValueError, match="DualAscentWeight.metric: LieDerivativeL2 forms no "
                                         "orbit of logits"):
        _module(invariance_weight=DualAscentWeight(target=0.1),
                invariance_loss=LieDerivativeL2("rotation"))
    lie = _module(invariance_weight=DualAscentWeight(target=0.1, metric="loss"),
                  invariance_loss=LieDerivativeL2("rotation"))
    assert lie.weighting.learned and lie.invariance_weight == 1.0


def _fit(module: InvarianceModule, tmp_path: Path, epochs: int = 2) -> list[dict[str, str]]:
    trainer = pl.Trainer(
        max_epochs=epochs, accelerator="cpu", logger=CSVLogger(tmp_path, name="csv"),
        log_every_n_steps=1, enable_checkpointing=False, enable_progress_bar=False,
        enable_model_summary=False, num_sanity_val_steps=0,
    )
    trainer.fit(module, _data(), _data(16, seed=1))
    (path,) = tmp_path.rglob("metrics.csv")
    with path.open() as handle:
        return list(csv.DictReader(handle))


def test_each_step_updates_the_weight_from_its_own_measured_error(tmp_path):
    module = _module(invariance_weight=DualAscentWeight(target=0.01, lr=0.5), lr=0.01)
    rows = _fit(module, tmp_path)
    steps = [r for r in rows if r.get("train/invariance_weight_step")]
    assert len(steps) == 12  # 6 batches, 2 epochs, every step written
    weights = [float(r["train/invariance_weight_step"]) for r in steps]
    # the default metric "LI" of a logit_l2 loss is the loss term itself
    measured = [float(r["train/invariance_loss_step"]) for r in steps]
    assert weights[0] == 1.0
    for before, error, after in zip(weights, measured, weights[1:], strict=False):
        ratio = min(max(math.log(error / 0.01), -LOG_RATIO_CLIP), LOG_RATIO_CLIP)
        assert after == pytest.approx(before * math.exp(0.5 * ratio), rel=FLOAT32_STEP)
    assert len(set(weights)) == len(weights)  # ν moved every step
    epoch_means = [float(r["train/invariance_weight_epoch"]) for r in rows
                   if r.get("train/invariance_weight_epoch")]
    assert epoch_means == pytest.approx([sum(weights[:6]) / 6, sum(weights[6:]) / 6],
                                        rel=FLOAT32_STEP)
    # the module's ν is the last update after the last logged one
    ratio = min(max(math.log(measured[-1] / 0.01), -LOG_RATIO_CLIP), LOG_RATIO_CLIP)
    assert module.invariance_weight == pytest.approx(weights[-1] * math.exp(0.5 * ratio),
                                                     rel=FLOAT32_STEP)


@pytest.mark.parametrize("weight", [0.5, FixedWeight(0.5)], ids=["number", "FixedWeight"])
def test_a_fixed_weight_logs_no_weight_and_holds_no_state(tmp_path, weight):
    module = _module(invariance_weight=weight)
    assert isinstance(module.weighting, FixedWeight)
    assert not any(key.startswith("weighting") for key in module.state_dict())
    rows = _fit(module, tmp_path, epochs=1)
    assert not any(key.startswith("train/invariance_weight") for key in rows[0])
    assert module.invariance_weight == 0.5


class _FirstLogitGap(InvarianceLoss):
    """Per-sample errors: not one number per batch."""

    def forward(self, orbit, transformed=None):
        return (orbit[:, 0, 0] - orbit[:, 1, 0]).pow(2)


def test_a_loss_without_one_number_per_batch_cannot_be_the_target(tmp_path):
    module = _module(invariance_weight=DualAscentWeight(target=0.1, metric="loss"),
                     invariance_loss=_FirstLogitGap())
    with pytest.raises(ValueError, match=r"invariance_loss: DualAscentWeight\(metric='loss'\) "
                                         r"needs one number per batch, but _FirstLogitGap "
                                         r"returned shape \(8,\)"):
        _fit(module, tmp_path, epochs=1)


def _trained_checkpoint(tmp_path: Path) -> tuple[InvarianceModule, Path]:
    module = _module(invariance_weight=DualAscentWeight(target=0.01, lr=0.5, metric="DI"))
    trainer = pl.Trainer(max_epochs=1, accelerator="cpu", logger=False, enable_progress_bar=False,
                         enable_model_summary=False, default_root_dir=tmp_path)
    trainer.fit(module, _data(), _data(16, seed=1))
    path = tmp_path / "model.ckpt"
    trainer.save_checkpoint(path)
    assert module.invariance_weight != 1.0
    return module, path


def test_load_from_checkpoint_restores_the_learned_weight(tmp_path):
    module, path = _trained_checkpoint(tmp_path)
    stored = torch.load(path, weights_only=True)
    assert stored["hyper_parameters"]["invariance_weight"] == {
        "class_path": "invreg.modules.weights.DualAscentWeight",
        "init_args": {"target": 0.01, "metric": "DI", "update": "multiplicative", "lr": 0.5,
                      "initial": 1.0}}
    loaded = InvarianceModule.load_from_checkpoint(path)
    assert loaded.invariance_weight == module.invariance_weight
    assert (loaded.weighting.target, loaded.weighting.metric, loaded.weighting.lr) == (
        0.01, "DI", 0.5)


# ---------------------------------------------------------------- the earlier layout
def earlier_layout(path: Path, out: Path) -> Path:
    """The checkpoint ``path`` written as the module wrote it while the target took four of its
    arguments: ``invariance_weight`` = ν₀ with ``invariance_target``, ``target_metric``,
    ``target_update``, ``target_lr`` among the hyper-parameters (no ``track_invariance``), and
    ν under the state-dict key ``learned_invariance_weight``."""
    checkpoint = torch.load(path, map_location="cpu", weights_only=False)
    hparams = checkpoint["hyper_parameters"]
    given = hparams.pop("invariance_weight")["init_args"]
    hparams.pop("track_invariance")
    hparams.update(invariance_weight=given["initial"], invariance_target=given["target"],
                   target_metric=given["metric"], target_update=given["update"],
                   target_lr=given["lr"])
    state = checkpoint["state_dict"]
    state["learned_invariance_weight"] = state.pop("weighting.value")
    torch.save(checkpoint, out)
    return out


def test_a_checkpoint_of_the_earlier_layout_loads_with_its_learned_weight(tmp_path):
    module, path = _trained_checkpoint(tmp_path)
    earlier = earlier_layout(path, tmp_path / "earlier.ckpt")
    loaded = InvarianceModule.load_from_checkpoint(earlier)
    assert isinstance(loaded.weighting, DualAscentWeight)
    assert (loaded.weighting.target, loaded.weighting.metric, loaded.weighting.update,
            loaded.weighting.lr) == (0.01, "DI", "multiplicative", 0.5)
    assert loaded.weighting.init_args == module.weighting.init_args
    want, got = module.state_dict(), loaded.state_dict()
    assert list(got) == list(want) and all(torch.equal(got[k], want[k]) for k in want)
    # the file itself is left as it was
    assert "learned_invariance_weight" in torch.load(earlier, weights_only=True)["state_dict"]
    # a state dict of that layout (the experiments' cached models) loads as well
    state = dict(want)
    state["learned_invariance_weight"] = state.pop("weighting.value")
    fresh = _module(invariance_weight=DualAscentWeight(target=0.01, lr=0.5, metric="DI"))
    fresh.load_state_dict(state)
    assert fresh.invariance_weight == module.invariance_weight


# ---------------------------------------------------------------- resuming `invreg fit`
def _config(tmp_path: Path, name: str, max_epochs: int, weight_in_yaml: bool = False) -> Path:
    """The quickstart config, small: a CSV logger writing every step, last.ckpt kept; with
    ``weight_in_yaml`` the learned ν written in the YAML (class_path / init_args)."""
    config = yaml.safe_load(QUICKSTART.read_text())
    run_dir = tmp_path / name
    config["trainer"].update(
        max_epochs=max_epochs, default_root_dir=str(run_dir), log_every_n_steps=1,
        logger={"class_path": "pytorch_lightning.loggers.CSVLogger",
                "init_args": {"save_dir": str(run_dir), "name": "csv"}},
        callbacks=[{"class_path": "pytorch_lightning.callbacks.ModelCheckpoint",
                    "init_args": {"dirpath": str(run_dir / "ckpt"), "save_last": True}}],
    )
    config["model"]["init_args"]["backbone"]["init_args"]["hidden_widths"] = [32]
    if weight_in_yaml:
        config["model"]["init_args"]["invariance_weight"] = {
            "class_path": "invreg.modules.DualAscentWeight",
            "init_args": {"target": 0.05, "lr": 0.2}}
    config["data"]["init_args"].update(batch_size=256)  # ~1,250 digits: 5 batches an epoch
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


#: the learned ν on the command line
TARGET_OPTIONS = ("--model.invariance_weight", "DualAscentWeight",
                  "--model.invariance_weight.target", "0.05",
                  "--model.invariance_weight.lr", "0.2")


def _run_fit(config: Path, *args: str) -> None:
    """``invreg fit --config <config> ...``, in process (the command's own code path, without
    a new interpreter's start-up)."""
    from invreg.cli import run_cli

    run_cli(["fit", "--config", str(config), *args])


def _weights(run_dir: Path) -> dict[int, str]:
    """``train/invariance_weight_step`` by global step, as written."""
    weights = {}
    for path in run_dir.rglob("metrics.csv"):
        with path.open() as handle:
            for row in csv.DictReader(handle):
                if row.get("train/invariance_weight_step"):
                    weights[int(row["step"])] = row["train/invariance_weight_step"]
    return weights


def test_resumed_fit_continues_the_weight_trajectory(tmp_path, monkeypatch):
    """The learned ν from the command line (the full run) and from the YAML (the others); a
    resumed run, from today's checkpoint and from the same checkpoint in the earlier layout,
    continues the uninterrupted run's ν, weights and optimiser state bit for bit."""
    full, first = _config(tmp_path, "full", 3), _config(tmp_path, "first", 1, True)
    resumed = _config(tmp_path, "resumed", 3, True)
    from_earlier = _config(tmp_path, "from_earlier", 3, True)
    monkeypatch.setenv("WANDB_MODE", "disabled")
    monkeypatch.chdir(tmp_path)
    _run_fit(full, *TARGET_OPTIONS)
    _run_fit(first)
    checkpoint = tmp_path / "first" / "ckpt" / "last.ckpt"
    _run_fit(resumed, "--ckpt_path", str(checkpoint))
    earlier = earlier_layout(checkpoint, tmp_path / "earlier.ckpt")
    _run_fit(from_earlier, "--ckpt_path", str(earlier))

    def load(name):
        return torch.load(tmp_path / name / "ckpt" / "last.ckpt", map_location="cpu",
                          weights_only=False)

    start = load("first")["state_dict"]["weighting.value"]
    assert start.item() != 1.0  # the checkpoint holds a ν that moved during the first epoch
    expected = load("full")
    for name in ("resumed", "from_earlier"):
        got = load(name)
        assert got["state_dict"].keys() == expected["state_dict"].keys(), name
        for key, value in expected["state_dict"].items():
            assert torch.equal(got["state_dict"][key], value), (name, key)
        for want, have in zip(expected["optimizer_states"][0]["state"].values(),
                              got["optimizer_states"][0]["state"].values(), strict=True):
            assert all(torch.equal(want[k], have[k]) for k in want), name
        assert got["hyper_parameters"]["invariance_weight"]["init_args"]["target"] == 0.05
    # the CLI's checkpoint of the earlier layout (Lightning's instantiator) loads in Python too
    loaded = InvarianceModule.load_from_checkpoint(earlier)
    assert loaded.weighting.init_args == {"target": 0.05, "metric": "LI",
                                          "update": "multiplicative", "lr": 0.2, "initial": 1.0}
    assert torch.equal(loaded.weighting.value, start)
    full_weights, got = _weights(tmp_path / "full"), _weights(tmp_path / "resumed")
    after = {step: value for step, value in full_weights.items() if step >= min(got)}
    # every step after the checkpoint (two epochs of three), digit for digit
    assert got == after and 3 * len(got) == 2 * len(full_weights)
    assert _weights(tmp_path / "from_earlier") == after
    assert float(got[min(got)]) == pytest.approx(start.item(), rel=FLOAT32_STEP)


def test_the_command_line_names_the_replacement_of_an_earlier_option(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "invreg.cli", "fit", "--config", str(QUICKSTART),
         "--model.init_args.invariance_target", "0.05", "--trainer.max_epochs", "0"],
        capture_output=True, text=True, cwd=tmp_path, timeout=300,
        env={**os.environ, "WANDB_MODE": "disabled"})
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith(
        "invreg: error: model.init_args.invariance_target is now DualAscentWeight's target: "
        "--model.init_args.invariance_weight DualAscentWeight "
        "--model.init_args.invariance_weight.target 0.05"), result.stderr
    assert "Traceback" not in result.stderr and len(result.stderr.splitlines()) <= 3
