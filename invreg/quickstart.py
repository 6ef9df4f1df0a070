"""``make quickstart``: train on bundled digits with and without the invariance term, compare.

Trains three models with ``configs/quickstart.yaml`` (or ``--config``) through the ``invreg``
CLI (in-process): the config's backbone with plain data augmentation (DA,
``invariance_weight=0``), the same backbone with the config's invariance error (IR), and the
weight-tied, exactly invariant MLP (WT), tied over the config's group. Each is restored to its
best validation epoch and evaluated on the held-out test split over the group's orbits.

A model that does not apply to the config is skipped with a printed reason: WT needs a finite
group; IR needs ``invariance_weight > 0``.

    python -m invreg.quickstart [--max-epochs N] [--config PATH] [--out DIR]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
import yaml
from pytorch_lightning.loggers import WandbLogger

from invreg.cli import run_cli as cli_main
from invreg.evaluation import evaluate_invariance
from invreg.runs import run_directory

DEFAULT_CONFIG = Path(__file__).resolve().parent.parent / "configs" / "quickstart.yaml"

#: orbit elements (identity included) evaluated for a continuous group without ``orbit_size``
CONTINUOUS_ORBIT_SIZE = 8

RUNS = {
    "DA": ("data augmentation", ["--model.init_args.invariance_weight", "0"]),
    "IR": ("invariance-regularised", []),
    # the backbone gets the run's group (model.init_args.group) from the CLI; input_shape is
    # added from the data module by plan_runs, since the config's backbone may not take one
    "WT": ("weight-tied (exact)", ["--model.init_args.invariance_weight", "0"]),
}


def eval_orbit_size(model) -> int | None:
    """Orbit elements evaluated per sample: all of a finite group; the module's ``orbit_size``
    (else :data:`CONTINUOUS_ORBIT_SIZE`) for a continuous one."""
    if model.group.is_finite:
        return None
    return model.orbit_size or CONTINUOUS_ORBIT_SIZE


def plan_runs(
    config: Path, models: tuple[str, ...]
) -> tuple[dict[str, list[str]], str, int]:
    """The CLI arguments of each model that applies to ``config``, the group's description and
    the data's number of classes.

    Builds the config once without training to read its group, its data module's
    ``input_shape`` and its ``invariance_weight``; prints why a model is skipped.
    """
    unknown = [name for name in models if name not in RUNS]
    if unknown:
        raise ValueError(f"models: expected names among {list(RUNS)}, got {unknown}")
    cli = cli_main(["--config", str(config), "--trainer.logger", "false",
                    "--trainer.callbacks", "[]"], run=False)
    group, input_shape = cli.model.group, tuple(cli.datamodule.input_shape)
    skipped = {}
    if "IR" in models and not cli.model.invariance_weight > 0:
        skipped["IR"] = "the config's invariance_weight is 0; set it > 0 to regularise"
    if "WT" in models and not group.is_finite:
        skipped["WT"] = f"{group!r} is continuous; weight tying needs a finite group (c4, t3...)"
    runs = {}
    for name in models:
        if name in skipped:
            print(f"{name} ({RUNS[name][0]}): skipped: {skipped[name]}")
            continue
        runs[name] = list(RUNS[name][1])
        if name == "WT":
            runs[name] = [
                "--model.init_args.backbone.class_path", "invreg.models.TiedMLP",
                "--model.init_args.backbone.init_args.input_shape", json.dumps(list(input_shape)),
                *runs[name],
            ]
    if group.is_finite:
        described = f"full orbits of {group!r}"
    else:
        described = f"{eval_orbit_size(cli.model)} sampled elements of {group!r}"
    return runs, described, int(cli.datamodule.num_classes)


def logger_arguments(config: Path, name: str, out: Path) -> list[str]:
    """CLI arguments that put model ``name``'s run in ``out/name/``, whatever logger the config
    names: a CSV logger when it names none, the config's own logger placed there otherwise
    (``out/name/version_N`` for CSV and TensorBoard, ``out/name/<project>/<run id>`` for W&B);
    ``logger: false`` and lists of loggers are kept as the config has them."""
    values = yaml.safe_load(Path(config).read_text()) or {}
    trainer = values.get("trainer") if isinstance(values, dict) else None
    logger = trainer.get("logger", True) if isinstance(trainer, dict) else True
    if logger is False or isinstance(logger, list):
        return []
    if not isinstance(logger, dict):  # absent, null or true: Lightning's default, made explicit
        return ["--trainer.logger.class_path", "pytorch_lightning.loggers.CSVLogger",
                "--trainer.logger.init_args.save_dir", str(out),
                "--trainer.logger.init_args.name", name]
    if "wandb" in str(logger.get("class_path", "")).lower():  # W&B: name is the run's label
        return ["--trainer.logger.init_args.save_dir", str(out / name),
                "--trainer.logger.init_args.name", name]
    return ["--trainer.logger.init_args.save_dir", str(out),
            "--trainer.logger.init_args.name", name]


def train_and_evaluate(
    name: str, extra: list[str], config: Path, out: Path, max_epochs: int | None
) -> tuple[dict[str, float], Path]:
    """Train one model of the comparison, evaluate it on the test split; the test metrics and
    the run's folder."""
    args = ["fit", "--config", str(config), "--trainer.default_root_dir", str(out / name)]
    args += logger_arguments(config, name, out)
    if max_epochs is not None:
        args += ["--trainer.max_epochs", str(max_epochs)]
    cli = cli_main(args + extra)
    best = cli.trainer.checkpoint_callback.best_model_path
    if best:
        state = torch.load(best, map_location="cpu", weights_only=False)["state_dict"]
        cli.model.load_state_dict(state)
    cli.datamodule.setup("test")
    group = cli.model.group
    result = evaluate_invariance(
        cli.model, cli.datamodule.test_dataloader(), group,
        num_samples=eval_orbit_size(cli.model),
    )
    logger = cli.trainer.logger
    if logger is not None:
        logger.log_metrics({f"test_orbit/{k}": v for k, v in result.items()})
        logger.finalize("success")
    if isinstance(logger, WandbLogger):
        # one W&B run per model: close this one before the next model's logger starts
        import wandb

        wandb.finish()
    return result, run_directory(cli.trainer)


def _fixed(value: float, digits: int) -> str:
    """``value`` to ``digits`` decimals, without the ``-0.0000`` of a rounding-level negative
    (a KL or a squared distance summed in floating point can land a few ulps below 0)."""
    text = f"{value:.{digits}f}"
    return text[1:] if text.startswith("-") and float(text) == 0 else text


def format_table(results: dict[str, dict[str, float]]) -> str:
    header = f"{'model':<28} {'acc %':>7} {'DI':>9} {'LI':>9} {'orbit consistency':>18}"
    lines = [header, "-" * len(header)]
    for name, r in results.items():
        label = f"{name} ({RUNS[name][0]})"
        lines.append(
            f"{label:<28} {100 * r['accuracy']:>7.1f} {_fixed(r['DI'], 4):>9} "
            f"{_fixed(r['LI'], 4):>9} {r['consistency']:>18.3f}"
        )
    return "\n".join(lines)


def chance_warnings(results: dict[str, dict[str, float]], num_classes: int) -> list[str]:
    """A line for each model whose test accuracy is within 2 points of chance (1/classes):
    its invariance numbers describe a model that learned nothing (a constant is invariant)."""
    chance = 1.0 / num_classes
    return [
        f"warning: {name} is at chance level ({100 * r['accuracy']:.1f} % with {num_classes} "
        f"classes): it learned nothing, so its DI/LI/consistency say nothing; train longer "
        f"(trainer.max_epochs), raise the learning rate (model.init_args.lr) or widen the model"
        for name, r in results.items() if r["accuracy"] <= chance + 0.02
    ]


#: the figure folders a run's callbacks may write, by callback
FIGURE_FOLDERS = ("saliency", "spectral", "drift", "orbit")


def describe_folder(folder: Path) -> str:
    """What a run folder holds, listing only what was written."""
    parts = [name for name in ("config.yaml", "summary.json", "metrics.csv")
             if (folder / name).is_file()]
    parts += [f"{name}/" for name in ("checkpoints", *FIGURE_FOLDERS) if (folder / name).is_dir()]
    return ", ".join(parts) if parts else "nothing written"


def run(config: Path = DEFAULT_CONFIG, out: Path = Path("runs/quickstart"),
        max_epochs: int | None = None, models: tuple[str, ...] = ("DA", "IR", "WT")) -> dict:
    start = time.perf_counter()
    runs, orbits, num_classes = plan_runs(config, models)
    results, folders = {}, {}
    for name, extra in runs.items():
        results[name], folders[name] = train_and_evaluate(name, extra, config, out, max_epochs)
    elapsed = time.perf_counter() - start
    print(f"\nTest split, {orbits} (DI, LI: means over samples and non-identity elements)")
    print(format_table(results))
    for line in chance_warnings(results, num_classes):
        print(line)
    print(f"\ntrained and evaluated in {elapsed:.1f} s; runs in {out}/")
    print("run folders:")
    for name in results:
        print(f"  {name}: {folders[name]} ({describe_folder(folders[name])})")
    return results


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, default=DEFAULT_CONFIG)
    parser.add_argument("--out", type=Path, default=Path("runs/quickstart"))
    parser.add_argument("--max-epochs", type=int, default=None)
    args = parser.parse_args(argv)
    if not args.config.is_file():
        parser.error(f"--config: no such file {str(args.config)!r}")
    if args.max_epochs is not None and args.max_epochs < 1:
        parser.error(f"--max-epochs: expected a whole number >= 1, got {args.max_epochs}")
    if args.out.exists() and not args.out.is_dir():
        parser.error(f"--out: {str(args.out)!r} is a file; name a folder")
    run(args.config, args.out, args.max_epochs)


if __name__ == "__main__":
    main()
