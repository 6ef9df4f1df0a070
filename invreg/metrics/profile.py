"""A layer-by-layer invariance and equivariance profile of a model, through
:class:`~invreg.metrics.LayerInvariance`."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from invreg.functional.geed import GEED_MODES, Distance, GeedMode, get_layer
from invreg.functional.invariance import capture_layers, tensor_of
from invreg.groups import Group, get_group
from invreg.groups.e2cnn import fibre_element, is_geometric_tensor
from invreg.metrics.layers import LayerInvariance


def layer_profile(
    model: nn.Module,
    batches: Iterable[Tensor | Sequence[Any]],
    group: Group | str,
    layers: Sequence[str] | None = None,
    modes: Sequence[GeedMode] = GEED_MODES,
    distance: Distance = "euclidean",
    *,
    chunk_size: int | None = None,
    num_samples: int | None = None,
) -> list[dict[str, Any]]:
    """G-EED of every layer of ``model``: one row per layer and mode.

    Each mode is measured by one :class:`~invreg.metrics.LayerInvariance` (``normalize=False``)
    updated on every batch: ``D`` is its ``compute()``, ``R`` its
    :meth:`~invreg.metrics.LayerInvariance.random_pair_distance` and ``ratio = D / R`` the
    normalised G-EED (what ``normalize=True`` gives). ``feature_norm`` is the mean over the
    inputs (untransformed) of the layer's flattened feature norm ``‖f_i(x)‖₂``, the scale of
    ``D`` for ``distance="euclidean"``.

    In ``mode="equivariance"`` the group acts on a layer's output as
    :func:`~invreg.functional.geed.geed` does: an e2cnn ``GeometricTensor`` by its field type
    (pixels move, each field's channels transform by its representation); a plain feature map
    ``[B, C, H, W]`` by the group's spatial action ``group.act`` alone, which moves the pixels
    and does **not** permute channels, so a plain CNN whose channels would transform among
    themselves (a G-CNN written without e2cnn) reads as non-equivariant. A layer the group
    cannot act on (logits ``[B, K]``, a non-square map, an e2cnn field type whose gspace does
    not contain the group) gets an equivariance row with NaN values and a ``reason``; its
    invariance row is measured as usual.

    Args:
        model: the network, in ``eval()`` mode.
        batches: inputs ``x`` ``[B, *D]``, or tuples/lists whose first item is ``x`` (a
            ``DataLoader`` of ``(x, y)``). ``R`` needs batches of at least 2 samples.
        group: a :class:`~invreg.groups.Group` or its name.
        layers: module names (``dict(model.named_modules())``; ``""`` is the output);
            ``None``: every module that runs exactly once in a forward and returns a tensor or
            a ``GeometricTensor``, in the order they finish (the whole model, ``""``, last).
        modes: a subset of ``("invariance", "equivariance")``.
        distance: ``"euclidean"`` (``D`` in feature units), ``"cosine"`` or ``"kl"``.
        chunk_size, num_samples: see :func:`~invreg.functional.orbit_logits`.

    Returns:
        ``[{"layer", "mode", "D", "R", "ratio", "feature_norm", "reason"}, ...]`` (floats;
        ``reason`` is ``None`` for a measured row), layer-major in ``layers``' order and
        ``modes``' order within a layer.

    Raises:
        ValueError: an unknown layer name (the message lists the model's names), an unknown
            mode, a repeated layer, or no batches.
    """
    group = get_group(group)
    modes = list(modes)
    if not modes or any(mode not in GEED_MODES for mode in modes) or len(set(modes)) != len(modes):
        raise ValueError(f"modes: expected distinct items of {GEED_MODES}, got {modes!r}")
    if layers is not None:
        layers = list(layers)
        for name in layers:  # fail on a typo before any forward
            get_layer(model, name)
        if not layers or len(set(layers)) != len(layers):
            raise ValueError(f"layers: expected distinct module names, got {layers!r}")
    inputs = [_input_of(batch) for batch in batches]
    if not inputs:
        raise ValueError("layer_profile: batches is empty; pass at least one batch of inputs")

    if layers is None:
        layers = _layers_run_once(model, inputs[0])
    norms, reasons = _probe(model, inputs, group, layers, num_samples)
    metrics = {
        mode: LayerInvariance(
            group,
            layers if mode == "invariance" else [n for n in layers if reasons[n] is None],
            mode,
            distance,
            normalize=False,
            chunk_size=chunk_size,
            num_samples=num_samples,
        )
        for mode in modes
        if mode == "invariance" or any(reasons[n] is None for n in layers)
    }
    for x in inputs:
        for metric in metrics.values():
            metric.update(model, x)
    values: dict[str, dict[str, tuple[float, float, float]]] = {}
    for mode, metric in metrics.items():
        deviations, randoms = metric.compute(), metric.random_pair_distance()
        values[mode] = {  # D / R in the states' dtype, as compute() with normalize=True
            name: (
                float(deviations[name]),
                float(randoms[name]),
                float(deviations[name] / randoms[name]),
            )
            for name in metric.layers
        }

    rows = []
    for name in layers:
        for mode in modes:
            reason = reasons[name] if mode == "equivariance" else None
            d, r, ratio = values[mode][name] if reason is None else (math.nan,) * 3
            rows.append(
                {
                    "layer": name,
                    "mode": mode,
                    "D": d,
                    "R": r,
                    "ratio": ratio,
                    "feature_norm": norms[name],
                    "reason": reason,
                }
            )
    return rows


def _input_of(batch: Tensor | Sequence[Any]) -> Tensor:
    x = batch if isinstance(batch, Tensor) else batch[0] if isinstance(batch, Sequence) else None
    if not isinstance(x, Tensor):
        raise TypeError(
            f"batches: expected tensors x or (x, ...) tuples, got {type(batch).__name__}"
        )
    return x


def _layers_run_once(model: nn.Module, x: Tensor) -> list[str]:
    """Names of the modules that run exactly once in a forward of ``x`` and return a tensor or
    a ``GeometricTensor``, in the order they finish."""
    finished: list[tuple[str, bool]] = []

    def hook_for(name: str):
        def hook(module: nn.Module, args: Any, output: Any) -> None:
            finished.append((name, isinstance(output, Tensor) or is_geometric_tensor(output)))

        return hook

    handles = [m.register_forward_hook(hook_for(n)) for n, m in model.named_modules()]
    try:
        with torch.no_grad():
            model(x)
    finally:
        for handle in handles:
            handle.remove()
    names = [name for name, _ in finished]
    return [name for name, usable in finished if usable and names.count(name) == 1]


def _probe(
    model: nn.Module,
    inputs: list[Tensor],
    group: Group,
    layers: list[str],
    num_samples: int | None,
) -> tuple[dict[str, float], dict[str, str | None]]:
    """Per layer: the mean feature norm over ``inputs``, and why the group cannot act on its
    output (``None`` if it can)."""
    sums = dict.fromkeys(layers, 0.0)
    count = 0
    reasons: dict[str, str | None] = {}
    with torch.no_grad(), capture_layers(model, layers) as captured:
        for x in inputs:
            for outputs in captured.values():
                outputs.clear()
            model(x)
            for name in layers:
                value = captured[name][-1]
                features = tensor_of(value, f"layer {name!r}")
                flat = features.detach().reshape(features.shape[0], -1).double()
                sums[name] += float(torch.linalg.vector_norm(flat, dim=1).sum())
                if name not in reasons:
                    reasons[name] = _why_not_acting(group, value, features, num_samples)
            count += x.shape[0]
    norms = {name: sums[name] / count if count else math.nan for name in layers}
    return norms, reasons


def _why_not_acting(
    group: Group, value: Any, features: Tensor, num_samples: int | None
) -> str | None:
    if is_geometric_tensor(value):
        elements = group.elements(num_samples)
        try:
            for g in elements[1:]:
                fibre_element(group, g, value.type.gspace)
        except (NotImplementedError, ValueError) as err:
            return f"{group!r} does not act on this e2cnn field type: {err}"
        return None
    try:
        group.check_input(features)
    except (ValueError, TypeError) as err:
        return f"{group!r} cannot act on an output of shape {tuple(features.shape)}: {err}"
    return None


__all__ = ["layer_profile"]
