"""``invreg-experiment genuine-table1 --quick`` shows the pattern of the paper's Table 1.

Minutes on two CPU cores, so marked slow: ``make test`` deselects it; run it with
``make test-slow`` or ``pytest -m slow tests/experiments/test_quick_scale.py``.
"""

import csv

import pytest
import torch

from invreg.experiments.runner import main

# SI of a weight-tied model compares saliency maps that are equal up to float32 rounding of
# the orbit sums in its first layer: a cosine 1 up to a few hundred float32 eps.
SI_EXACT = 1 - 256 * torch.finfo(torch.float32).eps
LI_EXACT = 1e-6  # WT logits agree to float32 rounding (~1e-6 relative), squared: far below


@pytest.mark.slow
def test_quick_table1_shows_the_papers_pattern(tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "disabled")
    assert main(["genuine-table1", "--quick", "--out", str(tmp_path)]) == 0
    with open(tmp_path / "results.csv") as handle:
        rows = {(r["group"], r["model"]): r for r in csv.DictReader(handle)}
    for group in ("R4", "T3"):
        wt, da, ir = (
            {k: float(v) for k, v in rows[group, model].items() if k not in ("group", "model")}
            for model in ("WT", "DA", "IR")
        )
        assert wt["LI"] < LI_EXACT and wt["SI"] >= SI_EXACT, (group, wt)
        assert ir["SI"] >= 0.9, (group, ir)
        assert ir["LI"] * 10 <= da["LI"], (group, ir["LI"], da["LI"])
        assert da["SI"] < ir["SI"], (group, da["SI"], ir["SI"])
        for model in (wt, da, ir):
            assert 0 <= model["orbit_acc"] <= model["acc"] <= 100
    with open(tmp_path / "invariance_weights.csv") as handle:
        tried = list(csv.DictReader(handle))
    assert {r["group"] for r in tried} == {"R4", "T3"}
    assert sum(r["chosen"] == "True" for r in tried) == 2
