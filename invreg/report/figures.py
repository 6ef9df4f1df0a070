"""The report's own figures, drawn on :func:`invreg.plotting.new_figure`: the per-layer G-EED
of one checkpoint and the comparison of all of them; and how a figure is kept, as PNG for the
HTML and in ``--figure-format`` for ``figures/``. The saliency grid and the drift curves are the
callbacks' figures (:func:`invreg.callbacks.saliency.grid_figure`,
:func:`invreg.callbacks.drift.drift_figure`)."""

from __future__ import annotations

import io
from collections.abc import Sequence
from typing import Any

from invreg.plotting import new_figure, scale_for
from invreg.report.settings import REPORT_DPI, CheckpointReport, ReportSettings


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


def _column(report: CheckpointReport, several_groups: bool) -> str:
    """A checkpoint's name in the comparison figure's legend: with its group when the report
    measures more than one."""
    return f"{report.name} on {report.group}" if several_groups else report.name


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
