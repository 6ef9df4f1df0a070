"""Writing a report (:func:`write_report`): every input checked, the checkpoints loaded and
named, measured, then ``report.md``, ``figures/`` and ``report.html`` written into a
``report_dir`` that :func:`check_report_dir` has cleared."""

from __future__ import annotations

import os
import re
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path

from invreg.checkpoints import verify_checkpoint
from invreg.report.figures import _encode, comparison_figure
from invreg.report.load import LoadedCheckpoint, mixed_groups_warning, resolve_report_group
from invreg.report.measuring import measure
from invreg.report.render import render_html, render_markdown
from invreg.report.settings import ReportSettings

#: what a report consists of, inside ``report_dir``
REPORT_FILES = ("report.md", "report.html", "figures")


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
    loaded = [LoadedCheckpoint.load(label, ckpt, config, verified=True)
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
