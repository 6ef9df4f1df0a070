"""Measuring one loaded checkpoint on one group (:mod:`invreg.report`, steps 2–3): the test
split through :class:`~invreg.metrics.OrbitMetrics`, then SI, σ_max, the per-layer G-EED
(:class:`~invreg.metrics.LayerInvariance`) and drift (:class:`~invreg.metrics.DriftMetrics`)
on a fixed seeded subset, each with its figure."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import torch
from torch import Tensor, nn

from invreg.callbacks.drift import drift_figure
from invreg.callbacks.saliency import CALLBACK_RECIPE, grid_figure
from invreg.data.drift import get_drift_source, match_statistics
from invreg.evaluation import eval_mode
from invreg.functional.spectral import jacobian_spectral_norm
from invreg.functional.statistics import bootstrap_interval
from invreg.groups import Group
from invreg.metrics import DriftMetrics, LayerInvariance, OrbitMetrics, SaliencyInvarianceSimilarity
from invreg.metrics.saliency import resolve_baseline
from invreg.plotting import model_title
from invreg.report.figures import _keep, geed_figure
from invreg.report.load import LoadedCheckpoint, _plain, resolve_report_group
from invreg.report.settings import (
    METRICS,
    CheckpointReport,
    ReportSettings,
    _progress,
    resolve_device,
)


def evaluate_checkpoint(
    name: str,
    ckpt_path: str | Path,
    config: str | Path | None = None,
    settings: ReportSettings | None = None,
    group: str | Group | None = None,
) -> CheckpointReport:
    """Load one checkpoint (:func:`load_checkpoint`) and measure everything the report shows
    (module docstring, steps 2–3) on ``group`` (a name or a Group; default: the checkpoint's
    training group). ``ValueError`` if its module has no ``group``, or if ``group`` cannot act
    on the data's inputs."""
    settings = settings or ReportSettings()
    loaded = LoadedCheckpoint.load(name, ckpt_path, config)
    if group is None:
        label, measured = loaded.training_group()
    elif isinstance(group, str):
        label, measured = group, resolve_report_group(group)
    else:
        label, measured = repr(group), group
    loaded.check_group(label, measured)
    return measure(loaded, label, measured, settings)


def measure(
    loaded: LoadedCheckpoint, label: str, group: Group, settings: ReportSettings
) -> CheckpointReport:
    """Every measurement of the report (module docstring, steps 2–3) of one loaded checkpoint
    on ``group`` (``label``: its name in the report)."""
    module, datamodule, meta = loaded.module, loaded.datamodule, loaded.meta
    name, ckpt_path, config = loaded.name, loaded.ckpt_path, loaded.config
    device = resolve_device(settings.device)
    module.to(device)
    loader = datamodule.test_dataloader()
    elements = group.fixed_elements(settings.orbit_size, settings.seed)
    report = CheckpointReport(
        name=name,
        run=_describe_run(module, datamodule, group, ckpt_path, config, meta),
        hyperparameters=_plain(meta["hyper_parameters"] or dict(module.hparams)),
        data_hyperparameters=_plain(meta["datamodule_hyper_parameters"]
                                    or dict(getattr(datamodule, "hparams", {}))),
        group=label,
    )
    training_label, training = loaded.training_group()
    report.run["group measured"] = label if label == repr(group) else f"{label} ({group!r})"
    report.run["group"] = (f"{training_label} ({training!r})" if training_label != repr(training)
                           else training_label)
    title = f"{report.name} on {label}"
    generator = torch.Generator().manual_seed(settings.seed)
    with eval_mode(module):
        x_all, y_all = _test_split(module, loader, group, elements, device, report, settings)
        pick = torch.randperm(x_all.shape[0], generator=generator)[: settings.samples]
        x, y = x_all[pick].to(device), y_all[pick].to(device)
        report.run["subset"] = (f"{x.shape[0]} of {x_all.shape[0]} test samples "
                                f"(seed {settings.seed})")
        with torch.inference_mode(False), torch.enable_grad():
            _saliency(module, datamodule, group, elements, x, y, report, settings, title)
            _spectral(module, x, report, settings)
        _geed(module, group, x, report, settings, title)
        _drift(module, group, elements, x, y, report, settings, title)
    return report


def _test_split(module, loader, group, elements, device, report, settings) -> tuple[Tensor, Tensor]:
    """OrbitMetrics over every test batch; returns the whole split ``(x, y)`` on the CPU."""
    metrics = OrbitMetrics(group, chunk_size=settings.batch_size).to(device)
    xs, ys = [], []
    for x, y in _progress(loader, f"{report.name} ({report.group}): test split", settings):
        metrics.update_from_model(module, x.to(device), y.to(device), elements)
        xs.append(x.cpu())
        ys.append(y.cpu())
    if not xs:
        raise ValueError("the data module's test split is empty")
    values = {key: value.item() for key, value in metrics.compute().items()}
    report.metrics.update({key: values[key] for key, _, _ in METRICS if key in values})
    return torch.cat(xs), torch.cat(ys)


def _saliency(module, datamodule, group, elements, x, y, report, settings, title) -> None:
    """Per-sample SI and the grid of the first rows, from one SaliencyInvarianceSimilarity."""
    baseline, _ = resolve_baseline("background", datamodule, "invreg report", warn=True)
    recipe = replace(CALLBACK_RECIPE, steps=settings.saliency_steps, baseline=baseline)
    metric = SaliencyInvarianceSimilarity(group, recipe, per_sample=True,
                                          keep_maps=settings.saliency_rows).to(x.device)
    for start in _progress(range(0, x.shape[0], settings.batch_size),
                           f"{report.name}: saliency (SI)", settings):
        end = start + settings.batch_size
        metric.update(module, x[start:end], y[start:end], elements=elements)
    values = metric.per_sample_values().cpu()
    low, high = bootstrap_interval(values, settings.bootstrap, settings.confidence, settings.seed)
    report.metrics.update({"SI": values.double().mean().item(), "SI_low": low, "SI_high": high,
                           "SI_baseline": float(baseline)})
    kept = metric.kept_maps()
    figure = grid_figure(kept.x, kept.maps, kept.similarity, group.element_labels(kept.elements),
                         targets=kept.targets,
                         title=f"Saliency over the orbit: {title} ({model_title(module, group)})")
    _keep(report, "saliency", figure, settings)


def _spectral(module, x, report, settings) -> None:
    generator = torch.Generator().manual_seed(settings.seed)
    sigma = torch.cat([
        jacobian_spectral_norm(module, x[start : start + settings.batch_size],
                               generator=generator).cpu()
        for start in _progress(range(0, x.shape[0], settings.batch_size),
                               f"{report.name}: Jacobian σ_max", settings)
    ])
    report.metrics["jacobian_sigma_max"] = sigma.double().mean().item()


def _geed(module, group, x, report, settings, title) -> None:
    """Normalised invariance G-EED (cosine) of every stage of the backbone, one orbit forward
    per batch for all of them (batches of one sample have no random pair: merged away)."""
    network = getattr(module, "backbone", module)
    layers = feature_layers(network, x[:2])
    num = None if group.is_finite else settings.orbit_size
    metric = LayerInvariance(group, layers, normalize=True, chunk_size=settings.batch_size,
                             num_samples=num).to(x.device)
    starts = list(range(0, x.shape[0], settings.batch_size))
    if len(starts) > 1 and x.shape[0] - starts[-1] < 2:
        starts.pop()
    ends = [*starts[1:], x.shape[0]]
    for start, end in _progress(list(zip(starts, ends, strict=True)),
                                f"{report.name}: layer G-EED", settings):
        metric.update(network, x[start:end])
    report.geed = {layer: value.item() for layer, value in metric.compute().items()}
    _keep(report, "geed", geed_figure(
        report.geed, f"Layer-wise invariance G-EED: {title} ({model_title(module, group)})"),
        settings)


def _drift(module, group, elements, x, y, report, settings, title) -> None:
    """DriftCallback's measurement, :class:`~invreg.metrics.DriftMetrics` on
    ``(1 − β)·x + β·d`` for each ``β``; the
    figure draws DI's float rounding below 0 as 0 (:func:`comparison_figure`)."""
    source = get_drift_source(settings.drift_source)
    generator = torch.Generator().manual_seed(settings.seed)
    drift = source.sample(x.shape[0], tuple(x.shape[1:]), generator).to(x.dtype)
    drift = match_statistics(drift.cpu(), x.cpu()).to(x.device)
    metrics = DriftMetrics(group, settings.betas, chunk_size=settings.batch_size).to(x.device)
    metrics.update_from_model(module, x, drift, y, elements, progress=lambda pairs: _progress(
        pairs, f"{report.name}: drift", settings))
    rows = [{key: row[key] for key in ("beta", "DI", "accuracy", "accuracy_ratio")}
            for row in metrics.rows()]
    report.drift = rows
    _keep(report, "drift", drift_figure(
        [r["beta"] for r in rows], [max(r["DI"], 0.0) for r in rows],
        [r["accuracy_ratio"] for r in rows],
        f"Drift ({source!r}): {title} ({model_title(module, group)})"), settings)


def feature_layers(network: nn.Module, example: Tensor | None = None) -> list[str]:
    """The layers whose G-EED the report plots: every child of ``network``, a ``Sequential`` /
    ``ModuleList`` child replaced by its own children (``flatten``, ``hidden.0``, ``hidden.1``,
    ``head`` for an :class:`~invreg.models.MLP`; ``blocks.0``, …, ``group_pool``, ``head``
    for an :class:`~invreg.models.E2CNN`); ``[""]`` (the output) for a network without
    children.

    With an ``example`` batch the layers are listed in the order one forward pass runs them,
    those it does not run left out: registration order is not execution order (a
    :class:`~invreg.models.TiedMLP` pools after ``hidden.0``, but registers ``pool`` last).

    >>> from invreg.models import MLP, TiedMLP
    >>> feature_layers(MLP((1, 8, 8), 10, hidden_widths=[16, 16]))
    ['flatten', 'hidden.0', 'hidden.1', 'head']
    >>> tied = TiedMLP((1, 8, 8), 10, group="c4", hidden_widths=[16, 16])
    >>> feature_layers(tied, torch.randn(2, 1, 8, 8))
    ['hidden.0', 'pool', 'hidden.1', 'head']
    """
    layers = []
    for name, child in network.named_children():
        if isinstance(child, nn.Sequential | nn.ModuleList) and len(child):
            layers += [f"{name}.{inner}" for inner, _ in child.named_children()]
        else:
            layers.append(name)
    if not layers:
        return [""]
    if example is None:
        return layers
    modules = dict(network.named_modules())
    order: list[str] = []
    handles = [modules[name].register_forward_hook(
        lambda *_, name=name: order.append(name) if name not in order else None)
        for name in layers]
    try:
        with torch.no_grad():
            network(example)
    finally:
        for handle in handles:
            handle.remove()
    return order


def _describe_run(module, datamodule, group, ckpt_path, config, meta) -> dict[str, str]:
    classes = getattr(datamodule, "classes", None)
    backbone = getattr(module, "backbone", None)
    size = len(datamodule.test_dataloader().dataset)
    run = {
        "checkpoint": str(Path(ckpt_path).resolve()),
        "config": str(Path(config).resolve()) if config else "none: read from the checkpoint",
        "epoch (from 0)": str(meta.get("epoch")),
        "global step": str(meta.get("global_step")),
        "model": f"{type(module).__module__}.{type(module).__qualname__}",
        "backbone": type(backbone).__name__ if isinstance(backbone, nn.Module) else "-",
        "parameters": f"{sum(p.numel() for p in module.parameters()):,}",
        "group": repr(group),
        "data": f"{type(datamodule).__module__}.{type(datamodule).__qualname__}",
        "test samples": str(size),
        "classes": ", ".join(map(str, classes)) if classes is not None else "-",
    }
    input_shape = getattr(datamodule, "input_shape", None)
    if input_shape is not None:
        run["input shape"] = " × ".join(map(str, input_shape))
    return run
