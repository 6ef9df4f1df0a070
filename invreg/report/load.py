"""Loading a checkpoint for the report (:mod:`invreg.report`, step 1): the module and data
module from ``--config`` or from the checkpoint alone (:func:`load_checkpoint`), checked
against each other; the groups to measure (:func:`resolve_report_group`,
:meth:`LoadedCheckpoint.training_group`, :meth:`LoadedCheckpoint.check_group`,
:func:`mixed_groups_warning`)."""

from __future__ import annotations

import importlib
import json
import re
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
import yaml

from invreg.checkpoints import RESAVE, first_line, verify_checkpoint
from invreg.groups import Group, get_group
from invreg.modules.checkpointing import _short, not_saved


def resolve_report_group(name: str) -> Group:
    """The group of a ``--group`` name (:func:`invreg.groups.get_group`), else ``ValueError``
    naming ``--group`` and the valid names."""
    if not isinstance(name, str):
        raise ValueError(f"group: expected a group name such as 'c4', got {name!r}")
    try:
        return get_group(name)
    except ValueError as error:
        raise ValueError(f"group: --group {name}: {error}") from None


def load_checkpoint(
    ckpt_path: str | Path, config: str | Path | None = None
) -> tuple[pl.LightningModule, pl.LightningDataModule, dict[str, Any]]:
    """The module (weights of ``ckpt_path`` loaded, ``eval()`` mode, CPU), its data module and
    the checkpoint's ``{"epoch", "global_step", "hyper_parameters",
    "datamodule_hyper_parameters"}``.

    With ``config`` the module and data module are built from that YAML by the ``invreg`` CLI
    (its logger and callbacks are left out) and the checkpoint's ``state_dict`` must fit the
    module exactly; without it they are rebuilt from the checkpoint's stored arguments
    (``invreg fit`` stores both). The file is checked whole first
    (:func:`~invreg.checkpoints.verify_checkpoint`). ``FileNotFoundError`` for a missing file,
    ``ValueError`` when the checkpoint cannot be used.
    """
    return _load_verified(verify_checkpoint(ckpt_path, "ckpt_path"), config)


def _load_verified(
    ckpt_path: Path, config: str | Path | None
) -> tuple[pl.LightningModule, pl.LightningDataModule, dict[str, Any]]:
    """:func:`load_checkpoint` of a file :func:`~invreg.checkpoints.verify_checkpoint` has
    already checked whole (:func:`invreg.report.write_report` checks every file first)."""
    if config is not None and not Path(config).is_file():
        raise FileNotFoundError(f"config: no such config file {str(config)!r}")
    try:
        checkpoint = torch.load(ckpt_path, map_location="cpu", weights_only=True)
    except Exception as error:
        raise ValueError(_unreadable(ckpt_path, error)) from None
    if not isinstance(checkpoint, dict) or "state_dict" not in checkpoint:
        raise ValueError(f"ckpt_path: {str(ckpt_path)!r} holds no state_dict: not a Lightning "
                         f"checkpoint")
    if config is not None:
        module, datamodule = _build_from_config(Path(config))
        _check_same_model(module, checkpoint, ckpt_path, Path(config))
        try:
            module.load_state_dict(checkpoint["state_dict"])
        except RuntimeError as error:
            raise ValueError(
                f"ckpt_path: the weights of {str(ckpt_path)!r} do not fit the model of config "
                f"{str(config)!r} ({first_line(error)} ...); pass the config the "
                f"checkpoint was trained with, or no config"
            ) from error
    else:
        module, datamodule = _build_from_checkpoint(ckpt_path, checkpoint)
    module.eval()
    meta = {key: checkpoint.get(key) for key in ("epoch", "global_step", "hyper_parameters",
                                                  "datamodule_hyper_parameters")}
    return module, datamodule, meta


def _unreadable(ckpt_path: Path, error: Exception) -> str:
    """One line on a checkpoint that ``torch.load(weights_only=True)`` refuses; never torch's
    advice to load it with ``weights_only=False`` (which runs any code the file holds)."""
    text = str(error)
    match = re.search(r"Unsupported global: GLOBAL (\S+)", text)
    if match or "Weights only load failed" in text:
        what = f" ({match.group(1)})" if match else ""
        return (f"ckpt_path: {str(ckpt_path)!r} holds pickled Python objects{what} that a safe "
                f"load (weights_only=True) refuses to run; report a checkpoint written by "
                f"`invreg fit`, whose hyper-parameters are plain values")
    return (f"ckpt_path: {str(ckpt_path)!r} is not a readable checkpoint "
            f"({type(error).__name__}: {first_line(error)}); {RESAVE}")


def _build_from_config(config: Path) -> tuple[pl.LightningModule, pl.LightningDataModule]:
    from invreg.cli_core import run_cli  # not invreg.cli: that module dispatches to this one

    values = yaml.safe_load(config.read_text()) or {}
    if not isinstance(values, dict):
        raise ValueError(f"config: {str(config)!r} is not a YAML mapping")
    # a run folder's config.yaml also holds the options of its subcommand (ckpt_path, ...)
    kept = {key: values[key] for key in ("seed_everything", "trainer", "model", "data")
            if key in values}
    cli = run_cli(["--config", yaml.safe_dump(kept), "--trainer.logger", "false",
                   "--trainer.callbacks", "[]", "--trainer.enable_checkpointing", "false",
                   "--trainer.enable_progress_bar", "false"], run=False)
    if cli.datamodule is None:
        raise ValueError(f"config: {str(config)!r} names no data module (data: class_path)")
    return cli.model, cli.datamodule


#: constructor arguments a config must share with the checkpoint it loads: parameters of the
#: same names and shapes (a TiedMLP's and an MLP's) would load, and measure another model
SAME_MODEL_ARGUMENTS = ("backbone", "group")


def _check_same_model(
    module: pl.LightningModule, checkpoint: dict[str, Any], ckpt_path: Path, config: Path
) -> None:
    """``ValueError`` when the config's module and the checkpoint's stored arguments differ in
    one of :data:`SAME_MODEL_ARGUMENTS` (checkpoints that store none are not checked).

    Class paths are compared by the class they name (``invreg.models.MLP`` and
    ``invreg.models.mlp.MLP`` are one class); a group by the group it names (``"c4"`` and
    ``Rotations(4)``'s description are one group). An object the checkpoint could not describe
    (:func:`~invreg.modules.checkpointing.not_saved`, e.g. a backbone of the user's own class
    that does not inherit :class:`~invreg.config.RecordsInit`) is supplied by the config: it is
    compared by what the mark names, its class (``a MyNet``) or a group's ``repr``.
    """
    stored = checkpoint.get("hyper_parameters") or {}
    built = dict(getattr(module, "hparams", {}))
    for key in SAME_MODEL_ARGUMENTS:
        if key not in stored or key not in built:
            continue
        saved = not_saved(stored[key])
        if saved is not None:
            given = _short(getattr(module, key, built[key]))
        else:
            saved, given = _plain({key: stored[key]})[key], _plain({key: built[key]})[key]
            if _same_description(key, stored[key], built[key], getattr(module, key, None)):
                continue
        if saved != given:
            raise ValueError(
                f"ckpt_path: {str(ckpt_path)!r} does not fit the model of config "
                f"{str(config)!r}: {key} is {saved} in the checkpoint, {given} in the config; "
                f"pass the config the checkpoint was trained with, or no config"
            )


def _same_description(key: str, stored: Any, built: Any, built_object: Any) -> bool:
    """Whether a stored argument and the config's describe the same object: groups compared
    as groups, class paths by the class they resolve to (modules already imported)."""
    if key == "group" and isinstance(built_object, Group):
        try:
            if isinstance(stored, str):
                return get_group(stored) == built_object
            if isinstance(stored, dict):
                from invreg.config import from_config

                return from_config(stored, Group, "group") == built_object
        except (TypeError, ValueError):
            return False
    return json.dumps(_canonical(stored), sort_keys=True, default=repr) == json.dumps(
        _canonical(built), sort_keys=True, default=repr)


def _canonical(value: Any) -> Any:
    """``value`` with every ``class_path`` replaced by the defining module and name of the
    class it names, when its module is imported (``invreg.models.MLP`` →
    ``invreg.models.mlp.MLP``)."""
    if isinstance(value, dict):
        out = {k: _canonical(v) for k, v in value.items() if not str(k).startswith("_")}
        path = out.get("class_path")
        if isinstance(path, str):
            module_name, _, name = path.rpartition(".")
            cls = getattr(sys.modules.get(module_name), name, None)
            if isinstance(cls, type):
                out["class_path"] = f"{cls.__module__}.{cls.__qualname__}"
        return out
    if isinstance(value, list | tuple):
        return [_canonical(v) for v in value]
    return value


#: the fix for a checkpoint that does not say how to rebuild its data module
DATA_FIX = ("pass --config with a `data:` section (and the `model:` it was trained with; see "
            "docs/own_model.md), or train with `invreg fit`, whose checkpoints store the "
            "class_path and arguments of their model and data module")


def _build_from_checkpoint(
    ckpt_path: Path, checkpoint: dict[str, Any]
) -> tuple[pl.LightningModule, pl.LightningDataModule]:
    """The module and data module a checkpoint of ``invreg fit`` describes (``_class_path``
    and arguments of both, as the LightningCLI stores them).

    A class path outside invreg (``mypackage.MyModule``, ``mypackage.MyNet`` as a backbone)
    is imported as ``invreg fit`` imports it from a config: its module must be importable
    from where ``invreg report`` runs (``PYTHONPATH=.`` in the folder that holds it, or an
    installed package), and the model / data class must be a ``LightningModule`` /
    ``LightningDataModule``. invreg's modules write the class paths into checkpoints saved
    from Python too (:class:`~invreg.modules.checkpointing.CheckedCheckpoints`); a checkpoint
    without them (another module, an older file), or whose backbone recorded no arguments,
    gets an error that says what is missing and how to supply it (``--config``).
    """
    importlib.import_module("invreg.modules")
    importlib.import_module("invreg.data")
    where = f"ckpt_path: {str(ckpt_path)!r}"
    model_hp = checkpoint.get("hyper_parameters") or {}
    data_hp = checkpoint.get("datamodule_hyper_parameters")
    unsaved = _unsaved(model_hp)
    if unsaved and "_class_path" in (data_hp or {}):
        raise ValueError(f"{where} could not store its {', '.join(unsaved)}: no constructor "
                         f"arguments were recorded; {UNSAVED_FIX}")
    if "_class_path" not in (data_hp or {}):
        raise ValueError(f"{where} {_missing_data_module(checkpoint, model_hp, data_hp)}; "
                         f"{DATA_FIX}")
    if "_class_path" not in model_hp:
        raise ValueError(f"{where} stores no class path of its model (it was not written by "
                         f"`invreg fit`); pass --config with the config it was trained with")
    classes = []
    for key, base in (("hyper_parameters", pl.LightningModule),
                      ("datamodule_hyper_parameters", pl.LightningDataModule)):
        values = checkpoint[key]
        cls = _import_class_path(values["_class_path"], where, "model" if base is
                                 pl.LightningModule else "data module")
        if not (isinstance(cls, type) and issubclass(cls, base)):
            raise ValueError(f"{where} names {values['_class_path']} as its "
                             f"{'model' if base is pl.LightningModule else 'data module'}, "
                             f"which is not a {base.__name__}; pass --config")
        for path, argument in _nested_class_paths(values):
            _import_class_path(path, where, argument)
        classes.append(cls)
    # each class rebuilds itself (Lightning's stored instantiator, where the CLI wrote one,
    # builds the same class): a checkpoint saved from Python names its classes too
    module = classes[0].load_from_checkpoint(ckpt_path, map_location="cpu")
    datamodule = classes[1].load_from_checkpoint(ckpt_path, map_location="cpu")
    return module, datamodule


def _missing_data_module(checkpoint: dict[str, Any], model_hp: dict, data_hp: Any) -> str:
    """What a checkpoint without a data module's class path lacks, in words."""
    if data_hp is None:
        text = ("stores no data module (it was trained without one, or with one that saves "
                "no hyper-parameters), and the report measures on a data module's test split")
    else:
        named = [key for key, value in checkpoint.items() if key.endswith("DataModule")
                 and isinstance(value, dict)]
        called = f" ({named[0]})" if named else ""
        text = (f"was saved from Python (Trainer.save_checkpoint), not by `invreg fit`: it "
                f"stores the model and the data module's arguments but not the data module's "
                f"class{called}, so the report has no data to measure on")
    unsaved = _unsaved(model_hp)
    if unsaved:
        text += (f"; its {', '.join(unsaved)} records no constructor arguments either "
                 f"(inherit invreg.config.RecordsInit, or let --config's `model:` supply it)")
    return text


#: the fix for a module argument a checkpoint stores as "not saved"
UNSAVED_FIX = ("make its class inherit invreg.config.RecordsInit (docs/own_model.md) and save "
               "again, or pass --config with the `model:` section it was trained with")


def _unsaved(model_hp: dict) -> list[str]:
    """The module arguments a checkpoint stores as not saved
    (:func:`~invreg.modules.checkpointing.not_saved`), as ``"name (a Class)"``."""
    return [f"{key} ({not_saved(value)})" for key, value in model_hp.items()
            if not_saved(value) is not None]


def _nested_class_paths(values: Any, argument: str = "") -> Iterable[tuple[str, str]]:
    """``(class_path, argument)`` of every nested ``{"class_path": ...}`` description."""
    if isinstance(values, dict):
        if isinstance(values.get("class_path"), str):
            yield values["class_path"], argument
        for key, value in values.items():
            if not str(key).startswith("_") and key != "class_path":
                yield from _nested_class_paths(value, f"{argument}.{key}".strip("."))
    elif isinstance(values, list):
        for value in values:
            yield from _nested_class_paths(value, argument)


def _import_class_path(class_path: str, where: str, argument: str) -> Any:
    """The object ``class_path`` names, its module imported; ``ValueError`` saying how to make
    a module that does not import importable."""
    module_name, _, name = class_path.rpartition(".")
    try:
        module = importlib.import_module(module_name) if module_name else None
    except ImportError as error:
        raise ValueError(
            f"{where} names {class_path} ({argument}), whose module {module_name!r} cannot be "
            f"imported here ({first_line(error)}); run invreg report where it imports "
            f"(PYTHONPATH=. in the folder that holds {module_name.split('.')[0]}.py, or "
            f"install the package)"
        ) from None
    if module is None or not hasattr(module, name):
        raise ValueError(f"{where} names {class_path} ({argument}), which "
                         f"{'is not a dotted path' if module is None else 'does not exist'}; "
                         f"pass --config")
    return getattr(module, name)


@dataclass
class LoadedCheckpoint:
    """A checkpoint's module (eval mode) and data module (set up for ``test``), loaded once
    and measured on each group of a report."""

    name: str
    ckpt_path: Path
    config: Path | None
    module: pl.LightningModule
    datamodule: pl.LightningDataModule
    meta: dict[str, Any]
    input_shape: tuple[int, ...]

    @classmethod
    def load(cls, name: str, ckpt_path: str | Path, config: str | Path | None = None,
             verified: bool = False) -> LoadedCheckpoint:
        """:func:`load_checkpoint`, then ``ValueError`` if the module has no ``group``;
        ``verified``: the file was checked whole already, and is not read for it again."""
        module, datamodule, meta = (_load_verified(Path(ckpt_path), config) if verified
                                    else load_checkpoint(ckpt_path, config))
        if not isinstance(getattr(module, "group", None), Group):
            raise ValueError(f"ckpt_path: {type(module).__name__} in {str(ckpt_path)!r} has no "
                             f"`group` to measure invariance to (e.g. an InvarianceModule)")
        datamodule.setup("test")
        shape = getattr(datamodule, "input_shape", None)
        if shape is None:
            x, _ = next(iter(datamodule.test_dataloader()))
            shape = x.shape[1:]
        return cls(name, Path(ckpt_path), Path(config) if config else None, module, datamodule,
                   meta, tuple(int(n) for n in shape))

    def training_group(self) -> tuple[str, Group]:
        """``(label, group)`` of the group the module was trained with: the name it was given
        (``"c4"``), else the group's ``repr``."""
        stored = (self.meta.get("hyper_parameters") or {}).get("group")
        group = self.module.group
        label = stored if isinstance(stored, str) and not_saved(stored) is None else repr(group)
        return label, group

    def check_group(self, label: str, group: Group) -> None:
        """``ValueError`` in one line if ``group`` cannot act on this checkpoint's inputs."""
        try:
            group.check_input_shape(self.input_shape)
        except ValueError as error:
            raise ValueError(
                f"group: --group {label} cannot act on the inputs of {self.name!r} "
                f"({str(self.ckpt_path)!r}, input shape {self.input_shape}): "
                f"{' '.join(str(error).split())}; pass --group with groups that fit that shape"
            ) from None


def mixed_groups_warning(loaded: Sequence[LoadedCheckpoint]) -> list[str]:
    """One warning line when checkpoints trained on different groups are reported side by
    side on their own training groups (no ``--group``), else nothing."""
    groups = [item.training_group() for item in loaded]
    if len({repr(group) for _, group in groups}) < 2:
        return []
    listed = ", ".join(f"{item.name}: {label}" for item, (label, _) in
                       zip(loaded, groups, strict=True))
    names = " ".join(dict.fromkeys(label for label, _ in groups))
    return [f"the checkpoints were trained on different groups ({listed}); each row measures "
            f"its checkpoint on its own training group, so rows of different groups are not "
            f"comparable; pass --group (e.g. --group {names}) to measure every checkpoint on "
            f"the same groups"]


def _plain(values: dict[str, Any]) -> dict[str, str]:
    """Constructor arguments as text (nested descriptions as compact JSON), private keys
    (``_class_path``, ``_instantiator``) left out."""
    def plain(value: Any) -> Any:
        return value.as_dict() if hasattr(value, "as_dict") else repr(value)

    return {key: value if isinstance(value, str) else json.dumps(value, default=plain)
            for key, value in values.items() if not key.startswith("_")}
