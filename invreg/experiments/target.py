"""Invariance as a target: ν learned by dual ascent lands on the invariance error asked for.

``invreg-experiment target``: the quickstart run (``configs/quickstart.yaml``: scikit-learn's
8×8 digits, C4 rotations, an MLP, LI on logits) trained

1. with ``invariance_target=ε`` for each ε of :data:`TARGETS` (ν learned from ν₀ = the
   config's ``invariance_weight``, no grid), and
2. with each fixed ν of :data:`FIXED_WEIGHTS`, the grid one would otherwise search,

for every seed. Each model is the one at the end of training (no best-epoch selection: the
learned ν steers the final state) and is measured on full orbits of the validation split (LI,
the quantity held at ε) and of the test split (accuracy, LI, DI).

Two checks per ε (the ``ok_*`` columns):

* ``in_band``: the final validation LI lies in ``[0.5·ε, 1.25·ε]`` on every seed;
* ``acc_vs_fixed``: the learned model's test accuracy minus the accuracy a fixed ν reaches at
  the same validation LI, interpolated between the grid's models (mean over seeds of
  accuracy against log LI, linear between the two fixed ν whose LI bracket it); ≥ 0 passes.
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Sequence

import pytorch_lightning as pl

from invreg.evaluation import evaluate_invariance
from invreg.experiments.configs import config_path, from_config
from invreg.experiments.core import Results, Settings, Table
from invreg.modules.weights import DEFAULT_TARGET_LR

#: the invariance targets ε (validation LI asked for)
TARGETS = (0.05, 0.5)
#: the fixed ν whose models give accuracy as a function of LI
FIXED_WEIGHTS = (0.03, 0.1, 0.3, 1.0, 3.0, 10.0)
#: the band of the final validation LI, as multiples of ε
BAND = (0.5, 1.25)

LEGEND = {
    "target": "ε, the validation LI asked for (invariance_target)",
    "seeds": "number of seeds",
    "val_LI": "final validation LI, full C4 orbits (mean over seeds)",
    "val_LI_min": "smallest final validation LI over the seeds",
    "val_LI_max": "largest final validation LI over the seeds",
    "in_band": f"seeds whose validation LI lies in [{BAND[0]}·ε, {BAND[1]}·ε]",
    "nu_final": "learned ν at the end of training (mean over seeds)",
    "acc": "test accuracy (%) on upright images (mean over seeds)",
    "acc_std": "standard deviation of acc over seeds",
    "test_LI": "test LI, full orbits (mean over seeds)",
    "acc_fixed_at_LI": "test accuracy (%) of a fixed ν at the same validation LI, interpolated "
                       "over the fixed-ν grid",
    "acc_vs_fixed": "acc − acc_fixed_at_LI (percentage points; ≥ 0: no accuracy lost)",
    "seconds": "training time per model (mean over seeds)",
}
FIXED_LEGEND = {
    "nu": "fixed invariance weight ν",
    "seeds": "number of seeds",
    "val_LI": "final validation LI, full orbits (mean over seeds)",
    "acc": "test accuracy (%) on upright images (mean over seeds)",
    "test_LI": "test LI (mean over seeds)",
    "seconds": "training time per model (mean over seeds)",
}


def quickstart_model(seed: int, epochs: int, overrides: Sequence[str] = ()):
    """The quickstart config's ``(module, datamodule)`` for ``seed`` and ``epochs``, with
    command-line style ``overrides`` (e.g. ``["--model.init_args.invariance_weight", "0.5"]``);
    ``invreg fit --config configs/quickstart.yaml`` with the same arguments trains the same
    model."""
    return from_config(config_path("quickstart.yaml"), [
        "--seed_everything", str(seed), "--data.init_args.seed", str(seed),
        "--trainer.max_epochs", str(epochs), *overrides])


def train_final(module, data, settings: Settings, seed: int):
    """Fit ``module`` for ``settings.epochs`` and return it as it ends (no checkpoint, no
    logger) with the training time in seconds."""
    pl.seed_everything(seed, workers=True)
    trainer = pl.Trainer(
        max_epochs=settings.epochs, accelerator=settings.accelerator, devices=1, logger=False,
        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
        limit_train_batches=settings.scale.limit_batches,
        limit_val_batches=settings.scale.limit_batches, num_sanity_val_steps=0,
        deterministic=True,
    )
    start = time.perf_counter()
    trainer.fit(module, data)
    return module.cpu().eval(), time.perf_counter() - start


def measure(model, data) -> dict[str, float]:
    """Validation LI and test accuracy, LI and DI over full orbits of the model's group."""
    data.setup("test")
    val = evaluate_invariance(model, [tuple(data.val_dataset.tensors)], model.group)
    test = evaluate_invariance(model, [tuple(data.test_dataset.tensors)], model.group)
    return {"val_LI": val["LI"], "val_acc": 100 * val["accuracy"], "acc": 100 * test["accuracy"],
            "test_LI": test["LI"], "test_DI": test["DI"]}


def interpolate_accuracy(curve: Sequence[tuple[float, float]], li: float) -> float:
    """Accuracy at invariance error ``li`` on a curve of ``(LI, accuracy)`` points: linear in
    ``log LI`` between the two points that bracket ``li``; ``nan`` outside the curve.

    >>> interpolate_accuracy([(0.01, 90.0), (1.0, 98.0)], 0.1)
    94.0
    >>> interpolate_accuracy([(0.01, 90.0), (1.0, 98.0)], 5.0)
    nan
    """
    points = sorted((math.log(x), acc) for x, acc in curve if x > 0)
    target = math.log(li) if li > 0 else -math.inf
    for (x0, a0), (x1, a1) in zip(points, points[1:], strict=False):
        if x0 <= target <= x1:
            return a0 if x1 == x0 else a0 + (a1 - a0) * (target - x0) / (x1 - x0)
    return math.nan


def target_experiment(settings: Settings) -> Results:
    targets = settings.extra.get("targets", TARGETS)
    weights = settings.extra.get("fixed_weights", _fixed_weights(settings))
    learned, fixed = [], []
    for seed in range(settings.seeds):
        for target in targets:
            module, data = quickstart_model(seed, settings.epochs, [
                "--model.init_args.invariance_weight", "DualAscentWeight",
                "--model.init_args.invariance_weight.target", repr(float(target))])
            model, seconds = train_final(module, data, settings, seed)
            row = {"target": target, "seed": seed, "nu_final": model.invariance_weight,
                   **measure(model, data), "seconds": seconds}
            learned.append(row)
            settings.progress(f"ε = {target:g}, seed {seed}: validation LI {row['val_LI']:.4g}, "
                              f"ν {row['nu_final']:.3g}, accuracy {row['acc']:.1f} %")
        for weight in weights:
            module, data = quickstart_model(seed, settings.epochs, [
                "--model.init_args.invariance_weight", repr(float(weight))])
            model, seconds = train_final(module, data, settings, seed)
            row = {"nu": weight, "seed": seed, **measure(model, data), "seconds": seconds}
            fixed.append(row)
            settings.progress(f"fixed ν = {weight:g}, seed {seed}: validation LI "
                              f"{row['val_LI']:.4g}, accuracy {row['acc']:.1f} %")
    fixed_rows = [_means({"nu": w}, [r for r in fixed if r["nu"] == w],
                         ("val_LI", "acc", "test_LI", "seconds")) for w in weights]
    curve = [(r["val_LI"], r["acc"]) for r in fixed_rows]
    rows = []
    for target in targets:
        runs = [r for r in learned if r["target"] == target]
        lis = [r["val_LI"] for r in runs]
        row = _means({"target": target}, runs, ("val_LI",))
        row.update(val_LI_min=min(lis), val_LI_max=max(lis),
                   in_band=f"{sum(BAND[0] * target <= v <= BAND[1] * target for v in lis)}"
                           f"/{len(lis)}")
        row.update(_means({}, runs, ("nu_final", "acc", "test_LI", "seconds")))
        row["seeds"] = len(runs)
        row["acc_std"] = statistics.stdev(r["acc"] for r in runs) if len(runs) > 1 else 0.0
        row["acc_fixed_at_LI"] = interpolate_accuracy(curve, row["val_LI"])
        row["acc_vs_fixed"] = row["acc"] - row["acc_fixed_at_LI"]
        rows.append(row)
    notes = [
        "Each model is the final one (no best-epoch selection). Learned ν: multiplicative dual "
        "ascent (the module's default: ν ← ν·exp(η·clip(log(LI/ε), ±3)), η = "
        f"{DEFAULT_TARGET_LR['multiplicative']:g}), from the config's ν₀, one update per "
        "training batch from the batch's LI; no grid.",
    ]
    return Results(rows, notes=notes, per_seed=learned + fixed, legend=LEGEND, tables={
        "fixed_weights": Table("Fixed ν (the grid a target replaces)", fixed_rows,
                               FIXED_LEGEND)})


def _means(head: dict, runs: Sequence[dict], keys: Sequence[str]) -> dict:
    return {**head, "seeds": len(runs),
            **{k: statistics.fmean(r[k] for r in runs) for k in keys}}


def _fixed_weights(settings: Settings) -> tuple[float, ...]:
    """:data:`FIXED_WEIGHTS`; at smoke scale two of them (enough to interpolate)."""
    return FIXED_WEIGHTS[1::3] if settings.scale.name == "smoke" else FIXED_WEIGHTS


def grid_size(settings: Settings) -> int:
    return settings.seeds * (len(settings.extra.get("targets", TARGETS))
                             + len(settings.extra.get("fixed_weights", _fixed_weights(settings))))
