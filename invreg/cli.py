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
(:func:`invreg.runs.run_directory`); nothing from an earlier run is overwritten. A
``validate``/``test``/``predict`` with ``--trainer.logger false`` and no
``--trainer.default_root_dir`` keeps nothing; an evaluation's summary lists only the
checkpoint it loaded.

``invreg --help`` lists every subcommand (``report`` included) in a line each; a subcommand's
help shows Lightning's options by their first sentence and the known subclasses of a class
option in a few lines (a backbone: invreg's backbones, or any class_path of one's own). A
``class_path`` that does not import is one line naming the option, what is wrong and a
did-you-mean (:func:`describe_class_path_error`).
"""

from __future__ import annotations

import difflib
import importlib
import inspect
import os
import pkgutil
import re
import sys
import traceback
from pathlib import Path

import pytorch_lightning as pl
import torch
from jsonargparse import ArgumentError
from pytorch_lightning.cli import LightningCLI

# the parser and InvregCLI live in invreg.cli_core, which invreg.report imports too (to build a
# model from a config) without importing this module, the one that dispatches to the report
from invreg.cli_core import (  # noqa: F401 - re-exported: invreg.cli.X keeps working
    CKPT_PATH_HELP,
    CONFIG_ERRORS,
    DESCRIPTION,
    GROUP_TITLES,
    SUBCOMMAND_USAGE,
    SUBCOMMANDS,
    WANDB_HINT,
    InvregArgumentParser,
    InvregCLI,
    check_ckpt_path,
    first_sentence,
    link_run_group,
    run_cli,
    short_subclass_list,
)
from invreg.console import finish_wandb_run, quiet_console
from invreg.modules.weights import REMOVED_ARGUMENTS


def main(args: list[str] | None = None) -> int:
    """The ``invreg`` console script: run the CLI, return the exit status. ``invreg report
    ...`` writes an invariance report (:func:`invreg.report.run_report_cli`).

    A config error (see :data:`CONFIG_ERRORS`) is printed as ``invreg: error: ...`` on stderr,
    without a traceback unless ``INVREG_TRACEBACK=1``; other exceptions propagate.

    The console is quiet and plain (:mod:`invreg.console`): Lightning's tips and warnings that
    are noise to an invreg user are dropped while the command runs (every other warning is
    shown), a log file gets one line per epoch rather than a progress bar and no colour codes,
    and the W&B run is finished before the command returns.
    """
    argv = sys.argv[1:] if args is None else list(args)
    status = 1
    try:
        with quiet_console(next((arg for arg in argv if arg in SUBCOMMANDS), None)):
            if argv[:1] == ["report"]:  # not a Trainer subcommand: its own parser
                from invreg.report import run_report_cli

                run_report_cli(argv[1:])
            else:
                run_cli(args, console=True)  # None: LightningCLI reads sys.argv itself
        status = 0
    except CONFIG_ERRORS as error:
        if full_traceback_wanted():
            raise
        print(f"invreg: error: {describe_error(error)}", file=sys.stderr)
        if not _is_missing_wandb(error):
            print("(INVREG_TRACEBACK=1 shows the full traceback)", file=sys.stderr)
        status = 2 if isinstance(error, ArgumentError) else 1
    finally:
        finish_wandb_run(status)
    return status


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
        return (describe_class_path_error(str(error)) or describe_removed_option(str(error))
                or str(error).strip())
    root = error
    while root.__cause__ is not None:
        root = root.__cause__
    message = str(root).strip() or type(root).__name__
    where = _where(root)
    return f"{where}: {message}" if where else message


_REMOVED_OPTION = re.compile(rf"Option '({'|'.join(REMOVED_ARGUMENTS)})' is not accepted")


def describe_removed_option(message: str) -> str | None:
    """One line naming the replacement of an earlier option of a learned ν
    (``--model.init_args.invariance_target``), or ``None`` if ``message`` is about another."""
    found = _REMOVED_OPTION.search(message)
    if found is None:
        return None
    return (f"model.init_args.{found[1]} is now DualAscentWeight's {REMOVED_ARGUMENTS[found[1]]}: "
            f"--model.init_args.invariance_weight DualAscentWeight "
            f"--model.init_args.invariance_weight.target 0.05 (and .metric, .update, .lr, "
            f".initial); in a config, invariance_weight: {{class_path: "
            f"invreg.modules.DualAscentWeight, init_args: {{target: 0.05}}}} (docs/target.md)")


_PARSER_KEY = re.compile(r'^\s*Parser key "([^"]+)":')
_GIVEN_CLASS_PATH = re.compile(r"^\s*- Problem with given class_path '([^']+)':\s*$")
_NOT_A_CLASS_PATH = re.compile(r"^\s*- Expected a dot import path string: (\S+)\s*$")


def describe_class_path_error(message: str) -> str | None:
    """One line for jsonargparse's nested report of a ``class_path`` that does not import
    (``--model.backbone.class_path mypkg.MyNte``, a module that is not there, a short name
    that names no class), or ``None`` if ``message`` is about something else:

    ``model.init_args.backbone: class_path 'mypkg.MyNte': module 'mypkg' has no class
    'MyNte'; did you mean mypkg.MyNet? Fix the class_path.``

    The option is read off the nesting of the report; what is wrong is found by importing
    the class path again (:func:`class_path_problem`).
    """
    lines = message.splitlines()
    for index, line in enumerate(lines):
        given = _GIVEN_CLASS_PATH.match(line) or _NOT_A_CLASS_PATH.match(line)
        if given is None:
            continue
        class_path = given.group(1)
        problem = class_path_problem(class_path)
        if problem is not None:
            return f"{_option_of(lines, index)}: class_path {class_path!r}: {problem}"
    return None


def _option_of(lines: list[str], index: int) -> str:
    """The dotted option of the report's line ``index``: the ``Parser key`` lines above it,
    with ``init_args`` for each class whose arguments it sits in."""
    parts: list[str] = []
    indent = len(lines[index]) - len(lines[index].lstrip())
    for line in reversed(lines[:index]):
        depth = len(line) - len(line.lstrip())
        if not line.strip() or depth >= indent:
            continue
        indent = depth
        if key := _PARSER_KEY.match(line):
            parts.insert(0, key.group(1))
        elif _GIVEN_CLASS_PATH.match(line):
            parts.insert(0, "init_args")
    return ".".join(parts) or "class_path"


def class_path_problem(class_path: str) -> str | None:
    """What keeps ``class_path`` (``module.ClassName``) from importing, with a did-you-mean
    and the fix, or ``None`` if it imports."""
    module_name, _, name = class_path.rpartition(".")
    if not module_name:
        guess = _closest(name, _known_class_names())
        hint = f"; did you mean {guess}?" if guess else ""
        return (f"neither module.ClassName nor the name of a known class{hint} Write the class "
                f"path in full, e.g. mypkg.MyNet")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as error:
        missing = error.name or module_name
        if module_name == missing or module_name.startswith(missing + "."):
            return _missing_module(missing)
        return f"importing module {module_name!r} fails: {error}; fix that module's imports"
    except Exception as error:  # the user's module raises on import
        return (f"importing module {module_name!r} fails: {type(error).__name__}: {error}; "
                f"fix that module")
    if hasattr(module, name):
        return None
    classes = [key for key, value in vars(module).items()
               if inspect.isclass(value) and not key.startswith("_")]
    guess = _closest(name, classes)
    hint = f"did you mean {module_name}.{guess}?" if guess else \
        f"its classes are {', '.join(sorted(classes)[:6]) or 'none'}."
    return f"module {module_name!r} has no class {name!r}; {hint} Fix the class_path."


def _missing_module(missing: str) -> str:
    """``no module named 'mypkg_typo' (did you mean mypkg?)`` and how to make one importable."""
    parent, _, leaf = missing.rpartition(".")
    here = {path.stem for path in Path.cwd().glob("*.py")} | {
        path.parent.name for path in Path.cwd().glob("*/__init__.py")}
    if parent:
        try:
            found = {m.name for m in pkgutil.iter_modules(importlib.import_module(parent).__path__)}
        except Exception:  # not a package
            found = set()
    else:
        found = {m.name for m in pkgutil.iter_modules()}
    if not parent and leaf in here:
        return (f"no module named {missing!r} on the Python path, though ./{leaf} is in the "
                f"current folder; run with PYTHONPATH=. (or pip install your package)")
    guess = _closest(leaf, found | (here if not parent else set()))
    hint = f" (did you mean {parent + '.' if parent else ''}{guess}?)" if guess else ""
    return (f"no module named {missing!r}{hint}; fix the class_path, or make the module "
            f"importable: PYTHONPATH=. in the folder that holds it, or pip install it")


def _closest(name: str, candidates) -> str | None:
    found = difflib.get_close_matches(name, sorted(candidates), n=1)
    return found[0] if found else None


def _known_class_names() -> set[str]:
    """Class names a short class_path may use: those exported by invreg's packages."""
    names: set[str] = set()
    for package in ("invreg.models", "invreg.modules", "invreg.data", "invreg.callbacks",
                    "invreg.losses", "invreg.groups"):
        module = sys.modules.get(package)
        names.update(getattr(module, "__all__", ()))
    return names


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


def full_traceback_wanted() -> bool:
    """``INVREG_TRACEBACK`` (or ``JSONARGPARSE_DEBUG``) is set to 1/true/yes."""
    return any(os.environ.get(name, "").lower() in ("1", "true", "yes")
               for name in ("INVREG_TRACEBACK", "JSONARGPARSE_DEBUG"))


if __name__ == "__main__":
    sys.exit(main())
