"""``invreg-experiment lie``: DA against DA + Lie derivative penalty on rotated digits."""

import csv
import math

import pytest

from invreg.experiments.lie import acceptance, choose_weight
from invreg.experiments.runner import main


def test_quick_run_for_one_epoch_writes_every_table(tmp_path, monkeypatch):
    # --quick as users run it, cut to one seed and one epoch: its ν grid, full batches
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "lie"
    assert main(["lie", "--quick", "--seeds", "1", "--epochs", "1", "--no-cache",
                 "--out", str(out)]) == 0
    with open(out / "results.csv") as handle:
        rows = {row["model"]: row for row in csv.DictReader(handle)}
    assert set(rows) == {"DA", "DA+Lie"}
    assert float(rows["DA"]["nu"]) == 0.0 and float(rows["DA+Lie"]["nu"]) in (3e-4, 3e-3)
    for row in rows.values():
        assert 0.0 <= float(row["val_error"]) <= 100.0
        assert float(row["test_lie"]) > 0.0  # an untrained MLP is not rotation invariant
    with open(out / "acceptance.csv") as handle:
        checked = [row["value"] for row in csv.DictReader(handle)]
    assert checked == ["val_error", "test_error", "val_lie", "test_lie"]
    with open(out / "invariance_weights.csv") as handle:
        tried = list(csv.DictReader(handle))
    assert [float(r["nu"]) for r in tried] == [3e-4, 3e-3]
    assert [r["chosen"] for r in tried].count("True") == 1
    markdown = (out / "results.md").read_text()
    assert "## Acceptance: DA+Lie against DA" in markdown
    assert "- `test_lie`:" in markdown
    assert (out / "lie.png").stat().st_size > 1000


def test_quick_and_full_have_their_own_scale(tmp_path, monkeypatch):
    import dataclasses

    import invreg.experiments.runner as runner
    from invreg.experiments.core import Results

    seen = {}

    def capture(settings):
        seen[settings.scale.name] = settings
        return Results([{"model": "DA"}])

    monkeypatch.setitem(runner.EXPERIMENTS, "lie",
                        dataclasses.replace(runner.EXPERIMENTS["lie"], run=capture))
    for flags in (["--quick"], ["--seeds", "4", "--epochs", "7"]):
        assert runner.main(["lie", "--no-cache", "--out", str(tmp_path), *flags]) == 0
    assert (seen["quick"].seeds, seen["quick"].epochs) == (3, 15)
    assert (seen["full"].seeds, seen["full"].epochs) == (4, 7)
    assert len(seen["full"].scale.invariance_weights) >= 3


def test_weight_rule_lowest_validation_error_ties_to_the_larger_weight():
    assert choose_weight({1e-4: 20.0, 1e-3: 15.0, 1e-2: 18.0}) == 1e-3
    assert choose_weight({1e-4: 15.0, 1e-3: 15.0}) == 1e-3
    with pytest.raises(ValueError, match="grid is empty"):
        choose_weight({})


def test_acceptance_reduction_against_augmentation():
    summary = [{"model": "DA", "nu": 0.0, "test_error": 20.0, "test_lie": 40.0},
               {"model": "DA+Lie", "nu": 1e-3, "test_error": 15.0, "test_lie": 10.0}]
    rows = {row["value"]: row for row in acceptance(summary, ["test_error", "test_lie"])}
    assert math.isclose(rows["test_error"]["reduction_pct"], 25.0)
    assert not rows["test_error"]["meets_50pct"]
    assert math.isclose(rows["test_lie"]["reduction_pct"], 75.0)
    assert rows["test_lie"]["meets_50pct"]
