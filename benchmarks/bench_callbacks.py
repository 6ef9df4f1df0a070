"""Measure what the callbacks of a config cost: ``python benchmarks/bench_callbacks.py``.

Trains the config (default ``configs/quickstart.yaml``) with its callbacks and with only the
callbacks that are not invreg's (``ModelCheckpoint`` stays), ``--repeats`` times each,
interleaved, after one warm-up run, with a CSV logger in a temporary directory. Reports medians
over the repeats of:

* **epoch** — the mean training-epoch time without the invreg callbacks (training, validation,
  checkpointing), and the invreg callbacks' own time spent *during* the epochs (their periodic
  evaluations, timed inside the callbacks) per epoch: the per-epoch overhead;
* **wall-clock check** — the mean epoch time (one epoch start to the next) with the callbacks;
  noisier, since it also carries the machine's jitter;
* **end of fit** — the callbacks' one-time work in ``on_train_end`` (last evaluation, drift
  curve, summary figures), and the whole ``trainer.fit`` with and without them.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import pytorch_lightning as pl

from invreg.callbacks.base import InvarianceCallback

DEFAULT_CONFIG = Path(__file__).resolve().parents[1] / "configs" / "quickstart.yaml"


class EpochTimer(pl.Callback):
    """Wall time between consecutive training-epoch starts."""

    def __init__(self) -> None:
        self.starts: list[float] = []

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self.starts.append(time.perf_counter())

    @property
    def epoch_seconds(self) -> list[float]:
        return [b - a for a, b in zip(self.starts, self.starts[1:], strict=False)]


def measure(config: Path, with_callbacks: bool, max_epochs: int | None, root: Path) -> dict:
    """One ``fit`` of ``config`` (CSV logger under ``root``), timed."""
    from invreg.cli import run_cli

    args = ["--config", str(config), "--trainer.default_root_dir", str(root),
            "--trainer.logger", "pytorch_lightning.loggers.CSVLogger",
            "--trainer.logger.save_dir", str(root)]
    if max_epochs is not None:
        args += ["--trainer.max_epochs", str(max_epochs)]
    cli = run_cli(args, run=False)
    ours = [c for c in cli.trainer.callbacks if isinstance(c, InvarianceCallback)]
    if not with_callbacks:
        cli.trainer.callbacks = [c for c in cli.trainer.callbacks if c not in ours]
        ours = []
    timer = EpochTimer()
    cli.trainer.callbacks.insert(0, timer)
    start = time.perf_counter()
    cli.trainer.fit(cli.model, cli.datamodule)
    fit_seconds = time.perf_counter() - start
    epochs = cli.trainer.current_epoch
    return {
        "epoch": statistics.fmean(timer.epoch_seconds),
        "fit": fit_seconds,
        "periodic_per_epoch": sum(c.seconds - c.end_seconds for c in ours) / epochs,
        "end": sum(c.end_seconds for c in ours),
        "per_callback": {
            type(c).__name__: ((c.seconds - c.end_seconds) / epochs, c.end_seconds) for c in ours
        },
    }


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, default=DEFAULT_CONFIG)
    parser.add_argument("--max-epochs", type=int, default=None)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    runs: dict[bool, list[dict]] = {True: [], False: []}
    with tempfile.TemporaryDirectory() as tmp:
        measure(args.config, True, 2, Path(tmp) / "warmup")  # imports, first-call set-up
        for i in range(args.repeats):
            for flag in (False, True) if i % 2 == 0 else (True, False):  # no order bias
                root = Path(tmp) / f"{flag}-{i}"
                runs[flag].append(measure(args.config, flag, args.max_epochs, root))

    def median(flag: bool, key: str) -> float:
        return statistics.median(r[key] for r in runs[flag])

    base = median(False, "epoch")
    periodic = median(True, "periodic_per_epoch")
    result = {
        "epoch_without": base,
        "periodic_per_epoch": periodic,
        "epoch_overhead": periodic / base,
        "epoch_with_wall_clock": median(True, "epoch"),
        "end_of_fit": median(True, "end"),
        "fit_without": median(False, "fit"),
        "fit_with": median(True, "fit"),
    }
    print(f"config: {args.config} ({args.repeats} repeats, medians)")
    print(f"epoch without invreg callbacks:        {1000 * base:7.1f} ms")
    print(f"invreg callbacks during epochs:        {1000 * periodic:7.1f} ms per epoch "
          f"({100 * result['epoch_overhead']:.1f} % per-epoch overhead)")
    for name in runs[True][0]["per_callback"]:
        each = statistics.median(r["per_callback"][name][0] for r in runs[True])
        end = statistics.median(r["per_callback"][name][1] for r in runs[True])
        print(f"  {name:<26} {1000 * each:7.1f} ms per epoch, {1000 * end:6.1f} ms at the end")
    wall = 1000 * result["epoch_with_wall_clock"]
    print(f"wall-clock epoch with the callbacks:   {wall:7.1f} ms")
    print(f"end of fit (one-time):                 {1000 * result['end_of_fit']:7.1f} ms")
    print(f"whole fit: {result['fit_without']:.2f} s without, {result['fit_with']:.2f} s with")
    return result


if __name__ == "__main__":
    main()
