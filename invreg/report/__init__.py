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
   path outside invreg is imported when its module imports,
   :func:`invreg.report.load._build_from_checkpoint`);
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

The package, a module per job (each name below is importable from ``invreg.report``):

- :mod:`invreg.report.load`: step 1, the checkpoint's module and data module, and the groups
  to measure (:func:`load_checkpoint`, :class:`LoadedCheckpoint`,
  :func:`resolve_report_group`, :func:`mixed_groups_warning`);
- :mod:`invreg.report.measuring`: steps 2–3 (:func:`evaluate_checkpoint`, :func:`measure`,
  :func:`feature_layers`);
- :mod:`invreg.report.figures`: the G-EED and comparison figures, on
  :func:`invreg.plotting.new_figure` (:func:`geed_figure`, :func:`comparison_figure`,
  :func:`merge_layers`);
- :mod:`invreg.report.render`: ``report.md`` and ``report.html`` (:func:`render_markdown`,
  :func:`render_html`, :func:`format_value`);
- :mod:`invreg.report.write`: the whole report (:func:`write_report`,
  :func:`check_report_dir`);
- :mod:`invreg.report.settings`: :class:`ReportSettings`, :data:`METRICS`,
  :class:`CheckpointReport`, :func:`resolve_device`;
- :mod:`invreg.report.cli`: ``invreg report ARGS`` (:func:`build_parser`,
  :func:`run_report_cli`).
"""

from invreg.report.cli import build_parser, run_report_cli
from invreg.report.figures import comparison_figure, geed_figure, merge_layers
from invreg.report.load import (
    DATA_FIX,
    SAME_MODEL_ARGUMENTS,
    UNSAVED_FIX,
    LoadedCheckpoint,
    load_checkpoint,
    mixed_groups_warning,
    resolve_report_group,
)
from invreg.report.measuring import evaluate_checkpoint, feature_layers, measure
from invreg.report.render import CSS, format_value, metric_cell, render_html, render_markdown
from invreg.report.settings import (
    METRICS,
    REPORT_DPI,
    SUBSET_METRICS,
    CheckpointReport,
    ReportSettings,
    available_devices,
    resolve_device,
)
from invreg.report.write import (
    REPORT_FILES,
    check_report_dir,
    default_name,
    unique_names,
    write_report,
)

__all__ = [
    "CSS",
    "DATA_FIX",
    "METRICS",
    "REPORT_DPI",
    "REPORT_FILES",
    "SAME_MODEL_ARGUMENTS",
    "SUBSET_METRICS",
    "UNSAVED_FIX",
    "CheckpointReport",
    "LoadedCheckpoint",
    "ReportSettings",
    "available_devices",
    "build_parser",
    "check_report_dir",
    "comparison_figure",
    "default_name",
    "evaluate_checkpoint",
    "feature_layers",
    "format_value",
    "geed_figure",
    "load_checkpoint",
    "measure",
    "merge_layers",
    "metric_cell",
    "mixed_groups_warning",
    "render_html",
    "render_markdown",
    "resolve_device",
    "resolve_report_group",
    "run_report_cli",
    "unique_names",
    "write_report",
]
