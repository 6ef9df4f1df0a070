"""``invreg report ARGS``: its parser (:func:`build_parser`) and the command
(:func:`run_report_cli`), which :func:`invreg.cli.main` runs."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

from invreg.plotting import FIGURE_FORMATS
from invreg.report.settings import ReportSettings
from invreg.report.write import write_report


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
        "drift_source": (str, "natural_images, noise, mnist1d, letters or fashion_mnist "
                              "(local files)"),
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
