"""``--jobs N``: the groups' models train in N processes, then evaluate from the cache."""

import pytest
import torch

from invreg.experiments import runner
from invreg.experiments.core import Settings, get_scale
from invreg.experiments.runner import run


@pytest.fixture
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the workers get 1 // 2 -> 1 thread: same arithmetic as serial
    yield
    torch.set_num_threads(threads)


def test_two_processes_train_the_models_that_one_process_would(tmp_path, monkeypatch, one_thread):
    import invreg.experiments.core as core

    serial = run("genuine-table1", scale="smoke", out=tmp_path / "serial", cache=None,
                 groups=["R4", "T3"])

    def no_training(*args, **kwargs):
        raise AssertionError("the main process trained a model that a job should have")

    # patched in this process only: the spawned workers train, this process only evaluates
    monkeypatch.setattr(core.pl.Trainer, "fit", no_training)
    cache = tmp_path / "models"
    parallel = run("genuine-table1", scale="smoke", out=tmp_path / "parallel", cache=cache,
                   groups=["R4", "T3"], jobs=2)
    assert len(list(cache.glob("*/model.ckpt"))) == 8  # WT, DA, IR, IR-target for each group
    assert parallel.per_seed == serial.per_seed
    assert "--jobs 2" in (tmp_path / "parallel" / "results.md").read_text()


@pytest.mark.parametrize("kwargs, message", [
    (dict(name="genuine-table1", jobs=0), "jobs: expected a whole number"),
    (dict(name="genuine-table1", jobs=2, cache=None), "--cache DIR"),
    (dict(name="layerwise", jobs=2), "layerwise trains its models in one process"),
])
def test_bad_jobs_are_named_before_anything_trains(tmp_path, kwargs, message):
    kwargs.setdefault("cache", tmp_path / "models")
    with pytest.raises(ValueError, match=message):
        run(scale="smoke", out=tmp_path / "out", **kwargs)
    assert not (tmp_path / "out").exists()


def test_the_console_script_exits_1_naming_the_fix(capsys, tmp_path):
    status = runner.main(["genuine-table1", "--smoke", "--jobs", "2", "--no-cache",
                          "--out", str(tmp_path / "out")])
    assert status == 1
    assert "pass --cache DIR instead of --no-cache" in capsys.readouterr().err


def test_drift_jobs_train_only_the_models_drift_reads(tmp_path):
    # the IR-target row is Table 1's alone: the drift figure's jobs leave it out
    settings = Settings(get_scale("genuine-drift", "smoke"), tmp_path, 1, 1,
                        extra={"groups": ["R4", "T3"]})
    table1 = runner.EXPERIMENTS["genuine-table1"].training_jobs(settings)
    drift = runner.EXPERIMENTS["genuine-drift"].training_jobs(settings)
    assert [args for _, args in table1] == [("R4", True), ("T3", True)]
    assert [args for _, args in drift] == [("R4", False), ("T3", False)]
