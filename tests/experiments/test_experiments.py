"""Every reproduction runs end to end at smoke scale and writes its results files."""

import csv

import pytest

from invreg.experiments.runner import EXPERIMENTS, main, run


@pytest.mark.parametrize("name", sorted(EXPERIMENTS))
def test_experiment_smoke_run_writes_results(name, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    extra = {"groups": ["R4"]} if name.startswith("genuine") else {}
    results = run(name, scale="smoke", out=tmp_path / name, **extra)
    out = tmp_path / name
    assert results.rows
    with open(out / "results.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == len(results.rows)
    markdown = (out / "results.md").read_text()
    assert markdown.startswith("# ") and "| " in markdown
    for figure in results.figures:
        assert (out / f"{figure}.png").stat().st_size > 1000


def test_table1_measures_exact_invariance_of_the_weight_tied_model(tmp_path):
    results = run("genuine-table1", scale="smoke", out=tmp_path, groups=["T3"])
    wt = next(r for r in results.rows if r["model"] == "WT")
    assert wt["LI"] < 1e-8 and wt["SI"] > 0.999 and wt["consistency"] == 1.0
    assert {"paper_acc", "paper_SI"} <= set(wt)


def test_cli_arguments(tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(["no-such-experiment"])
    assert main(["genuine-drift", "--smoke", "--groups", "X9", "--out", str(tmp_path)]) == 1
    assert "groups: unknown ['X9']" in capsys.readouterr().err


def test_scale_flags(monkeypatch):
    import invreg.experiments.runner as runner

    seen = []
    monkeypatch.setattr(runner, "run", lambda name, scale, *args, **kw: seen.append(scale))
    runner.main(["layerwise"])
    runner.main(["layerwise", "--quick"])
    runner.main(["layerwise", "--smoke"])
    runner.main(["layerwise", "--scale", "quick"])
    assert seen == ["full", "quick", "smoke", "quick"]
