"""A model cache shared by several processes (Ray workers, experiments, machines on a shared
file system): a model two of them ask for is trained once."""

import os
import socket
import subprocess
import sys
import time

import invreg.experiments.core as core
from invreg.experiments.core import Settings, claim, get_scale, model_key, training_description
from invreg.experiments.genuine import _table1_model, build

TRAIN = """
import sys
from pathlib import Path
import invreg.experiments.core as core
from invreg.experiments.core import Settings, get_scale
from invreg.experiments.genuine import _table1_model
settings = Settings(get_scale("genuine-table1", "smoke"), Path(sys.argv[1]), 1, 1,
                    cache=Path(sys.argv[2]))
_table1_model(settings, "R4", "DA", 0, 0.0, None)
print("done", flush=True)
"""


def _folder(settings):
    module, data = build("DA", "c4", settings, 0)
    return settings.cache / model_key(training_description(module, data, settings, 0))


def test_a_model_being_trained_elsewhere_is_waited_for_not_trained_again(tmp_path):
    cache = tmp_path / "models"
    mine = Settings(get_scale("genuine-table1", "smoke"), tmp_path / "mine", 1, 1, cache=cache)
    folder = _folder(mine)
    env = dict(os.environ, WANDB_MODE="disabled", OMP_NUM_THREADS="1")
    with claim(folder) as lock:
        assert lock.read_text().split() == [socket.gethostname(), str(os.getpid())]
        other = subprocess.Popen([sys.executable, "-c", TRAIN, str(tmp_path / "other"),
                                  str(cache)], stdout=subprocess.PIPE, text=True, env=env)
        said = other.stdout.readline()  # it waits for this process, and says so
        assert said.startswith(f"waiting for {socket.gethostname()} {os.getpid()} to finish "
                               f"training {folder.name}"), said
        # train and store it under the claim, as train() does
        module, data = build("DA", "c4", mine, 0)
        core._fit(module, data, mine, "table1/R4/DA", 0, folder,
                  training_description(module, data, mine, 0))
        assert other.poll() is None  # still waiting for the claim
    out, _ = other.communicate(timeout=300)
    assert other.returncode == 0 and out.strip() == "done"
    assert (tmp_path / "mine" / "runs" / "table1").is_dir()
    assert not (tmp_path / "other" / "runs").exists()  # it loaded the model, trained nothing
    assert not folder.with_name(folder.name + ".lock").exists()


def test_a_claim_whose_process_died_is_taken_over(tmp_path):
    settings = Settings(get_scale("genuine-table1", "smoke"), tmp_path / "out", 1, 1,
                        cache=tmp_path / "models", progress=lambda message: None)
    folder = _folder(settings)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    folder.parent.mkdir(parents=True)
    folder.with_name(folder.name + ".lock").write_text(f"{socket.gethostname()} {dead.pid}\n")
    start = time.perf_counter()
    _table1_model(settings, "R4", "DA", 0, 0.0, None)
    assert (folder / "model.ckpt").is_file()
    assert time.perf_counter() - start < 120
    assert not folder.with_name(folder.name + ".lock").exists()
