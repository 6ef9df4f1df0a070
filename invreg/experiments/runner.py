"""``invreg-experiment <name> [--quick] [--seeds N] [--epochs N] [--out DIR] [--no-cache]``.

Trains an experiment's grid of models, evaluates them and writes ``results.csv`` (the table,
mean and std over seeds), ``results_per_seed.csv``, ``results.md`` (Markdown table, notes,
figures) and figures (``--figure-format png|pdf|svg``, ``--dpi N``) to ``DIR`` (default
``results/<name>``), with a progress bar over the grid. ``--replot --out DIR`` redraws the
figures from ``DIR/results.csv`` alone, without training. Trained models are kept in
``--cache DIR`` (default ``results/models``), keyed by their configuration,
so a later experiment that needs the same model (``genuine-drift`` on
Table 1's models) loads it instead of training it again. ``--quick`` runs a small subset in
minutes on two CPU cores; ``--smoke`` runs every code path in seconds (what the test suite runs).
``--jobs N`` trains every model as a task on a local Ray instance of ``N`` workers (one torch
thread each; ``--jobs`` alone: this machine's cores), ``--address HOST:PORT`` (or
``RAY_ADDRESS``) on a Ray cluster, ``--gpus-per-training G`` with GPUs, then evaluates them from
the cache (genuine-table1, genuine-drift, layerwise; :mod:`invreg.experiments.executor`,
``docs/scale.md``). Without Ray installed it trains in this process and says so in one line.

``invreg-experiment --help`` lists the experiments, ``invreg-experiment NAME --help`` describes
one (what it trains and measures, its scales, its flags, where results go); the flags come
after ``NAME``, and each experiment takes only the flags it reads (:attr:`Experiment.flags`).
Every flag is checked before anything trains: a bad one is a usage error (exit 2) naming it.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import os
import platform
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from invreg.experiments.core import SCALES, Results, Settings, get_scale, write_results
from invreg.plotting import DEFAULT_DPI, FIGURE_FORMATS, check_dpi, check_figure_format


def _groups(settings) -> int:
    return len(settings.extra.get("groups") or ("R4", "T3"))


@dataclass(frozen=True)
class Experiment:
    title: str
    run: Callable[[Settings], Results]
    grid_size: Callable[[Settings], int]  # number of progress steps, for the bar
    #: its trainings as chains of rounds (:mod:`invreg.experiments.executor`), which
    #: ``--jobs N`` / ``--address`` run as tasks before ``run`` (which then loads their
    #: models from the cache); ``None``: the experiment trains as it runs, in this process
    trainings: Callable[[Settings], list] | None = None
    #: what it trains and measures, for ``invreg-experiment NAME --help``
    description: str = ""
    #: the optional command-line flags it reads besides the common ones (:data:`COMMON_FLAGS`)
    flags: tuple[str, ...] = ()


def _table1_chains(settings: Settings, learned: bool = True) -> list:
    from invreg.experiments.genuine import selected_groups, table1_chains

    return [chain for name in selected_groups(settings)
            for chain in table1_chains(name, settings, learned=learned)]


def _drift_chains(settings: Settings) -> list:
    return _table1_chains(settings, learned=False)  # the drift figure has no IR-target row


def _layerwise_chains(settings: Settings) -> list:
    from invreg.experiments.layerwise import layerwise_chains

    return layerwise_chains(settings)


def parallel_experiments() -> list[str]:
    """The experiments whose trainings run as tasks (``--jobs``, ``--address``)."""
    return sorted(n for n, e in EXPERIMENTS.items() if e.trainings is not None)


def check_parallel(name: str, settings_cache: Path | None, jobs=None) -> None:
    """``ValueError`` if experiment ``name`` cannot run its trainings as tasks, or without a
    model cache (the tasks hand their models over through it), or with a bad ``jobs``."""
    if jobs is not None and jobs != "all":
        if isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1:
            raise ValueError(f"jobs: expected a whole number ≥ 1, got {jobs!r} (or 'all': "
                             "this machine's cores)")
    if EXPERIMENTS[name].trainings is None:
        raise ValueError(f"jobs: {name} trains its models in one process; --jobs and "
                         f"--address apply to {parallel_experiments()}")
    if settings_cache is None:
        raise ValueError("jobs: the tasks hand their models over through the model cache; "
                         "pass --cache DIR instead of --no-cache")


def make_executor(jobs: int | str | None = None, address: str | None = None,
                  gpus_per_training: float = 0.0, say: Callable[[str], None] = print):
    """The executor of a run's trainings: :class:`~invreg.experiments.executor.RayExecutor`
    when Ray is asked for (``jobs``: a local instance with that many workers, ``"all"``: this
    machine's cores; ``address`` or ``RAY_ADDRESS``: a cluster; ``gpus_per_training`` > 0),
    else ``None`` (the experiment trains as it runs, in this process). Without Ray installed,
    :class:`~invreg.experiments.executor.InProcess`, and one line through ``say``."""
    from invreg.experiments.executor import (
        RAY_EXTRA,
        InProcess,
        RayExecutor,
        ray_available,
    )

    if jobs is None and not address and not os.environ.get("RAY_ADDRESS") \
            and not gpus_per_training:
        return None
    if not ray_available():
        say(f"Ray is not installed ({RAY_EXTRA}): training in this process, one model at a "
            "time")
        return InProcess()
    return RayExecutor(address, None if jobs in (None, "all") else jobs,
                       gpus_per_training=gpus_per_training)


def run_trainings(name: str, settings: Settings, executor, progress: Callable[[str], None]
                  = print):
    """Train experiment ``name``'s models on ``executor`` (its chains, as tasks) into
    ``settings.cache``, where :func:`run` then finds them; returns the
    :class:`~invreg.experiments.executor.Graph` of what ran, with a progress bar over the
    trainings and one line per finished training."""
    from tqdm.auto import tqdm

    from invreg.experiments.executor import run_chains

    check_parallel(name, settings.cache)
    bar = tqdm(total=0, desc=f"{name} trainings", file=sys.stderr)
    driver = dataclasses.replace(settings, progress=bar.write)
    try:
        return run_chains(EXPERIMENTS[name].trainings(driver), settings, executor,
                          bar.write if progress is print else progress, bar)
    finally:
        bar.close()


def train_in_parallel(name: str, settings: Settings, jobs: int) -> list:
    """Train experiment ``name``'s models on a local Ray instance of ``jobs`` workers (in this
    process when Ray is not installed) into ``settings.cache``; returns the labels of the
    trainings. :func:`run_trainings` with :func:`make_executor` is the general form."""
    check_parallel(name, settings.cache, jobs)
    executor = make_executor(jobs)
    try:
        return list(run_trainings(name, settings, executor).done)
    finally:
        executor.close()


def _table1(settings):
    from invreg.experiments.genuine import table1

    return table1(settings)


def _drift(settings):
    from invreg.experiments.genuine import drift

    return drift(settings)


def _spectral(settings):
    from invreg.experiments.spectral import spectral_decay

    return spectral_decay(settings)


def _origins_chains(settings: Settings) -> list:
    from invreg.experiments.origins import chains

    return chains(settings)


def _origins(settings):
    from invreg.experiments.origins import origins

    return origins(settings)


def _layerwise(settings):
    from invreg.experiments.layerwise import layerwise

    return layerwise(settings)


def _lie(settings):
    from invreg.experiments.lie import lie_experiment

    return lie_experiment(settings)


def _hyper(settings):
    from invreg.experiments.hyper import evidence

    return evidence(settings)


def _target(settings, grid_size: bool = False):
    from invreg.experiments import target

    return target.grid_size(settings) if grid_size else target.target_experiment(settings)


#: flags of the experiments that train MNIST models from ``configs/genuine``
_GENUINE_FLAGS = ("--accelerator", "--cache", "--no-cache", "--groups", "--data-dir")
#: flags of the experiments whose trainings run as tasks (:func:`run_trainings`)
_RAY_FLAGS = ("--jobs", "--address", "--gpus-per-training")

EXPERIMENTS: dict[str, Experiment] = {
    "genuine-table1": Experiment(
        "Genuine invariance: WT / DA / IR on MNIST (Moskalev et al. 2023, Table 1)", _table1,
        lambda s: _groups(s) * (3 * s.seeds + len(s.scale.invariance_weights) - 1),
        _table1_chains,
        description=(
            "Trains the paper's MLP (5 × 128) on MNIST (digit 9 removed, padded to 36×36) for "
            "each group (R4: 90-degree rotations, T3: cyclic x-shifts), every model with random "
            "group augmentation: WT (first layer tied over the group), DA (augmentation alone), "
            "IR (plus the logit invariance error, weight ν: the smallest of a grid whose "
            "validation SI ≥ 0.95) and IR-target (ν learned by dual ascent). Measures test "
            "accuracy, orbit accuracy, LI, DI, orbit consistency and SI, mean and std over "
            "seeds; every ν tried goes to invariance_weights.csv."),
        flags=(*_GENUINE_FLAGS, *_RAY_FLAGS)),
    "genuine-drift": Experiment(
        "Invariance under input drift (Moskalev et al. 2023, Fig. 4)", _drift,
        lambda s: _groups(s) * (3 * s.seeds + len(s.scale.invariance_weights) - 1),
        _drift_chains,
        description=(
            "Evaluates Table 1's WT / DA / IR models (loaded from the model cache when "
            "genuine-table1 ran first with the same scale, else trained) on test images blended "
            "(1 − β)·x + β·x_drift for β ∈ [0, 0.5]: DI and the accuracy ratio "
            "Acc(β) / Acc(0). Drift images: natural-image patches unless --drift-source. "
            "Figure: drift."),
        flags=(*_GENUINE_FLAGS, *_RAY_FLAGS, "--drift-source", "--drift-dir")),
    "spectral-decay": Experiment(
        "Spectral decay under invariance regularisers (Moskalev et al. 2023, Fig. 5)", _spectral,
        lambda s: _groups(s) * (4 * s.seeds + 2 * 4 + len(s.scale.invariance_weights)),
        description=(
            "Trains Table 1's MLP on MNIST for R4 and T3 with augmentation alone (DA) and with "
            "three invariance errors (predictive KL, normalised logit L2, logit L2; ν of each "
            "chosen by validation SI on the first seed). Measures test accuracy, LI and the "
            "largest singular value of the input→logit Jacobian and of the first weight "
            "matrix. Figure: spectral_decay."),
        flags=_GENUINE_FLAGS),
    "layerwise": Experiment(
        "Layer-wise G-EED: augmentation vs equivariant layers (Kvinge et al. 2022)", _layerwise,
        lambda s: 3 * s.seeds, _layerwise_chains,
        description=(
            "Trains three classifiers on rotated 16×16 digits (scikit-learn's, C4 augmentation): "
            "a CNN with augmentation alone (DA), an e2cnn G-CNN and the CNN with the logit "
            "invariance error (IR). Measures the normalised invariance G-EED of every layer on "
            "test digits and on digits blended with natural-image patches. "
            "Figure: layerwise_geed."),
        flags=("--accelerator", "--cache", "--no-cache", *_RAY_FLAGS)),
    "invariance-origins": Experiment(
        "Where invariance comes from, layer by layer, in and out of distribution "
        "(Kvinge et al. 2022)", _origins, lambda s: 8 * s.seeds, _origins_chains,
        description=(
            "Trains eight models per seed on 28×28 MNIST (digit 9 removed) and measures their "
            "invariance to quarter turns (C4) at every layer: a CNN without augmentation, with "
            "C4 augmentation, with augmentation and the invariance error (ν learned towards "
            "DI ≤ 0.01), an e2cnn G-CNN of as many parameters, the CNN fine-tuned with "
            "augmentation from the unaugmented CNN's weights, and three self-supervised "
            "encoders with a linear probe (SimCLR with and without quarter turns in its "
            "views, rotation prediction). Per layer: invariance and equivariance G-EED (D, R, "
            "D/R) on MNIST test digits and on FashionMNIST, natural-image patches and rendered "
            "letters (--ood); at the output DI, LI, orbit consistency and accuracy. "
            "FashionMNIST: `make fashion-mnist`, --drift-dir DIR or INVREG_FASHION_MNIST. "
            "Figures: layer_curves, ood_ratios, pretrained_vs_scratch, self_supervised."),
        flags=(*_GENUINE_FLAGS[:3], "--data-dir", *_RAY_FLAGS, "--drift-dir", "--ood")),
    "lie": Experiment(
        "Lie derivative training against augmentation on continuously rotated digits "
        "(Gruver et al. 2023)", _lie,
        lambda s: 2 * s.seeds + len(s.scale.invariance_weights),
        description=(
            "Trains an MLP on 24×24 digits rotated by random continuous angles, with "
            "augmentation alone (DA) and with a Lie derivative penalty ν·‖L f‖² (DA+Lie; ν "
            "chosen by validation error on the first seed). Measures classification error and "
            "Lie derivative error on the validation and test splits, and the reduction of each "
            "by DA+Lie against DA."),
        flags=("--accelerator", "--cache", "--no-cache")),
    "hyper": Experiment(
        "HyperInvariances on MNIST: a fitted descriptor against fixed descriptors and "
        "conventional baselines (Chavhan et al. 2022)", _hyper, lambda s: 2 + 18 * s.seeds,
        description=(
            "Pre-trains once (kept in the model cache) a hyper-network over invariance "
            "descriptors (rotation, flip, scale) and a conventional CNN on 14×14 MNIST, then, "
            "for four downstream tasks, fits the descriptor on a validation part of the task's "
            "images (a ridge head refitted on the train part) against fixed descriptors (the "
            "best chosen on validation), a linear probe, fine-tuning, training from scratch "
            "(with and without augmentation) and Augerino. Measures downstream test accuracy. "
            "--epochs sets the "
            "downstream epochs; it trains on the CPU."),
        flags=("--cache", "--no-cache")),
    "target": Experiment(
        "Invariance as a target: ν learned by dual ascent against a grid of fixed ν",
        _target, lambda s: _target(s, grid_size=True),
        description=(
            "Trains the quickstart run (configs/quickstart.yaml: scikit-learn's digits, C4 "
            "rotations, an MLP, LI on logits) with ν learned by dual ascent towards each "
            "invariance target ε, and with a grid of fixed ν. Measures the final "
            "validation LI (is it within [0.5, 1.25] ε?) and test accuracy, LI and DI "
            "against the fixed-ν models. Its models are not cached."),
        flags=("--accelerator",)),
}


#: experiment -> its figures as ``{file stem: (module, function of the summary rows)}``: what
#: :func:`replot` redraws from ``results.csv``
FIGURES: dict[str, dict[str, tuple[str, str]]] = {
    "genuine-drift": {"drift": ("invreg.experiments.genuine", "drift_figure")},
    "spectral-decay": {"spectral_decay": ("invreg.experiments.spectral", "figure")},
    "layerwise": {"layerwise_geed": ("invreg.experiments.layerwise", "figure")},
    "invariance-origins": {"layer_curves": ("invreg.experiments.origins", "layer_figure"),
                           "ood_ratios": ("invreg.experiments.origins", "ood_figure"),
                           "pretrained_vs_scratch": ("invreg.experiments.origins",
                                                     "pretrained_figure"),
                           "self_supervised": ("invreg.experiments.origins",
                                               "self_supervised_figure")},
}


def check_count(value: int, label: str) -> int:
    """``value`` if it is a whole number ≥ 1 (seeds, epochs, processes), else ``ValueError``
    naming ``label``. (0 epochs would mean the scale's default to ``x or default`` and -1
    "forever" to Lightning: both are refused.)"""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{label}: expected a whole number ≥ 1, got {value!r}")
    return value


def check_writable_folder(path: str | Path, label: str) -> Path:
    """``path`` as a ``Path`` if it is a folder this process can write in, or one it can
    create; ``ValueError`` naming ``label`` otherwise. Nothing is created: the nearest existing
    folder on the way gets ``os.access`` and a probe file, written and removed (``os.access``
    alone passes for root on a read-only mount and in ``/proc``)."""
    path = Path(path)
    try:
        if path.exists() and not path.is_dir():
            raise ValueError(f"{label}: {path} is a file, not a folder; pass a folder "
                             "(it is created if missing)")
        absolute = path.absolute()
        existing = next(folder for folder in (absolute, *absolute.parents) if folder.exists())
    except OSError as error:
        raise ValueError(f"{label}: cannot look at {path} ({error.strerror or error}); pass a "
                         "folder you can write to") from error
    if not existing.is_dir():
        raise ValueError(f"{label}: cannot create {path}: {existing} is a file, not a folder; "
                         "pass a folder path")
    action = f"write in {path}" if existing == absolute else f"create {path} in {existing}"
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ValueError(f"{label}: cannot {action}: permission denied; pass a folder you can "
                         "write to")
    try:
        handle, probe = tempfile.mkstemp(prefix=".invreg-write-check-", dir=existing)
    except OSError as error:
        raise ValueError(f"{label}: cannot {action}: {error.strerror or error}; pass a folder "
                         "you can write to") from error
    os.close(handle)
    os.unlink(probe)
    return path


def check_accelerator(accelerator: str, label: str = "accelerator") -> str:
    """``accelerator`` if Lightning can train on it on this machine (``auto`` always can),
    else ``ValueError`` naming ``label``, why, and the accelerators that work here. Anything
    but a string (an ``Accelerator`` object) is Lightning's to check."""
    if not isinstance(accelerator, str) or accelerator == "auto":
        return accelerator
    from pytorch_lightning.accelerators import AcceleratorRegistry

    known = sorted(AcceleratorRegistry.available_accelerators())
    here = [name for name in known if AcceleratorRegistry[name]["accelerator"].is_available()]
    gpus = [name for name in ("cuda", "mps") if name in here]  # what Lightning's "gpu" means
    if accelerator in here or (accelerator == "gpu" and gpus):
        return accelerator
    usable = ", ".join(["auto", *(["gpu"] if gpus else []), *here])
    if accelerator != "gpu" and accelerator not in known:
        raise ValueError(f"{label}: unknown accelerator {accelerator!r}; choose from "
                         f"{', '.join(['auto', 'gpu', *known])} (on this machine: {usable})")
    import torch

    why = ""
    if accelerator in ("gpu", "cuda"):
        why = (f" (this torch, {torch.__version__}, is built without CUDA)"
               if torch.version.cuda is None else " (torch finds no CUDA device)")
    raise ValueError(f"{label}: {accelerator!r} is not available on this machine{why}; "
                     f"use one of: {usable}")


def run(name: str, scale: str = "full", seeds: int | None = None, epochs: int | None = None,
        out: Path | None = None, accelerator: str = "auto", cache: Path | None = None,
        figure_format: str = "png", dpi: int = DEFAULT_DPI, jobs: int | str | None = None,
        address: str | None = None, gpus_per_training: float = 0.0, **extra) -> Results:
    """Run one experiment and write its results; returns them.

    ``cache``: a folder of trained models keyed by their configuration
    (:func:`invreg.experiments.core.train`); a model trained before, by any experiment, is
    loaded instead of trained again. ``None`` (the default here) trains every model; the
    console script uses ``results/models`` unless given ``--no-cache``.
    ``figure_format`` (png, pdf, svg) and ``dpi``: how the figures are saved.
    ``jobs`` (workers of a local Ray instance, ``"all"`` for this machine's cores),
    ``address`` (a Ray cluster; ``RAY_ADDRESS`` too) and ``gpus_per_training``: train every
    model as a Ray task first (:func:`make_executor`, :func:`run_trainings`; needs ``cache``),
    then evaluate from the cache; without any of them the experiment trains in this process.
    ``seeds`` and ``epochs``: whole numbers ≥ 1, ``None`` for the scale's own.

    Every argument is checked before anything trains (``ValueError`` naming it): the counts,
    the figure options, the accelerator (:func:`check_accelerator`), and that ``out`` and
    ``cache`` are folders this process can write in or create (:func:`check_writable_folder`).
    """
    if name not in EXPERIMENTS:
        raise ValueError(f"Unknown experiment {name!r}; choose from {sorted(EXPERIMENTS)}")
    if scale not in SCALES:
        raise ValueError(f"Unknown scale {scale!r}; choose from {sorted(SCALES)}")
    figure_format, dpi = check_figure_format(figure_format), check_dpi(dpi)
    for label, count in (("seeds", seeds), ("epochs", epochs)):
        if count is not None:
            check_count(count, label)
    if isinstance(gpus_per_training, bool) or not isinstance(gpus_per_training, int | float) \
            or not 0 <= gpus_per_training < math.inf:
        raise ValueError(f"gpus_per_training: expected a number ≥ 0, got {gpus_per_training!r}")
    # RAY_ADDRESS alone sends to Ray only the experiments that can go
    parallel = jobs is not None or bool(address) or bool(gpus_per_training) or (
        bool(os.environ.get("RAY_ADDRESS")) and EXPERIMENTS[name].trainings is not None)
    if parallel:
        check_parallel(name, cache, jobs)
    check_accelerator(accelerator)
    if gpus_per_training and accelerator not in ("auto", "gpu", "cuda"):
        raise ValueError(f"gpus_per_training: the trainings get a GPU but accelerator is "
                         f"{accelerator!r}; pass accelerator auto, gpu or cuda")
    out = check_writable_folder(out if out is not None else Path("results") / name, "out")
    cache = check_writable_folder(cache, "cache") if cache is not None else None
    from tqdm.auto import tqdm

    experiment = EXPERIMENTS[name]
    chosen = get_scale(name, scale)
    settings = Settings(chosen, out, chosen.seeds if seeds is None else seeds,
                        chosen.epochs if epochs is None else epochs,
                        accelerator=accelerator, extra=extra, cache=cache)
    start = time.perf_counter()
    if parallel:
        executor = make_executor(jobs, address, gpus_per_training, say=print)
        try:
            run_trainings(name, settings, executor)
        finally:
            executor.close()
    bar = tqdm(total=experiment.grid_size(settings), desc=name, file=sys.stderr)

    def progress(message: str) -> None:
        bar.write(message)
        if bar.n >= bar.total:  # the ν search trained more models than the estimate
            bar.total += 1
        bar.update(1)

    settings.progress = progress
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*does not have many workers.*")
            warnings.filterwarnings("ignore", message=".*uint8.*")
            results = experiment.run(settings)
    finally:
        bar.close()
    elapsed = time.perf_counter() - start
    header = (
        f"Command: `invreg-experiment {name} --scale {scale} --seeds {settings.seeds} "
        f"--epochs {settings.epochs}{_options(extra)}"
        f"{_parallel_options(jobs, gpus_per_training)}`; machine: {platform.machine()}, "
        f"{platform.processor() or ''} {_device(accelerator)}; {elapsed / 60:.1f} min. "
        "Means (± std over seeds)."
    )
    write_results(results, out, experiment.title, header, figure_format, dpi)
    print((out / "results.md").read_text())
    return results


def replot(name: str, out: Path, figure_format: str = "png", dpi: int = DEFAULT_DPI,
           summary: Path | None = None) -> list[Path]:
    """Redraw ``name``'s figures from a saved summary table (``summary``, default
    ``out/results.csv``) into ``out``, without training; returns the files written.

    Numbers in the CSV are read back as ``int`` or ``float``, everything else as text, so the
    figure functions get the rows :func:`~invreg.experiments.core.mean_std` gave them.
    """
    import csv
    import importlib

    from invreg.plotting import save_figure

    if name not in FIGURES:
        raise ValueError(f"replot: {name!r} has no figures to redraw; choose from "
                         f"{sorted(FIGURES)}")
    figure_format, dpi = check_figure_format(figure_format), check_dpi(dpi)
    out = Path(out)
    source = Path(summary) if summary is not None else out / "results.csv"
    if not source.is_file():
        raise FileNotFoundError(f"replot: no summary table at {source}; run the experiment with "
                                f"--out {out} first (or pass the folder that holds results.csv)")
    with source.open(newline="") as handle:
        rows = [{key: _number(value) for key, value in row.items()}
                for row in csv.DictReader(handle)]
    written = []
    for stem, (module, function) in FIGURES[name].items():
        figure = getattr(importlib.import_module(module), function)(rows)
        written.append(save_figure(figure, out / stem, dpi, figure_format))
    return written


def _number(text: str) -> int | float | str:
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def _parallel_options(jobs: int | str | None, gpus_per_training: float) -> str:
    """``--jobs N`` and ``--gpus-per-training G`` as the command line gave them."""
    return ((f" --jobs {jobs}" if jobs is not None else "")
            + (f" --gpus-per-training {gpus_per_training:g}" if gpus_per_training else ""))


def _options(extra: dict) -> str:
    """The command-line form of the options an experiment ran with (``--groups R4`` ...)."""
    parts = []
    if extra.get("groups"):
        parts.append("--groups " + " ".join(extra["groups"]))
    if extra.get("ood"):
        parts.append("--ood " + " ".join(extra["ood"]))
    if extra.get("drift_dir"):
        parts.append(f"--drift-dir {extra['drift_dir']}")
    source = extra.get("drift_source")
    if source is not None:
        from invreg.data.drift import DRIFT_SOURCES

        name = source if isinstance(source, str) else next(
            (key for key, kind in DRIFT_SOURCES.items() if type(source) is kind),
            type(source).__name__)
        parts.append(f"--drift-source {name}")
    return "".join(" " + part for part in parts)


def _device(accelerator: str) -> str:
    import torch

    if accelerator in ("gpu", "cuda", "auto") and torch.cuda.is_available():
        return torch.cuda.get_device_name(0)
    return f"CPU ({torch.get_num_threads()} threads)"


#: what each scale is for, in ``invreg-experiment NAME --help``
_SCALE_PURPOSE = {"smoke": "every code path in seconds",
                  "quick": "a small subset, minutes on two CPU cores",
                  "full": "the published setup (the default)"}


def _count_flag(text: str) -> int:
    """argparse ``type`` of ``--seeds``, ``--epochs``, ``--jobs``: a whole number ≥ 1."""
    try:
        return check_count(int(text), "")
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number ≥ 1, got {text!r}") from None


def _jobs_flag(text: str) -> int | str:
    """argparse ``type`` of ``--jobs``: a whole number ≥ 1 or ``all``."""
    return "all" if text == "all" else _count_flag(text)


def _gpus_flag(text: str) -> float:
    """argparse ``type`` of ``--gpus-per-training``: a number ≥ 0 (fractions share a GPU)."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not 0 <= value < math.inf:
        raise argparse.ArgumentTypeError(f"expected a number ≥ 0, got {text!r}")
    return value


def _dpi_flag(text: str) -> int:
    """argparse ``type`` of ``--dpi``: :func:`invreg.plotting.check_dpi`'s rule."""
    try:
        value: int | str = int(text)
    except ValueError:
        value = text
    try:
        return check_dpi(value)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def _add_common_flags(parser: argparse.ArgumentParser) -> None:
    """The flags every experiment takes."""
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_const", const="quick", dest="scale",
                      help="small subset, few epochs: minutes on 2 CPU cores")
    size.add_argument("--smoke", action="store_const", const="smoke", dest="scale",
                      help="seconds: checks that every code path runs")
    size.add_argument("--scale", choices=sorted(SCALES))
    parser.set_defaults(scale="full")
    parser.add_argument("--seeds", type=_count_flag, default=None, metavar="N",
                        help="number of seeds, ≥ 1 (default: the scale's)")
    parser.add_argument("--epochs", type=_count_flag, default=None, metavar="N",
                        help="epochs per model, ≥ 1 (default: the scale's)")
    parser.add_argument("--out", type=Path, default=None, metavar="DIR",
                        help="folder of the results (default: results/<name>)")
    parser.add_argument("--figure-format", choices=FIGURE_FORMATS, default="png",
                        help="file format of the figures (default: png)")
    parser.add_argument("--dpi", type=_dpi_flag, default=DEFAULT_DPI, metavar="N",
                        help=f"resolution of the figures, 20-1200 (default: {DEFAULT_DPI})")
    parser.add_argument("--replot", action="store_true",
                        help=f"redraw the figures from --out DIR/results.csv, train nothing "
                             f"({', '.join(sorted(FIGURES))})")


def _add_optional_flag(parser: argparse.ArgumentParser, flag: str) -> None:
    """One of the flags only some experiments take (:attr:`Experiment.flags`)."""
    from invreg.data.drift import DRIFT_SOURCES

    options = {
        "--accelerator": dict(default="auto", metavar="NAME",
                              help="Lightning accelerator: auto (default), cpu, gpu, cuda, "
                                   "mps, ... if this machine has it"),
        "--jobs": dict(type=_jobs_flag, nargs="?", const="all", default=None, metavar="N",
                       help="train every model as a task on a local Ray instance of N workers "
                            "(--jobs alone: this machine's cores), then evaluate from the "
                            "model cache; without Ray installed, in this process"),
        "--address": dict(default=None, metavar="HOST:PORT",
                          help="train every model as a task on this Ray cluster (default: "
                               "RAY_ADDRESS if set); the cache must be a folder every node "
                               "sees"),
        "--gpus-per-training": dict(type=_gpus_flag, default=0.0, metavar="G",
                                    help="GPUs each training task asks Ray for (default 0: "
                                         "CPU only)"),
        "--cache": dict(type=Path, default=Path("results/models"), metavar="DIR",
                        help="trained models, keyed by configuration: a model trained before "
                             "(by any experiment) is reused (default: results/models)"),
        "--no-cache": dict(action="store_const", const=None, dest="cache",
                           help="train every model, reuse and store none"),
        "--groups": dict(nargs="+", default=None, metavar="GROUP",
                         help="restrict to these groups (R4, T3)"),
        "--data-dir": dict(default=None, metavar="DIR", help="a folder of MNIST IDX files"),
        "--drift-source": dict(choices=sorted(DRIFT_SOURCES), default=None,
                               help="the images blended in (default: natural_images)"),
        "--ood": dict(nargs="+", default=None, metavar="SOURCE",
                      choices=sorted(DRIFT_SOURCES),
                      help="the out-of-distribution sets (default: fashion_mnist "
                           "natural_images letters)"),
        "--drift-dir": dict(default=None, metavar="DIR",
                            help="a FashionMNIST folder (IDX files or the npm package "
                                 "fashion-mnist) for --drift-source fashion_mnist (the default "
                                 "then)"),
    }
    parser.add_argument(flag, **options[flag])


def _experiment_help(name: str) -> tuple[str, str]:
    """``(description, epilog)`` of ``invreg-experiment NAME --help``: what it trains and
    measures; its scales with seeds and epochs, and where the results go."""
    import textwrap

    experiment = EXPERIMENTS[name]
    description = "\n\n".join(textwrap.fill(text, 79, break_on_hyphens=False)
                               for text in (experiment.title, experiment.description))
    lines = ["scales (--smoke, --quick, --scale NAME; --seeds N and --epochs N override):"]
    for scale_name in ("smoke", "quick", "full"):
        scale = get_scale(name, scale_name)
        batches = (f" ({scale.limit_batches} batches per epoch)"
                   if scale.limit_batches is not None else "")
        lines.append(f"  {scale_name:<6} {scale.seeds} seed{'s' if scale.seeds > 1 else ''} × "
                     f"{scale.epochs} epoch{'s' if scale.epochs > 1 else ''}{batches}: "
                     f"{_SCALE_PURPOSE[scale_name]}")
    figures = ", ".join(FIGURES.get(name, {}))
    results = (f"results: --out DIR (default results/{name}) gets results.csv (mean and std "
               "over seeds), results_per_seed.csv, results.md"
               + (f" and the figures ({figures}; --replot redraws them)" if figures else "")
               + ". ")
    if "--cache" in experiment.flags:
        results += ("Trained models go to --cache DIR (default results/models), where any "
                    "experiment reuses them.")
    else:
        results += "Its models are not cached."
    lines += ["", textwrap.fill(results, 79, break_on_hyphens=False)]
    return description, "\n".join(lines)


def _formatter(prog: str) -> argparse.HelpFormatter:
    """Descriptions and epilogs as written (already wrapped); room for the experiments' names."""
    return argparse.RawDescriptionHelpFormatter(prog, max_help_position=30)


def build_parser() -> tuple[argparse.ArgumentParser, dict[str, argparse.ArgumentParser]]:
    """The ``invreg-experiment`` parser and its sub-parser per experiment: each takes the
    common flags and the experiment's own (:attr:`Experiment.flags`)."""
    parser = argparse.ArgumentParser(
        prog="invreg-experiment", formatter_class=_formatter,
        description="Train an experiment's grid of models, evaluate them and write its tables "
                    "and figures.",
        epilog="invreg-experiment NAME --help: what NAME trains and measures, its scales\n"
               "(seeds, epochs), its flags and where its results go.")
    commands = parser.add_subparsers(dest="name", metavar="NAME", required=True,
                                     title="experiments")
    subparsers = {}
    for name, experiment in EXPERIMENTS.items():
        description, epilog = _experiment_help(name)
        sub = commands.add_parser(name, help=experiment.title, description=description,
                                  epilog=epilog, formatter_class=_formatter)
        _add_common_flags(sub)
        for flag in experiment.flags:
            _add_optional_flag(sub, flag)
        subparsers[name] = sub
    return parser, subparsers


def _reject_extras(extras: list[str], name: str,
                   subparsers: dict[str, argparse.ArgumentParser]) -> None:
    """A usage error for the arguments ``name`` does not take: a flag of another experiment is
    named with the experiments it applies to."""
    for token in extras:
        flag = token.split("=", 1)[0]
        users = [other for other, sub in subparsers.items()
                 if flag.startswith("--") and flag in sub._option_string_actions]
        if users:
            subparsers[name].error(f"{flag} does not apply to {name} (it applies to "
                                   f"{', '.join(users)}); see invreg-experiment {name} --help")
    subparsers[name].error(f"unrecognized arguments: {' '.join(extras)}")


def main(argv: list[str] | None = None) -> int:
    """The ``invreg-experiment`` console script: run one experiment, print its ``results.md``,
    return the exit status (0 on success; 1, with a short message on stderr, for a bad argument
    such as an unknown group; ``INVREG_TRACEBACK=1`` shows the full traceback). :func:`run` is
    the in-process API, returning the :class:`Results`.

    ``invreg-experiment --help`` lists the experiments; ``invreg-experiment NAME --help``
    describes one: what it trains and measures, its scales, its flags, where results go. The
    flags are checked before anything trains, each a usage error (exit 2) naming the flag:
    ``--seeds``, ``--epochs``, ``--jobs`` whole numbers ≥ 1, ``--dpi`` in [20, 1200],
    ``--out`` and ``--cache`` folders that can be written or created, ``--accelerator`` one
    this machine has, and no flag the experiment does not read (``--groups`` for layerwise).
    """
    parser, subparsers = build_parser()
    args, extras = parser.parse_known_args(argv)
    sub = subparsers[args.name]
    if extras:
        _reject_extras(extras, args.name, subparsers)
    try:
        if args.out is not None or not args.replot:
            check_writable_folder(args.out or Path("results") / args.name, "--out")
        if not args.replot:
            if getattr(args, "cache", None) is not None:
                check_writable_folder(args.cache, "--cache")
            check_accelerator(getattr(args, "accelerator", "auto"), "--accelerator")
    except ValueError as error:
        sub.error(str(error))
    if args.replot:
        if args.out is None:
            sub.error("--replot needs --out DIR, the folder that holds results.csv")
        try:
            for path in replot(args.name, args.out, args.figure_format, args.dpi):
                print(path)
        except (ValueError, FileNotFoundError) as error:
            print(f"invreg-experiment: error: {error}", file=sys.stderr)
            return 1
        return 0
    drift_dir, drift_source = getattr(args, "drift_dir", None), getattr(args, "drift_source", None)
    if drift_dir and drift_source not in (None, "fashion_mnist"):
        sub.error(f"--drift-dir is for --drift-source fashion_mnist, not {drift_source}")
    extra = {"groups": args.groups} if getattr(args, "groups", None) else {}
    if getattr(args, "data_dir", None):
        extra["data_dir"] = args.data_dir
    if getattr(args, "ood", None):
        extra["ood"] = tuple(dict.fromkeys(args.ood))
    from invreg.cli import CONFIG_ERRORS, describe_error, full_traceback_wanted
    from invreg.data.drift import get_drift_source
    from invreg.experiments.executor import TrainingFailed

    try:
        if drift_dir and "--ood" in EXPERIMENTS[args.name].flags:
            extra["drift_dir"] = drift_dir  # the FashionMNIST folder of its OOD sets
        elif drift_dir:
            extra["drift_source"] = get_drift_source("fashion_mnist", root=drift_dir)
        elif drift_source:
            extra["drift_source"] = get_drift_source(drift_source)
        run(args.name, args.scale, args.seeds, args.epochs, args.out,
            getattr(args, "accelerator", "auto"), getattr(args, "cache", None),
            args.figure_format, args.dpi, jobs=getattr(args, "jobs", None),
            address=getattr(args, "address", None),
            gpus_per_training=getattr(args, "gpus_per_training", 0.0), **extra)
    except TrainingFailed as error:
        print(f"invreg-experiment: error: {error}", file=sys.stderr)
        return 1
    except CONFIG_ERRORS as error:
        if full_traceback_wanted():
            raise
        print(f"invreg-experiment: error: {describe_error(error)}", file=sys.stderr)
        print("(INVREG_TRACEBACK=1 shows the full traceback)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
