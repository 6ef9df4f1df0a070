"""Under DDP the logged epoch losses equal a single-process run on the same data."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

WORKER = Path(__file__).with_name("ddp_logging_worker.py")


def run(out: Path, devices: int) -> dict:
    env = {**os.environ, "WANDB_MODE": "disabled", "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, str(WORKER), str(out), str(devices)], env=env,
                          capture_output=True, text=True, timeout=300, cwd=out.parent)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(out.read_text())


def test_two_gloo_processes_log_the_single_process_epoch_means(tmp_path):
    single = run(tmp_path / "single.json", 1)
    ddp = run(tmp_path / "ddp.json", 2)
    expected = {f"{stage}/{term}" for stage in ("val",)
                for term in ("task_loss", "invariance_loss", "loss", "acc")}
    expected |= {f"train/{term}_epoch" for term in ("task_loss", "invariance_loss", "loss")}
    assert expected <= set(single) and set(single) == set(ddp)
    for key, value in single.items():
        # float32 sums of ~60 terms of magnitude ~1 in another order: a few ulps of the mean
        assert ddp[key] == pytest.approx(value, rel=1e-6, abs=1e-7), key
