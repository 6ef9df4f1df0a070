"""Drive the ``invreg`` CLI in-process with tiny settings."""

from pathlib import Path

import pytest
import yaml

from invreg.cli import main
from invreg.modules import InvarianceModule

ROOT = Path(__file__).resolve().parent.parent
QUICKSTART = ROOT / "configs" / "quickstart.yaml"
TINY = [
    "--trainer.max_epochs", "1",
    "--trainer.limit_train_batches", "2",
    "--trainer.limit_val_batches", "1",
    "--trainer.limit_test_batches", "1",
    "--trainer.logger", "pytorch_lightning.loggers.CSVLogger",
]


def test_fit_then_test_from_checkpoint(tmp_path):
    common = ["--config", str(QUICKSTART), "--trainer.default_root_dir", str(tmp_path), *TINY,
              "--trainer.logger.save_dir", str(tmp_path)]
    cli = main(["fit", *common])
    assert isinstance(cli.model, InvarianceModule)
    # num_classes was linked from the data module
    assert cli.model.num_classes == cli.datamodule.num_classes == 10
    assert "val/acc" in cli.trainer.callback_metrics
    saved = list(tmp_path.rglob("config.yaml"))
    assert saved, "the run's config is saved"
    assert yaml.safe_load(saved[0].read_text())["model"]["init_args"]["group"] == "c4"
    ckpt = cli.trainer.checkpoint_callback.best_model_path
    assert Path(ckpt).exists()
    test_cli = main(["test", *common, "--ckpt_path", ckpt])
    assert "test/acc" in test_cli.trainer.callback_metrics
    validate_cli = main(["validate", *common, "--ckpt_path", ckpt])
    assert "val/invariance_loss" in validate_cli.trainer.callback_metrics


def test_print_config(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", "--config", str(QUICKSTART), "--print_config"])
    assert exit_info.value.code == 0
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed["model"]["class_path"] == "invreg.modules.InvarianceModule"
    assert printed["data"]["class_path"] == "invreg.data.DigitsDataModule"


def test_unknown_group_name_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="Unknown group name 'c4x'"):
        main(["fit", "--config", str(QUICKSTART), *TINY, "--model.init_args.group", "c4x",
              "--trainer.default_root_dir", str(tmp_path)])


@pytest.mark.parametrize("name", sorted(p.stem for p in (ROOT / "configs/genuine").glob("*.yaml")))
def test_genuine_configs_parse_and_instantiate(name):
    cli = main(["--config", str(ROOT / f"configs/genuine/{name}.yaml")], run=False)
    assert cli.model.num_classes == 9
    assert cli.datamodule.input_shape == (1, 36, 36)
    kind, group = name.split("_")
    assert cli.model.group.order == {"r4": 4, "t3": 3}[group]
    assert (cli.model.invariance_weight > 0) == (kind == "ir")
    assert type(cli.model.backbone).__name__ == ("TiedMLP" if kind == "wt" else "MLP")


def test_quickstart_prints_table(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "disabled")
    from invreg import quickstart

    results = quickstart.run(out=tmp_path, max_epochs=1, models=("DA", "WT"))
    out = capsys.readouterr().out
    assert "orbit consistency" in out and "DA (data augmentation)" in out
    assert results["WT"]["LI"] < 1e-8 and results["WT"]["consistency"] == 1.0
