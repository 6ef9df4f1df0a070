"""Under DDP each rank evaluates its shard and the results are reduced, not duplicated."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from ddp_callbacks_worker import run

WORKER = Path(__file__).with_name("ddp_callbacks_worker.py")


def test_two_process_results_equal_one_process_results(tmp_path):
    out = tmp_path / "ddp" / "out.json"
    out.parent.mkdir()
    env = {**os.environ, "WANDB_MODE": "disabled", "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, str(WORKER), str(out)], env=env, capture_output=True,
                          text=True, timeout=120, cwd=out.parent)
    assert done.returncode == 0, done.stderr[-3000:]
    ddp = json.loads(out.read_text())
    # each rank evaluated its own shard of the 15 samples: 8 + 7, never all 15 twice
    rank0, rank1 = (json.loads(Path(f"{out}.rank{r}").read_text()) for r in (0, 1))
    assert len(rank0) == len(rank1) > 0
    assert set(rank0) == {8} and set(rank1) == {7}

    (tmp_path / "single").mkdir()
    single = run(str(tmp_path / "single" / "out.json"), 1)
    assert single["SaliencyCallback"]  # ran
    # per-sample values gathered from shards of unequal sizes (one empty): subset order, bits
    for total in (15, 1):
        expected = [[(i / 3).hex(), (-(i / 3)).hex()] for i in range(total)]
        assert ddp["gathered"][str(total)] == single["gathered"][str(total)] == [
            "torch.float64", expected]
    del ddp["gathered"], single["gathered"]
    for name, history in single.items():
        assert len(ddp[name]) == len(history), name
        for got, expected in zip(ddp[name], history, strict=True):
            assert got["split"] == expected["split"] and got["stage"] == expected["stage"]
            for key, value in expected.items():
                if key == "seconds":
                    continue
                if isinstance(value, float):
                    assert got[key] == pytest.approx(value, rel=1e-5, abs=1e-7), (name, key)
                elif key == "table":
                    for row, expected_row in zip(got[key], value, strict=True):
                        assert row == pytest.approx(expected_row, rel=1e-5, abs=1e-7), name
