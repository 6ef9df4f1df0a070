"""``--jobs N``: every training a Ray task, then the evaluation from the cache, with the numbers
of the in-process run (one torch thread per training in both)."""

import os
import subprocess
import sys

import pytest

from invreg.experiments import runner
from invreg.experiments.core import Settings, get_scale
from invreg.experiments.runner import run

pytest.importorskip("ray")


def test_ray_trains_the_models_that_one_process_would(tmp_path, monkeypatch, one_thread,
                                                      local_ray, capsys):
    import invreg.experiments.core as core

    serial = run("genuine-table1", scale="smoke", out=tmp_path / "serial", cache=None,
                 groups=["R4", "T3"])

    def no_training(*args, **kwargs):
        raise AssertionError("this process trained a model that a Ray task should have")

    # patched in this process only: the Ray workers train, this process only evaluates
    monkeypatch.setattr(core.pl.Trainer, "fit", no_training)
    cache = tmp_path / "models"
    parallel = run("genuine-table1", scale="smoke", out=tmp_path / "parallel", cache=cache,
                   groups=["R4", "T3"], jobs=2)
    assert len(list(cache.glob("*/model.ckpt"))) == 8  # WT, DA, IR, IR-target for each group
    assert not list(cache.glob("*.lock")) and not list(cache.glob("*.partial"))
    assert parallel.per_seed == serial.per_seed  # bit for bit
    assert parallel.tables["invariance_weights"].rows == serial.tables["invariance_weights"].rows
    assert "--jobs 2" in (tmp_path / "parallel" / "results.md").read_text()
    err = capsys.readouterr().out
    # one line per finished training: model, seed, ν, seconds, where it ran
    lines = [line for line in err.splitlines() if "trained table1/" in line]
    assert len(lines) == 8, err
    assert any("trained table1/R4/IR-nu1 seed 0 ν=1 in " in line and " s on " in line
               and "(node " in line and "[R4 ν search round 1]" in line for line in lines)
    assert "R4 ν search: ν = 1 after 1 round of 1 trainings" in err


def test_layerwise_trains_its_models_as_tasks(tmp_path, monkeypatch, one_thread, local_ray):
    import invreg.experiments.core as core

    serial = run("layerwise", scale="smoke", out=tmp_path / "serial", cache=None)
    monkeypatch.setattr(core.pl.Trainer, "fit", lambda *a, **k: pytest.fail("trained here"))
    cache = tmp_path / "models"
    parallel = run("layerwise", scale="smoke", out=tmp_path / "parallel", cache=cache, jobs=2)
    assert len(list(cache.glob("*/model.ckpt"))) == 3
    assert parallel.per_seed == serial.per_seed


def test_gpus_the_cluster_lacks_are_refused(tmp_path, local_ray):
    with pytest.raises(ValueError, match="asks for 1 GPU but the Ray cluster has 0"):
        run("layerwise", scale="smoke", out=tmp_path / "out", cache=tmp_path / "models",
            gpus_per_training=1)
    assert not list((tmp_path / "models").glob("*/model.ckpt"))


@pytest.mark.parametrize("kwargs, message", [
    (dict(name="genuine-table1", jobs=0), "jobs: expected a whole number"),
    (dict(name="genuine-table1", jobs=2, cache=None), "--cache DIR"),
    (dict(name="lie", jobs=2), "lie trains its models in one process"),
    (dict(name="genuine-table1", gpus_per_training=-1), "gpus_per_training: expected"),
    (dict(name="genuine-table1", gpus_per_training=1, accelerator="cpu"),
     "pass accelerator auto, gpu or cuda"),
])
def test_bad_jobs_are_named_before_anything_trains(tmp_path, kwargs, message):
    kwargs.setdefault("cache", tmp_path / "models")
    with pytest.raises(ValueError, match=message):
        run(scale="smoke", out=tmp_path / "out", **kwargs)
    assert not (tmp_path / "out").exists()


def test_ray_address_leaves_an_experiment_that_trains_in_one_process_alone(tmp_path,
                                                                          monkeypatch):
    import dataclasses

    from invreg.experiments.core import Results

    monkeypatch.setenv("RAY_ADDRESS", "127.0.0.1:1")  # nothing listens: Ray must not be asked
    lie = dataclasses.replace(runner.EXPERIMENTS["lie"], run=lambda s: Results([{"a": 1}]))
    monkeypatch.setitem(runner.EXPERIMENTS, "lie", lie)
    assert run("lie", scale="smoke", out=tmp_path / "out").rows == [{"a": 1}]
    with pytest.raises(ValueError, match="lie trains its models in one process"):
        run("lie", scale="smoke", out=tmp_path / "out", address="127.0.0.1:1")


def test_the_console_script_exits_1_naming_the_fix(capsys, tmp_path):
    status = runner.main(["genuine-table1", "--smoke", "--jobs", "2", "--no-cache",
                          "--out", str(tmp_path / "out")])
    assert status == 1
    assert "pass --cache DIR instead of --no-cache" in capsys.readouterr().err


def test_drift_trains_only_the_models_drift_reads(tmp_path):
    # the IR-target row is Table 1's alone: the drift figure's chains leave it out
    from invreg.experiments.executor import Training

    settings = Settings(get_scale("genuine-drift", "smoke"), tmp_path, 2, 1,
                        extra={"groups": ["R4"]})

    def names(chains, results):
        first = [next(chain) for chain in chains]
        later = chains[0].send([results] * len(first[0]))
        return {t.name for t in first[0] + first[1] + (later or [])}, later

    drift, later = names(runner.EXPERIMENTS["genuine-drift"].trainings(settings), 0.0)
    assert drift == {"table1/R4/WT", "table1/R4/DA", "table1/R4/IR-nu1", "table1/R4/IR"}
    assert all(isinstance(t, Training) and t.after == ("table1/R4/IR-nu1 seed 0",)
               for t in later)


def test_without_ray_the_runner_trains_in_process_and_says_so(tmp_path):
    # a ``ray`` module that cannot be imported stands for Ray not installed
    blocker = tmp_path / "blocker"
    blocker.mkdir()
    (blocker / "ray.py").write_text("raise ImportError('No module named ray')\n")
    env = dict(os.environ, PYTHONPATH=str(blocker), WANDB_MODE="disabled", OMP_NUM_THREADS="1")
    done = subprocess.run(
        [sys.executable, "-m", "invreg.experiments", "layerwise", "--smoke", "--jobs", "2",
         "--cache", str(tmp_path / "models"), "--out", str(tmp_path / "out")],
        capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr
    said = [line for line in done.stdout.splitlines() if "Ray is not installed" in line]
    assert said == ["Ray is not installed (pip install 'invreg[ray]'): training in this "
                    "process, one model at a time"]
    assert "trained layerwise/DA_CNN seed 0 ν=0 in " in done.stdout
    assert "on this process" in done.stdout
    assert len(list((tmp_path / "models").glob("*/model.ckpt"))) == 3
