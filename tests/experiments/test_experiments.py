"""Every reproduction runs end to end at smoke scale and writes its results files."""

import csv

import pytest

from invreg.experiments.runner import EXPERIMENTS, main, run


@pytest.mark.parametrize("name", sorted(EXPERIMENTS))
def test_experiment_smoke_run_writes_results(name, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    extra = {"groups": ["R4"]} if name.startswith("genuine") else {}
    if name == "invariance-origins":  # FashionMNIST is not here: tests/experiments/test_origins
        extra = {"ood": ("natural_images", "letters")}
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
    if name == "hyper":  # every method of every task, a grid of 2³ fixed descriptors at smoke
        from invreg.experiments.hyper import TASKS

        assert len(results.per_seed) == len(TASKS) * (1 + 8 + 5)
        assert (out / "results_per_seed.csv").is_file()
    if name in ("genuine-table1", "spectral-decay", "hyper"):  # legend for each column
        legend = "\n".join(line for line in markdown.splitlines() if line.startswith("- `"))
        for column in rows[0]:
            assert f"`{column}`" in legend, column


def test_table1_measures_exact_invariance_and_records_every_invariance_weight(tmp_path):
    results = run("genuine-table1", scale="smoke", out=tmp_path, groups=["T3"])
    wt = next(r for r in results.rows if r["model"] == "WT")
    assert wt["LI"] < 1e-8 and wt["SI"] > 0.999 and wt["consistency"] == 1.0
    assert {"paper_acc", "paper_SI"} <= set(wt)
    # a weight-tied model is correct on a whole orbit exactly when it is correct on x
    assert wt["orbit_acc"] == wt["acc"]
    markdown = (tmp_path / "results.md").read_text()
    assert "- `acc`: test accuracy (%) on upright (untransformed) images" in markdown
    assert "- `orbit_acc`: test orbit accuracy (%): images classified correctly" in markdown
    with open(tmp_path / "invariance_weights.csv") as handle:
        tried = list(csv.DictReader(handle))
    assert [float(r["nu"]) for r in tried] == [1.0]  # the smoke scale's grid
    assert set(tried[0]) == {"group", "nu", "val_SI", "val_acc", "val_orbit_acc", "chosen"}
    assert tried[0]["chosen"] == "True"
    assert next(r for r in results.rows if r["model"] == "IR")["nu"] == 1.0
    assert "## Choice of ν" in markdown and "T3: ν = 1 (validation SI by ν" in markdown


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


def test_quick_table1_has_its_own_scale_and_the_others_keep_theirs(tmp_path, monkeypatch):
    import invreg.experiments.runner as runner
    from invreg.experiments.core import SCALES, Results

    seen = {}

    def capture(name):
        def experiment(settings):
            seen[name] = settings
            return Results([{"value": 1.0}])

        return runner.Experiment(name, experiment, lambda settings: 1)

    for name in ("genuine-table1", "layerwise"):
        monkeypatch.setitem(runner.EXPERIMENTS, name, capture(name))
        run(name, scale="quick", out=tmp_path / name)
    table1, layerwise = seen["genuine-table1"], seen["layerwise"]
    assert layerwise.scale == SCALES["quick"] and layerwise.epochs == SCALES["quick"].epochs
    assert table1.scale != SCALES["quick"] and table1.epochs == table1.scale.epochs
    assert table1.scale.train_size * table1.epochs // 512 >= 1000  # ≥ 1,000 steps per model
    assert f"--epochs {table1.epochs}" in (tmp_path / "genuine-table1" / "results.md").read_text()


def test_results_header_names_the_options_it_ran_with(tmp_path):
    run("genuine-drift", scale="smoke", out=tmp_path, groups=["T3"], drift_source="noise")
    header = (tmp_path / "results.md").read_text().splitlines()[2]
    assert header.startswith("Command: `invreg-experiment genuine-drift --scale smoke --seeds 1 "
                             "--epochs 1 --groups T3 --drift-source noise`;"), header
