"""The console script refuses a group that cannot act on the data before training."""

from pathlib import Path

from invreg.cli import main

ROOT = Path(__file__).resolve().parent.parent


def test_group_that_does_not_fit_the_data_is_a_one_line_error(tmp_path, capsys):
    status = main([
        "fit", "--config", str(ROOT / "configs" / "quickstart.yaml"),
        "--model.init_args.group", "t5",
        "--trainer.max_epochs", "1", "--trainer.limit_train_batches", "2",
        "--trainer.logger", "pytorch_lightning.loggers.CSVLogger",
        "--trainer.logger.save_dir", str(tmp_path), "--trainer.default_root_dir", str(tmp_path),
    ])
    assert status == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err[0].startswith("invreg: error:")
    assert "t5 needs n dividing 8" in err[0] and err[0].endswith("t2, t4, t8")
    assert not list(tmp_path.rglob("*.ckpt")), "nothing was trained"
