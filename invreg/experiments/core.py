"""Shared machinery of the reproduction experiments: scales, training, results files."""

from __future__ import annotations

import csv
import hashlib
import json
import math
import os
import shutil
import socket
import statistics
import time
from collections.abc import Callable, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import ModelCheckpoint
from pytorch_lightning.loggers import CSVLogger

from invreg.evaluation import evaluate_invariance
from invreg.metrics import SaliencyInvarianceSimilarity
from invreg.modules import DualAscentWeight, FixedWeight, InvarianceModule
from invreg.plotting import save_figure


@dataclass(frozen=True)
class Scale:
    """How big an experiment runs.

    ``full`` is the published setup; ``quick`` a small subset that finishes in minutes on two
    CPU cores; ``smoke`` exercises every code path in seconds (the test suite runs it).
    """

    name: str
    train_size: int | None
    val_size: int
    test_size: int | None
    epochs: int
    seeds: int
    eval_samples: int  # samples for saliency / Jacobian / G-EED measurements
    ig_steps: int  # integrated-gradients steps for SI
    invariance_weights: tuple[float, ...]  # coarse ν grid, refined 1-2-5 (choose_invariance_weight)
    limit_batches: int | None = None  # batches per epoch (smoke runs only)


SCALES = {
    "full": Scale("full", 10_000, 2_000, None, 300, 4, 1_000, 50, (0.01, 0.1, 1.0, 10.0, 100.0)),
    "quick": Scale("quick", 2_000, 500, 1_000, 12, 1, 256, 16, (1.0, 10.0)),
    "smoke": Scale("smoke", 256, 128, 128, 1, 1, 16, 4, (1.0,), limit_batches=2),
}
#: scales one experiment sizes differently: ``(experiment, scale name) -> Scale``.
#: ``genuine-table1 --quick``: 40k training images for 16 epochs (1,264 steps of ≤ 512; the
#: paper: 10k for 300 epochs, 6,000 steps), 2k validation, 2k test images, ν = 100 alone: in a
#: few minutes on two CPU cores the IR models reach SI ≥ 0.9 on R4 and T3 (T3 is the slow one:
#: with ν = 10 its SI stalls near 0.89, with ν = 30 it reaches 0.90–0.92 after 1,580 steps).
#: ``hyper``: seeds and downstream epochs here, every other size in
#: ``invreg.experiments.hyper.HYPER_SCALES``.
EXPERIMENT_SCALES = {
    ("genuine-table1", "quick"): Scale("quick", 40_000, 2_000, 2_000, 16, 1, 512, 16, (100.0,)),
    # target: the quickstart config's data and 20 epochs; full 3 seeds, quick 1
    ("target", "full"): Scale("full", None, 0, None, 20, 3, 0, 0, ()),
    ("target", "quick"): Scale("quick", None, 0, None, 20, 1, 0, 0, ()),
    # lie: the digits' own splits; eval_samples: digits measured per split; the ν grid
    ("lie", "full"): Scale("full", None, 0, None, 40, 5, 1_000, 0, (1e-4, 3e-4, 1e-3, 3e-3)),
    ("lie", "quick"): Scale("quick", None, 0, None, 15, 3, 1_000, 0, (3e-4, 3e-3)),
    ("lie", "smoke"): Scale("smoke", None, 0, None, 1, 1, 32, 0, (1e-3,), limit_batches=2),
    ("hyper", "full"): Scale("full", None, 0, None, 50, 3, 0, 0, ()),
    ("hyper", "quick"): Scale("quick", None, 0, None, 4, 1, 0, 0, ()),
    ("hyper", "smoke"): Scale("smoke", None, 0, None, 2, 1, 0, 0, ()),
    # invariance-origins (invreg.experiments.origins): 28×28 MNIST, nine models per seed;
    # eval_samples: test digits and images of each out-of-distribution set measured
    ("invariance-origins", "full"): Scale("full", 10_000, 2_000, 1_000, 12, 4, 1_000, 0, ()),
    ("invariance-origins", "quick"): Scale("quick", 3_000, 500, 500, 4, 1, 500, 0, ()),
    ("invariance-origins", "smoke"): Scale("smoke", 256, 128, 64, 1, 1, 32, 0, (),
                                           limit_batches=2),
}


def get_scale(experiment: str, name: str) -> Scale:
    """The scale ``name`` (``"full"``, ``"quick"``, ``"smoke"``) as ``experiment`` runs it."""
    if name not in SCALES:
        raise ValueError(f"Unknown scale {name!r}; choose from {sorted(SCALES)}")
    return EXPERIMENT_SCALES.get((experiment, name), SCALES[name])


@dataclass
class Settings:
    """Everything an experiment needs to know about the run it is part of."""

    scale: Scale
    out: Path
    seeds: int
    epochs: int
    accelerator: str = "auto"
    progress: Callable[[str], None] = print
    extra: dict[str, Any] = field(default_factory=dict)
    cache: Path | None = None  # trained models, keyed by their configuration (model_key)


@dataclass
class Table:
    """A further results table: ``<name>.csv`` and a section of ``results.md``.

    ``legend`` maps a column to a one-line statement of what its numbers mean.
    """

    title: str
    rows: list[dict[str, Any]]
    legend: dict[str, str] = field(default_factory=dict)


@dataclass
class Results:
    """Rows of a results table (one dict per row), named matplotlib figures and tables.

    ``legend`` maps a column of ``rows`` to a one-line statement of what its numbers mean;
    ``results.md`` prints it under the table (``<column>_std`` columns are covered by one
    line). ``tables`` are further tables, each written to ``<name>.csv`` and to ``results.md``.
    """

    rows: list[dict[str, Any]]
    figures: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    per_seed: list[dict[str, Any]] = field(default_factory=list)
    legend: dict[str, str] = field(default_factory=dict)
    tables: dict[str, Table] = field(default_factory=dict)


#: data-module hyper-parameters that do not change what a model learns
_UNLEARNED = ("num_workers", "data_dir")


def training_description(
    module: InvarianceModule, data: pl.LightningDataModule, settings: Settings, seed: int
) -> dict[str, Any]:
    """Everything that decides the weights :func:`train` produces, as plain data.

    The module's and the data module's classes and hyper-parameters (the data's folder and
    worker count excepted), epochs, batch limits, seed and the device type the run trains on
    (a GPU's floating point differs from a CPU's). Two trainings with equal descriptions give
    equal weights: every random choice of a run is a function of its seed and position.
    """
    def described(obj, skip=()):
        kind = type(obj)
        return {"class_path": f"{kind.__module__}.{kind.__qualname__}",
                "init_args": {k: v for k, v in _keyed_arguments(obj).items() if k not in skip}}

    return {"module": described(module), "data": described(data, _UNLEARNED),
            "epochs": settings.epochs, "limit_batches": settings.scale.limit_batches,
            "seed": seed, "device": _device_type(settings.accelerator)}


def _keyed_arguments(obj: Any) -> dict[str, Any]:
    """``obj``'s hyper-parameters as the model cache keys them.

    An :class:`~invreg.modules.InvarianceModule`'s weight is keyed as it was before it became
    an object, so models trained then stay valid: a :class:`~invreg.modules.FixedWeight` as
    the number ``invariance_weight``; a :class:`~invreg.modules.DualAscentWeight` as
    ``invariance_weight`` = ν₀ with ``invariance_target``, ``target_metric``,
    ``target_update`` and ``target_lr`` (its arguments as given); ``track_invariance`` only
    where it changes training, with a fixed ν = 0.
    """
    arguments = dict(obj.hparams)
    weighting = getattr(obj, "weighting", None)
    if isinstance(weighting, DualAscentWeight):
        given = weighting.init_args
        arguments.update(invariance_weight=float(given["initial"]),
                         invariance_target=given["target"], target_metric=given["metric"],
                         target_update=given["update"], target_lr=given["lr"])
    elif isinstance(weighting, FixedWeight):
        arguments["invariance_weight"] = float(weighting)
    if isinstance(weighting, DualAscentWeight) or (
            isinstance(weighting, FixedWeight) and float(weighting) != 0.0):
        arguments.pop("track_invariance", None)
    return arguments


def model_key(description: dict[str, Any]) -> str:
    """A short hash naming a :func:`training_description` (the model cache's folder name)."""
    text = json.dumps(description, sort_keys=True, default=repr)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _device_type(accelerator: str) -> str:
    if accelerator in ("auto", "gpu", "cuda") and torch.cuda.is_available():
        return "cuda"
    if accelerator == "mps" or (accelerator == "auto" and torch.backends.mps.is_available()):
        return "mps"
    return "cpu"


def train(
    module: InvarianceModule,
    data: pl.LightningDataModule,
    settings: Settings,
    name: str,
    seed: int,
    init_from: str | None = None,
) -> InvarianceModule:
    """Fit ``module`` and restore the epoch with the best validation accuracy.

    ``init_from``: the model key (:func:`model_key`) of the trained model whose weights
    ``module`` starts from (the caller has loaded them: a fine-tuning); it joins the
    description, so a fine-tuned model is never mistaken for the same module trained from
    scratch.

    With ``settings.cache`` set, a model whose :func:`training_description` was trained before
    is loaded from ``<cache>/<model_key>/model.ckpt`` instead of trained again (the folder also
    holds ``description.json``); a new one is written there after training, under a
    :func:`claim`, so processes sharing the cache train each model once. This is how
    ``genuine-drift`` and ``spectral-decay`` evaluate Table 1's models without retraining them.
    """
    description = training_description(module, data, settings, seed)
    if init_from is not None:
        description["init_from"] = init_from
    cached = settings.cache / model_key(description) if settings.cache else None
    if cached is None:
        return _fit(module, data, settings, name, seed, None, description)
    with claim(cached, settings.progress):
        if (cached / "model.ckpt").is_file():
            state = torch.load(cached / "model.ckpt", map_location="cpu", weights_only=True)
            module.load_state_dict(state["state_dict"])
            return module.cpu().eval()
        return _fit(module, data, settings, name, seed, cached, description)


#: seconds between two looks at a model another process is training
CLAIM_POLL_SECONDS = 1.0


@contextmanager
def claim(folder: Path, say: Callable[[str], None] = print):
    """Hold the right to train the model of cache folder ``folder``: two processes (two Ray
    workers, two experiments, two machines on a shared file system) that ask for the same model
    train it once. The claim is ``<folder>.lock``, created atomically (``O_CREAT | O_EXCL``)
    and holding ``host pid``; while another process holds it this one waits (saying so once)
    and then finds the model in the cache. A claim whose process has died on this host is
    taken over; one of another host is waited for (remove the ``.lock`` file by hand if that
    host died)."""
    lock = folder.with_name(folder.name + ".lock")
    lock.parent.mkdir(parents=True, exist_ok=True)
    told = False
    while True:
        try:
            handle = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            holder = _read_claim(lock)
            if holder is not None and holder[0] == socket.gethostname() \
                    and not _alive(holder[1]):
                lock.unlink(missing_ok=True)  # its process died on this host
                continue
            if not told:
                say(f"waiting for {' '.join(map(str, holder or ('another process',)))} "
                    f"to finish training {folder.name}")
                told = True
            time.sleep(CLAIM_POLL_SECONDS)
            continue
        with os.fdopen(handle, "w") as stream:
            stream.write(f"{socket.gethostname()} {os.getpid()}\n")
        break
    try:
        yield lock
    finally:
        lock.unlink(missing_ok=True)


def _read_claim(lock: Path) -> tuple[str, int] | None:
    try:
        host, pid = lock.read_text().split()
        return host, int(pid)
    except (OSError, ValueError):
        return None  # gone, or being written


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _fit(module: InvarianceModule, data: pl.LightningDataModule, settings: Settings, name: str,
         seed: int, cached: Path | None, description: dict) -> InvarianceModule:
    pl.seed_everything(seed, workers=True)
    run_dir = settings.out / "runs" / name / f"seed{seed}"
    checkpoint = ModelCheckpoint(dirpath=run_dir, monitor="val/acc", mode="max", filename="best")
    trainer = pl.Trainer(
        max_epochs=settings.epochs,
        accelerator=settings.accelerator,
        devices=1,
        logger=CSVLogger(settings.out / "runs", name=name, version=f"seed{seed}"),
        callbacks=[checkpoint],
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_train_batches=settings.scale.limit_batches,
        limit_val_batches=settings.scale.limit_batches,
    )
    trainer.fit(module, data)
    if checkpoint.best_model_path:
        state = torch.load(checkpoint.best_model_path, map_location="cpu", weights_only=False)
        module.load_state_dict(state["state_dict"])
    if cached is not None:
        _store(cached, module, description, checkpoint.best_model_path)
    return module.cpu().eval()


def _store(folder: Path, module: InvarianceModule, description: dict, best: str) -> None:
    """Write a trained model to the cache; a folder being written is never read half done."""
    partial = folder.with_name(folder.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    state = {"state_dict": {k: v.detach().cpu() for k, v in module.state_dict().items()},
             "best_checkpoint": str(best)}
    torch.save(state, partial / "model.ckpt")
    (partial / "description.json").write_text(json.dumps(description, indent=1, default=repr))
    if folder.exists():  # another process finished the same model first: keep theirs
        shutil.rmtree(partial)
        return
    partial.rename(folder)


def held_out_tensors(
    data: pl.LightningDataModule, limit: int | None = None
) -> tuple[torch.Tensor, ...]:
    """The test split as two tensors ``(x, y)``, the first ``limit`` samples."""
    data.setup("test")
    x, y = data.test_dataset.tensors
    return (x[:limit], y[:limit]) if limit else (x, y)


def invariance_report(
    model: torch.nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    group,
    saliency_samples: int,
    ig_steps: int,
    background: float,
    batch_size: int = 512,
) -> dict[str, float]:
    """Accuracy and invariance of ``model`` on ``x`` (over full orbits) and SI on a subset.

    Returns ``acc`` (% of the untransformed ``x`` classified correctly), ``orbit_acc`` (% of
    samples classified correctly on *every* orbit element), ``LI``, ``DI`` (means over samples
    and non-identity elements), ``consistency`` (fraction of samples with one predicted class
    on the whole orbit), ``SI`` (mean over the first ``saliency_samples`` samples, integrated
    gradients from ``background``: the data's empty pixel, e.g. ``data.background``) and
    ``SI_grey`` (the same from 0 in the model's units: for standardised data a grey image, the
    baseline of earlier recorded results).
    """
    batches = ((x[i : i + batch_size], y[i : i + batch_size]) for i in range(0, len(x), batch_size))
    scores = evaluate_invariance(model, batches, group)
    report = {"acc": 100 * scores["accuracy"], "orbit_acc": 100 * scores["orbit_accuracy"],
              "LI": scores["LI"], "DI": scores["DI"], "consistency": scores["consistency"]}
    xs, ys = x[:saliency_samples], y[:saliency_samples]

    def si(baseline: float) -> float:
        metric = SaliencyInvarianceSimilarity(
            group, "integrated_gradients", steps=ig_steps, baseline=baseline, max_batch_size=1024,
        ).to(xs.device)
        metric.update(model, xs, ys)
        return metric.compute().item()

    report["SI"] = si(background)
    report["SI_grey"] = report["SI"] if background == 0.0 else si(0.0)
    return report


def mean_std(rows: Sequence[dict[str, Any]], keys: Sequence[str], by: Sequence[str]) -> list[dict]:
    """Group ``rows`` by the ``by`` columns and give mean and std (over seeds) of ``keys``;
    a NaN value in a group makes its mean and std NaN."""
    groups: dict[tuple, list[dict]] = {}
    for row in rows:
        groups.setdefault(tuple(row[k] for k in by), []).append(row)
    summary = []
    for key, members in groups.items():
        entry = dict(zip(by, key, strict=True))
        entry["seeds"] = len(members)
        for k in keys:
            values = [m[k] for m in members if m.get(k) is not None]
            entry[k] = statistics.fmean(values) if values else math.nan
            # a NaN seed (a diverged model) makes mean and std NaN: shown, never averaged away
            # (statistics.stdev raises on NaN instead of returning it)
            if any(math.isnan(v) for v in values):
                entry[f"{k}_std"] = math.nan
            else:
                entry[f"{k}_std"] = statistics.stdev(values) if len(values) > 1 else 0.0
        summary.append(entry)
    return summary


def write_results(results: Results, out: Path, title: str, header: str = "",
                  figure_format: str = "png", dpi: int = 150) -> None:
    """``results.csv``, ``results.md`` and one file per figure in ``out`` (``figure_format``:
    png, pdf or svg, at ``dpi``; :func:`invreg.plotting.save_figure`)."""
    out.mkdir(parents=True, exist_ok=True)
    columns = write_csv(out / "results.csv", results.rows)
    if results.per_seed:
        write_csv(out / "results_per_seed.csv", results.per_seed)
    lines = [f"# {title}", ""]
    if header:
        lines += [header, ""]
    lines += markdown_table(results.rows, columns)
    lines += legend_lines(columns, results.legend)
    for name, table in results.tables.items():
        table_columns = write_csv(out / f"{name}.csv", table.rows)
        lines += ["", f"## {table.title}", "", f"Also in `{name}.csv`.", ""]
        lines += markdown_table(table.rows, table_columns)
        lines += legend_lines(table_columns, table.legend)
    for note in results.notes:
        lines += ["", note]
    for name, figure in results.figures.items():
        saved = save_figure(figure, out / name, dpi, figure_format)
        lines += ["", f"![{name}]({saved.name})"]
    (out / "results.md").write_text("\n".join(lines) + "\n")


def legend_lines(columns: Sequence[str], legend: dict[str, str]) -> list[str]:
    """Markdown lines saying what each column means: one per column in ``legend``, one for
    all ``<column>_std`` columns; ``[]`` when ``legend`` is empty."""
    if not legend:
        return []
    lines = [""] + [f"- `{c}`: {legend[c]}" for c in columns if c in legend]
    spread = [c for c in columns if c.endswith("_std") and c not in legend]
    if spread:
        names = ", ".join(f"`{c}`" for c in spread)
        lines.append(f"- {names}: standard deviation over seeds of the column without `_std` "
                     "(0 with one seed)")
    return lines


def write_csv(path: Path, rows: Sequence[dict[str, Any]]) -> list[str]:
    columns = list(dict.fromkeys(k for row in rows for k in row))
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)
    return columns


def markdown_table(rows: Sequence[dict[str, Any]], columns: Sequence[str]) -> list[str]:
    def fmt(value: Any) -> str:
        if isinstance(value, float):
            return f"{value:.4g}" if abs(value) < 1e4 else f"{value:.3e}"
        return str(value)

    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(fmt(row.get(c, "")) for c in columns) + " |" for row in rows]
    return lines
