"""HyperInvariances evidence: the learned rotation strength moves the right way.

For each seed ``s``, through the ``invreg`` CLI (in-process) and the configs in
``configs/hyper/``:

1. **upstream** — ``configs/hyper/upstream.yaml`` (:class:`~invreg.modules.HyperUpstreamModule`):
   pre-train the HyperCNN on digits with per-sample rotation strengths (data split and
   ``seed_everything`` both ``s``);
2. **downstream**, on two tasks — ``downstream_rotated.yaml`` (digits at random rotations:
   rewards rotation invariance) and ``downstream_orientation.yaml`` (which quarter turn was
   applied: hurt by it) — four models at the same budget (epochs, batches):

   * ``learned``: frozen hyper-network, descriptor (from 0.5) and linear head learned
     (:class:`~invreg.modules.HyperDownstreamModule`);
   * ``fixed d=0`` and ``fixed d=1``: frozen hyper-network and descriptor, head learned;
   * ``scratch``: a :class:`~invreg.models.SmallCNN` with the same channels, every weight
     trained (``InvarianceModule`` with ``invariance_weight=0``); on *rotated* with random
     rotations in [-180°, 180°] as data augmentation (``so2``: the invariance prior the
     upstream family learned), on *orientation* without (rotating would change the label).

Accuracy is the fraction of test samples classified correctly (micro average) for every model.

Every model is scored once, on the test split, after its last epoch (no model selection).
Prints a Markdown table (mean ± std over seeds) and writes ``results.json`` to ``--out``.

As a reproduction like the others (``results.md``, ``results.csv``, ``results_per_seed.csv``
in ``results/hyper-evidence``; :func:`evidence`)::

    invreg-experiment hyper-evidence [--quick | --smoke] [--seeds N] [--epochs N]

or on its own, with every knob::

    python -m invreg.experiments.hyper [--seeds 0 1 2] [--upstream-epochs 40]
        [--downstream-epochs 20] [--out runs/hyper-evidence] [--accelerator cpu] [--wandb]
        [--upstream-set KEY VALUE ...] [--reuse-upstream]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import torch

from invreg.cli import run_cli as cli_main
from invreg.experiments.configs import CONFIGS as ALL_CONFIGS
from invreg.experiments.core import Results, mean_std
from invreg.modules import HyperDownstreamModule

CONFIGS = ALL_CONFIGS / "hyper"
TASKS = {"rotated": "downstream_rotated.yaml", "orientation": "downstream_orientation.yaml"}
VARIANTS = {
    "learned": [],
    "fixed d=0": ["--model.init_args.learn_descriptor", "false",
                  "--model.init_args.descriptor_init", "0"],
    "fixed d=1": ["--model.init_args.learn_descriptor", "false",
                  "--model.init_args.descriptor_init", "1"],
    "scratch": None,  # built from the upstream backbone's settings, see scratch_model()
}
#: data augmentation of the scratch CNN per task: random rotations where they keep the label
SCRATCH_AUGMENTATION = {"rotated": "so2"}


def scratch_model(channels: list[int], input_shape: list[int], num_classes: int) -> str:
    """``--model`` value for the from-scratch baseline: an ordinary CNN, all weights trained."""
    return json.dumps({
        "class_path": "invreg.modules.InvarianceModule",
        "init_args": {
            "backbone": {"class_path": "invreg.models.SmallCNN", "init_args": {
                "input_shape": input_shape, "num_classes": num_classes, "channels": channels}},
            "group": "c4", "invariance_weight": 0.0, "augment": False, "lr": 0.003,
        },
    })


def common_args(seed: int, root: Path, accelerator: str, wandb: bool, name: str) -> list[str]:
    args = ["--seed_everything", str(seed), "--data.init_args.seed", str(seed),
            "--trainer.default_root_dir", str(root), "--trainer.accelerator", accelerator,
            "--trainer.enable_checkpointing", "false", "--trainer.callbacks", "[]"]
    if wandb:
        args += ["--trainer.logger.init_args.save_dir", str(root),
                 "--trainer.logger.init_args.name", name]
    else:
        args += ["--trainer.logger", "false"]
    return args


def downstream_args(task: str, variant: str, checkpoint: Path, backbone: dict, epochs: int,
                    common: list[str]) -> list[str]:
    """The ``invreg fit`` arguments of one downstream model (``VARIANTS``) on ``task``."""
    args = ["fit", "--config", str(CONFIGS / TASKS[task]), "--trainer.max_epochs", str(epochs)]
    extra = VARIANTS[variant]
    if extra is None:  # scratch: the whole model replaced, right after the config
        num_classes = 4 if task == "orientation" else backbone["num_classes"]
        args += ["--model", scratch_model(backbone["channels"], backbone["input_shape"],
                                          num_classes), *common]
        if task in SCRATCH_AUGMENTATION:
            args += ["--data.init_args.augment_group", SCRATCH_AUGMENTATION[task]]
        return args
    return args + ["--model.init_args.upstream_checkpoint", str(checkpoint), *common, *extra]


def run_seed(seed: int, out: Path, upstream_epochs: int, downstream_epochs: int,
             accelerator: str, wandb: bool, upstream_overrides: list[str] = (),
             reuse_upstream: bool = False, trainer_overrides: Sequence[str] = (),
             progress: Callable[[str], None] | None = None) -> list[dict]:
    """Upstream pre-training and the downstream models of ``seed``: one row each.

    ``trainer_overrides`` go to every run (e.g. ``--trainer.limit_train_batches 2``);
    ``progress`` receives a line after each model (default: the row as JSON on stdout).
    """
    if progress is None:
        def progress(line: str) -> None:
            print(line, flush=True)
    root = out / f"seed{seed}"
    checkpoint = root / "upstream.ckpt"
    start = time.time()
    if reuse_upstream and checkpoint.is_file():
        # the upstream run is seeded and deterministic: its checkpoint stands for a rerun
        saved = torch.load(checkpoint, map_location="cpu", weights_only=True)
        backbone = saved["hyper_parameters"]["backbone_config"]
        val_acc = json.loads((root / "upstream.json").read_text())["val_acc"]
    else:
        upstream = cli_main(["fit", "--config", str(CONFIGS / "upstream.yaml"),
                             "--trainer.max_epochs", str(upstream_epochs),
                             *common_args(seed, root / "upstream", accelerator, wandb,
                                          f"upstream-s{seed}"), *trainer_overrides,
                             *upstream_overrides])
        val_acc = float(upstream.trainer.callback_metrics["val/acc"])
        upstream.trainer.save_checkpoint(checkpoint)
        (root / "upstream.json").write_text(json.dumps(dict(val_acc=val_acc)))
        backbone = upstream.model.backbone.config
    rows = [dict(seed=seed, task="upstream", variant="upstream", val_acc=val_acc,
                 seconds=round(time.time() - start, 1))]
    progress(json.dumps(rows[0]))
    for task in TASKS:
        for variant in VARIANTS:
            start = time.time()
            name = f"{task}-{variant.replace(' ', '').replace('=', '')}-s{seed}"
            args = downstream_args(task, variant, checkpoint, backbone, downstream_epochs,
                                   common_args(seed, root / name, accelerator, wandb, name))
            cli = cli_main([*args, *trainer_overrides])
            test = cli.trainer.test(cli.model, datamodule=cli.datamodule, verbose=False)[0]
            row = dict(seed=seed, task=task, variant=variant, test_acc=test["test/acc"],
                       seconds=round(time.time() - start, 1))
            if isinstance(cli.model, HyperDownstreamModule):
                model = cli.model
                row["descriptor"] = model.backbone.descriptor.to_dict(model.descriptor)
            rows.append(row)
            progress(json.dumps(row))
    return rows


def summarise(rows: list[dict]) -> str:
    """Markdown table: test accuracy (mean ± std over seeds) and the final learned ``d``."""
    def stats(values):
        mean = statistics.mean(values)
        std = statistics.stdev(values) if len(values) > 1 else 0.0
        return f"{100 * mean:.1f} ± {100 * std:.1f}"

    lines = ["| task | model | test acc % | final rotation strength d |", "|---|---|---|---|"]
    for task in TASKS:
        for variant in VARIANTS:
            chosen = [r for r in rows if r["task"] == task and r["variant"] == variant]
            if not chosen:
                continue
            ds = [r["descriptor"]["rotation"] for r in chosen if "descriptor" in r]
            d = ", ".join(f"{v:.2f}" for v in ds) if variant == "learned" else (
                f"{ds[0]:g}" if ds else "—")
            lines.append(f"| {task} | {variant} | {stats([r['test_acc'] for r in chosen])} | {d} |")
    upstream = [r["val_acc"] for r in rows if r["task"] == "upstream"]
    if upstream:
        lines.append(f"\nupstream val acc (sampled descriptors): {stats(upstream)} %")
    return "\n".join(lines)


EVIDENCE_LEGEND = {
    "task": "upstream: pre-training (validation accuracy over sampled descriptors); rotated: "
            "digits at random rotations; orientation: which quarter turn was applied",
    "variant": "learned: descriptor and head fitted; fixed d=0 / d=1: head alone; scratch: a "
               "CNN trained from scratch",
    "seeds": "number of seeds averaged",
    "acc": "test accuracy (%) after the last epoch (upstream: validation accuracy)",
    "d_rotation": "the rotation strength d of the descriptor at the end (learned: fitted; "
                  "fixed: as given; nan for scratch and upstream)",
}


def evidence(settings) -> Results:
    """``invreg-experiment hyper-evidence``: :func:`run_seed` for seeds ``0 … seeds−1`` with
    ``settings.epochs`` downstream epochs and twice as many upstream (the configs' 20 and 40);
    the table is the mean ± std over seeds of every model's accuracy and final ``d``."""
    if not CONFIGS.is_dir():
        raise FileNotFoundError(f"hyper-evidence reads {CONFIGS}: it needs a source checkout")
    upstream_epochs = settings.extra.get("upstream_epochs", 2 * settings.epochs)
    limit = settings.scale.limit_batches
    overrides = [] if limit is None else [
        item for stage in ("train", "val", "test")
        for item in (f"--trainer.limit_{stage}_batches", str(limit))]
    per_seed = []
    for seed in range(settings.seeds):
        for row in run_seed(seed, settings.out / "runs", upstream_epochs, settings.epochs,
                            "cpu" if settings.accelerator == "auto" else settings.accelerator,
                            False, trainer_overrides=overrides, progress=settings.progress):
            accuracy = row["test_acc"] if "test_acc" in row else row["val_acc"]
            per_seed.append({"task": row["task"], "variant": row["variant"], "seed": seed,
                             "acc": 100 * accuracy,
                             "d_rotation": row.get("descriptor", {}).get("rotation"),
                             "seconds": row["seconds"]})
    summary = mean_std(per_seed, ["acc", "d_rotation"], ["task", "variant"])
    return Results(summary, per_seed=per_seed, legend=EVIDENCE_LEGEND,
                   notes=["Every model is scored once, after its last epoch (no model "
                          "selection); configs: " + ", ".join(
                              f"configs/hyper/{name}" for name in
                              ("upstream.yaml", *TASKS.values()))])


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--upstream-epochs", type=int, default=40)
    parser.add_argument("--downstream-epochs", type=int, default=20)
    parser.add_argument("--out", type=Path, default=Path("runs/hyper-evidence"))
    parser.add_argument("--accelerator", default="cpu")
    parser.add_argument("--wandb", action="store_true", help="log to W&B (offline) too")
    parser.add_argument("--upstream-set", nargs=2, action="append", default=[],
                        metavar=("KEY", "VALUE"),
                        help="override the upstream config, e.g. "
                             "--upstream-set model.init_args.invariance_weight 2")
    parser.add_argument("--reuse-upstream", action="store_true",
                        help="skip the upstream run of a seed whose checkpoint is in --out")
    args = parser.parse_args(argv)
    overrides = [item for key, value in args.upstream_set for item in (f"--{key}", value)]
    os.environ.setdefault("WANDB_MODE", "offline")
    args.out.mkdir(parents=True, exist_ok=True)
    rows = []
    for seed in args.seeds:
        rows += run_seed(seed, args.out, args.upstream_epochs, args.downstream_epochs,
                         args.accelerator, args.wandb, overrides, args.reuse_upstream)
    name = "results.json" if len(args.seeds) > 1 else f"results-seed{args.seeds[0]}.json"
    (args.out / name).write_text(json.dumps(rows, indent=1))
    print(summarise(rows))
    return rows


if __name__ == "__main__":
    main()
