"""Models and data modules of the experiments, built from the YAML configs users run.

An experiment does not restate in Python what ``configs/`` says: :func:`from_config` parses
``configs/<path>`` with the ``invreg`` CLI's own parser (the same links: the data module's
``num_classes`` and the run's group), applies command-line style overrides (seed, epochs,
invariance weight, data sizes, ...) and returns the instantiated module and data module
without running anything. ``invreg fit --config configs/<path> <overrides>`` trains the same
model from the same initial weights.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import pytorch_lightning as pl

#: the repository's ``configs/`` folder (a source checkout; an installed wheel has none)
CONFIGS = Path(__file__).resolve().parent.parent.parent / "configs"
#: what LightningCLI adds to the hparams of the objects it instantiates
CLI_HPARAMS = ("_class_path", "_instantiator")


def config_path(relative: str | Path) -> Path:
    """``configs/<relative>``; ``FileNotFoundError`` naming the path if it is not there."""
    path = CONFIGS / relative
    if not path.is_file():
        where = "" if CONFIGS.is_dir() else (
            f" ({CONFIGS} does not exist: the experiments need a source checkout of invreg, "
            "whose configs/ folder they read; an installed wheel has none)")
        raise FileNotFoundError(f"config {relative}: expected the file {path}{where}")
    return path


def from_config(
    path: str | Path, overrides: Sequence[str] = ()
) -> tuple[pl.LightningModule, pl.LightningDataModule]:
    """The ``(module, datamodule)`` that ``invreg fit --config <path> <overrides>`` trains.

    ``overrides`` are the CLI's arguments, e.g. ``["--seed_everything", "1",
    "--model.init_args.invariance_weight", "2.0"]``. The CLI seeds the global random
    generators with ``seed_everything`` (``torch.manual_seed(seed)`` among them) before it
    builds the module, so the initial weights are a function of that seed; ``false`` there
    leaves the generators as they are. The CLI's trainer is built too and discarded.
    """
    from invreg.cli import run_cli

    quiet = logging.getLogger("pytorch_lightning.utilities.rank_zero")
    level = quiet.level
    quiet.setLevel(logging.WARNING)  # no "GPU available: ..." lines for a trainer never used
    try:
        cli = run_cli(["--config", str(path), *overrides], run=False)
    finally:
        quiet.setLevel(level)
    for built in (cli.model, cli.datamodule):
        for key in CLI_HPARAMS:
            # the CLI's note of how it instantiated the object: not a hyper-parameter of the
            # model; dropped so that hparams (and the experiments' model cache keys) are those
            # of the same object built in Python
            built.hparams.pop(key, None)
    return cli.model, cli.datamodule


def scale_overrides(settings, seed: int) -> list[str]:
    """The ``invreg fit`` arguments every experiment built from a config passes: the seed (of
    the run and of the data split), the epochs and the data sizes of ``settings``
    (:class:`~invreg.experiments.core.Settings`), and ``--data-dir`` when one was given."""
    scale = settings.scale

    def value(v: int | None) -> str:
        return "null" if v is None else str(v)

    args = ["--seed_everything", str(seed), "--data.init_args.seed", str(seed),
            "--trainer.max_epochs", str(settings.epochs),
            "--data.init_args.train_size", value(scale.train_size),
            "--data.init_args.val_size", value(scale.val_size),
            "--data.init_args.test_size", value(scale.test_size)]
    if settings.extra.get("data_dir"):
        args += ["--data.init_args.data_dir", str(settings.extra["data_dir"])]
    return args
