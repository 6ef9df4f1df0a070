"""The dependency graph of an experiment's trainings: a ν search round waits for the rounds
before it, the chosen ν's trainings wait for the search, ε is measured after the chosen model
exists, and the evaluation reads models that all exist; a failed training stops the run naming
the model and its log."""

import dataclasses
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from invreg.experiments import genuine, runner
from invreg.experiments.core import Settings, get_scale
from invreg.experiments.executor import GraphError, InProcess, Training, run_chains


def _settings(tmp_path, grid=(0.1, 1.0, 10.0)):
    scale = dataclasses.replace(get_scale("genuine-table1", "smoke"), invariance_weights=grid)
    return Settings(scale, tmp_path / "out", 2, 1, extra={"groups": ["R4"]},
                    cache=tmp_path / "models", progress=lambda message: None)


def test_rounds_wait_for_the_rounds_before_them(tmp_path, monkeypatch):
    measured_at = []
    target = genuine.target_from_choice

    def timed_target(*args):
        measured_at.append(time.time())
        return target(*args)

    monkeypatch.setattr(genuine, "target_from_choice", timed_target)
    settings = _settings(tmp_path)
    graph = runner.run_trainings("genuine-table1", settings, InProcess(threads=1),
                                 progress=lambda message: None)
    stages = [stage for stage, _ in graph.rounds]
    assert stages == ["R4 ν search round 1", "WT, DA", "R4 ν search round 2", "R4 chosen ν"]
    first, second = graph.rounds[0][1], graph.rounds[2][1]
    assert first == [f"table1/R4/IR-nu{nu:g} seed 0" for nu in (0.1, 1, 10)]
    # smoke models reach no SI ≥ 0.95: round 2 refines around the best coarse ν
    assert len(second) >= 2 and not set(second) & set(first)
    for finished in graph.done.values():
        for label in finished.training.after:
            assert graph.done[label].finished <= finished.submitted <= finished.started
    assert all(set(first) <= set(graph.done[label].training.after) for label in second)
    later = graph.rounds[3][1]
    assert sorted(later) == ["table1/R4/IR seed 1", "table1/R4/IR-target seed 0",
                             "table1/R4/IR-target seed 1"]
    chosen = graph.done[later[0]].training.after
    assert len(chosen) == 1 and chosen[0] in first + second
    # ε comes from the chosen model: measured once it exists, before IR-target trains
    assert len(measured_at) == 1
    assert graph.done[chosen[0]].finished <= measured_at[0]
    assert measured_at[0] <= min(graph.done[label].submitted for label in later)
    # WT and DA wait for nothing
    assert all(not graph.done[label].training.after for label in graph.rounds[1][1])


def test_the_evaluation_reads_only_models_that_exist(tmp_path, monkeypatch):
    import invreg.experiments.core as core

    settings = _settings(tmp_path, grid=(1.0,))
    graph = runner.run_trainings("genuine-table1", settings, InProcess(threads=1),
                                 progress=lambda message: None)
    trained = max(f.finished for f in graph.done.values())
    monkeypatch.setattr(core.pl.Trainer, "fit", lambda *a, **k: pytest.fail("a model is missing"))
    evaluated = []
    report = genuine.invariance_report

    def timed_report(*args, **kwargs):
        evaluated.append(time.time())
        return report(*args, **kwargs)

    monkeypatch.setattr(genuine, "invariance_report", timed_report)
    results = genuine.table1(settings)
    assert len(evaluated) == len(results.per_seed) == 8  # WT, DA, IR, IR-target × 2 seeds
    assert min(evaluated) >= trained


def test_a_training_before_its_dependency_is_refused(tmp_path):
    def chain():
        yield [Training("a", 0, 0.0, print, after=("b seed 0",))]

    settings = _settings(tmp_path)
    with pytest.raises(GraphError, match=r"a seed 0 depends on \['b seed 0'\], not finished"):
        run_chains([chain()], settings, InProcess(), progress=lambda message: None)


def test_a_failed_training_stops_the_run_naming_the_model_and_its_log(tmp_path):
    pytest.importorskip("ray")
    out = tmp_path / "out"
    env = dict(os.environ, WANDB_MODE="disabled", OMP_NUM_THREADS="1")
    done = subprocess.run(
        [sys.executable, "-m", "invreg.experiments", "genuine-table1", "--smoke", "--jobs", "2",
         "--groups", "R4", "--data-dir", str(tmp_path / "no-such-folder"),
         "--cache", str(tmp_path / "models"), "--out", str(out)],
        capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 1
    message = [line for line in done.stderr.splitlines() if line.startswith("invreg-experiment")]
    assert len(message) == 1, done.stderr
    assert "error: training table1/R4/" in message[0] and "the experiment stopped" in message[0]
    log = Path(message[0].split("its log: ")[1].split(" (error.log")[0])
    assert log.is_relative_to(out / "runs" / "table1" / "R4")
    assert "Traceback" in (log / "error.log").read_text()
    assert not (out / "results.csv").exists()
