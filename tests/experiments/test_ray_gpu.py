"""``--gpus-per-training``: each training asks Ray for a GPU and trains on one (CUDA machines
only; without one, ``test_parallel_jobs`` checks the refusal)."""

import json

import pytest
import torch

from invreg.experiments.runner import run

pytest.importorskip("ray")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_trainings_ask_ray_for_a_gpu_and_train_on_it(tmp_path):
    cache = tmp_path / "models"
    results = run("genuine-table1", scale="smoke", out=tmp_path / "out", cache=cache,
                  groups=["R4"], gpus_per_training=1, accelerator="gpu")
    descriptions = [json.loads(p.read_text()) for p in cache.glob("*/description.json")]
    assert len(descriptions) == 4
    assert {d["device"] for d in descriptions} == {"cuda"}
    assert "--gpus-per-training 1" in (tmp_path / "out" / "results.md").read_text()
    assert len(results.per_seed) == 4
