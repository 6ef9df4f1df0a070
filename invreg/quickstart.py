"""``make quickstart``: train on bundled digits with and without the invariance term, compare.

Trains three models with ``configs/quickstart.yaml`` through the ``invreg`` CLI (in-process):
a plain data-augmentation MLP (DA, ``invariance_weight=0``), the same MLP with the logit
invariance error (IR), and the weight-tied, exactly invariant MLP (WT). Each is restored to its
best validation epoch and evaluated on the held-out test split over full C4 orbits.

    python -m invreg.quickstart [--max-epochs N] [--config PATH] [--out DIR]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
from pytorch_lightning.loggers import WandbLogger

from invreg.cli import run_cli as cli_main
from invreg.evaluation import evaluate_invariance

DEFAULT_CONFIG = Path(__file__).resolve().parent.parent / "configs" / "quickstart.yaml"

RUNS = {
    "DA": ("data augmentation", ["--model.init_args.invariance_weight", "0"]),
    "IR": ("invariance-regularised", []),
    "WT": (
        "weight-tied (exact)",
        [
            "--model.init_args.backbone.class_path", "invreg.models.TiedMLP",
            "--model.init_args.backbone.init_args.group", "c4",
            "--model.init_args.invariance_weight", "0",
        ],
    ),
}


def train_and_evaluate(
    name: str, extra: list[str], config: Path, out: Path, max_epochs: int | None
):
    args = ["fit", "--config", str(config), "--trainer.default_root_dir", str(out / name)]
    args += ["--trainer.logger.init_args.save_dir", str(out / name)]
    args += ["--trainer.logger.init_args.name", name]
    if max_epochs is not None:
        args += ["--trainer.max_epochs", str(max_epochs)]
    cli = cli_main(args + extra)
    best = cli.trainer.checkpoint_callback.best_model_path
    if best:
        state = torch.load(best, map_location="cpu", weights_only=False)["state_dict"]
        cli.model.load_state_dict(state)
    cli.datamodule.setup("test")
    result = evaluate_invariance(cli.model, cli.datamodule.test_dataloader(), cli.model.group)
    logger = cli.trainer.logger
    if logger is not None:
        logger.log_metrics({f"test_orbit/{k}": v for k, v in result.items()})
        logger.finalize("success")
    if isinstance(logger, WandbLogger):
        # one W&B run per model: close this one before the next model's logger starts
        import wandb

        wandb.finish()
    return result


def format_table(results: dict[str, dict[str, float]]) -> str:
    header = f"{'model':<28} {'acc %':>7} {'DI':>9} {'LI':>9} {'orbit consistency':>18}"
    lines = [header, "-" * len(header)]
    for name, r in results.items():
        label = f"{name} ({RUNS[name][0]})"
        lines.append(
            f"{label:<28} {100 * r['acc']:>7.1f} {r['DI']:>9.4f} {r['LI']:>9.4f} "
            f"{r['consistency']:>18.3f}"
        )
    return "\n".join(lines)


def run(config: Path = DEFAULT_CONFIG, out: Path = Path("runs/quickstart"),
        max_epochs: int | None = None, models: tuple[str, ...] = ("DA", "IR", "WT")) -> dict:
    start = time.perf_counter()
    results = {
        name: train_and_evaluate(name, RUNS[name][1], config, out, max_epochs) for name in models
    }
    elapsed = time.perf_counter() - start
    print("\nTest split, full C4 orbits (DI, LI: means over samples and non-identity rotations)")
    print(format_table(results))
    print(f"\ntrained and evaluated in {elapsed:.1f} s; runs in {out}/")
    return results


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, default=DEFAULT_CONFIG)
    parser.add_argument("--out", type=Path, default=Path("runs/quickstart"))
    parser.add_argument("--max-epochs", type=int, default=None)
    args = parser.parse_args(argv)
    run(args.config, args.out, args.max_epochs)


if __name__ == "__main__":
    main()
