"""``invreg report``: one invariance report (markdown and self-contained HTML) per checkpoint set.

    invreg report --ckpt_path runs/.../checkpoints/best.ckpt --report_dir report/
    invreg report --config configs/genuine/wt_r4.yaml --ckpt_path wt.ckpt \\
                  --config configs/genuine/da_r4.yaml --ckpt_path da.ckpt \\
                  --name WT --name DA --report_dir report/

Pipeline, per checkpoint (:func:`evaluate_checkpoint`):

1. **load** the LightningModule and its data module: from ``--config`` (built by the
   ``invreg`` CLI itself, :func:`invreg.cli.run_cli`, then the checkpoint's weights loaded
   strictly), or without a config from the checkpoint alone (``load_from_checkpoint``: a
   checkpoint written by ``invreg fit`` stores the class paths and arguments of both; a class
   path outside invreg is imported when its module imports, :func:`_build_from_checkpoint`);
   then each group to measure (``--group``, default the training group) is checked against
   the data's input shape; for each group:
2. on the **whole test split** of the data module, one orbit forward per batch into
   :class:`~invreg.metrics.OrbitMetrics`: accuracy, orbit accuracy, DI, LI, normalised LI,
   orbit consistency;
3. on a fixed seeded **subset** of ``samples`` test samples: SI per sample
   (:func:`~invreg.functional.orbit_saliency`, the paper's recipe, integrated gradients from
   the data's empty pixel, as :class:`~invreg.callbacks.SaliencyCallback` does) with a
   percentile-bootstrap confidence interval over samples; the saliency-orbit grid of the first
   rows (:func:`invreg.callbacks.saliency.grid_figure`); σ_max of the input→logit Jacobian
   (:func:`~invreg.functional.jacobian_spectral_norm`); the per-layer normalised invariance
   G-EED (:class:`~invreg.metrics.LayerInvariance`, cosine); DI and accuracy when the inputs
   are blended with a drift source (as :class:`~invreg.callbacks.DriftCallback`,
   :func:`invreg.callbacks.drift.drift_figure`).

Then :func:`write_report` writes ``report.md`` (figures as PNG, PDF or SVG files in
``figures/``) and ``report.html`` (the figures embedded as base64 PNG data URIs, inline CSS, no
external link), with one table of every metric, a row per checkpoint and group; checkpoints
trained on different groups and reported on their own get a warning line (rows of different
groups are not comparable). An existing report is never
replaced without ``overwrite=True`` (``--overwrite``).

Before anything is loaded or measured, every input is checked: each checkpoint file whole
(:func:`invreg.checkpoints.verify_checkpoint`: an empty, truncated or corrupted file, or one
that is not a PyTorch checkpoint, is refused), the configs, ``report_dir``
(:func:`check_report_dir`: a folder, or a path one can create, writable, and the
``--overwrite`` rule) and ``device`` (:func:`resolve_device`: a device this machine has).
"""

from __future__ import annotations

import base64
import datetime
import html
import importlib
import io
import json
import math
import os
import re
import shutil
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
import yaml
from torch import Tensor, nn
from tqdm import tqdm

import invreg
from invreg.callbacks.base import fixed_elements
from invreg.callbacks.drift import drift_figure
from invreg.callbacks.saliency import CALLBACK_RECIPE, _element_labels, grid_figure
from invreg.checkpoints import RESAVE, first_line, verify_checkpoint
from invreg.data.drift import get_drift_source, match_statistics
from invreg.evaluation import eval_mode
from invreg.functional.drift import check_betas
from invreg.functional.saliency import orbit_saliency, postprocess_saliency, saliency_similarity
from invreg.functional.spectral import jacobian_spectral_norm
from invreg.functional.statistics import bootstrap_interval
from invreg.groups import Group, get_group
from invreg.metrics import DriftMetrics, LayerInvariance, OrbitMetrics
from invreg.metrics.saliency import resolve_baseline
from invreg.modules.checkpointing import _short, not_saved
from invreg.plotting import (
    FIGURE_FORMATS,
    check_dpi,
    check_figure_format,
    model_title,
    new_figure,
    scale_for,
)

#: what a report consists of, inside ``report_dir``
REPORT_FILES = ("report.md", "report.html", "figures")
#: default resolution of the report's figures (``--dpi``): 100 dpi keeps a page of several
#: checkpoints light
REPORT_DPI = 100

#: ``(key, label, description)`` of every reported metric, in table order
METRICS = (
    ("accuracy", "accuracy", "fraction correct on the untransformed test inputs"),
    ("orbit_accuracy", "orbit accuracy", "fraction of samples correct on every orbit element"),
    ("DI", "DI", "mean KL(softmax f(x) ‖ softmax f(g·x)), g ≠ e (0 = invariant)"),
    ("LI", "LI", "mean ½‖f(x) − f(g·x)‖², g ≠ e (0 = invariant)"),
    ("LI_normalized", "normalised LI", "mean ‖f(x) − f(g·x)‖² / ‖f(x)‖², g ≠ e"),
    ("consistency", "orbit consistency",
     "fraction of samples predicted the same on the whole orbit"),
    ("SI", "SI", "mean cos(m(x), g⁻¹·m(g·x)) of saliency maps, g ≠ e (1 = invariant); "
                 "[bootstrap CI]"),
    ("jacobian_sigma_max", "Jacobian σ_max", "mean over samples of σ_max(∂f(x)/∂x)"),
)
#: the metrics measured on the subset, not the whole test split
SUBSET_METRICS = ("SI", "jacobian_sigma_max")


@dataclass(frozen=True)
class ReportSettings:
    """How much a report measures; every field is an ``invreg report`` option.

    Attributes:
        samples: test samples (a fixed seeded subset) for SI, σ_max, G-EED and drift; the
            accuracies, DI, LI and consistency use the whole test split.
        saliency_rows: samples shown in the saliency-orbit grid.
        saliency_steps: integrated-gradients path points of SI and the grid.
        betas: drift weights ``β`` of ``x_β = (1 − β)·x + β·d``.
        drift_source: a name of :data:`invreg.data.drift.DRIFT_SOURCES`.
        orbit_size: orbit elements (identity included) for a continuous group.
        bootstrap: resamples of the percentile bootstrap of SI's confidence interval.
        confidence: level of that interval.
        batch_size: samples per forward / backward pass on the subset.
        seed: seeds the subset, the drift samples, the bootstrap and the Lanczos starts.
        device: ``"auto"`` (CUDA when available), ``"cpu"``, ``"cuda"``, ``"cuda:1"``,
            ``"mps"``: one this machine has (:func:`resolve_device`), checked on creation.
        progress: show progress bars (on stderr).
        groups: names of :func:`invreg.groups.get_group` (``("c4", "flip")``) to measure every
            checkpoint on, each in its own rows and figures; empty: each checkpoint's training
            group.
        figure_format: format of the figure files in ``figures/`` (one of
            :data:`invreg.plotting.FIGURE_FORMATS`); the HTML embeds PNG in any case.
        dpi: resolution of the PNG figures (the files and the HTML's) and of raster parts of
            a PDF/SVG.
    """

    samples: int = 256
    saliency_rows: int = 4
    saliency_steps: int = CALLBACK_RECIPE.steps
    betas: tuple[float, ...] = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5)
    drift_source: str = "natural_images"
    orbit_size: int = 8
    bootstrap: int = 2000
    confidence: float = 0.95
    batch_size: int = 64
    seed: int = 0
    device: str = "auto"
    progress: bool = True
    groups: tuple[str, ...] = ()
    figure_format: str = "png"
    dpi: int = REPORT_DPI

    def __post_init__(self) -> None:
        for name, minimum in (("samples", 2), ("saliency_rows", 1), ("saliency_steps", 1),
                              ("orbit_size", 2), ("bootstrap", 100), ("batch_size", 2),
                              ("seed", 0)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
                raise ValueError(f"{name}: expected an integer >= {minimum}, got {value!r}")
        if not 0.0 < self.confidence < 1.0:
            raise ValueError(f"confidence: expected a level in (0, 1), got {self.confidence!r}")
        object.__setattr__(self, "betas", check_betas(self.betas))
        get_drift_source(self.drift_source)  # an unknown name fails here, before any work
        resolve_device(self.device)  # so does a device this machine does not have
        if isinstance(self.groups, str):
            object.__setattr__(self, "groups", (self.groups,))
        object.__setattr__(self, "groups", tuple(dict.fromkeys(self.groups)))
        for name in self.groups:
            resolve_report_group(name)
        try:
            object.__setattr__(self, "figure_format", check_figure_format(self.figure_format))
            check_dpi(self.dpi)
        except ValueError as error:
            raise ValueError(str(error).replace("figure_format must", "figure_format: must")
                             .replace("dpi must", "dpi: must")) from None


def resolve_report_group(name: str) -> Group:
    """The group of a ``--group`` name (:func:`invreg.groups.get_group`), else ``ValueError``
    naming ``--group`` and the valid names."""
    if not isinstance(name, str):
        raise ValueError(f"group: expected a group name such as 'c4', got {name!r}")
    try:
        return get_group(name)
    except ValueError as error:
        raise ValueError(f"group: --group {name}: {error}") from None


@dataclass
class CheckpointReport:
    """Everything the report says about one checkpoint.

    ``metrics``: :data:`METRICS` keys → value (``SI_low``/``SI_high``: the confidence interval,
    ``SI_baseline``: the integrated-gradients baseline); ``geed``: layer → normalised G-EED;
    ``drift``: one ``{"beta", "DI", "accuracy", "accuracy_ratio"}`` per β; ``figures``: name →
    PNG bytes (what the HTML embeds); ``files``: name → the same figure in
    ``ReportSettings.figure_format`` (what ``figures/`` holds); ``run``: what was evaluated
    (label → text); ``hyperparameters`` and ``data_hyperparameters``: the constructor arguments
    of the module and the data module; ``group``: the group measured (the ``--group`` name, or
    the checkpoint's training group).
    """

    name: str
    run: dict[str, str]
    hyperparameters: dict[str, str]
    data_hyperparameters: dict[str, str]
    group: str = ""
    metrics: dict[str, float] = field(default_factory=dict)
    geed: dict[str, float] = field(default_factory=dict)
    drift: list[dict[str, float]] = field(default_factory=list)
    figures: dict[str, bytes] = field(default_factory=dict)
    files: dict[str, bytes] = field(default_factory=dict)


# --------------------------------------------------------------------------- loading
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
    ckpt_path = verify_checkpoint(ckpt_path, "ckpt_path")
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


# --------------------------------------------------------------------------- measuring
def evaluate_checkpoint(
    name: str,
    ckpt_path: str | Path,
    config: str | Path | None = None,
    settings: ReportSettings | None = None,
    group: str | Group | None = None,
) -> CheckpointReport:
    """Load one checkpoint (:func:`load_checkpoint`) and measure everything the report shows
    (module docstring, steps 2–3) on ``group`` (a name or a Group; default: the checkpoint's
    training group). ``ValueError`` if its module has no ``group``, or if ``group`` cannot act
    on the data's inputs."""
    settings = settings or ReportSettings()
    loaded = LoadedCheckpoint.load(name, ckpt_path, config)
    if group is None:
        label, measured = loaded.training_group()
    elif isinstance(group, str):
        label, measured = group, resolve_report_group(group)
    else:
        label, measured = repr(group), group
    loaded.check_group(label, measured)
    return measure(loaded, label, measured, settings)


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
    def load(cls, name: str, ckpt_path: str | Path,
             config: str | Path | None = None) -> LoadedCheckpoint:
        """:func:`load_checkpoint`, then ``ValueError`` if the module has no ``group``."""
        module, datamodule, meta = load_checkpoint(ckpt_path, config)
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


def measure(
    loaded: LoadedCheckpoint, label: str, group: Group, settings: ReportSettings
) -> CheckpointReport:
    """Every measurement of the report (module docstring, steps 2–3) of one loaded checkpoint
    on ``group`` (``label``: its name in the report)."""
    module, datamodule, meta = loaded.module, loaded.datamodule, loaded.meta
    name, ckpt_path, config = loaded.name, loaded.ckpt_path, loaded.config
    device = resolve_device(settings.device)
    module.to(device)
    loader = datamodule.test_dataloader()
    elements = fixed_elements(group, settings.orbit_size, settings.seed)
    report = CheckpointReport(
        name=name,
        run=_describe_run(module, datamodule, group, ckpt_path, config, meta),
        hyperparameters=_plain(meta["hyper_parameters"] or dict(module.hparams)),
        data_hyperparameters=_plain(meta["datamodule_hyper_parameters"]
                                    or dict(getattr(datamodule, "hparams", {}))),
        group=label,
    )
    training_label, training = loaded.training_group()
    report.run["group measured"] = label if label == repr(group) else f"{label} ({group!r})"
    report.run["group"] = (f"{training_label} ({training!r})" if training_label != repr(training)
                           else training_label)
    title = f"{report.name} on {label}"
    generator = torch.Generator().manual_seed(settings.seed)
    with eval_mode(module):
        x_all, y_all = _test_split(module, loader, group, elements, device, report, settings)
        pick = torch.randperm(x_all.shape[0], generator=generator)[: settings.samples]
        x, y = x_all[pick].to(device), y_all[pick].to(device)
        report.run["subset"] = (f"{x.shape[0]} of {x_all.shape[0]} test samples "
                                f"(seed {settings.seed})")
        with torch.inference_mode(False), torch.enable_grad():
            _saliency(module, datamodule, group, elements, x, y, report, settings, title)
            _spectral(module, x, report, settings)
        _geed(module, group, x, report, settings, title)
        _drift(module, group, elements, x, y, report, settings, title)
    return report


def _test_split(module, loader, group, elements, device, report, settings) -> tuple[Tensor, Tensor]:
    """OrbitMetrics over every test batch; returns the whole split ``(x, y)`` on the CPU."""
    metrics = OrbitMetrics(group, chunk_size=settings.batch_size).to(device)
    xs, ys = [], []
    for x, y in _progress(loader, f"{report.name} ({report.group}): test split", settings):
        metrics.update_from_model(module, x.to(device), y.to(device), elements)
        xs.append(x.cpu())
        ys.append(y.cpu())
    if not xs:
        raise ValueError("the data module's test split is empty")
    values = {key: value.item() for key, value in metrics.compute().items()}
    report.metrics.update({key: values[key] for key, _, _ in METRICS if key in values})
    return torch.cat(xs), torch.cat(ys)


def _saliency(module, datamodule, group, elements, x, y, report, settings, title) -> None:
    """Per-sample SI (the callback's path: raw maps, then threshold and blur) and the grid."""
    baseline, _ = resolve_baseline("background", datamodule, "invreg report", warn=True)
    recipe = replace(CALLBACK_RECIPE, steps=settings.saliency_steps, baseline=baseline)
    raw_recipe = replace(recipe, threshold=None, blur=False)
    per_sample, grid = [], None
    for start in _progress(range(0, x.shape[0], settings.batch_size),
                           f"{report.name}: saliency (SI)", settings):
        xb, yb = x[start : start + settings.batch_size], y[start : start + settings.batch_size]
        raw = orbit_saliency(module, xb, yb, group, raw_recipe, elements=elements)
        maps = postprocess_saliency(
            raw.flatten(0, 1), threshold=recipe.threshold, blur=recipe.blur,
            blur_kernel_size=recipe.blur_kernel_size, blur_sigma=recipe.blur_sigma,
        ).reshape_as(raw)
        similarity = saliency_similarity(maps, reduction="none")  # [b, N - 1]
        per_sample.append(similarity.mean(dim=1).cpu())
        if grid is None:
            grid = (xb, maps, similarity.mean(dim=1), yb)
    values = torch.cat(per_sample)
    low, high = bootstrap_interval(values, settings.bootstrap, settings.confidence, settings.seed)
    report.metrics.update({"SI": values.double().mean().item(), "SI_low": low, "SI_high": high,
                           "SI_baseline": float(baseline)})
    rows = settings.saliency_rows
    xb, maps, similarity, yb = grid
    elems = elements if elements is not None else torch.arange(group.order)
    figure = grid_figure(xb[:rows], maps[:rows], similarity[:rows], _element_labels(group, elems),
                         targets=yb[:rows],
                         title=f"Saliency over the orbit: {title} "
                               f"({model_title(module, group)})")
    _keep(report, "saliency", figure, settings)


def _spectral(module, x, report, settings) -> None:
    generator = torch.Generator().manual_seed(settings.seed)
    sigma = torch.cat([
        jacobian_spectral_norm(module, x[start : start + settings.batch_size],
                               generator=generator).cpu()
        for start in _progress(range(0, x.shape[0], settings.batch_size),
                               f"{report.name}: Jacobian σ_max", settings)
    ])
    report.metrics["jacobian_sigma_max"] = sigma.double().mean().item()


def _geed(module, group, x, report, settings, title) -> None:
    """Normalised invariance G-EED (cosine) of every stage of the backbone, one orbit forward
    per batch for all of them (batches of one sample have no random pair: merged away)."""
    network = getattr(module, "backbone", module)
    layers = feature_layers(network, x[:2])
    num = None if group.is_finite else settings.orbit_size
    metric = LayerInvariance(group, layers, normalize=True, chunk_size=settings.batch_size,
                             num_samples=num).to(x.device)
    starts = list(range(0, x.shape[0], settings.batch_size))
    if len(starts) > 1 and x.shape[0] - starts[-1] < 2:
        starts.pop()
    ends = [*starts[1:], x.shape[0]]
    for start, end in _progress(list(zip(starts, ends, strict=True)),
                                f"{report.name}: layer G-EED", settings):
        metric.update(network, x[start:end])
    report.geed = {layer: value.item() for layer, value in metric.compute().items()}
    _keep(report, "geed", geed_figure(
        report.geed, f"Layer-wise invariance G-EED: {title} ({model_title(module, group)})"),
        settings)


def _drift(module, group, elements, x, y, report, settings, title) -> None:
    """DriftCallback's measurement, :class:`~invreg.metrics.DriftMetrics` on
    ``(1 − β)·x + β·d`` for each ``β``; the
    figure draws DI's float rounding below 0 as 0 (:func:`comparison_figure`)."""
    source = get_drift_source(settings.drift_source)
    generator = torch.Generator().manual_seed(settings.seed)
    drift = source.sample(x.shape[0], tuple(x.shape[1:]), generator).to(x.dtype)
    drift = match_statistics(drift.cpu(), x.cpu()).to(x.device)
    metrics = DriftMetrics(group, settings.betas, chunk_size=settings.batch_size).to(x.device)
    metrics.update_from_model(module, x, drift, y, elements, progress=lambda pairs: _progress(
        pairs, f"{report.name}: drift", settings))
    rows = [{key: row[key] for key in ("beta", "DI", "accuracy", "accuracy_ratio")}
            for row in metrics.rows()]
    report.drift = rows
    _keep(report, "drift", drift_figure(
        [r["beta"] for r in rows], [max(r["DI"], 0.0) for r in rows],
        [r["accuracy_ratio"] for r in rows],
        f"Drift ({source!r}): {title} ({model_title(module, group)})"), settings)


def feature_layers(network: nn.Module, example: Tensor | None = None) -> list[str]:
    """The layers whose G-EED the report plots: every child of ``network``, a ``Sequential`` /
    ``ModuleList`` child replaced by its own children (``flatten``, ``hidden.0``, ``hidden.1``,
    ``head`` for an :class:`~invreg.models.MLP`; ``blocks.0``, …, ``group_pool``, ``head``
    for an :class:`~invreg.models.E2CNN`); ``[""]`` (the output) for a network without
    children.

    With an ``example`` batch the layers are listed in the order one forward pass runs them,
    those it does not run left out: registration order is not execution order (a
    :class:`~invreg.models.TiedMLP` pools after ``hidden.0``, but registers ``pool`` last).

    >>> from invreg.models import MLP, TiedMLP
    >>> feature_layers(MLP((1, 8, 8), 10, hidden_widths=[16, 16]))
    ['flatten', 'hidden.0', 'hidden.1', 'head']
    >>> tied = TiedMLP((1, 8, 8), 10, group="c4", hidden_widths=[16, 16])
    >>> feature_layers(tied, torch.randn(2, 1, 8, 8))
    ['hidden.0', 'pool', 'hidden.1', 'head']
    """
    layers = []
    for name, child in network.named_children():
        if isinstance(child, nn.Sequential | nn.ModuleList) and len(child):
            layers += [f"{name}.{inner}" for inner, _ in child.named_children()]
        else:
            layers.append(name)
    if not layers:
        return [""]
    if example is None:
        return layers
    modules = dict(network.named_modules())
    order: list[str] = []
    handles = [modules[name].register_forward_hook(
        lambda *_, name=name: order.append(name) if name not in order else None)
        for name in layers]
    try:
        with torch.no_grad():
            network(example)
    finally:
        for handle in handles:
            handle.remove()
    return order


# --------------------------------------------------------------------------- figures
def geed_figure(geed: dict[str, float], title: str) -> Any:
    """Normalised G-EED (0 = invariant) against the network's stages, input to output."""
    figure = new_figure(5.5, 3.4)
    axis = figure.subplots()
    names = list(geed)
    axis.plot(range(len(names)), [geed[n] for n in names], "o-", color="C0")
    axis.set_xticks(range(len(names)), [n or "output" for n in names], rotation=20,
                    fontsize=8)
    axis.set_xlabel("layer (input → output)")
    axis.set_ylabel("normalised G-EED D/R (cosine)")
    scale_for(axis, list(geed.values()))
    axis.set_title(title, fontsize=9)
    return figure


def comparison_figure(reports: Sequence[CheckpointReport], source: str) -> Any:
    """All checkpoints in one figure, one colour each. Top: normalised G-EED against the
    layers, aligned by name (:func:`merge_layers`: a layer only one model has, e.g. a
    weight-tied model's ``pool``, sits between its neighbours). Bottom: DI (left) and
    ``Acc(β)/Acc(0)`` (right) against the drift weight ``β``. DI is a KL divergence, ``≥ 0``:
    float rounding below 0 (an invariant model's ``-1e-9``) is drawn as 0; the tables keep the
    measured value."""
    figure = new_figure(9.0, 6.6)
    axes = figure.subplot_mosaic([["geed", "geed"], ["di", "accuracy"]])
    layers = merge_layers([list(report.geed) for report in reports])
    several = len({report.group for report in reports}) > 1
    for index, report in enumerate(reports):
        style = dict(color=f"C{index}", label=_column(report, several), clip_on=False,
                     zorder=3)
        names = list(report.geed)
        axes["geed"].plot([layers.index(n) for n in names], [report.geed[n] for n in names],
                          "o-", **style)
        betas = [row["beta"] for row in report.drift]
        # clip_on off: an invariant model's line at 0 stays visible over the axis
        axes["di"].plot(betas, [max(row["DI"], 0.0) for row in report.drift], "o-", **style)
        axes["accuracy"].plot(betas, [row["accuracy_ratio"] for row in report.drift], "s--",
                              **style)
    axes["geed"].set_xticks(range(len(layers)), [n or "output" for n in layers], fontsize=8)
    axes["geed"].set(xlabel="layer (input → output)", ylabel="normalised G-EED (cosine)",
                     title="per-layer invariance G-EED (0 = invariant)")
    scale_for(axes["geed"], [v for report in reports for v in report.geed.values()])
    axes["geed"].legend(fontsize=8)
    scale_for(axes["di"], [max(row["DI"], 0.0) for report in reports for row in report.drift])
    axes["di"].set(xlabel="β (weight of the drift sample)", ylabel="DI",
                   title=f"DI under drift ({source})")
    axes["accuracy"].set(xlabel="β (weight of the drift sample)", ylabel="Acc(β) / Acc(0)",
                         title="accuracy under drift")
    axes["accuracy"].set_ylim(bottom=0.0)
    return figure


def merge_layers(layer_lists: Sequence[Sequence[str]]) -> list[str]:
    """One ordered list of layer names from several models: each list's order is kept, a name
    missing so far is placed right after the name that precedes it in its own list.

    >>> merge_layers([["flatten", "hidden.0", "head"], ["hidden.0", "pool", "head"]])
    ['flatten', 'hidden.0', 'pool', 'head']
    """
    merged: list[str] = []
    for names in layer_lists:
        position = 0
        for name in names:
            if name in merged:
                position = merged.index(name) + 1
            else:
                merged.insert(position, name)
                position += 1
    return merged


def _png(figure: Any, dpi: int = REPORT_DPI, figure_format: str = "png") -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format=figure_format, dpi=dpi, bbox_inches="tight", pad_inches=0.05)
    return buffer.getvalue()


def _encode(figure: Any, settings: ReportSettings) -> tuple[bytes, bytes]:
    """The figure as PNG (for the HTML) and in the chosen file format (for ``figures/``)."""
    png = _png(figure, settings.dpi)
    if settings.figure_format == "png":
        return png, png
    return png, _png(figure, settings.dpi, settings.figure_format)


def _keep(report: CheckpointReport, name: str, figure: Any, settings: ReportSettings) -> None:
    """Keep the figure in ``report`` in both encodings (:func:`_encode`)."""
    report.figures[name], report.files[name] = _encode(figure, settings)


# --------------------------------------------------------------------------- rendering
def format_value(value: float | None) -> str:
    """A metric for a table: 4 significant digits, scientific below 1e-3, ``n/a`` for NaN.

    >>> format_value(0.946312), format_value(1.5e-07), format_value(0.0), format_value(math.nan)
    ('0.9463', '1.50e-07', '0', 'n/a')
    """
    if value is None or math.isnan(value):
        return "n/a"
    if value != 0 and abs(value) < 1e-3:
        return f"{value:.2e}"
    return f"{value:.4g}"


def metric_cell(report: CheckpointReport, key: str) -> str:
    """One cell of the summary table; SI with its confidence interval ``0.95 [0.93, 0.97]``."""
    text = format_value(report.metrics.get(key, math.nan))
    if key == "SI" and "SI_low" in report.metrics:
        text += f" [{format_value(report.metrics['SI_low'])}, " \
                f"{format_value(report.metrics['SI_high'])}]"
    return text


def _methods(reports: Sequence[CheckpointReport], settings: ReportSettings) -> list[str]:
    level = f"{settings.confidence:.0%}"
    baselines = ", ".join(f"{r.name}: {format_value(r.metrics.get('SI_baseline'))}"
                          for r in reports)
    return [
        "Accuracy, orbit accuracy, DI, LI, normalised LI and orbit consistency: the whole test "
        "split, full orbits (invreg.metrics.OrbitMetrics); means over samples and, for DI and "
        "LI, over the non-identity group elements.",
        f"SI, Jacobian σ_max, G-EED and drift: a fixed subset of test samples (seed "
        f"{settings.seed}, at most {settings.samples}). SI: the paper's recipe (|integrated "
        f"gradients|, {settings.saliency_steps} steps, 0.9·max threshold, 3×3 Gaussian blur), "
        f"integrated gradients from the data module's empty pixel (its background value, else 0: "
        f"{baselines}); its interval is a {level} "
        f"percentile bootstrap over samples ({settings.bootstrap} resamples of the per-sample "
        f"SI, each the mean over the sample's non-identity group elements).",
        "G-EED: normalised invariance deviation, cosine distance to the orbit centroid ÷ cosine "
        "distance between random input pairs (0 = invariant; invreg.metrics.LayerInvariance).",
        f"Drift: each subset sample blended with a sample of {settings.drift_source!r}, "
        f"(1 − β)·x + β·d, statistics matched to the data; β in "
        f"{', '.join(f'{b:g}' for b in settings.betas)}.",
    ]


def _column(report: CheckpointReport, several_groups: bool) -> str:
    """A checkpoint's name in the comparison figure's legend: with its group when the report
    measures more than one."""
    return f"{report.name} on {report.group}" if several_groups else report.name


def render_markdown(
    reports: Sequence[CheckpointReport], settings: ReportSettings, figures: dict[str, str],
    notes: Sequence[str] = (),
) -> str:
    """``report.md``: ``figures`` maps ``"<report index>/<figure name>"`` (and ``"comparison"``)
    to the relative path of its figure file (PNG and SVG shown inline, PDF linked);
    ``notes``: warning lines shown above the table. The summary has one row per checkpoint
    and group measured."""
    lines = ["# Invariance report", "", _generated_line(settings), ""]
    lines += [f"> **Warning:** {_md(note)}" for note in notes] + ([""] if notes else [])
    lines += ["## Summary", "",
              "| checkpoint | group | " + " | ".join(label for _, label, _ in METRICS) + " |",
              "|---|---|" + "---|" * len(METRICS)]
    for r in reports:
        lines.append(f"| {_md(r.name)} | {_md(r.group)} | "
                     + " | ".join(metric_cell(r, key) for key, _, _ in METRICS) + " |")
    lines += ["", "| metric | definition |", "|---|---|"]
    lines += [f"| {label} | {_md(description)} |" for _, label, description in METRICS]
    lines.append("")
    if "comparison" in figures:
        lines += [_md_figure("G-EED and drift, all checkpoints", figures["comparison"]), ""]
    lines += ["How the numbers were measured:", ""]
    lines += [f"- {_md(text)}" for text in _methods(reports, settings)]
    for index, report in enumerate(reports):
        lines += ["", f"## {_md(report.name)}, group {_md(report.group)}", "", "| | |",
                  "|---|---|"]
        lines += [f"| {label} | {_md(text)} |" for label, text in report.run.items()]
        lines += ["", "### Figures", ""]
        for name, caption in (("geed", "per-layer G-EED"), ("saliency", "saliency over the orbit"),
                              ("drift", "DI and accuracy under drift")):
            lines += [_md_figure(caption, figures[f"{index}/{name}"]), ""]
        lines += ["### Per-layer G-EED", "", "| layer | normalised G-EED |", "|---|---|"]
        lines += [f"| {_md(layer or 'output')} | {format_value(value)} |"
                  for layer, value in report.geed.items()]
        lines += ["", "### Drift", "", "| β | DI | accuracy | Acc(β)/Acc(0) |", "|---|---|---|---|"]
        lines += [f"| {row['beta']:g} | {format_value(row['DI'])} | "
                  f"{format_value(row['accuracy'])} | {format_value(row['accuracy_ratio'])} |"
                  for row in report.drift]
        for title, values in (("Model hyperparameters", report.hyperparameters),
                              ("Data hyperparameters", report.data_hyperparameters)):
            lines += ["", f"### {title}", "", "| argument | value |", "|---|---|"]
            lines += [f"| {_md(key)} | `{_md(value)}` |" for key, value in values.items()]
    return "\n".join(lines) + "\n"


def _md_figure(caption: str, path: str) -> str:
    """A figure in markdown: an image (PNG, SVG), or a link to a PDF, which viewers do not
    show inline."""
    return f"[{caption} (PDF)]({path})" if path.endswith(".pdf") else f"![{caption}]({path})"


CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; margin: 0 auto;
       max-width: 1100px; padding: 1.5em 2em; color: #1f2328; line-height: 1.45; }
h1 { margin-bottom: 0.2em; } h2 { border-bottom: 1px solid #d0d7de; padding-bottom: 0.2em;
     margin-top: 1.8em; } h3 { margin-bottom: 0.4em; }
.meta { color: #59636e; font-size: 0.9em; }
table { border-collapse: collapse; margin: 0.6em 0 1em; font-size: 0.9em; }
th, td { border: 1px solid #d0d7de; padding: 0.3em 0.7em; text-align: left;
         vertical-align: top; }
th { background: #f6f8fa; } td.num { text-align: right; font-variant-numeric: tabular-nums;
     white-space: nowrap; }
td.def { color: #59636e; font-size: 0.92em; }
code { font-size: 0.88em; word-break: break-all; }
figure { margin: 0.8em 0; } figure img { max-width: 100%; border: 1px solid #eaeef2; }
figcaption { color: #59636e; font-size: 0.85em; }
.figures { display: flex; flex-wrap: wrap; gap: 1em; align-items: flex-start; }
.figures figure { flex: 1 1 480px; }
.columns { display: flex; flex-wrap: wrap; gap: 2em; } .columns > div { flex: 1 1 300px; }
ul.methods { font-size: 0.88em; color: #3d444d; }
.warning { background: #fff8c5; border: 1px solid #d4a72c; padding: 0.5em 0.8em; }
"""


def render_html(reports: Sequence[CheckpointReport], settings: ReportSettings,
                comparison: bytes | None, notes: Sequence[str] = ()) -> str:
    """``report.html``: one self-contained page (inline CSS, figures as base64 PNG data URIs);
    ``notes``: warning lines above the summary, which has one row per checkpoint and group."""
    e = html.escape
    names = list(dict.fromkeys(r.name for r in reports))
    out = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
           '<meta name="viewport" content="width=device-width, initial-scale=1">',
           f"<title>Invariance report: {e(', '.join(names))}</title>",
           f"<style>{CSS}</style></head><body>",
           "<h1>Invariance report</h1>", f'<p class="meta">{e(_generated_line(settings))}</p>']
    out += [f'<p class="warning"><strong>Warning:</strong> {e(note)}</p>' for note in notes]
    out += ["<h2>Summary</h2>", "<table><tr><th>checkpoint</th><th>group</th>"
            + "".join(f"<th>{e(label)}</th>" for _, label, _ in METRICS) + "</tr>"]
    for r in reports:
        cells = "".join(f'<td class="num">{e(metric_cell(r, key))}</td>' for key, _, _ in METRICS)
        out.append(f"<tr><th>{e(r.name)}</th><td>{e(r.group)}</td>{cells}</tr>")
    out.append("</table>")
    out += ["<table><tr><th>metric</th><th>definition</th></tr>"]
    out += [f'<tr><th>{e(label)}</th><td class="def">{e(description)}</td></tr>'
            for _, label, description in METRICS]
    out.append("</table>")
    if comparison is not None:
        out.append(_html_figure(comparison, "Per-layer G-EED, and DI and accuracy under drift, "
                                            "all checkpoints"))
    out.append('<ul class="methods">'
               + "".join(f"<li>{e(t)}</li>" for t in _methods(reports, settings)) + "</ul>")
    for report in reports:
        out += [f"<h2>{e(report.name)}, group {e(report.group)}</h2>", "<table>"]
        out += [f"<tr><th>{e(label)}</th><td><code>{e(text)}</code></td></tr>"
                if label in ("checkpoint", "config") else
                f"<tr><th>{e(label)}</th><td>{e(text)}</td></tr>"
                for label, text in report.run.items()]
        out += ["</table>", '<div class="figures">',
                _html_figure(report.figures["geed"], "Per-layer normalised G-EED (0 = invariant)"),
                _html_figure(report.figures["drift"], "DI and Acc(β)/Acc(0) under drift"),
                "</div>",
                _html_figure(report.figures["saliency"],
                             "Saliency over the orbit: input, then g⁻¹·m(g·x) per group element"),
                '<div class="columns"><div><h3>Per-layer G-EED</h3>',
                "<table><tr><th>layer</th><th>normalised G-EED</th></tr>"]
        out += [f'<tr><td>{e(layer or "output")}</td><td class="num">{format_value(v)}</td></tr>'
                for layer, v in report.geed.items()]
        out += ["</table></div><div><h3>Drift</h3>",
                "<table><tr><th>β</th><th>DI</th><th>accuracy</th><th>Acc(β)/Acc(0)</th></tr>"]
        out += [f'<tr><td class="num">{row["beta"]:g}</td>'
                + "".join(f'<td class="num">{format_value(row[k])}</td>'
                          for k in ("DI", "accuracy", "accuracy_ratio")) + "</tr>"
                for row in report.drift]
        out.append("</table></div></div>")
        out.append('<div class="columns">')
        for title, values in (("Model hyperparameters", report.hyperparameters),
                              ("Data hyperparameters", report.data_hyperparameters)):
            out += [f"<div><h3>{e(title)}</h3>", "<table><tr><th>argument</th><th>value</th></tr>"]
            out += [f"<tr><td>{e(k)}</td><td><code>{e(v)}</code></td></tr>"
                    for k, v in values.items()]
            out.append("</table></div>")
        out.append("</div>")
    out.append("</body></html>")
    return "\n".join(out) + "\n"


def _html_figure(png: bytes, caption: str) -> str:
    data = base64.b64encode(png).decode("ascii")
    return (f'<figure><img alt="{html.escape(caption)}" src="data:image/png;base64,{data}">'
            f"<figcaption>{html.escape(caption)}</figcaption></figure>")


def _generated_line(settings: ReportSettings) -> str:
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    return (f"invreg {invreg.__version__}, {now}; test split of each checkpoint's data module; "
            f"subset of {settings.samples} samples for SI, σ_max, G-EED and drift.")


def _md(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


# --------------------------------------------------------------------------- the report
def write_report(
    ckpt_paths: Sequence[str | Path],
    report_dir: str | Path,
    configs: Sequence[str | Path] | None = None,
    names: Sequence[str] | None = None,
    overwrite: bool = False,
    settings: ReportSettings | None = None,
) -> Path:
    """Evaluate every checkpoint and write ``report_dir/report.md`` (with ``figures/``) and the
    self-contained ``report_dir/report.html``; return the HTML's path.

    ``configs``: none (every checkpoint carries its own arguments), one for all checkpoints, or
    one per checkpoint; ``names``: the column of each checkpoint (default: the config's stem,
    else the run folder's name, else the file's stem). Every input is checked before any work:
    ``FileNotFoundError`` for a missing checkpoint or config, ``ValueError`` for a checkpoint
    file that is empty, truncated, corrupted or not a checkpoint
    (:func:`~invreg.checkpoints.verify_checkpoint`) and for counts that do not match, and
    :func:`check_report_dir`'s errors for ``report_dir``.
    """
    settings = settings or ReportSettings()
    ckpt_paths = [Path(p) for p in ckpt_paths]
    if not ckpt_paths:
        raise ValueError("ckpt_path: expected at least one checkpoint")
    configs = [Path(c) for c in configs or []]
    if len(configs) not in (0, 1, len(ckpt_paths)):
        raise ValueError(f"config: expected none, one for all, or one per checkpoint "
                         f"({len(ckpt_paths)}), got {len(configs)}")
    if names and len(names) != len(ckpt_paths):
        raise ValueError(f"name: expected one per checkpoint ({len(ckpt_paths)}), got "
                         f"{len(names)}")
    for path in ckpt_paths:
        verify_checkpoint(path, "ckpt_path")
    for path in configs:
        if not path.is_file():
            raise FileNotFoundError(f"config: no such config file {str(path)!r}")
    report_dir = check_report_dir(report_dir, overwrite)
    per_ckpt = configs * len(ckpt_paths) if len(configs) == 1 else configs or [None] * len(
        ckpt_paths)
    labels = unique_names(list(names) if names else [
        default_name(c, config) for c, config in zip(ckpt_paths, per_ckpt, strict=True)])
    # every checkpoint loaded and every group checked against its inputs before measuring
    loaded = [LoadedCheckpoint.load(label, ckpt, config)
              for label, ckpt, config in zip(labels, ckpt_paths, per_ckpt, strict=True)]
    named = [(name, resolve_report_group(name)) for name in settings.groups]
    plan = [(item, named or [item.training_group()]) for item in loaded]
    for item, groups in plan:
        for label, group in groups:
            item.check_group(label, group)
    notes = mixed_groups_warning(loaded) if not settings.groups else []
    for note in notes:
        print(f"invreg report: warning: {note}", file=sys.stderr, flush=True)
    reports = [measure(item, label, group, settings)
               for item, groups in plan for label, group in groups]
    comparison = comparison_png = None
    if len(reports) > 1:
        comparison_png, comparison = _encode(
            comparison_figure(reports, settings.drift_source), settings)
    figures_dir = report_dir / "figures"
    if figures_dir.exists():
        shutil.rmtree(figures_dir)
    figures_dir.mkdir(parents=True)
    relative: dict[str, str] = {}
    ext = settings.figure_format
    if comparison is not None:
        (figures_dir / f"comparison.{ext}").write_bytes(comparison)
        relative["comparison"] = f"figures/comparison.{ext}"
    several = len(settings.groups) > 1
    for index, report in enumerate(reports):
        text = f"{report.name}_{report.group}" if several else report.name
        stem = "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in text)
        for name, data in report.files.items():
            filename = f"{index}_{stem}_{name}.{ext}"
            (figures_dir / filename).write_bytes(data)
            relative[f"{index}/{name}"] = f"figures/{filename}"
    (report_dir / "report.md").write_text(render_markdown(reports, settings, relative, notes),
                                          encoding="utf-8")
    path = report_dir / "report.html"
    path.write_text(render_html(reports, settings, comparison_png, notes), encoding="utf-8")
    return path


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


def check_report_dir(report_dir: str | Path, overwrite: bool = False) -> Path:
    """``report_dir`` as a ``Path`` once it is known that the report can be written there:
    a folder, or a path whose nearest existing parent is a folder, writable either way; an
    earlier report in it (:data:`REPORT_FILES`) is replaced only with ``overwrite``.

    ``NotADirectoryError`` (a file in the way), ``PermissionError`` (not writable),
    ``FileExistsError`` (an earlier report without ``overwrite``), each naming ``report_dir``.
    """
    report_dir = Path(report_dir)
    fix = "choose another --report_dir"
    if report_dir.exists() and not report_dir.is_dir():
        raise NotADirectoryError(f"report_dir: {str(report_dir)!r} is a file, not a folder; "
                                 f"{fix}")
    existing = report_dir if report_dir.exists() else next(
        (parent for parent in report_dir.absolute().parents if parent.exists()), Path("/"))
    if not existing.is_dir():
        raise NotADirectoryError(f"report_dir: {str(report_dir)!r} cannot be created: "
                                 f"{str(existing)!r} is a file, not a folder; {fix}")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise PermissionError(f"report_dir: {str(existing)!r} is not writable, so "
                              f"{str(report_dir)!r} cannot be written; {fix}")
    present = [name for name in REPORT_FILES if (report_dir / name).exists()]
    if present and not overwrite:
        raise FileExistsError(f"report_dir: {str(report_dir)!r} already holds a report "
                              f"({', '.join(present)}); pass --overwrite to replace it, or "
                              f"{fix}")
    for name in present:  # what --overwrite replaces must be of the kind the report writes
        target = report_dir / name
        if target.is_dir() != (name == "figures"):
            raise FileExistsError(
                f"report_dir: {str(target)!r} is a {'folder' if target.is_dir() else 'file'}, "
                f"where the report writes its {name}; remove it or {fix}")
    return report_dir


def default_name(ckpt_path: Path, config: Path | None) -> str:
    """A checkpoint's column name: the config's stem, else its run folder's name
    (``<run>/checkpoints/best.ckpt`` → ``<run>``; ``runs/da/version_0`` → ``da/version_0``),
    else the file's stem.

    >>> default_name(Path("runs/da/version_0/checkpoints/best.ckpt"), None)
    'da/version_0'
    """
    if config is not None:
        return config.stem
    run = ckpt_path.parent.parent
    if ckpt_path.parent.name == "checkpoints" and run.name:
        if re.fullmatch(r"version_\d+", run.name) and run.parent.name:
            return f"{run.parent.name}/{run.name}"
        return run.name
    return ckpt_path.stem


def unique_names(names: list[str]) -> list[str]:
    """``names`` with repeats numbered: ``["a", "a", "b"]`` → ``["a", "a (2)", "b"]``."""
    seen: dict[str, int] = {}
    out = []
    for name in names:
        seen[name] = seen.get(name, 0) + 1
        out.append(name if seen[name] == 1 else f"{name} ({seen[name]})")
    return out


def _describe_run(module, datamodule, group, ckpt_path, config, meta) -> dict[str, str]:
    classes = getattr(datamodule, "classes", None)
    backbone = getattr(module, "backbone", None)
    size = len(datamodule.test_dataloader().dataset)
    run = {
        "checkpoint": str(Path(ckpt_path).resolve()),
        "config": str(Path(config).resolve()) if config else "none: read from the checkpoint",
        "epoch (from 0)": str(meta.get("epoch")),
        "global step": str(meta.get("global_step")),
        "model": f"{type(module).__module__}.{type(module).__qualname__}",
        "backbone": type(backbone).__name__ if isinstance(backbone, nn.Module) else "-",
        "parameters": f"{sum(p.numel() for p in module.parameters()):,}",
        "group": repr(group),
        "data": f"{type(datamodule).__module__}.{type(datamodule).__qualname__}",
        "test samples": str(size),
        "classes": ", ".join(map(str, classes)) if classes is not None else "-",
    }
    input_shape = getattr(datamodule, "input_shape", None)
    if input_shape is not None:
        run["input shape"] = " × ".join(map(str, input_shape))
    return run


def _plain(values: dict[str, Any]) -> dict[str, str]:
    """Constructor arguments as text (nested descriptions as compact JSON), private keys
    (``_class_path``, ``_instantiator``) left out."""
    def plain(value: Any) -> Any:
        return value.as_dict() if hasattr(value, "as_dict") else repr(value)

    return {key: value if isinstance(value, str) else json.dumps(value, default=plain)
            for key, value in values.items() if not key.startswith("_")}


def resolve_device(device: str) -> torch.device:
    """The ``torch.device`` of ``--device``: ``"auto"`` is CUDA when available, else the CPU;
    any other value must parse (``torch.device``) and be present on this machine, else
    ``ValueError`` naming ``--device`` and the values that work here.
    """
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        parsed = torch.device(device)
    except (RuntimeError, TypeError, ValueError):
        raise ValueError(f"device: {device!r} is not a device name; pass --device "
                         f"with one of: {', '.join(available_devices())}") from None
    kind = parsed.type
    backend = getattr(torch, kind, None) if kind not in ("cpu", "meta") else None
    count = _device_count(kind, backend)
    if kind == "cpu" or (count and (parsed.index is None or parsed.index < count)):
        return parsed
    reason = ("meta tensors hold no values to measure" if kind == "meta" else
              f"this machine has {count} {kind} device(s)" if count else
              f"{kind} is not available in this torch build or machine (torch "
              f"{torch.__version__})")
    raise ValueError(f"device: {device!r} cannot be used: {reason}; pass --device "
                     f"with one of: {', '.join(available_devices())}")


def _device_count(kind: str, backend: Any) -> int:
    if kind == "mps":
        return int(torch.backends.mps.is_available())
    try:
        if backend is None or not backend.is_available():
            return 0
        return int(backend.device_count()) if hasattr(backend, "device_count") else 1
    except (AssertionError, RuntimeError):  # a build without the backend compiled in
        return 0


def available_devices() -> list[str]:
    """The ``--device`` values that work on this machine: ``auto``, ``cpu``, then each CUDA
    (or MPS) device present."""
    names = ["auto", "cpu"]
    cuda = _device_count("cuda", torch.cuda)
    names += ["cuda"] + [f"cuda:{i}" for i in range(cuda)] if cuda else []
    names += ["mps"] if _device_count("mps", None) else []
    return names


def _progress(items: Iterable, description: str, settings: ReportSettings) -> Iterable:
    return tqdm(items, desc=description, disable=not settings.progress, leave=False,
                file=sys.stderr, dynamic_ncols=True)


# --------------------------------------------------------------------------- command line
def build_parser():
    """The parser of ``invreg report`` (jsonargparse, as the rest of the ``invreg`` CLI)."""
    from jsonargparse import ArgumentParser

    defaults = ReportSettings()
    parser = ArgumentParser(
        prog="invreg report", exit_on_error=False,
        description=(
            "Evaluate checkpoints on their data module's test split and write DIR/report.md "
            "and a self-contained DIR/report.html: accuracy, orbit accuracy, DI, LI, "
            "normalised LI, orbit consistency, SI with a bootstrap interval, Jacobian "
            "sigma_max, per-layer G-EED, a saliency-orbit grid and drift curves. Several "
            "--ckpt_path give one table side by side."
        ),
    )
    parser.add_argument("--ckpt_path", action="append", nargs="+", required=True,
                        help="checkpoint file(s); repeat the option or list several")
    parser.add_argument("--config", action="append", nargs="+",
                        help="training config(s): none (checkpoints of `invreg fit` carry their "
                             "model and data), one for all, or one per checkpoint")
    parser.add_argument("--name", action="append", nargs="+",
                        help="column name(s), one per checkpoint; without it: the config's "
                             "stem, else the run folder's name")
    parser.add_argument("--report_dir", required=True, help="folder of the report")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace an existing report in --report_dir")
    parser.add_argument("--group", action="append", nargs="+",
                        help="group name(s) to measure every checkpoint on, e.g. --group c4 "
                             "flip (names of invreg.groups.get_group); default: each "
                             "checkpoint's training group")
    parser.add_argument("--figure-format", "--figure_format", dest="figure_format",
                        choices=list(FIGURE_FORMATS), default="png",
                        help="format of the figure files in DIR/figures (the HTML embeds PNG)")
    options = {
        "samples": (int, "test samples (a seeded subset) for SI, sigma_max, G-EED and drift"),
        "saliency_rows": (int, "samples shown in the saliency-orbit grid"),
        "saliency_steps": (int, "integrated-gradients steps of SI and the grid"),
        "betas": (list[float], "drift weights beta of (1 - beta) x + beta d"),
        "drift_source": (str, "natural_images, noise, mnist1d or fashion_mnist (local files)"),
        "orbit_size": (int, "orbit elements for a continuous group"),
        "bootstrap": (int, "resamples of SI's percentile-bootstrap interval"),
        "confidence": (float, "level of SI's interval"),
        "batch_size": (int, "samples per forward/backward pass"),
        "seed": (int, "seeds the subset, drift samples, bootstrap and Lanczos starts"),
        "device": (str, "auto (CUDA when available), cpu, cuda, ..."),
        "progress": (bool, "progress bars on stderr"),
        "dpi": (int, "resolution of the PNG figures (files and HTML)"),
    }
    for name, (kind, text) in options.items():
        default = getattr(defaults, name)
        parser.add_argument(f"--{name}", type=kind, help=text,
                            default=list(default) if isinstance(default, tuple) else default)
    return parser


def run_report_cli(args: Sequence[str] | None = None) -> Path:
    """``invreg report ARGS``: parse, write the report, print where it is; return the HTML's
    path. Exceptions propagate (:func:`invreg.cli.main` turns them into a short error)."""
    parsed = build_parser().parse_args(list(sys.argv[2:] if args is None else args))
    flat = {key: [item for group in (parsed[key] or []) for item in group]
            for key in ("ckpt_path", "config", "name", "group")}
    settings = ReportSettings(
        samples=parsed.samples, saliency_rows=parsed.saliency_rows,
        saliency_steps=parsed.saliency_steps, betas=tuple(parsed.betas),
        drift_source=parsed.drift_source, orbit_size=parsed.orbit_size,
        bootstrap=parsed.bootstrap, confidence=parsed.confidence, batch_size=parsed.batch_size,
        seed=parsed.seed, device=parsed.device, progress=parsed.progress,
        groups=tuple(flat["group"]), figure_format=parsed.figure_format, dpi=parsed.dpi,
    )
    path = write_report(flat["ckpt_path"], parsed.report_dir, flat["config"], flat["name"],
                        parsed.overwrite, settings)
    print(f"invreg report: {path.parent / 'report.md'}")
    print(f"invreg report: {path}", flush=True)
    return path
