"""``genuine-drift`` names Acc(β)/Acc(0) ``accuracy_ratio`` (as the drift callback and
``invreg report`` do); results recorded before, with ``acc_ratio`` columns, still replot."""

from __future__ import annotations

import csv
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from invreg.experiments.genuine import drift_figure

ROOT = Path(__file__).resolve().parents[2]
RECORDED = ROOT / "docs" / "results" / "genuine-drift" / "photos-R4" / "results.csv"
SCRIPT = Path(sys.executable).parent / "invreg-experiment"


def summary(ratio: str) -> list[dict]:
    return [{"group": "R4", "model": kind, "beta": beta, "seeds": 2, "DI": scale * (1 + beta),
             "DI_std": 0.1, ratio: 1 - beta / (1 + scale), f"{ratio}_std": 0.05}
            for kind, scale in (("WT", 0.0), ("DA", 1.0), ("IR", 0.5)) for beta in (0.0, 0.5)]


def lines(figure) -> list[np.ndarray]:
    return [np.asarray(line.get_ydata()) for axis in figure.axes for line in axis.get_lines()]


def test_the_figure_reads_the_new_and_the_recorded_name_alike():
    new, old = lines(drift_figure(summary("accuracy_ratio"))), lines(drift_figure(summary(
        "acc_ratio")))
    assert len(new) == 6 and all(np.array_equal(a, b) for a, b in zip(new, old, strict=True))
    assert new[4].tolist() == [1.0, 0.75]  # the ratio axis, DA


@pytest.mark.skipif(not RECORDED.is_file(), reason="the recorded genuine-drift results")
def test_a_recorded_results_csv_with_acc_ratio_replots_from_the_console(tmp_path):
    with RECORDED.open(newline="") as handle:
        assert "acc_ratio" in next(csv.reader(handle))  # recorded before the rename
    shutil.copy(RECORDED, tmp_path / "results.csv")
    done = subprocess.run([str(SCRIPT), "genuine-drift", "--replot", "--out", str(tmp_path)],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert str(tmp_path / "drift.png") in done.stdout
    assert (tmp_path / "drift.png").stat().st_size > 0
