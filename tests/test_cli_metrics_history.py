"""Every ``invreg fit`` run folder holds ``metrics.csv`` and the figure over training, whatever
the logger (run as a user runs it: the console script, in a subprocess)."""

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
QUICKSTART = ROOT / "configs" / "quickstart.yaml"
SHORT = ["--trainer.max_epochs", "2", "--trainer.limit_train_batches", "2",
         "--trainer.limit_val_batches", "1"]
ORBIT_ONLY = ('[{"class_path": "invreg.callbacks.OrbitConsistencyCallback", "init_args": '
              '{"num_samples": 16, "every_n_epochs": 1, "saliency_samples": 2, '
              '"saliency_steps": 2}}]')
#: W&B keeps its curves in a binary file: the run folder's metrics.csv is this callback's (a run
#: without a logger writes the same file, tests/callbacks/test_history.py)
LOGGERS = {
    "wandb": ["--trainer.logger.class_path", "pytorch_lightning.loggers.WandbLogger",
              "--trainer.logger.init_args.save_dir", "{root}",
              "--trainer.logger.init_args.project", "history"],
}


@pytest.mark.parametrize("logger", sorted(LOGGERS))
def test_fit_writes_metrics_csv_and_the_figure(tmp_path, logger):
    invreg = Path(sys.executable).parent / "invreg"
    env = {**os.environ, "WANDB_MODE": "offline", "WANDB_SILENT": "true"}
    command = [str(invreg), "fit", "--config", str(QUICKSTART), *SHORT,
               "--trainer.default_root_dir", str(tmp_path), "--trainer.callbacks", ORBIT_ONLY,
               *[arg.format(root=tmp_path) for arg in LOGGERS[logger]]]
    done = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads(next(tmp_path.rglob("summary.json")).read_text())
    folder = Path(summary["run_directory"])
    with (folder / "metrics.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert [row["epoch"] for row in rows] == ["0", "1"]
    assert float(rows[-1]["val/acc"]) == pytest.approx(summary["metrics"]["val/acc"])
    assert float(rows[-1]["orbit/val/DI"]) == pytest.approx(summary["metrics"]["orbit/val/DI"])
    assert (folder / "metrics_over_training.png").stat().st_size > 0
