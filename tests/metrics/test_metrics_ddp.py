"""Under 2-process CPU DDP (gloo) every metric equals the single-process value on the same data."""

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

WORKER = Path(__file__).with_name("ddp_metrics_worker.py")


def load_worker():
    spec = importlib.util.spec_from_file_location("ddp_metrics_worker", WORKER)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_ddp_equals_single_process(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    run = subprocess.run(
        [sys.executable, str(WORKER), str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2)]
    assert ranks[0] == ranks[1]  # every process holds the reduced value

    worker = load_worker()
    x, target, model = worker.make_problem()
    single = worker.make_metrics()
    # one process, the same batches one after the other
    batches = worker.rank_batches(0) + worker.rank_batches(1)
    worker.update_all(single, x, target, model, batches)
    expected = worker.as_floats(single)
    assert set(expected) == set(ranks[0])
    # the same per-batch float32 sums, added in another order (12 samples × 3 pairs): n terms
    # err by at most n·eps relative
    reordered = (36 + 8) * torch.finfo(torch.float32).eps
    for name, value in expected.items():
        assert ranks[0][name] == pytest.approx(value, rel=reordered, abs=reordered), name
    # per-sample SI, gathered rank by rank: the samples in their order, each value exact
    assert len(ranks[0]["si_per_sample/values"]) == len(x)
    assert ranks[0]["si_per_sample/values"] == expected["si_per_sample/values"]

    # the batch-independent metrics also equal the functional value on all data at once
    from invreg.functional import (
        geed,
        logit_invariance,
        orbit_accuracy,
        orbit_consistency,
        orbit_logits,
        predictive_kl_invariance,
        saliency_invariance,
    )
    from invreg.groups import Rotations

    c4 = Rotations(4)
    orbit = orbit_logits(model, x, c4)
    whole = {
        "di": predictive_kl_invariance(orbit),
        "li": logit_invariance(orbit),
        "li_normalized": logit_invariance(orbit, normalized=True),
        "consistency": orbit_consistency(orbit),
        "orbit_accuracy": orbit_accuracy(orbit, target),
        "si": saliency_invariance(model, x, target, c4, steps=4),
        "geed_euclidean": geed(model, x, c4, "hidden.1", distance="euclidean", normalize=False),
    }
    # all data in one batch: the model's float32 outputs change with the batch size by about
    # (fan-ins 64 + 16 + 16)·eps relative; per-pair cosines over 64 pixels round by 64·eps
    eps = torch.finfo(torch.float32).eps
    batched = (64 + 16 + 16 + 64 + 36) * eps
    for name, value in whole.items():
        assert ranks[0][name] == pytest.approx(value.item(), rel=batched, abs=batched), name
