"""mean_std over seeds: a NaN seed shows as NaN instead of crashing the summary."""

from __future__ import annotations

import math

import pytest

from invreg.experiments.core import mean_std


def test_mean_and_std_over_seeds():
    rows = [{"model": "IR", "LI": 1.0}, {"model": "IR", "LI": 3.0}, {"model": "WT", "LI": 0.0}]
    summary = {r["model"]: r for r in mean_std(rows, ["LI"], ["model"])}
    assert summary["IR"]["LI"] == 2.0 and summary["IR"]["LI_std"] == pytest.approx(math.sqrt(2))
    assert summary["IR"]["seeds"] == 2
    assert summary["WT"]["LI"] == 0.0 and summary["WT"]["LI_std"] == 0.0


def test_a_nan_seed_makes_mean_and_std_nan():
    rows = [{"model": "IR", "LI": 1.0}, {"model": "IR", "LI": math.nan}]
    (entry,) = mean_std(rows, ["LI"], ["model"])
    assert math.isnan(entry["LI"]) and math.isnan(entry["LI_std"])


def test_missing_values_are_left_out():
    rows = [{"model": "IR", "LI": 1.0}, {"model": "IR", "LI": None}, {"model": "IR"}]
    (entry,) = mean_std(rows, ["LI"], ["model"])
    assert entry["LI"] == 1.0 and entry["LI_std"] == 0.0 and entry["seeds"] == 3
