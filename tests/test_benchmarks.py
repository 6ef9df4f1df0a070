"""The benchmark scripts run as users run them (``python benchmarks/<script>.py --tiny``): each
exits 0 only when its fast path agrees with its reference path."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize(
    "script, columns",
    [
        ("bench_spectral.py", "auto ÷ faster"),
        ("bench_metrics.py", "ratio to best-chunked"),
        ("bench_saliency.py", "largest SI pass"),
        ("bench_lie.py", "one-pass Lie step CPU"),
    ],
)
def test_benchmark_tiny_run_agrees(script, columns):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    result = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / script), "--tiny"],
        capture_output=True, text=True, cwd=ROOT, env=env, timeout=120,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert columns in result.stdout
    rows = [line for line in result.stdout.splitlines() if line.startswith("| ")]
    assert any(line.startswith("| MLP") for line in rows)
    assert any(line.startswith("| SmallCNN") for line in rows)


def test_metrics_benchmark_agreement_check_can_fail():
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        from bench_metrics import agree
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))
    assert agree((0.5, 2.0, 0.25), (0.5, 2.0, 0.25), 9)
    assert not agree((0.5, 2.0, 0.25), (0.5, 2.1, 0.25), 9)  # LI off by 5%
    assert not agree((0.5, 2.0, 0.25), (0.5, 2.0, 0.5), 9)  # consistency differs
