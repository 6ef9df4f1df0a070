"""What a report measures and what it holds: :class:`ReportSettings` (every ``invreg report``
option, checked on creation), the table of reported metrics (:data:`METRICS`),
:class:`CheckpointReport` (the measurements of one checkpoint on one group) and the
``--device`` check (:func:`resolve_device`)."""

from __future__ import annotations

import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import torch
from tqdm import tqdm

from invreg.callbacks.saliency import CALLBACK_RECIPE
from invreg.data.drift import get_drift_source
from invreg.functional.drift import check_betas
from invreg.plotting import check_dpi, check_figure_format
from invreg.report.load import resolve_report_group

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
