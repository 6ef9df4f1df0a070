"""Two-process CPU DDP run of every metric (gloo), used by test_metrics_ddp.py.

``python ddp_metrics_worker.py OUT_DIR`` spawns ``WORLD_SIZE`` processes; rank ``r`` updates
every metric with its own slice of the data (two uneven batches), then ``compute()`` reduces
the states across processes and each rank writes its values to ``OUT_DIR/rank<r>.json``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

WORLD_SIZE = 2
NUM_SAMPLES = 12


def make_problem():
    torch.manual_seed(0)
    from invreg.models import MLP

    x = torch.randn(NUM_SAMPLES, 1, 8, 8)
    target = torch.randint(0, 4, (NUM_SAMPLES,))
    model = MLP((1, 8, 8), 4, hidden_widths=(16, 16)).eval()
    return x, target, model


def make_metrics() -> dict:
    from invreg.metrics import (
        LayerInvariance,
        LogitInvariance,
        OrbitAccuracy,
        OrbitConsistency,
        PredictiveDistributionInvariance,
        SaliencyInvarianceSimilarity,
    )

    return {
        "di": PredictiveDistributionInvariance(),
        "li": LogitInvariance(),
        "li_normalized": LogitInvariance(normalized=True),
        "consistency": OrbitConsistency(),
        "orbit_accuracy": OrbitAccuracy(),
        "si": SaliencyInvarianceSimilarity("c4", steps=4),
        "si_per_sample": SaliencyInvarianceSimilarity("c4", steps=4, per_sample=True),
        "geed": LayerInvariance("c4", ["hidden.0", "head"]),
        "geed_euclidean": LayerInvariance("c4", "hidden.1", distance="euclidean", normalize=False),
    }


def rank_batches(rank: int) -> list[slice]:
    """Rank r holds samples [r·6, r·6 + 6), seen as two batches of 4 and 2."""
    start = rank * NUM_SAMPLES // WORLD_SIZE
    return [slice(start, start + 4), slice(start + 4, start + NUM_SAMPLES // WORLD_SIZE)]


def update_all(metrics: dict, x, target, model, batches: list[slice]) -> None:
    from invreg.functional import orbit_logits
    from invreg.groups import Rotations

    for batch in batches:
        xb, yb = x[batch], target[batch]
        orbit = orbit_logits(model, xb, Rotations(4))
        kwargs = dict(orbit=orbit, target=yb, model=model, x=xb)
        for metric in metrics.values():
            metric.update(**metric._filter_kwargs(**kwargs))


def as_floats(metrics: dict) -> dict:
    out = {}
    for name, metric in metrics.items():
        value = metric.compute()
        if isinstance(value, dict):
            out.update({f"{name}/{k}": v.item() for k, v in value.items()})
        else:
            out[name] = value.item()
        if getattr(metric, "per_sample", False):  # a "cat" state: every process's samples
            out[f"{name}/values"] = metric.per_sample_values().tolist()
    return out


def _run(rank: int, out_dir: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group(
        "gloo", init_method=f"file://{out_dir}/rendezvous", rank=rank, world_size=WORLD_SIZE
    )
    try:
        x, target, model = make_problem()
        metrics = make_metrics()
        update_all(metrics, x, target, model, rank_batches(rank))
        values = as_floats(metrics)
        Path(out_dir, f"rank{rank}.json").write_text(json.dumps(values))
        # both ranks leave together: tearing gloo down while the peer still talks aborts it
        dist.barrier()
    finally:
        dist.destroy_process_group()


if __name__ == "__main__":
    mp.spawn(_run, args=(sys.argv[1],), nprocs=WORLD_SIZE, join=True)
