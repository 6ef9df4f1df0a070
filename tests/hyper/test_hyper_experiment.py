"""The evidence script ``python -m invreg.experiments.hyper``: table format; the real (slow) run."""

import pytest

from invreg.experiments import hyper


def test_summary_table_reports_means_and_learned_descriptors():
    rows = [dict(seed=s, task="upstream", variant="upstream", val_acc=0.9) for s in (0, 1)]
    for seed, (acc, d) in enumerate([(0.90, 0.8), (0.92, 0.9)]):
        rows.append(dict(seed=seed, task="rotated", variant="learned", test_acc=acc,
                         descriptor={"rotation": d}))
        rows.append(dict(seed=seed, task="rotated", variant="fixed d=1", test_acc=acc,
                         descriptor={"rotation": 1.0}))
    table = hyper.summarise(rows)
    assert "| rotated | learned | 91.0 ± 1.4 | 0.80, 0.90 |" in table
    assert "| rotated | fixed d=1 | 91.0 ± 1.4 | 1 |" in table
    assert "upstream val acc (sampled descriptors): 90.0 ± 0.0 %" in table


@pytest.mark.slow
def test_learned_rotation_strength_moves_the_right_way(tmp_path, monkeypatch):
    """One seed of the evidence run at a reduced budget (a few minutes on 2 CPU cores)."""
    monkeypatch.setenv("WANDB_MODE", "disabled")
    rows = hyper.main(["--seeds", "0", "--upstream-epochs", "30", "--downstream-epochs", "15",
                       "--out", str(tmp_path)])
    result = {(r["task"], r["variant"]): r for r in rows if r["task"] != "upstream"}
    assert result["rotated", "learned"]["descriptor"]["rotation"] > 0.5
    assert result["orientation", "learned"]["descriptor"]["rotation"] < 0.5
    for task in ("rotated", "orientation"):
        best_fixed = max(result[task, v]["test_acc"] for v in ("fixed d=0", "fixed d=1"))
        assert result[task, "learned"]["test_acc"] >= best_fixed - 0.05
