"""Drive the ``invreg`` CLI in-process with tiny settings: ``run_cli`` (returns the CLI) and
``main`` (the console script: exit status, short errors)."""

import textwrap
from pathlib import Path

import pytest
import yaml

from invreg.cli import main, run_cli
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
    cli = run_cli(["fit", *common])
    assert isinstance(cli.model, InvarianceModule)
    # num_classes was linked from the data module
    assert cli.model.num_classes == cli.datamodule.num_classes == 10
    assert "val/acc" in cli.trainer.callback_metrics
    saved = list(tmp_path.rglob("config.yaml"))
    assert saved, "the run's config is saved"
    assert yaml.safe_load(saved[0].read_text())["model"]["init_args"]["group"] == "c4"
    ckpt = cli.trainer.checkpoint_callback.best_model_path
    assert Path(ckpt).exists()
    test_cli = run_cli(["test", *common, "--ckpt_path", ckpt])
    assert "test/acc" in test_cli.trainer.callback_metrics
    validate_cli = run_cli(["validate", *common, "--ckpt_path", ckpt])
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
        run_cli(["fit", "--config", str(QUICKSTART), *TINY, "--model.init_args.group", "c4x",
              "--trainer.default_root_dir", str(tmp_path)])


@pytest.mark.parametrize("name", sorted(p.stem for p in (ROOT / "configs/genuine").glob("*.yaml")))
def test_genuine_configs_parse_and_instantiate(name):
    cli = run_cli(["--config", str(ROOT / f"configs/genuine/{name}.yaml")], run=False)
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


# ---------------------------------------------------------------- main(): the console script
FAST = ["--trainer.max_epochs", "1", "--trainer.limit_train_batches", "2",
        "--trainer.limit_val_batches", "1", "--trainer.logger", "false",
        "--trainer.enable_checkpointing", "false", "--trainer.callbacks", "[]"]
GENUINE = ROOT / "configs" / "genuine" / "da_r4.yaml"


@pytest.mark.parametrize(
    "config, override, status, expected",
    [
        (QUICKSTART, ["--model.init_args.group", "c5x"], 1,
         "model (invreg.modules.invariance.InvarianceModule): Unknown group name 'c5x'"),
        (QUICKSTART, ["--model.init_args.invariance_weight", "-1"], 1,
         "model (invreg.modules.invariance.InvarianceModule): invariance_weight"),
        (QUICKSTART, ["--model.init_args.backbone.init_args.hidden_widths", "[0]"], 1,
         "invreg.models.mlp.MLP: hidden_widths"),
        (GENUINE, ["--data.init_args.data_dir", "{tmp}/no-such-folder"], 1,
         "data (invreg.data.mnist.MNISTDataModule): data_dir="),
        (QUICKSTART, ["--trainer.max_epochs", "abc"], 2, 'Parser key "trainer.max_epochs"'),
        (QUICKSTART, ["--model.init_args.no_such_option", "1"], 2, "'no_such_option' is not"),
    ],
    ids=["group", "negative-weight", "backbone", "mnist-folder", "type", "unknown-option"],
)
def test_a_bad_config_is_a_short_error_naming_the_field(
    tmp_path, capsys, config, override, status, expected
):
    override = [a.replace("{tmp}", str(tmp_path)) for a in override]
    code = main(["fit", "--config", str(config), *FAST,
                 "--trainer.default_root_dir", str(tmp_path), *override])
    err = capsys.readouterr().err
    assert code == status
    assert err.startswith("invreg: error: ") and expected in err, err
    assert "Traceback" not in err and len(err.splitlines()) <= 10, err
    assert "INVREG_TRACEBACK=1" in err
    assert not list(tmp_path.rglob("config.yaml")), "nothing ran"


def test_an_error_during_fit_is_short_too(tmp_path, capsys, monkeypatch):
    """A data folder found missing in ``setup`` (at the start of ``fit``), not in ``__init__``."""
    (tmp_path / "late_data.py").write_text(textwrap.dedent('''
        from invreg.data import DigitsDataModule

        class LateData(DigitsDataModule):
            def setup(self, stage=None):
                raise FileNotFoundError("data_dir='/missing' is not a folder")
    '''))
    monkeypatch.syspath_prepend(str(tmp_path))
    code = main(["fit", "--config", str(QUICKSTART), *FAST, "--data", "late_data.LateData",
                 "--trainer.default_root_dir", str(tmp_path)])
    err = capsys.readouterr().err
    assert code == 1
    assert "invreg: error: data (late_data.LateData): data_dir='/missing' is not a folder" in err
    assert "Traceback" not in err


def test_full_traceback_on_request(tmp_path, monkeypatch):
    monkeypatch.setenv("INVREG_TRACEBACK", "1")
    with pytest.raises(ValueError, match="Unknown group name 'c5x'"):
        main(["fit", "--config", str(QUICKSTART), *FAST, "--model.init_args.group", "c5x",
              "--trainer.default_root_dir", str(tmp_path)])


@pytest.mark.parametrize("args", [["--help"], ["fit", "--help"]])
def test_help_says_what_invreg_is_and_where_the_configs_are(capsys, args):
    with pytest.raises(SystemExit) as exit_info:
        main(args)
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert "measure and enforce invariance" in out
    for config in ("configs/quickstart.yaml", "configs/genuine/", "configs/hyper/",
                   "configs/loggers/"):
        assert config in out
        assert (ROOT / config).exists(), config
