"""The ``invreg`` CLI's parser and :class:`InvregCLI` (LightningCLI): what turns a config into a
model, a data module and a trainer (:func:`run_cli`).

:mod:`invreg.cli` (the console script, its dispatch to ``invreg report`` and its one-line
errors) and :mod:`invreg.report` (which builds a checkpoint's model from a config) both import
it; it imports neither, so the two do not import each other. Every name here is also
importable from :mod:`invreg.cli`.
"""

from __future__ import annotations

import atexit
import os
import re
import shutil
import sys
import tempfile
from collections.abc import Iterator

import pytorch_lightning as pl
import torch
from jsonargparse import ArgumentError, DefaultHelpFormatter, Namespace
from lightning_fabric.utilities.exceptions import MisconfigurationException
from pytorch_lightning.cli import LightningArgumentParser, LightningCLI

from invreg.checkpoints import verify_ckpt_path
from invreg.console import prepare_wandb_logger, use_line_progress
from invreg.modules.checkpointing import NonFiniteLossError
from invreg.modules.weights import upgrade_hparams
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


#: one line per subcommand, in ``invreg --help`` and atop ``invreg SUBCOMMAND --help``
SUBCOMMANDS = {
    "fit": "train a model; each run gets its own run folder",
    "validate": "evaluate a checkpoint on the validation split",
    "test": "evaluate a checkpoint on the test split",
    "predict": "the predictions of a checkpoint on the predict split",
    "report": "invariance report (markdown + HTML) of checkpoints",
}

CKPT_PATH_HELP = {
    "fit": "checkpoint file to resume training from: its epoch, optimizer and callback states",
    "evaluate": "checkpoint file to evaluate, e.g. <run folder>/checkpoints/best.ckpt (a fit's "
                "summary.json lists them); without it, the model's initial weights",
}

# the usage line of a Trainer subcommand (jsonargparse would list every option: 46 lines)
SUBCOMMAND_USAGE = ("%(prog)s [-c CONFIG] [--print_config] [--trainer.OPTION VALUE ...]\n"
                    "       [--model CLASS_PATH] [--model.OPTION VALUE ...] [--data CLASS_PATH]\n"
                    "       [--data.OPTION VALUE ...] [--ckpt_path CKPT_PATH]")

#: titles of the option groups of a Trainer subcommand's help
GROUP_TITLES = {
    "trainer": "trainer: Lightning's Trainer (first sentence of each option; its docs have the "
               "rest)",
    "model": "model: a LightningModule, by class_path (--model.help CLASS lists its options)",
    "data": "data: a LightningDataModule, by class_path (--data.help CLASS lists its options)",
}

# how many known subclasses from outside invreg a help text lists in full
_MAX_LISTED = 6
_KNOWN_SUBCLASSES = re.compile(r", known subclasses: ([^()]*)\)$")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z`(])")


class _HelpFormatter(DefaultHelpFormatter):
    """jsonargparse's help formatter, keeping the description's line breaks, with short
    option texts: Lightning's Trainer options by their first sentence
    (:func:`first_sentence`), and the known subclasses of a class-typed option in a few lines
    (:func:`short_subclass_list`: a backbone lists invreg's backbones, not ``torch.nn``'s
    hundreds of modules; any class_path is still accepted)."""

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        return "".join(indent + line for line in text.splitlines(keepends=True))

    def _get_help_string(self, action) -> str:
        original = action.help
        if isinstance(original, str) and _is_lightning_option(action.dest):
            action.help = first_sentence(original)
        try:
            help_string = super()._get_help_string(action)
        finally:
            action.help = original
        match = _KNOWN_SUBCLASSES.search(help_string)
        if match:
            listed = short_subclass_list(match.group(1).split(", "))
            help_string = help_string[:match.start()] + f", known subclasses: {listed})"
        return help_string


class InvregArgumentParser(LightningArgumentParser):
    """LightningCLI's parser with :class:`_HelpFormatter`, also for the parsers jsonargparse
    builds for ``--model.help CLASS`` and the like (they are of the parser's own class)."""

    def __init__(self, *args, **kwargs) -> None:
        kwargs.setdefault("formatter_class", _HelpFormatter)
        super().__init__(*args, **kwargs)


def _is_lightning_option(dest: str) -> bool:
    """An option documented by Lightning or jsonargparse (not by invreg)."""
    return dest.startswith("trainer.") or dest in ("weights_only", "seed_everything",
                                                   "print_config")


def first_sentence(text: str) -> str:
    """The first sentence of ``text`` that is not about its default (the help shows the
    default itself): ``"Stop training once this number of epochs is reached."``."""
    sentences = [part for part in _SENTENCE_END.split(" ".join(text.split())) if part]
    for sentence in sentences:
        if not sentence.startswith(("Default:", "Defaults to")):
            return sentence
    return sentences[0] if sentences else text


def short_subclass_list(paths: list[str]) -> str:
    """The known subclasses of a class-typed option, short: invreg's first, then the others
    (up to a handful in full, else grouped by module, ``pytorch_lightning.callbacks.{A, B}``).
    For a ``torch.nn.Module`` (a backbone): invreg's backbones and "your own class_path" in
    place of the hundreds of ``torch.nn`` modules."""
    if "torch.nn.Module" in paths:
        from jsonargparse._typehints import get_all_subclass_paths

        from invreg.models import Backbone

        backbones = [p for p in get_all_subclass_paths(Backbone) if p != "invreg.models.Backbone"]
        return ", ".join(backbones) + ", or your own torch.nn.Module's class_path (mypkg.MyNet)"
    own = [path for path in paths if path.startswith("invreg.")]
    others = [path for path in paths if not path.startswith("invreg.")]
    if len(others) > _MAX_LISTED:
        modules: dict[str, list[str]] = {}
        for path in others:
            module, _, name = path.rpartition(".")
            modules.setdefault(module, []).append(name)
        others = [f"{module}.{names[0]}" if len(names) == 1
                  else f"{module}.{{{', '.join(names)}}}" for module, names in modules.items()]
    return ", ".join(own + others)


class InvregCLI(LightningCLI):
    """LightningCLI in subclass mode, with the data module's ``num_classes`` linked to the model
    and the run's group declared once (:func:`link_run_group`).

    Any LightningModule / LightningDataModule can be named by ``class_path`` in the YAML. The
    config of each run is saved as ``config.yaml`` in its own run directory
    (:class:`invreg.runs.SaveRunConfig`), never over an earlier run's.

    ``console=True`` (the ``invreg`` console script): when stdout is not a terminal, the TQDM
    progress bar is replaced by one line per epoch (:func:`invreg.console.use_line_progress`).
    ``validate`` and ``test`` leave out Lightning's results table (``--verbose`` defaults to
    false): the run's table (:func:`invreg.runs.report_run`) has the same metrics, once.
    """

    def __init__(self, *args, console: bool = False, **kwargs) -> None:
        self.console = bool(console)  # read while LightningCLI's __init__ builds the trainer
        super().__init__(*args, **kwargs)

    def _add_subcommands(self, parser, **kwargs) -> None:
        """LightningCLI's subcommands with invreg's one-line helps (:data:`SUBCOMMANDS`), short
        usage lines and group titles, and ``report``, which :func:`invreg.cli.main` runs (its
        own parser, :func:`invreg.report.build_parser`); it is listed here so that ``invreg
        --help`` shows every subcommand."""
        import invreg.callbacks  # noqa: F401 - lists invreg's callbacks among the known ones

        self._subcommand_parsers = {}
        subcommands = parser.add_subcommands()
        for name in self.subcommands():
            settings = {**kwargs.get(name, {}), "usage": SUBCOMMAND_USAGE,
                        "description": f"invreg {name}: {SUBCOMMANDS[name]}\n\n{DESCRIPTION}"}
            subparser = self._prepare_subcommand_parser(self.trainer_class, name, **settings)
            for key, title in GROUP_TITLES.items():
                if key in subparser.groups:
                    subparser.groups[key].title = title
            if name in subparser.groups:
                subparser.groups[name].title = f"{name} arguments"
            for action in subparser._actions:
                if action.dest == "ckpt_path":
                    action.help = CKPT_PATH_HELP["fit" if name == "fit" else "evaluate"]
                elif action.dest == "verbose":  # invreg's own table follows the run
                    action.default = False
                    action.help = ("print Lightning's results table too (invreg prints its "
                                   "table of the run's metrics in any case)")
            self._subcommand_parsers[name] = subparser
            subcommands.add_subcommand(name, subparser, help=SUBCOMMANDS[name])
        report = self.parser_class(prog="invreg report", description=SUBCOMMANDS["report"],
                                   exit_on_error=False)
        subcommands.add_subcommand("report", report, help=SUBCOMMANDS["report"])

    def add_arguments_to_parser(self, parser) -> None:
        parser.link_arguments(
            "data.num_classes", "model.init_args.num_classes", apply_on="instantiate"
        )

    def parse_arguments(self, parser, args) -> None:
        super().parse_arguments(parser, args)
        # LightningCLI reads --ckpt_path right after parsing: check the file whole first
        if subcommand := self.config.get("subcommand"):
            verify_ckpt_path(self.config[subcommand].get("ckpt_path"))

    def _parse_ckpt_path(self) -> None:
        """LightningCLI's: a ``--ckpt_path`` checkpoint's hyper-parameters become the model's
        arguments (over the config's); an earlier layout of a learned ν is upgraded first
        (:func:`invreg.modules.weights.upgrade_hparams`), so such a checkpoint resumes."""
        subcommand = self.config.get("subcommand")
        ckpt_path = self.config[subcommand].get("ckpt_path") if subcommand else None
        if not ckpt_path or not os.path.isfile(ckpt_path):
            return
        checkpoint = torch.load(ckpt_path, weights_only=True, map_location="cpu")
        hparams = upgrade_hparams(checkpoint.get("hyper_parameters") or {})
        hparams.pop("_instantiator", None)
        if not hparams:
            return
        if "_class_path" in hparams:
            hparams = {"class_path": hparams.pop("_class_path"), "dict_kwargs": hparams}
        try:
            self.config = self.parser.parse_object({subcommand: {"model": hparams}}, self.config)
        except SystemExit:
            sys.stderr.write("Parsing of ckpt_path hyperparameters failed!\n")
            raise

    def before_instantiate_classes(self) -> None:
        # fail before anything is built, not at the start of training
        config = self.config[self.subcommand] if self.subcommand else self.config
        link_run_group(config)
        check_ckpt_path(self.subcommand, config)
        self._scratch_dir = _discard_files_of_evaluation(self.subcommand, config)
        if any(path.endswith("WandbLogger") for path in _logger_class_paths(config)):
            try:
                import wandb  # noqa: F401
            except ImportError as error:
                raise ModuleNotFoundError(WANDB_HINT, name="wandb") from error

    def instantiate_trainer(self, **kwargs) -> pl.Trainer:
        """The config's trainer, with :class:`~invreg.callbacks.MetricsHistory` (``metrics.csv``
        and the figure over training in every run folder) unless the config names one; placed
        before the checkpoint callbacks so a checkpoint holds the epoch's row. A W&B logger
        starts without the settings W&B warns about (:func:`invreg.console.prepare_wandb_logger`);
        with ``console=True``, the progress bar suits stdout (:func:`use_line_progress`)."""
        from invreg.callbacks import MetricsHistory

        trainer = super().instantiate_trainer(**kwargs)
        for logger in trainer.loggers:
            prepare_wandb_logger(logger, console=self.console)
        if self.console:
            use_line_progress(trainer)
        callbacks = trainer.callbacks
        if not any(isinstance(callback, MetricsHistory) for callback in callbacks):
            first_checkpoint = next((i for i, c in enumerate(callbacks)
                                     if isinstance(c, pl.callbacks.Checkpoint)), len(callbacks))
            callbacks.insert(first_checkpoint, MetricsHistory())
        return trainer

    # the end of a run: one table of its final metrics, and summary.json in its run folder
    def after_fit(self) -> None:
        report_run(self.trainer, "fit")

    def after_validate(self) -> None:
        self._report("validate")

    def after_test(self) -> None:
        self._report("test")

    def after_predict(self) -> None:
        self._remove_scratch_dir()

    def _report(self, stage: str) -> None:
        report_run(self.trainer, stage, keep_files=getattr(self, "_scratch_dir", None) is None)
        self._remove_scratch_dir()

    def _remove_scratch_dir(self) -> None:
        scratch = getattr(self, "_scratch_dir", None)
        if scratch is not None and self.trainer.is_global_zero:
            shutil.rmtree(scratch, ignore_errors=True)


def _discard_files_of_evaluation(subcommand: str | None, config: Namespace) -> str | None:
    """``validate``/``test``/``predict`` with ``--trainer.logger false`` and no
    ``trainer.default_root_dir``: nothing of the run is kept (as Lightning keeps nothing of an
    evaluation without a logger), rather than a ``version_N`` folder in the current folder.
    The run's folder is a temporary one (removed at the end, or at exit after an error) and
    the callbacks' local files are off (``save_local=False``); return its path, else ``None``.
    """
    if subcommand not in ("validate", "test", "predict") or not isinstance(config, Namespace):
        return None
    if config.get("trainer.logger") is not False or config.get("trainer.default_root_dir"):
        return None
    scratch = tempfile.mkdtemp(prefix="invreg-unkept-")
    atexit.register(shutil.rmtree, scratch, True)
    config["trainer.default_root_dir"] = scratch
    callbacks = config.get("trainer.callbacks")
    for callback in callbacks if isinstance(callbacks, list) else [callbacks]:
        init_args = callback.get("init_args") if isinstance(callback, Namespace) else None
        if isinstance(init_args, Namespace) and "save_local" in init_args:
            init_args["save_local"] = False
    return scratch


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


def run_cli(args: list[str] | None = None, run: bool = True,
            console: bool = False) -> InvregCLI:
    """Build the ``invreg`` CLI from ``args`` (default ``sys.argv[1:]``) and, with ``run=True``,
    run its subcommand (``fit``, ``validate``, ``test``, ``predict``); return the CLI.

    Exceptions propagate (a rejected argument as ``jsonargparse.ArgumentError``).
    ``console=True`` is the console script's progress display (:class:`InvregCLI`); the
    default keeps Lightning's progress bar (in a notebook: its widget).

    >>> cli = run_cli(["--config", "configs/quickstart.yaml"], run=False)  # doctest: +SKIP
    >>> cli.model.invariance_weight  # doctest: +SKIP
    1.0
    """
    # W&B stays on the local disk unless the user chooses otherwise
    os.environ.setdefault("WANDB_MODE", "offline")
    if (sys.argv[1:] if args is None else list(args))[:1] == ["report"]:
        raise ValueError("report is not a Trainer subcommand: run_cli runs fit, validate, test "
                         "and predict; call invreg.report.run_report_cli(args) instead")
    settings = {"exit_on_error": False, "description": DESCRIPTION,
                "formatter_class": _HelpFormatter}
    parser_kwargs: dict = {**settings, **{name: settings for name in LightningCLI.subcommands()}}
    return InvregCLI(
        pl.LightningModule,
        pl.LightningDataModule,
        subclass_mode_model=True,
        subclass_mode_data=True,
        save_config_callback=SaveRunConfig,
        parser_class=InvregArgumentParser,
        parser_kwargs=parser_kwargs,
        args=args,
        run=run,
        auto_configure_optimizers=False,
        console=console,
    )


def _logger_class_paths(config: Namespace) -> Iterator[str]:
    logger = config.get("trainer.logger") if isinstance(config, Namespace) else None
    for item in logger if isinstance(logger, list) else [logger]:
        if isinstance(item, Namespace | dict) and isinstance(item.get("class_path"), str):
            yield item["class_path"]
        elif isinstance(item, str):
            yield item
