"""Rendering the report: ``report.md`` (:func:`render_markdown`) and the self-contained
``report.html`` (:func:`render_html`), their tables and how each number is written
(:func:`format_value`)."""

from __future__ import annotations

import base64
import datetime
import html
import math
from collections.abc import Sequence

import invreg
from invreg.report.settings import METRICS, CheckpointReport, ReportSettings


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
