"""The ``invreg`` command: ``invreg fit|validate|test|predict --config configs/X.yaml``.

Two entry points:

* :func:`main` is the console script. It returns an exit status (0 on success) and reports a
  bad config in a short message naming the part of the config and the fix (exit status 2 for
  an argument the parser rejects, 1 for an error raised by a component); the full traceback
  appears with ``INVREG_TRACEBACK=1`` (or jsonargparse's own ``JSONARGPARSE_DEBUG=1``).
* :func:`run_cli` is the in-process API for tests, notebooks and scripts: it returns the
  :class:`InvregCLI` (``.model``, ``.datamodule``, ``.trainer``) and lets every exception
  propagate.

Every run writes its ``config.yaml``, ``checkpoints/`` and callback media into its own folder
(:func:`invreg.runs.run_directory`); nothing from an earlier run is overwritten.
"""

from __future__ import annotations

import os
import sys
import traceback
from collections.abc import Iterator

import pytorch_lightning as pl
import torch
from jsonargparse import ArgumentError, DefaultHelpFormatter, Namespace
from lightning_fabric.utilities.exceptions import MisconfigurationException
from pytorch_lightning.cli import LightningCLI

from invreg.checkpoints import verify_ckpt_path
from invreg.modules.checkpointing import NonFiniteLossError
from invreg.runs import SaveRunConfig, report_run

DESCRIPTION = """\
invreg: measure and enforce invariance of neural networks to groups of input transformations
(invariance-regularised training, weight-tied models, invariance metrics), built on Lightning.

Start here:
  invreg fit --config configs/quickstart.yaml     bundled 8x8 digits, C4 rotations, CPU
  invreg report --ckpt_path CKPT --report_dir DIR  invariance report (markdown + HTML);
                                                   invreg report --help
Configs:
  configs/quickstart.yaml    invariance-regularised MLP on scikit-learn's digits
  configs/genuine/           WT / DA / IR models on MNIST, R4 and T3 (Moskalev et al. 2023)
  configs/hyper/             HyperInvariances: upstream pre-training, downstream tasks
  configs/loggers/           csv.yaml, tensorboard.yaml, wandb.yaml: add as a second --config
Override any value: --model.init_args.invariance_weight 0, --trainer.max_epochs 5, ...
Each run writes config.yaml, checkpoints/ and figures into its own folder. Errors are reported
in a few lines; INVREG_TRACEBACK=1 shows the full traceback.
"""

WANDB_HINT = (
    "the W&B logger (WandbLogger) needs the wandb package: pip install wandb, or log elsewhere "
    "with --config configs/loggers/csv.yaml"
)

# what a user's config can get wrong, and a run that diverged (its message names the step, the
# loss terms and the fix); anything else (a bug) keeps its full traceback
CONFIG_ERRORS = (ArgumentError, ValueError, TypeError, OSError, ImportError,
                 MisconfigurationException, NonFiniteLossError)


class _HelpFormatter(DefaultHelpFormatter):
    """jsonargparse's help formatter, keeping the description's line breaks."""

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        return "".join(indent + line for line in text.splitlines(keepends=True))


class InvregCLI(LightningCLI):
    """LightningCLI in subclass mode, with the data module's ``num_classes`` linked to the model
    and the run's group declared once (:func:`link_run_group`).

    Any LightningModule / LightningDataModule can be named by ``class_path`` in the YAML. The
    config of each run is saved as ``config.yaml`` in its own run directory
    (:class:`invreg.runs.SaveRunConfig`), never over an earlier run's.
    """

    def add_arguments_to_parser(self, parser) -> None:
        parser.link_arguments(
            "data.num_classes", "model.init_args.num_classes", apply_on="instantiate"
        )

    def parse_arguments(self, parser, args) -> None:
        super().parse_arguments(parser, args)
        # LightningCLI reads --ckpt_path right after parsing: check the file whole first
        if subcommand := self.config.get("subcommand"):
            verify_ckpt_path(self.config[subcommand].get("ckpt_path"))

    def before_instantiate_classes(self) -> None:
        # fail before anything is built, not at the start of training
        config = self.config[self.subcommand] if self.subcommand else self.config
        link_run_group(config)
        check_ckpt_path(self.subcommand, config)
        if any(path.endswith("WandbLogger") for path in _logger_class_paths(config)):
            try:
                import wandb  # noqa: F401
            except ImportError as error:
                raise ModuleNotFoundError(WANDB_HINT, name="wandb") from error

    # the end of a run: one table of its final metrics, and summary.json in its run folder
    def after_fit(self) -> None:
        report_run(self.trainer, "fit")

    def after_validate(self) -> None:
        report_run(self.trainer, "validate")

    def after_test(self) -> None:
        report_run(self.trainer, "test")


def check_ckpt_path(subcommand: str | None, config: Namespace) -> None:
    """``--ckpt_path best`` / ``last`` name a checkpoint of a fit in the same process; each
    ``invreg`` command is a fresh process (and a fresh run folder), so for ``validate``,
    ``test`` and ``predict`` they name nothing: ``ValueError`` asking for the file's path."""
    if subcommand not in ("validate", "test", "predict") or not isinstance(config, Namespace):
        return
    ckpt_path = config.get("ckpt_path")
    if ckpt_path in ("best", "last"):
        raise ValueError(
            f"ckpt_path={ckpt_path!r} only works after fit in the same process; pass the "
            f"checkpoint file, e.g. --ckpt_path <run folder>/checkpoints/{ckpt_path}.ckpt "
            f"(the run's summary.json lists its checkpoints)"
        )


def link_run_group(config: Namespace) -> None:
    """Declare the run's group once: ``model.init_args.group``.

    A backbone built for a group (``TiedMLP``, ``E2CNN``: a ``group`` argument) whose config
    leaves ``group`` out gets the run's group (the config saved with the run shows it). A group
    written in both places must be the same group, else ``ValueError`` naming both, before
    anything is built; the module checks the same again in Python
    (:class:`~invreg.modules.InvarianceModule`). Callbacks read the group from the module
    (``pl_module.group``). Augmenting by the run's group is the module's ``augment=True``; a
    data module's ``augment_group`` is an augmentation of its own (e.g. ``so2`` on top of a
    ``c4`` run) and is not linked. A model without a ``group`` argument (the HyperInvariances
    modules) is left alone.
    """
    run_value = config.get("model.init_args.group") if isinstance(config, Namespace) else None
    if run_value is None:
        return
    run_group = _config_group(run_value)
    if run_group is None:
        return  # not a group: the module's constructor says why, naming the argument
    backbone = config.get("model.init_args.backbone.init_args")
    if isinstance(backbone, Namespace) and "group" in backbone:
        if backbone.get("group") is None:
            backbone["group"] = run_value
        else:
            _check_run_group("model.init_args.backbone.init_args.group", backbone["group"],
                             run_group)


def _config_group(value: object):
    """The :class:`~invreg.groups.Group` a config value names (a name or a description), or
    ``None`` if it names none: the constructor that receives it reports that."""
    from invreg.config import build
    from invreg.groups import Group, get_group

    if isinstance(value, Namespace):
        value = value.as_dict()
    try:
        return get_group(build(value, Group, "group"))
    except (TypeError, ValueError):
        return None


def _check_run_group(key: str, value: object, run_group) -> None:
    group = _config_group(value)
    if group is not None and group != run_group:
        raise ValueError(
            f"{key} is {group!r} but model.init_args.group is {run_group!r}: a run has one "
            f"group; write it once, as model.init_args.group (the backbone gets it from there)"
        )


def run_cli(args: list[str] | None = None, run: bool = True) -> InvregCLI:
    """Build the ``invreg`` CLI from ``args`` (default ``sys.argv[1:]``) and, with ``run=True``,
    run its subcommand (``fit``, ``validate``, ``test``, ``predict``); return the CLI.

    Exceptions propagate (a rejected argument as ``jsonargparse.ArgumentError``).

    >>> cli = run_cli(["--config", "configs/quickstart.yaml"], run=False)  # doctest: +SKIP
    >>> cli.model.invariance_weight  # doctest: +SKIP
    1.0
    """
    # W&B stays on the local disk unless the user chooses otherwise
    os.environ.setdefault("WANDB_MODE", "offline")
    settings = {"exit_on_error": False, "description": DESCRIPTION,
                "formatter_class": _HelpFormatter}
    parser_kwargs: dict = {**settings, **{name: settings for name in LightningCLI.subcommands()}}
    return InvregCLI(
        pl.LightningModule,
        pl.LightningDataModule,
        subclass_mode_model=True,
        subclass_mode_data=True,
        save_config_callback=SaveRunConfig,
        parser_kwargs=parser_kwargs,
        args=args,
        run=run,
        auto_configure_optimizers=False,
    )


def main(args: list[str] | None = None) -> int:
    """The ``invreg`` console script: run the CLI, return the exit status. ``invreg report
    ...`` writes an invariance report (:func:`invreg.report.run_report_cli`).

    A config error (see :data:`CONFIG_ERRORS`) is printed as ``invreg: error: ...`` on stderr,
    without a traceback unless ``INVREG_TRACEBACK=1``; other exceptions propagate.
    """
    argv = sys.argv[1:] if args is None else list(args)
    try:
        if argv[:1] == ["report"]:  # not a Trainer subcommand: its own parser
            from invreg.report import run_report_cli

            run_report_cli(argv[1:])
        else:
            run_cli(args)  # None: LightningCLI reads sys.argv itself
    except CONFIG_ERRORS as error:
        if full_traceback_wanted():
            raise
        print(f"invreg: error: {describe_error(error)}", file=sys.stderr)
        if not _is_missing_wandb(error):
            print("(INVREG_TRACEBACK=1 shows the full traceback)", file=sys.stderr)
        return 2 if isinstance(error, ArgumentError) else 1
    return 0


def describe_error(error: BaseException) -> str:
    """A short account of a config error: where it arose (``model``, ``data``,
    ``trainer.logger``, ``trainer.callbacks`` and the class) and the message of its root cause.

    jsonargparse wraps an exception raised by a constructor (e.g. "Does not validate against
    any of the types ..." around the module's own ``ValueError``); the root cause is the
    message that names the argument and the fix.
    """
    if _is_missing_wandb(error):
        return WANDB_HINT
    if isinstance(error, ArgumentError):
        return str(error).strip()
    root = error
    while root.__cause__ is not None:
        root = root.__cause__
    message = str(root).strip() or type(root).__name__
    where = _where(root)
    return f"{where}: {message}" if where else message


def _is_missing_wandb(error: BaseException | None) -> bool:
    """``error`` or one of its causes is the failed import of ``wandb``."""
    while error is not None:
        if isinstance(error, ImportError) and (error.name == "wandb" or str(error) == WANDB_HINT):
            return True
        error = error.__cause__
    return False


def _where(error: BaseException) -> str:
    """``"model (invreg.modules.invariance.InvarianceModule)"`` for an error raised in a method
    of the model (data module, logger, callback) that the config built, the class alone for an
    error in the constructor of a part of one (a backbone), else ``""``."""
    kinds = ((pl.LightningModule, "model"), (pl.LightningDataModule, "data"),
             (pl.loggers.Logger, "trainer.logger"), (pl.Callback, "trainer.callbacks"))
    for frame, _ in traceback.walk_tb(error.__traceback__):
        owner = frame.f_locals.get("self")
        if owner is None:
            continue
        name = f"{type(owner).__module__}.{type(owner).__qualname__}"
        for kind, key in kinds:
            if isinstance(owner, kind):
                return f"{key} ({name})"
        built = isinstance(owner, torch.nn.Module) or name.startswith("invreg.")
        if frame.f_code.co_name == "__init__" and built and not isinstance(owner, LightningCLI):
            return name  # a backbone, a loss, a group ...
    return ""


def _logger_class_paths(config: Namespace) -> Iterator[str]:
    logger = config.get("trainer.logger") if isinstance(config, Namespace) else None
    for item in logger if isinstance(logger, list) else [logger]:
        if isinstance(item, Namespace | dict) and isinstance(item.get("class_path"), str):
            yield item["class_path"]
        elif isinstance(item, str):
            yield item


def full_traceback_wanted() -> bool:
    """``INVREG_TRACEBACK`` (or ``JSONARGPARSE_DEBUG``) is set to 1/true/yes."""
    return any(os.environ.get(name, "").lower() in ("1", "true", "yes")
               for name in ("INVREG_TRACEBACK", "JSONARGPARSE_DEBUG"))


if __name__ == "__main__":
    sys.exit(main())
