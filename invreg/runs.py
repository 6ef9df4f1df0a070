"""Where a run's files go: one folder per run, never shared with an earlier run.

:func:`run_directory` is the single answer to "the folder of this trainer's run". The config
saver of the ``invreg`` CLI (:class:`SaveRunConfig`), the invreg callbacks' PNG/CSV files and
every ``ModelCheckpoint`` without an explicit ``dirpath`` use it, so a run's ``config.yaml``,
``checkpoints/`` and media sit side by side:

==========================================  ================================================
logger                                      run directory
==========================================  ================================================
CSV / TensorBoard                           ``save_dir/name/version_N`` (the logger's folder)
W&B (``WandbLogger``)                       ``save_dir/project/<run id>``
none (``logger: false``)                    ``default_root_dir/version_N``, a fresh ``N``
==========================================  ================================================

With a logger this is exactly where Lightning puts ``checkpoints/``. W&B keeps its own files
(the offline run, its media) in ``save_dir/wandb/<offline-run-...>``, where ``wandb sync``
finds them; the run directory links to that folder as ``wandb/`` so everything of a run is
reached from one place. Without one, Lightning
would put every run's checkpoints in ``default_root_dir/checkpoints``; here each run claims the
next free ``version_N`` (created at once, so two runs started together get different folders)
and its checkpoints go inside it. (The ``invreg`` CLI keeps nothing of a ``validate``, ``test``
or ``predict`` run with neither a logger nor ``--trainer.default_root_dir``: no ``version_N``
appears in the current folder; see :class:`invreg.cli.InvregCLI`.)
"""

from __future__ import annotations

import json
import os
import re
import weakref
from pathlib import Path

import pytorch_lightning as pl
import torch
from lightning_fabric.utilities.cloud_io import get_filesystem
from pytorch_lightning.callbacks import ModelCheckpoint
from pytorch_lightning.cli import SaveConfigCallback
from pytorch_lightning.loggers import WandbLogger
from pytorch_lightning.trainer.states import TrainerFn

_RUN_DIRECTORIES: weakref.WeakKeyDictionary[pl.Trainer, Path] = weakref.WeakKeyDictionary()
_VERSION = re.compile(r"version_(\d+)")


def run_directory(trainer: pl.Trainer) -> Path:
    """The folder of this trainer's run (see the module docstring), decided once per trainer.

    The first call also points every ``ModelCheckpoint`` of the trainer whose ``dirpath`` is
    unset at ``<run directory>/checkpoints``. Lightning sets up checkpoint callbacks after all
    others, so calling this from a callback's ``setup`` comes first.

    A collective call (the path is broadcast from rank 0): call it on every process.
    """
    known = _RUN_DIRECTORIES.get(trainer)
    if known is not None:
        return known
    if trainer.loggers:
        logger = trainer.loggers[0]
        if logger.version is None and hasattr(logger, "experiment"):
            logger.experiment  # noqa: B018 - creates the W&B run, whose id names the folder
        save_dir = logger.save_dir if logger.save_dir is not None else trainer.default_root_dir
        version = logger.version
        version = version if isinstance(version, str) else f"version_{version}"
        path = os.path.join(save_dir, str(logger.name), version)
    else:
        path = str(_claim_version(Path(trainer.default_root_dir))) if trainer.is_global_zero else ""
    path = Path(trainer.strategy.broadcast(path))
    _RUN_DIRECTORIES[trainer] = path
    if trainer.is_global_zero:
        _link_wandb_folder(trainer, path)
    for callback in trainer.checkpoint_callbacks:
        if isinstance(callback, ModelCheckpoint) and callback.dirpath is None:
            callback.dirpath = str(path / "checkpoints")
    return path


def wandb_folder(trainer: pl.Trainer) -> Path | None:
    """The W&B run's own folder (``.../wandb/offline-run-<time>-<id>``) when the trainer's
    first logger is a ``WandbLogger`` whose run has started, else ``None``."""
    if not trainer.loggers or not isinstance(trainer.loggers[0], WandbLogger):
        return None
    files = getattr(trainer.loggers[0].experiment, "dir", None)  # <run folder>/files
    return Path(files).parent if files else None


def _link_wandb_folder(trainer: pl.Trainer, run: Path) -> None:
    """Link ``run/wandb`` to the W&B run's folder (relative, so the tree can move); a run
    resumed in a new process (a second W&B folder) gets ``wandb-v1``. Where links cannot be
    made, ``summary.json`` still names the folder."""
    folder = wandb_folder(trainer)
    if folder is None:
        return
    target = folder.resolve()
    run.mkdir(parents=True, exist_ok=True)
    for existing in [run / "wandb", *run.glob("wandb-v*")]:
        if existing.is_symlink() and existing.resolve() == target:
            return
    link = free_path(run / "wandb")
    try:
        link.symlink_to(os.path.relpath(target, run.resolve()), target_is_directory=True)
    except OSError:
        pass


def _claim_version(root: Path) -> Path:
    """Create and return ``root/version_N`` for the smallest ``N`` above every existing one."""
    root.mkdir(parents=True, exist_ok=True)
    taken = [int(m.group(1)) for p in root.iterdir() if (m := _VERSION.fullmatch(p.name))]
    number = max(taken, default=-1) + 1
    while True:
        candidate = root / f"version_{number}"
        try:
            candidate.mkdir()
        except FileExistsError:  # another run claimed it between the listing and now
            number += 1
            continue
        return candidate


def free_path(path: Path) -> Path:
    """``path`` if nothing is there, else the first free ``<stem>-v<k><suffix>``, ``k = 1, 2…``
    (the naming ``ModelCheckpoint`` uses), so an existing file is never overwritten."""
    candidate, k = path, 0
    while candidate.exists():
        k += 1
        candidate = path.with_name(f"{path.stem}-v{k}{path.suffix}")
    return candidate


class SaveRunConfig(SaveConfigCallback):
    """Saves the CLI's config as ``config.yaml`` in :func:`run_directory`, next to the run's
    checkpoints and media, never over an existing file (a resumed W&B run with the same id gets
    ``config-v1.yaml``)."""

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if self.already_saved:
            return
        folder = run_directory(trainer)  # collective: every rank calls it
        if trainer.is_global_zero:
            folder.mkdir(parents=True, exist_ok=True)
            path = free_path(folder / self.config_filename)
            self.parser.save(self.config, str(path), skip_none=False, multifile=self.multifile)
            self.save_config(trainer, pl_module, stage)
            self.already_saved = True
        self.already_saved = trainer.strategy.broadcast(self.already_saved)


# ------------------------------------------------------------------ the run's final metrics
SUMMARY_FILENAME = "summary.json"


def final_metrics(trainer: pl.Trainer) -> dict[str, float]:
    """Every scalar metric the run ended with, ``name → float``, sorted by name.

    Read from ``trainer.logged_metrics`` and ``trainer.callback_metrics`` (the latter wins
    where both hold a name): the module's ``train/…``, ``val/…``, ``test/…`` keys and the
    callbacks' ``orbit/…``, ``spectral/…``, ``drift/…`` keys, whatever the logger. A tensor
    with more than one element is not a scalar and is left out.
    """
    merged = {**trainer.logged_metrics, **trainer.callback_metrics}
    metrics: dict[str, float] = {}
    for name, value in merged.items():
        if isinstance(value, torch.Tensor):
            if value.numel() != 1:
                continue
            value = value.item()
        if isinstance(value, int | float) and not isinstance(value, bool):
            metrics[name] = float(value)
    return dict(sorted(metrics.items()))


def checkpoint_paths(trainer: pl.Trainer, stage: str | None = None) -> dict[str, str]:
    """The checkpoints of this run: after ``fit``, ``best`` and ``last`` of its
    ``ModelCheckpoint`` (the first one with a file that exists), and ``loaded``, the file the
    run started from (``--ckpt_path``).

    A ``validate``/``test``/``predict`` run writes no checkpoint: the ``best`` path its
    ``ModelCheckpoint`` restores from the loaded file is the earlier fit's, not this run's, so
    only ``loaded`` is listed. ``stage`` defaults to the trainer's last stage.
    """
    if stage is None:
        stage = TrainerFn(trainer.state.fn or TrainerFn.FITTING).value
    paths: dict[str, str] = {}
    for callback in trainer.checkpoint_callbacks if stage == "fit" else ():
        if isinstance(callback, ModelCheckpoint):
            for name, path in (("best", callback.best_model_path),
                               ("last", callback.last_model_path)):
                if path and name not in paths and get_filesystem(path).exists(path):
                    paths[name] = path
    if trainer.ckpt_path:
        paths["loaded"] = str(trainer.ckpt_path)
    return paths


def headline_metrics(metrics: dict[str, float]) -> dict[str, float]:
    """The headline metrics: names of at most three parts (``orbit/val/DI``, ``val/acc``,
    ``spectral/val/jacobian_sigma_max``), without Lightning's ``_step``/``_epoch`` copies.
    invreg's callbacks log these through the module (``ModelCheckpoint`` can monitor them);
    per-β drift values and per-layer singular values (``drift/val/DI/beta_0.10``,
    ``spectral/weights/<layer>/sigma_1``) go to the loggers directly. The console table is
    :func:`console_metrics`."""
    return {name: value for name, value in metrics.items()
            if name.count("/") <= 2 and not name.endswith(("_step", "_epoch"))}


#: the console table's groups, in order: accuracy, the invariance metrics (split by split),
#: drift at the largest β, σ_max of the input→logit Jacobian, the learned ν, the loss; a
#: ``{split}`` is filled with train, val, test in turn
CONSOLE_ORDER: tuple[tuple[str, ...], ...] = (
    ("train/acc_epoch", "train/acc", "{split}/acc"),
    tuple(f"orbit/{{split}}/{name}" for name in
          ("DI", "LI", "SI", "consistency", "orbit_accuracy", "accuracy")),
    ("drift/{split}/DI/<largest β>", "drift/{split}/accuracy_ratio/<largest β>"),
    ("spectral/{split}/jacobian_sigma_max",),
    ("train/invariance_weight_epoch", "train/invariance_weight"),
    ("train/loss_epoch", "{split}/loss"),
)
#: not shown on the console (summary.json keeps them): settings (the SI baseline), the
#: distribution of σ_max(J) around its mean, the first layer's σ_max, the parts of the loss
CONSOLE_HIDDEN = re.compile(
    r"(.*/SI_baseline|spectral/.*jacobian_sigma_max_.+|spectral/first_layer_sigma_max"
    r"|[^/]+/(task_loss|invariance_loss)(_epoch)?)"
)
_SPLITS = ("train", "val", "test")
_BETA = re.compile(r"beta_(\d+(?:\.\d+)?)")


def console_metrics(metrics: dict[str, float]) -> dict[str, float]:
    """The rows of the console table, in a fixed order (:data:`CONSOLE_ORDER`): accuracy
    (``train/acc_epoch``, ``val/acc``, ``test/acc``), the invariance metrics
    (``orbit/<split>/DI``, ``LI``, ``SI``, ``consistency``, ``orbit_accuracy``, ``accuracy``),
    drift at the largest β (``drift/<split>/DI/beta_0.50``, ``.../accuracy_ratio/beta_0.50``),
    ``spectral/<split>/jacobian_sigma_max`` (one value: the mean over the subset), the learned
    ν (``train/invariance_weight_epoch``) and the loss; then any other metric of at most three
    parts (a module's own ``val/f1``), by name. Settings and detail (``orbit/val/SI_baseline``,
    the ``jacobian_sigma_max_p10``... quantiles, per-β and per-layer values, the loss's
    parts) stay in summary.json.

    >>> rows = console_metrics({"orbit/val/SI_baseline": -0.8, "orbit/val/DI": 0.01,
    ...                         "val/acc": 0.9, "drift/val/DI/beta_0.10": 0.02,
    ...                         "drift/val/DI/beta_0.50": 0.05, "train/acc_epoch": 0.8})
    >>> list(rows)
    ['train/acc_epoch', 'val/acc', 'orbit/val/DI', 'drift/val/DI/beta_0.50']
    """
    rows: dict[str, float] = {}
    for group in CONSOLE_ORDER:
        for split in _SPLITS:
            for pattern in group:
                name = _largest_beta(metrics, pattern.format(split=split))
                if name in metrics and name not in rows:
                    rows[name] = metrics[name]
    rest = headline_metrics({name: value for name, value in metrics.items()
                             if name not in rows and not CONSOLE_HIDDEN.fullmatch(name)})
    return {**rows, **rest}


def _largest_beta(metrics: dict[str, float], pattern: str) -> str:
    """``drift/val/DI/<largest β>`` → the logged name with the largest β, e.g.
    ``drift/val/DI/beta_0.50``; any other pattern is returned as it is."""
    stem, marker, _ = pattern.partition("<largest β>")
    if not marker:
        return pattern
    betas = {name: float(match.group(1)) for name in metrics if name.startswith(stem)
             and (match := _BETA.fullmatch(name[len(stem):]))}
    return max(betas, key=betas.__getitem__) if betas else pattern


def subset_note(trainer: pl.Trainer, names) -> str | None:
    """The line under the console table that says which rows are measured on a subset:
    ``orbit/val/…``, ``drift/val/…`` and ``spectral/val/…`` come from invreg's callbacks, on
    ``num_samples`` samples of the split (fewer if the split is smaller), while ``val/acc``
    is the module's, on every batch of the split. ``None`` if no such row is in ``names``."""
    sizes: dict[str, dict[int, list[str]]] = {}
    for callback in trainer.callbacks:
        # an InvarianceCallback by its interface (its key prefix and subset size): the
        # callbacks import this module, so it does not import them
        if not (isinstance(getattr(callback, "prefix", None), str)
                and isinstance(getattr(callback, "num_samples", None), int)):
            continue
        for split in _SPLITS:
            if any(name.startswith(f"{callback.prefix}/{split}/") for name in names):
                size = min(callback.num_samples,
                           _split_size(trainer, split) or callback.num_samples)
                keys = sizes.setdefault(split, {}).setdefault(size, [])
                keys.append(f"{callback.prefix}/{split}/…")
    if not sizes:
        return None
    parts = []
    for split, by_size in sizes.items():
        for index, (size, keys) in enumerate(by_size.items()):
            what = f"a subset of {size} {split} samples" if index == 0 else str(size)
            parts.append(f"{', '.join(keys)}: {what}")
    full = "; ".join(f"{split}/acc: every {split} batch" for split in sizes if split != "train")
    return f"  note: {'; '.join(parts)} (the callbacks' num_samples)" + (
        f"; {full}" if full else "")


def _split_size(trainer: pl.Trainer, split: str) -> int | None:
    """How many samples the split's (first) data loader's dataset holds, if it says."""
    loaders = {"train": "train_dataloader", "val": "val_dataloaders",
               "test": "test_dataloaders"}
    try:
        loader = getattr(trainer, loaders[split])
    except Exception:  # no loader of that split in this trainer
        return None
    if isinstance(loader, list | tuple):
        loader = loader[0] if loader else None
    try:
        return len(loader.dataset)
    except (AttributeError, TypeError):
        return None


def format_summary(metrics: dict[str, float], title: str) -> str:
    """A two-column text table, ``title`` above it, one metric per line, in the order given:

    >>> print(format_summary({"val/acc": 0.5, "orbit/val/DI": 1.25e-05}, "fit"))
    fit
      metric        value
      ------------  -----------
      val/acc       0.5
      orbit/val/DI  1.25e-05
    """
    width = max([len("metric"), *map(len, metrics)])
    rows = [f"  {'metric':<{width}}  value", f"  {'-' * width}  {'-' * 11}"]
    rows += [f"  {name:<{width}}  {value:.6g}" for name, value in metrics.items()]
    if not metrics:
        rows.append("  (no metrics were logged)")
    return "\n".join([title, *rows])


def write_summary(trainer: pl.Trainer, stage: str) -> Path:
    """Write ``summary.json`` into :func:`run_directory` and return its path.

    Contents: ``{"stage", "run_directory", "checkpoints": {best, last, loaded},
    "metrics": {name: float}}`` (:func:`final_metrics`, :func:`checkpoint_paths`), and
    ``"wandb_directory"`` (:func:`wandb_folder`) with a W&B logger. An existing file is never
    overwritten: a second stage in the same folder writes ``summary-v1.json``.
    Call it on every process (:func:`run_directory` is collective); rank 0 writes.
    """
    folder = run_directory(trainer)
    path = folder / SUMMARY_FILENAME
    if trainer.is_global_zero:
        folder.mkdir(parents=True, exist_ok=True)
        path = free_path(path)
        summary = {"stage": stage, "run_directory": str(folder),
                   "checkpoints": checkpoint_paths(trainer, stage),
                   "metrics": final_metrics(trainer)}
        wandb = wandb_folder(trainer)
        if wandb is not None:
            summary["wandb_directory"] = str(wandb)
        path.write_text(json.dumps(summary, indent=2) + "\n")
    return path


def report_run(trainer: pl.Trainer, stage: str, keep_files: bool = True) -> Path | None:
    """End of an ``invreg`` run: write ``summary.json`` (:func:`write_summary`, every metric)
    and print one table of the useful metrics in a fixed order (:func:`console_metrics`;
    rank 0 only), a note on the rows measured on a subset of the split
    (:func:`subset_note`), the run folder, the checkpoints and the summary file.

    ``keep_files=False`` (an evaluation with no logger and no ``default_root_dir``, whose
    folder the CLI discards): no ``summary.json``; the table is printed with a line saying
    that nothing was kept and how to keep it. Returns the summary's path, or ``None``.
    """
    path = write_summary(trainer, stage) if keep_files else None
    if trainer.is_global_zero:
        where = f" of the run in {run_directory(trainer)}" if keep_files else ""
        metrics = final_metrics(trainer)
        shown = console_metrics(metrics)
        print(format_summary(shown, f"invreg {stage}: final metrics{where}"))
        note = subset_note(trainer, shown)
        if note is not None:
            print(note)
        if len(shown) < len(metrics):
            more = "in summary.json" if keep_files else "not shown"
            print(f"  ({len(metrics) - len(shown)} more metrics {more})")
        for name, checkpoint in checkpoint_paths(trainer, stage).items():
            print(f"  checkpoint ({name}): {checkpoint}")
        if path is not None:
            print(f"  summary: {path}", flush=True)
        else:
            print("  no files kept (no logger, no --trainer.default_root_dir): add --config "
                  "configs/loggers/csv.yaml or --trainer.default_root_dir DIR to keep the "
                  "summary and figures", flush=True)
    return path
