"""``python benchmarks/bench_train.py --tiny`` runs as users run it: both loops train, the
table has a ratio per model."""

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_train_benchmark_tiny_run_prints_a_ratio_per_model():
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    result = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "bench_train.py"), "--tiny"],
        capture_output=True, text=True, cwd=ROOT, env=env, timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    rows = {line.split("|")[1].strip(): line.split("|")[2:-1]
            for line in result.stdout.splitlines() if line.startswith("| ") and "---" not in line}
    assert set(rows) == {"model", "IR", "DA", "WT"}, result.stdout
    for model in ("IR", "DA", "WT"):
        invreg, floor, ratio_cpu, ratio_wall, bare = (float(v) for v in rows[model])
        assert min(invreg, floor, ratio_cpu, ratio_wall, bare) > 0
        # the times are printed to 4 decimals, the ratio to 3: the bound of that rounding
        bound = ratio_cpu * (0.5e-4 / invreg + 0.5e-4 / floor) * 1.01 + 0.5e-3
        assert abs(ratio_cpu - invreg / floor) <= bound
