"""Where in the network invariance arises (Kvinge et al. 2022): layer-wise G-EED.

Three classifiers on rotated 16×16 digits (scikit-learn's digits upscaled ×2, every model
trained with random C4 augmentation): a CNN trained with augmentation alone (DA), an e2cnn
G-CNN (invariant by construction after group pooling), and the same CNN with the logit
invariance error (IR). For each layer: normalised invariance G-EED (cosine distance to the
orbit centroid ÷ cosine distance between random input pairs; 0 is invariant) on test digits
(in distribution) and on the same digits blended half-and-half with natural-image patches
(out of distribution).
"""

from __future__ import annotations

import torch

from invreg import functional as IF
from invreg.data import DigitsDataModule
from invreg.data.drift import blend, get_drift_source, match_statistics
from invreg.experiments.core import Results, Settings, held_out_tensors, mean_std, train
from invreg.groups import get_group
from invreg.models import E2CNN, SmallCNN
from invreg.modules import InvarianceModule

CNN_LAYERS = ["blocks.0", "blocks.1", "blocks.2", "head"]
GCNN_LAYERS = ["blocks.0", "blocks.1", "blocks.2", "group_pool", "head"]


def models(data: DigitsDataModule, weight: float) -> dict[str, tuple[InvarianceModule, list[str]]]:
    shape, classes = data.input_shape, data.num_classes

    def module(backbone, w):
        return InvarianceModule(backbone, group="c4", invariance_weight=w, num_classes=classes,
                                lr=3e-3)

    return {
        "DA CNN": (module(SmallCNN(shape, classes), 0.0), CNN_LAYERS),
        "e2cnn G-CNN": (module(E2CNN(shape, classes, group="c4"), 0.0), GCNN_LAYERS),
        "IR CNN": (module(SmallCNN(shape, classes), weight), CNN_LAYERS),
    }


def layerwise(settings: Settings) -> Results:
    weight = settings.extra.get("invariance_weight", 1.0)
    beta = settings.extra.get("ood_beta", 0.5)
    group = get_group("c4")
    rows = []
    for seed in range(settings.seeds):
        data = DigitsDataModule(upscale=2, batch_size=64, seed=seed)
        x, _ = held_out_tensors(data, settings.scale.eval_samples * 4)
        gen = torch.Generator().manual_seed(seed)
        source = get_drift_source("natural_images")
        x_ood = blend(x, match_statistics(source.sample(x.shape[0], x.shape[1:], gen), x), beta)
        torch.manual_seed(seed)
        for name, (module, layers) in models(data, weight).items():
            model = train(module, data, settings, f"layerwise/{name.replace(' ', '_')}", seed)
            for split, inputs in (("in distribution", x), (f"OOD (β={beta:g})", x_ood)):
                with torch.no_grad():
                    for depth, layer in enumerate(layers):
                        value = IF.geed(model.backbone, inputs, group, layer).item()
                        rows.append({"model": name, "split": split, "depth": depth,
                                     "layer": layer, "seed": seed, "geed": value})
            settings.progress(f"layerwise {name} seed {seed} done")
    summary = mean_std(rows, ["geed"], ["model", "split", "depth", "layer"])
    return Results(summary, {"layerwise_geed": figure(summary)}, per_seed=rows)


def figure(summary):
    from invreg.callbacks.media import new_figure

    fig = new_figure(10, 3.8)
    axes = fig.subplots(1, 2, sharey=True)
    splits = list(dict.fromkeys(e["split"] for e in summary))
    for ax, split in zip(axes, splits, strict=True):
        for name in dict.fromkeys(e["model"] for e in summary):
            pts = [e for e in summary if e["model"] == name and e["split"] == split]
            ax.plot([e["depth"] for e in pts], [e["geed"] for e in pts], marker="o", label=name)
        ax.set_title(f"normalised invariance G-EED, {split}")
        ax.set_xlabel("layer depth")
        ax.legend()
    return fig
