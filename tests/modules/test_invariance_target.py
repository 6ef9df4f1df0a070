"""``InvarianceModule(invariance_target=ε)``: ν learned by dual ascent.

The update rules against their formulas, the batch's measured error driving them in a real
fit (read back from the logged values), the checks at the boundary, checkpoints
(``load_from_checkpoint`` and a resumed ``invreg fit``) and a fixed-ν module's unchanged
hyper-parameters.
"""

import csv
import math
import warnings
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
import yaml
from pytorch_lightning.loggers import CSVLogger
from torch.utils.data import DataLoader, TensorDataset

from invreg.losses import FeatureL2, InvarianceLoss, LieDerivativeL2
from invreg.models import MLP
from invreg.modules import InvarianceModule
from invreg.modules.invariance import DEFAULT_TARGET_LR, LOG_RATIO_CLIP

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


def test_additive_update_is_projected_dual_ascent():
    module = _module(invariance_weight=0.3, invariance_target=0.5, target_update="additive",
                     target_lr=0.2)
    expected = 0.3
    for measured in (1.5, 0.1, 0.0, 0.0, 4.0):
        module.update_invariance_weight(torch.tensor(measured))
        expected = max(0.0, expected + 0.2 * (measured - 0.5))
        assert module.invariance_weight == pytest.approx(expected, rel=FLOAT32_STEP, abs=1e-7)
    assert module.invariance_weight > 0  # came back from the projection at 0


def test_multiplicative_update_is_scale_free_and_clipped():
    module = _module(invariance_weight=2.0, invariance_target=0.05, target_lr=0.1)
    expected = 2.0
    for measured in (0.1, 0.025, 0.05, 50.0, 0.0):
        module.update_invariance_weight(torch.tensor(measured))
        log_ratio = math.log(measured / 0.05) if measured > 0 else -math.inf
        expected *= math.exp(0.1 * min(max(log_ratio, -LOG_RATIO_CLIP), LOG_RATIO_CLIP))
        assert module.invariance_weight == pytest.approx(expected, rel=FLOAT32_STEP)
    # the same relative violation moves ν alike whatever the scale of I
    big = _module(invariance_weight=2.0, invariance_target=50.0, target_lr=0.1)
    small = _module(invariance_weight=2.0, invariance_target=0.05, target_lr=0.1)
    big.update_invariance_weight(torch.tensor(100.0))
    small.update_invariance_weight(torch.tensor(0.1))
    assert big.invariance_weight == pytest.approx(small.invariance_weight, rel=FLOAT32_STEP)


@pytest.mark.parametrize("update", ["additive", "multiplicative"])
def test_a_non_finite_measurement_leaves_the_weight_with_a_warning(update):
    module = _module(invariance_weight=1.0, invariance_target=0.1, target_update=update)
    for bad in (math.nan, math.inf):
        with pytest.warns(RuntimeWarning, match=r"measured invariance error \(LI\) is (nan|inf); "
                                                r"ν stays at 1 for this batch"):
            module.update_invariance_weight(torch.tensor(bad))
        assert module.invariance_weight == 1.0


def test_a_target_lr_whose_largest_step_overflows_is_refused():
    # the reported configuration: exp(3·50) = inf in float32, so every update was skipped and
    # ν stayed at 1.0 without a word (and a batch below the target set it to 0 for good)
    limit = math.log(torch.finfo(torch.float32).max) / LOG_RATIO_CLIP
    with pytest.raises(ValueError, match=r"target_lr: .*exp\(3·50\) overflows torch.float32 "
                                         rf"\(ν's dtype\); pass target_lr < {limit:.4g}"):
        _module(invariance_weight=1.0, invariance_target=0.01, target_lr=50.0)
    assert _module(invariance_target=0.01, target_lr=0.999 * limit).target_lr < limit
    # the additive step is linear in η: no such bound
    assert _module(invariance_target=0.01, target_update="additive", target_lr=50.0)


@pytest.mark.parametrize(("update", "target_lr", "target", "high", "low"),
                         [("multiplicative", 29.0, 0.01, 0.5, 0.0),
                          ("additive", 3e38, 0.5, 1.5, 0.0)])
def test_the_weight_is_clamped_to_its_dtype_and_never_freezes(update, target_lr, target, high,
                                                              low):
    info = torch.finfo(torch.float32)
    module = _module(invariance_weight=1.0, invariance_target=target, target_update=update,
                     target_lr=target_lr)
    floor = info.tiny if update == "multiplicative" else 0.0  # additive: the projection at 0
    weights = []
    for measured in (high, high, high, low, low, low, low, low, high):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            module.update_invariance_weight(torch.tensor(measured))
        weight = module.invariance_weight
        assert math.isfinite(weight) and weight >= floor
        clamped = [w for w in caught if "outside the finite range" in str(w.message)]
        expected = weight == info.max or (update == "multiplicative" and weight == info.tiny)
        assert bool(clamped) == expected, (weight, [str(w.message) for w in caught])
        weights.append(weight)
    assert info.max in weights  # pinned at the top instead of skipping the update
    assert weights[7] == floor  # pinned at the bottom, above 0 for the multiplicative update
    assert weights[8] > floor  # and it moves again: never frozen


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"invariance_target": 0.0}, "invariance_target: expected a finite number > 0, got 0.0"),
        ({"invariance_target": -1.0}, "invariance_target: expected a finite number > 0"),
        ({"invariance_target": math.nan}, "invariance_target: expected a finite number > 0"),
        ({"invariance_target": True}, "invariance_target: expected a number > 0 or None"),
        ({"invariance_target": "0.1"}, "invariance_target: expected a number > 0 or None"),
        ({"invariance_target": 0.1, "target_lr": 0.0}, "target_lr: expected a finite number > 0"),
        ({"invariance_target": 0.1, "target_lr": math.nan}, "target_lr: expected a finite"),
        ({"invariance_target": 0.1, "target_lr": -0.1}, "target_lr: expected a finite"),
        ({"invariance_target": 0.1, "target_metric": "SI"}, "target_metric: expected one of"),
        ({"invariance_target": 0.1, "target_update": "sgd"}, "target_update: expected one of"),
        ({"invariance_target": 0.1, "invariance_weight": 0.0},
         "invariance_weight: the multiplicative update scales ν, so it must start > 0"),
        ({"invariance_target": 0.1, "invariance_loss": LieDerivativeL2("rotation")},
         "target_metric: LieDerivativeL2 forms no orbit of logits to measure 'LI' on"),
    ],
)
def test_bad_target_arguments_name_the_argument(kwargs, match):
    with pytest.raises(ValueError, match=match):
        _module(**kwargs)


def test_valid_target_arguments_are_accepted():
    # ν₀ = 0 is fine for the additive update; the Lie loss with its own value as the target
    assert _module(invariance_weight=0.0, invariance_target=0.1,
                   target_update="additive").invariance_weight == 0.0
    lie = _module(invariance_target=0.1, target_metric="loss",
                  invariance_loss=LieDerivativeL2("rotation"))
    assert lie.invariance_target == 0.1 and lie.target_lr == DEFAULT_TARGET_LR["multiplicative"]


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
    module = _module(invariance_weight=1.0, invariance_target=0.01, target_lr=0.5, lr=0.01)
    rows = _fit(module, tmp_path)
    steps = [r for r in rows if r.get("train/invariance_weight_step")]
    assert len(steps) == 12  # 6 batches, 2 epochs, every step written
    weights = [float(r["train/invariance_weight_step"]) for r in steps]
    # the default target_metric "LI" of a logit_l2 loss is the loss term itself
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


def test_a_fixed_weight_logs_no_weight_and_keeps_its_hyperparameters(tmp_path):
    module = _module(invariance_weight=0.5)
    assert not {"invariance_target", "target_metric", "target_update",
                "target_lr"} & set(module.hparams)
    assert "learned_invariance_weight" not in module.state_dict()
    rows = _fit(module, tmp_path, epochs=1)
    assert not any(key.startswith("train/invariance_weight") for key in rows[0])
    assert module.invariance_weight == 0.5


class _FirstLogitGap(InvarianceLoss):
    """Per-sample errors: not one number per batch."""

    def forward(self, orbit, transformed=None):
        return (orbit[:, 0, 0] - orbit[:, 1, 0]).pow(2)


@pytest.mark.parametrize(
    ("metric", "loss", "expected"),
    [
        ("DI", "logit_l2", "predictive_kl"),
        ("LI_normalized", "logit_l2", "normalized_logit_l2"),
        ("LI", FeatureL2("hidden.0"), "logit_l2"),
        ("loss", FeatureL2("hidden.0"), None),
    ],
)
def test_target_metric_measures_the_named_error(metric, loss, expected):
    from invreg.functional import orbit_pair_errors
    from invreg.modules.invariance import as_orbit

    module = _module(invariance_target=0.1, target_metric=metric, invariance_loss=loss)
    logits = torch.randn(4 * 2, 3, dtype=torch.float32)
    invariance_loss = torch.tensor(0.123)
    measured = module.measured_invariance(invariance_loss, logits, 4, 1)
    if expected is None:
        assert measured == invariance_loss
    else:
        reference = orbit_pair_errors(as_orbit(logits, 4, 1), expected).mean()
        assert torch.equal(measured, reference) and not torch.equal(measured, invariance_loss)


def test_a_loss_without_one_number_per_batch_cannot_be_the_target(tmp_path):
    module = _module(invariance_target=0.1, target_metric="loss",
                     invariance_loss=_FirstLogitGap())
    with pytest.raises(ValueError, match=r"invariance_loss: target_metric='loss' needs one "
                                         r"number per batch, but _FirstLogitGap returned shape "
                                         r"\(8,\)"):
        _fit(module, tmp_path, epochs=1)


def test_load_from_checkpoint_restores_the_learned_weight(tmp_path):
    module = _module(invariance_weight=1.0, invariance_target=0.01, target_lr=0.5,
                     target_metric="DI", target_update="multiplicative")
    trainer = pl.Trainer(max_epochs=1, accelerator="cpu", logger=False, enable_progress_bar=False,
                         enable_model_summary=False, default_root_dir=tmp_path)
    trainer.fit(module, _data(), _data(16, seed=1))
    path = tmp_path / "model.ckpt"
    trainer.save_checkpoint(path)
    assert module.invariance_weight != 1.0
    loaded = InvarianceModule.load_from_checkpoint(path)
    assert loaded.invariance_weight == module.invariance_weight
    assert (loaded.invariance_target, loaded.target_metric, loaded.target_lr) == (0.01, "DI", 0.5)


# ---------------------------------------------------------------- resuming `invreg fit`
def _config(tmp_path: Path, name: str, max_epochs: int) -> Path:
    """The quickstart config, small: a CSV logger writing every step, last.ckpt kept."""
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
    config["data"]["init_args"].update(batch_size=256)  # ~1,250 digits: 5 batches an epoch
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def _run_fit(config: Path, *args: str) -> None:
    """``invreg fit --config <config> --model.invariance_target 0.05 ...``, in process (the
    command's own code path, without a new interpreter's start-up)."""
    from invreg.cli import run_cli

    run_cli(["fit", "--config", str(config), "--model.invariance_target", "0.05",
             "--model.target_lr", "0.2", *args])


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
    full, first = _config(tmp_path, "full", 3), _config(tmp_path, "first", 1)
    resumed = _config(tmp_path, "resumed", 3)
    monkeypatch.setenv("WANDB_MODE", "disabled")
    monkeypatch.chdir(tmp_path)
    _run_fit(full)
    _run_fit(first)
    _run_fit(resumed, "--ckpt_path", str(tmp_path / "first" / "ckpt" / "last.ckpt"))

    def state(name):
        path = tmp_path / name / "ckpt" / "last.ckpt"
        return torch.load(path, map_location="cpu", weights_only=False)["state_dict"]

    start = state("first")["learned_invariance_weight"]
    assert start.item() != 1.0  # the checkpoint holds a ν that moved during the first epoch
    assert torch.equal(state("full")["learned_invariance_weight"],
                       state("resumed")["learned_invariance_weight"])
    expected, got = _weights(tmp_path / "full"), _weights(tmp_path / "resumed")
    after = {step: value for step, value in expected.items() if step >= min(got)}
    # every step after the checkpoint (two epochs of three), digit for digit
    assert got == after and 3 * len(got) == 2 * len(expected)
    assert float(got[min(got)]) == pytest.approx(start.item(), rel=FLOAT32_STEP)
