"""Under DDP, validation and test count every sample of an odd-sized split exactly once.

Lightning's default DistributedSampler pads a split to a multiple of the world size by
repeating samples: 272 of 271 validation samples on two processes, one counted twice. The data
modules give their evaluation loaders an unrepeated distributed sampler instead.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from ddp_eval_worker import run

WORKER = Path(__file__).with_name("ddp_eval_worker.py")


def test_two_processes_count_each_validation_and_test_sample_once(tmp_path):
    out = tmp_path / "ddp" / "out.json"
    out.parent.mkdir()
    env = {**os.environ, "WANDB_MODE": "disabled", "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, str(WORKER), str(out)], env=env, capture_output=True,
                          text=True, timeout=300, cwd=out.parent)
    assert done.returncode == 0, done.stderr[-3000:]
    ddp = json.loads(out.read_text())
    assert (ddp["val"]["loaded"], ddp["val"]["counted"]) == (271, 271)
    assert (ddp["test"]["loaded"], ddp["test"]["counted"]) == (135, 135)

    single = run(str(tmp_path / "single.json"), 1)
    for stage in ("val", "test"):
        assert single[stage]["counted"] == ddp[stage]["counted"]
        # sums and counts: the same epoch values as one process, up to float32 summation order
        assert ddp[stage]["acc"] == pytest.approx(single[stage]["acc"], abs=1e-6)
        assert ddp[stage]["loss"] == pytest.approx(single[stage]["loss"], rel=1e-5)
