"""Wall time of ``invreg-experiment genuine-table1`` in-process against Ray on W workers.

``python benchmarks/bench_ray.py [--scale quick] [--workers 1 2] [--out DIR] [--skip-runs]``

Runs, one after another on this machine, each from an empty model cache and with one torch
thread per training (``OMP_NUM_THREADS=1``: the same arithmetic everywhere):

1. ``invreg-experiment genuine-table1 --scale S`` (in-process, one model at a time);
2. ``invreg-experiment genuine-table1 --scale S --jobs W`` for each ``W`` (a local Ray
   instance of ``W`` workers).

It prints the wall time of each, the ratio Ray(W) / in-process, whether every run's
``results_per_seed.csv`` and ``invariance_weights.csv`` are equal byte for byte, and the
model-times: each training's seconds (``train_seconds.txt`` beside each cached model of the
in-process run), the critical path of the dependency graph (the ν search's rounds, then the
chosen ν's seeds and IR-target) and the *predicted* wall time on W workers: the in-process
time outside training (data, evaluation) plus Ray's start-up, plus the makespan of a greedy
list schedule of the graph's trainings (longest first among the ready ones) on W workers.

``--full-model-times FILE`` (a full-scale ``results.csv`` of genuine-table1, with ``train_s``
and ``search_s``) adds the predictions at full scale for 2, 16 and 64 workers, from those
measured model-times and the full-scale graph (4 seeds; the ν search's rounds as
``invariance_weights.csv`` beside it records them).
"""

from __future__ import annotations

import argparse
import csv
import filecmp
import json
import os
import subprocess
import sys
import time
from pathlib import Path

RAY_START_SECONDS = 13.0  # measured: ray.init and the first worker's imports, 2-core machine


def run(command: list[str], log: Path) -> float:
    env = dict(os.environ, OMP_NUM_THREADS="1", WANDB_MODE="disabled",
               RAY_USAGE_STATS_ENABLED="0")
    start = time.perf_counter()
    with log.open("w") as handle:
        subprocess.run(command, check=True, stdout=handle, stderr=subprocess.STDOUT, env=env)
    return time.perf_counter() - start


def schedule(trainings: dict[str, tuple[float, tuple[str, ...]]], workers: int) -> float:
    """Makespan of a greedy list schedule: ``trainings`` maps a name to (seconds, the names it
    waits for); a free worker takes the longest ready training."""
    finish: dict[str, float] = {}
    free = [0.0] * workers
    left = dict(trainings)
    while left:
        ready = [(max([finish[d] for d in deps], default=0.0), -seconds, name)
                 for name, (seconds, deps) in left.items() if all(d in finish for d in deps)]
        free.sort()
        at = free[0]
        # among the trainings ready when the first worker frees up, the longest; else the first
        # to become ready
        now = [r for r in ready if r[0] <= at]
        start, _, name = min(now, key=lambda r: r[1]) if now else min(ready)
        begin = max(at, start)
        finish[name] = begin + left.pop(name)[0]
        free[0] = finish[name]
    return max(finish.values())


def critical_path(trainings: dict[str, tuple[float, tuple[str, ...]]]) -> float:
    done: dict[str, float] = {}

    def end(name):
        if name not in done:
            seconds, deps = trainings[name]
            done[name] = seconds + max((end(d) for d in deps), default=0.0)
        return done[name]

    return max(end(name) for name in trainings)


def table1_graph(groups: dict[str, dict], seeds: int) -> dict[str, tuple[float, tuple]]:
    """The graph of :func:`invreg.experiments.genuine.table1_chains`: ``groups`` maps a group
    to ``{"WT": s, "DA": s, "IR": s, "IR-target": s, "rounds": [[s, ...], ...]}``."""
    graph: dict[str, tuple[float, tuple]] = {}
    for group, times in groups.items():
        for seed in range(seeds):
            graph[f"{group}/WT/{seed}"] = (times["WT"], ())
            graph[f"{group}/DA/{seed}"] = (times["DA"], ())
        before: tuple = ()
        for index, round_ in enumerate(times["rounds"]):
            names = tuple(f"{group}/search{index}/{i}" for i in range(len(round_)))
            for name, seconds in zip(names, round_, strict=True):
                graph[name] = (seconds, before)
            before = before + names
        for seed in range(1, seeds):
            graph[f"{group}/IR/{seed}"] = (times["IR"], before)
        for seed in range(seeds):
            graph[f"{group}/IR-target/{seed}"] = (times["IR-target"], before)
    return graph


def quick_model_times(cache: Path) -> dict[str, dict]:
    """Each training's seconds of a quick genuine-table1 run, from its cache."""
    groups: dict[str, dict] = {}
    for folder in sorted(cache.glob("*/description.json")):
        description = json.loads(folder.read_text())
        seconds = float((folder.parent / "train_seconds.txt").read_text())
        config = description["module"]["init_args"]
        group = {"c4": "R4", "t3": "T3"}[config["group"]]
        weight = config.get("invariance_weight", 0.0)
        tied = "Tied" in json.dumps(config.get("backbone", ""))
        kind = ("IR-target" if "invariance_target" in config else "WT" if tied
                else "IR" if weight else "DA")
        groups.setdefault(group, {}).setdefault(kind, []).append(seconds)
    return {g: {"WT": t["WT"][0], "DA": t["DA"][0], "IR-target": t["IR-target"][0],
                "IR": t["IR"][0], "rounds": [t["IR"]]} for g, t in groups.items()}


def full_model_times(results: Path) -> dict[str, dict]:
    with results.open() as handle:
        rows = {(r["group"], r["model"]): r for r in csv.DictReader(handle)}
    with (results.parent / "invariance_weights.csv").open() as handle:
        tried = list(csv.DictReader(handle))
    from invreg.experiments.core import get_scale
    from invreg.experiments.genuine import search_rounds

    grid = get_scale("genuine-table1", "full").invariance_weights
    groups = {}
    for group in ("R4", "T3"):
        measured = {float(r["nu"]): float(r["val_SI"]) for r in tried if r["group"] == group}
        per_training = float(rows[group, "IR"]["search_s"]) / len(measured)
        rounds, sizes = search_rounds("coarse-to-fine", grid), []
        try:
            candidates = next(rounds)
            while True:
                sizes.append(len(candidates))
                # ν the sequential search never trained: its SI is unknown; the rule
                # continues from the ones it did (a ν above the first reaching one reaches)
                candidates = rounds.send({nu: measured.get(nu, 1.0) for nu in
                                          sorted(set(grid) | set(measured))})
        except StopIteration:
            pass
        groups[group] = {kind: float(rows[group, kind]["train_s"])
                         for kind in ("WT", "DA", "IR", "IR-target")}
        groups[group]["rounds"] = [[per_training] * size for size in sizes]
    return groups


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scale", default="quick")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--out", type=Path, default=Path("/tmp/invreg-bench-ray"))
    parser.add_argument("--skip-runs", action="store_true",
                        help="reuse the runs already in --out (the predictions only)")
    parser.add_argument("--full-model-times", type=Path,
                        default=Path("docs/results/genuine-table1-jobs2/results.csv"))
    args = parser.parse_args()
    script = [sys.executable, "-m", "invreg.experiments", "genuine-table1",
              "--scale", args.scale]
    runs = {"in-process": []} | {f"ray W={w}": ["--jobs", str(w)] for w in args.workers}
    walls = {}
    for label, extra in runs.items():
        folder = args.out / label.replace(" ", "_").replace("=", "")
        if not args.skip_runs:
            subprocess.run(["rm", "-rf", str(folder)], check=True)
            folder.mkdir(parents=True)
            walls[label] = run(script + ["--cache", str(folder / "models"),
                                         "--out", str(folder / "out"), *extra],
                               folder / "log.txt")
            (folder / "wall_s.txt").write_text(f"{walls[label]!r}\n")
        walls[label] = float((folder / "wall_s.txt").read_text())
        print(f"{label}: {walls[label]:.1f} s wall"
              + (f", {walls[label] / walls['in-process']:.2f}× in-process"
                 if label != "in-process" else ""))
    base = args.out / "in-process" / "out"
    for label in list(runs)[1:]:
        other = args.out / label.replace(" ", "_").replace("=", "") / "out"
        same = all(filecmp.cmp(base / name, other / name, shallow=False)
                   for name in ("results_per_seed.csv", "invariance_weights.csv"))
        print(f"{label}: results_per_seed.csv and invariance_weights.csv "
              f"{'equal byte for byte' if same else 'DIFFER'} to in-process")
    times = quick_model_times(args.out / "in-process" / "models")
    graph = table1_graph(times, 1)
    trained = sum(seconds for seconds, _ in graph.values())
    outside = walls["in-process"] - trained
    model_time = trained / len(graph)
    print(f"quick: {len(graph)} trainings, {trained:.1f} s of training (mean model-time "
          f"{model_time:.1f} s), {outside:.1f} s outside training; critical path "
          f"{critical_path(graph):.1f} s = {critical_path(graph) / model_time:.2f} model-times")
    for workers in sorted({1, 2, *args.workers}):
        predicted = outside + RAY_START_SECONDS + schedule(graph, workers)
        measured = walls.get(f"ray W={workers}")
        print(f"quick, W={workers}: predicted {predicted:.1f} s"
              + (f", measured {measured:.1f} s" if measured else ""))
    if args.full_model_times.is_file():
        full = full_model_times(args.full_model_times)
        graph = table1_graph(full, 4)
        trained = sum(seconds for seconds, _ in graph.values())
        model_time = trained / len(graph)
        path = critical_path(graph)
        print(f"full (model-times from {args.full_model_times}): {len(graph)} trainings, "
              f"{trained / 60:.1f} min of training, critical path {path / 60:.1f} min = "
              f"{path / model_time:.2f} model-times of {model_time:.0f} s")
        for workers in (1, 2, 16, 64):
            print(f"full, W={workers}: predicted {schedule(graph, workers) / 60:.1f} min of "
                  "training (plus evaluation)")


if __name__ == "__main__":
    main()
