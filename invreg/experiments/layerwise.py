"""Where in the network invariance arises (Kvinge et al. 2022): layer-wise G-EED.

Three classifiers on rotated 16×16 digits (scikit-learn's digits upscaled ×2, every model
trained with random C4 augmentation): a CNN trained with augmentation alone (DA), an e2cnn
G-CNN (invariant by construction after group pooling), and the same CNN with the logit
invariance error (IR). For each layer: normalised invariance G-EED (cosine distance to the
orbit centroid ÷ cosine distance between random input pairs; 0 is invariant) on test digits
(in distribution) and on the same digits blended half-and-half with natural-image patches
(out of distribution). The rows also keep the two parts of the ratio: the deviation ``D``
(mean distance to the orbit centroid) and the random-pair distance ``R = D / (D/R)``.

Layers are aligned by **named stage**, not by list position: both models share the stages
``block 1``, ``block 2``, ``block 3`` (the three conv blocks) and ``logits`` (the head); only
the G-CNN has ``group pooling`` (between its last block and its head; the CNN pools spatially
inside its head's input, with nothing to hook there). The figure's x axis is the ordered list
of stages (:data:`STAGES`), labelled by name, and each model is drawn at its own stages, so the
CNN's logits sit above the G-CNN's logits, not above its group pooling. A relative depth in
[0, 1] would instead put the two models' block 3 at different positions (3/4 and 3/5) and
hide that they are the same stage.
"""

from __future__ import annotations

import math

import torch

from invreg.data import DigitsDataModule
from invreg.data.drift import drifted
from invreg.experiments.core import Results, Settings, held_out_tensors, mean_std, train
from invreg.groups import get_group
from invreg.metrics import LayerInvariance
from invreg.models import E2CNN, SmallCNN
from invreg.modules import InvarianceModule

#: the stages of the figure's x axis, input to output; a model is drawn at the stages it has
STAGES = ("block 1", "block 2", "block 3", "group pooling", "logits")
#: module name (``dict(backbone.named_modules())``) -> stage
CNN_LAYERS = {"blocks.0": "block 1", "blocks.1": "block 2", "blocks.2": "block 3",
              "head": "logits"}
GCNN_LAYERS = {"blocks.0": "block 1", "blocks.1": "block 2", "blocks.2": "block 3",
               "group_pool": "group pooling", "head": "logits"}

LEGEND = {
    "model": "DA CNN augmentation only, e2cnn G-CNN invariant by construction after group "
             "pooling, IR CNN augmentation + logit invariance error",
    "split": "test digits (in distribution), or blended with natural-image patches (OOD, "
             "weight β)",
    "seeds": "number of seeds averaged",
    "stage": "the layer's place in the network; stages shared by all models have one name",
    "layer": "the backbone module whose output is measured",
    "geed": "normalised invariance G-EED D/R (cosine; 0 = invariant, 1 = transforming an input "
            "moves its features as far as swapping it for another input)",
    "deviation": "D: mean cosine distance of f_i(g·x) to the orbit centroid (not normalised)",
    "random_pair_distance": "R: mean cosine distance between features of two different inputs "
                            "of the same split",
}

OOD_NOTE = (
    "Why hidden-layer G-EED *falls* off distribution: the normalised value is D/R, and R is "
    "measured between random pairs of the *drifted* inputs. A fall of D/R is therefore no sign "
    "of a more invariant layer; it has two possible sources, told apart by the `deviation` (D) "
    "and `random_pair_distance` (R) columns: a larger denominator (blending each digit with a "
    "different natural-image patch makes two inputs, and their early features, less alike), "
    "or a smaller D (with the digit at half weight, less of the input carries an orientation, "
    "so its features move less under a rotation). Measured here, OOD ÷ in distribution, "
    "geometric mean over the models: {changes}."
)


def models(
    data: DigitsDataModule, weight: float
) -> dict[str, tuple[InvarianceModule, dict[str, str]]]:
    shape, classes = data.input_shape, data.num_classes

    def module(backbone, w):
        return InvarianceModule(backbone, group="c4", invariance_weight=w, num_classes=classes,
                                lr=3e-3)

    return {
        "DA CNN": (module(SmallCNN(shape, classes), 0.0), CNN_LAYERS),
        "e2cnn G-CNN": (module(E2CNN(shape, classes, group="c4"), 0.0), GCNN_LAYERS),
        "IR CNN": (module(SmallCNN(shape, classes), weight), CNN_LAYERS),
    }


def _train_one(settings: Settings, name: str, seed: int, weight: float) -> None:
    """Model ``name`` of seed ``seed`` into the model cache, built as :func:`layerwise` builds
    it (the torch seed set, then the three models constructed in order): a task of
    :func:`layerwise_chains`."""
    data = DigitsDataModule(upscale=2, batch_size=64, seed=seed)
    held_out_tensors(data, settings.scale.eval_samples * 4)
    torch.manual_seed(seed)
    module, _ = models(data, weight)[name]
    train(module, data, settings, f"layerwise/{name.replace(' ', '_')}", seed)


def layerwise_chains(settings: Settings) -> list:
    """Every model of every seed at once, one round (:mod:`invreg.experiments.executor`)."""
    from invreg.experiments.executor import Training

    weight = settings.extra.get("invariance_weight", 1.0)

    def every_model():
        yield [Training(f"layerwise/{name.replace(' ', '_')}", seed,
                        weight if name == "IR CNN" else 0.0, _train_one, (name, seed, weight))
               for seed in range(settings.seeds) for name in ("DA CNN", "e2cnn G-CNN", "IR CNN")]

    return [every_model()]


def layerwise(settings: Settings) -> Results:
    weight = settings.extra.get("invariance_weight", 1.0)
    beta = settings.extra.get("ood_beta", 0.5)
    group = get_group("c4")
    rows = []
    for seed in range(settings.seeds):
        data = DigitsDataModule(upscale=2, batch_size=64, seed=seed)
        x, _ = held_out_tensors(data, settings.scale.eval_samples * 4)
        x_ood = drifted(x, "natural_images", beta, torch.Generator().manual_seed(seed))
        torch.manual_seed(seed)
        for name, (module, layers) in models(data, weight).items():
            model = train(module, data, settings, f"layerwise/{name.replace(' ', '_')}", seed)
            for split, inputs in (("in distribution", x), (f"OOD (β={beta:g})", x_ood)):
                normalised = measure(model.backbone, inputs, group, list(layers), True)
                deviation = measure(model.backbone, inputs, group, list(layers), False)
                for layer, stage in layers.items():
                    rows.append({
                        "model": name, "split": split, "stage": stage, "layer": layer,
                        "seed": seed, "geed": normalised[layer], "deviation": deviation[layer],
                        "random_pair_distance": ratio(deviation[layer], normalised[layer]),
                    })
            settings.progress(f"layerwise {name} seed {seed} done")
    summary = mean_std(rows, ["geed", "deviation", "random_pair_distance"],
                       ["model", "split", "stage", "layer"])
    return Results(summary, {"layerwise_geed": figure(summary)}, per_seed=rows, legend=LEGEND,
                   notes=[OOD_NOTE.format(changes=ood_changes(summary))])


def measure(
    backbone: torch.nn.Module, x: torch.Tensor, group, layers: list[str], normalize: bool
) -> dict[str, float]:
    """Invariance G-EED (cosine) of each layer on ``x``, one orbit forward for all layers."""
    metric = LayerInvariance(group, layers, normalize=normalize)
    metric.update(backbone, x)
    return {layer: value.item() for layer, value in metric.compute().items()}


def ood_changes(summary: list[dict]) -> str:
    """Per stage, how D, R and D/R change from in distribution to OOD: the geometric mean over
    models of the OOD ÷ in-distribution ratios (``"block 1: D ×0.78, R ×1.3, D/R ×0.56"``)."""
    splits = list(dict.fromkeys(e["split"] for e in summary))
    keys = {"D": "deviation", "R": "random_pair_distance", "D/R": "geed"}
    parts = []
    for stage in STAGES:
        pairs = []
        for name in dict.fromkeys(e["model"] for e in summary):
            found = {e["split"]: e for e in summary if e["model"] == name and e["stage"] == stage}
            if len(found) == 2:
                pairs.append((found[splits[0]], found[splits[1]]))
        factors = []
        for symbol, key in keys.items():
            logs = [math.log(ood[key] / ind[key]) for ind, ood in pairs
                    if ind[key] > 0 and ood[key] > 0]
            if logs:
                factors.append(f"{symbol} ×{math.exp(sum(logs) / len(logs)):.2g}")
        if factors:
            parts.append(f"{stage}: " + ", ".join(factors))
    return "; ".join(parts) or "no data"


def ratio(deviation: float, normalised: float) -> float:
    """``R = D / (D/R)``; NaN where the layer is exactly invariant (``D = 0``)."""
    return deviation / normalised if normalised != 0 else math.nan


def figure(summary):
    """One panel per split: normalised G-EED against the named stages (:data:`STAGES`, one
    categorical tick each); a shaded band of mean ± std over the seeds where a row of
    ``summary`` has more than one seed (``seeds``, ``geed_std``)."""
    import numpy as np

    from invreg.plotting import new_figure

    fig = new_figure(10, 4.3)
    splits = list(dict.fromkeys(e["split"] for e in summary))
    axes = fig.subplots(1, len(splits), sharey=True, squeeze=False)[0]
    seeds = max(int(e.get("seeds", 1)) for e in summary)
    for ax, split in zip(axes, splits, strict=True):
        for index, name in enumerate(dict.fromkeys(e["model"] for e in summary)):
            pts = [e for e in summary if e["model"] == name and e["split"] == split]
            pts.sort(key=lambda e: STAGES.index(e["stage"]))
            xs = [STAGES.index(e["stage"]) for e in pts]
            mean = np.array([e["geed"] for e in pts], dtype=float)
            ax.plot(xs, mean, marker="o", color=f"C{index}", label=name)
            if any(int(e.get("seeds", 1)) > 1 for e in pts):
                std = np.array([e.get("geed_std", 0.0) for e in pts], dtype=float)
                ax.fill_between(xs, mean - std, mean + std, alpha=0.2, color=f"C{index}",
                                linewidth=0)
        ax.set_xticks(range(len(STAGES)), STAGES, rotation=20)
        ax.set_xlim(-0.3, len(STAGES) - 0.7)
        ax.set_title(f"{split}")
        ax.set_xlabel("stage (input → output)")
        ax.set_ylim(bottom=0.0)
    axes[0].set_ylabel("normalised G-EED D / R  (0 = invariant)")
    spread = f"; bands: mean ± std over {seeds} seeds" if seeds > 1 else f" ({seeds} seed)"
    fig.suptitle(f"Layer-wise invariance G-EED (cosine) of C4-augmented CNNs on rotated digits, "
                 f"group C4{spread}")
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncols=len(labels), title="model")
    return fig
