"""The quickstart config carries the callbacks; configs/loggers/*.yaml switch the logger."""

from pathlib import Path

import pytest
from pytorch_lightning.callbacks import ModelCheckpoint
from pytorch_lightning.loggers import CSVLogger, TensorBoardLogger, WandbLogger

from invreg.callbacks import (
    DriftCallback,
    OrbitConsistencyCallback,
    SaliencyCallback,
    SpectralDecayCallback,
)
from invreg.cli import run_cli as main

ROOT = Path(__file__).resolve().parents[2]
QUICKSTART = ROOT / "configs" / "quickstart.yaml"


def test_quickstart_has_the_callbacks_and_keeps_its_checkpoint():
    cli = main(["--config", str(QUICKSTART)], run=False)
    kinds = {type(c) for c in cli.trainer.callbacks}
    assert {OrbitConsistencyCallback, SpectralDecayCallback, SaliencyCallback,
            DriftCallback, ModelCheckpoint} <= kinds
    checkpoint = cli.trainer.checkpoint_callback
    assert checkpoint.monitor == "val/acc"


@pytest.mark.parametrize(
    "name, kind", [("wandb", WandbLogger), ("csv", CSVLogger), ("tensorboard", TensorBoardLogger)]
)
def test_one_flag_switches_the_logger(name, kind):
    config = ROOT / "configs" / "loggers" / f"{name}.yaml"
    cli = main(["--config", str(QUICKSTART), "--config", str(config)], run=False)
    assert isinstance(cli.trainer.logger, kind)
    assert any(isinstance(c, OrbitConsistencyCallback) for c in cli.trainer.callbacks)


def test_quickstart_fit_with_callbacks_and_csv_writes_the_run_directory(tmp_path):
    args = ["fit", "--config", str(QUICKSTART), "--config",
            str(ROOT / "configs" / "loggers" / "csv.yaml"),
            "--trainer.logger.init_args.save_dir", str(tmp_path),
            "--trainer.default_root_dir", str(tmp_path), "--trainer.max_epochs", "1",
            "--trainer.limit_train_batches", "2", "--trainer.limit_val_batches", "1"]
    main(args)
    run = next(tmp_path.glob("invreg/version_*"))
    metrics = (run / "metrics.csv").read_text().splitlines()[0]
    for key in ("orbit/val/DI", "orbit/val/SI", "spectral/val/jacobian_sigma_max",
                "drift/val/DI/beta_0.50"):
        assert key in metrics, key
    for pattern in ("saliency/val_step*.png", "spectral/spectral_decay_val.png",
                    "drift/val_step*.csv", "drift/val_step*.png", "checkpoints/best.ckpt"):
        assert list(run.glob(pattern)), pattern


def test_overhead_command_reports_the_split(tmp_path, capsys):
    import importlib.util

    path = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_callbacks.py"
    spec = importlib.util.spec_from_file_location("bench_callbacks", path)
    overhead = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(overhead)
    result = overhead.main(["--max-epochs", "4", "--repeats", "1"])  # orbit runs at epoch 4
    assert result["epoch_without"] > 0 and result["periodic_per_epoch"] > 0
    assert result["end_of_fit"] > 0
    assert "per-epoch overhead" in capsys.readouterr().out
