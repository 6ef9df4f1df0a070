"""Where invariance comes from, layer by layer, in and out of distribution (Kvinge et al. 2022).

Kvinge et al., "In What Ways Are Deep Neural Networks Invariant and How Should We Measure
This?" (NeurIPS 2022), ask five questions of models trained on MNIST with the group C4 of
quarter turns:

1. do models trained with augmentation learn invariance, and in which layers?
2. how does that compare with equivariant layers?
3. does starting from pretrained weights change the invariance of the trained model?
4. does learned invariance hold out of distribution?
5. do self-supervised models become invariant?

This experiment asks them of eight models, every one a network of three conv blocks, a global
mean (``pool``) and a linear head, trained on real MNIST (digit 9 removed: a quarter-turn
invariant classifier cannot tell a 6 from a 9), 28×28, from the same ``train_size`` images:

======================  =========================================================================
``CNN``                 :class:`~invreg.models.SmallCNN`, no augmentation (upright digits)
``CNN aug``             the same with a random quarter turn of every training image
``CNN aug+IR``          augmentation plus the logit invariance error, ν learned by dual ascent
                        towards ``DI ≤ 0.01`` (:class:`~invreg.modules.DualAscentWeight`)
``G-CNN``               :class:`~invreg.models.E2CNN`: regular C4 fields, group pooling after the
                        last block; invariant by construction; matched to the CNN in parameters
``CNN pretrained→aug``  ``CNN``'s weights fine-tuned with augmentation for as many epochs as
                        ``CNN aug`` trains from scratch
``SimCLR``              contrastive (NT-Xent) encoder, views by small translations; linear probe
``SimCLR+C4``           the same with a random quarter turn in each view; linear probe
``RotNet``              encoder trained to predict which quarter turn was applied; linear probe
======================  =========================================================================

The self-supervised encoders are the CNN's blocks; their linear probe (the ``head``) is
fitted on the features of the upright training images
(:func:`~invreg.modules.selfsupervised.fit_linear_probe`).

Measured on the MNIST test digits (in distribution) and on three sets without digit labels
(out of distribution): FashionMNIST, natural-image patches and rendered letters, each matched
to the digits' mean and std. For every layer (block outputs, the G-CNN's group pooling, the
pooled features, the logits), through :func:`~invreg.metrics.layer_profile` (one
:class:`~invreg.metrics.LayerInvariance` per mode):

* invariance G-EED with the cosine distance: ``D`` (mean distance of ``f(g·x)`` to the orbit
  centroid), ``R`` (mean distance between two different inputs) and ``D/R``;
* equivariance G-EED of the feature maps: the G-CNN's fields transform by their e2cnn field
  type (the group's e2cnn bridge); a plain CNN's maps are rotated as images, channels left in
  place — the action a G-CNN written without e2cnn would need to permute is ignored;
* ``relative_deviation``: the euclidean ``D`` ÷ the mean feature norm ``‖f(x)‖``, the scale
  free reading of "at the float floor".

At the output, :class:`~invreg.metrics.OrbitMetrics`: DI, LI, orbit consistency, and accuracy
and orbit accuracy where labels exist.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from typing import Any

import torch

from invreg.data import MNISTDataModule
from invreg.data.drift import get_drift_source, match_statistics
from invreg.experiments.configs import config_path, from_config, scale_overrides
from invreg.experiments.core import (
    Results,
    Settings,
    Table,
    held_out_tensors,
    mean_std,
    model_key,
    train,
    training_description,
)
from invreg.metrics import OrbitMetrics, layer_profile

NAME = "invariance-origins"
GROUP = "c4"
#: out-of-distribution sets (``invreg.data.drift`` sources), in the order they are reported
OOD_SOURCES = ("fashion_mnist", "natural_images", "letters")
SPLIT_NAMES = {"fashion_mnist": "FashionMNIST", "natural_images": "natural patches",
               "letters": "letters"}
IN_DISTRIBUTION = "MNIST"

SUPERVISED = ("CNN", "CNN aug", "CNN aug+IR", "G-CNN")
PRETRAINED = ("CNN pretrained→aug",)
SELF_SUPERVISED = ("SimCLR", "SimCLR+C4", "RotNet")
MODELS = SUPERVISED + PRETRAINED + SELF_SUPERVISED

#: the stages of the figures' x axis, input to output; a model is drawn at the stages it has
STAGES = ("block 1", "block 2", "block 3", "group pooling", "pooled features", "logits")
CNN_LAYERS = {"blocks.0": "block 1", "blocks.1": "block 2", "blocks.2": "block 3",
              "pool": "pooled features", "head": "logits"}
GCNN_LAYERS = {"blocks.0": "block 1", "blocks.1": "block 2", "blocks.2": "block 3",
               "group_pool": "group pooling", "pool": "pooled features", "head": "logits"}
#: layer-profile batch: R pairs inputs within a batch
BATCH = 250

LEGEND = {
    "model": "see invreg/experiments/origins.py: CNN (no augmentation), CNN aug (C4 "
             "augmentation), CNN aug+IR (plus the invariance error, DI target 0.01), G-CNN "
             "(e2cnn, C4), CNN pretrained→aug (CNN fine-tuned with augmentation), SimCLR / "
             "SimCLR+C4 / RotNet (self-supervised encoder + linear probe)",
    "split": "MNIST test digits (in distribution) or an out-of-distribution set without "
             "digit labels",
    "stage": "the layer's place in the network; stages shared by the models have one name",
    "layer": "the backbone module whose output is measured",
    "mode": "invariance: f(g·x) against f(x); equivariance: f(g·x) against g·f(x)",
    "seeds": "number of seeds averaged",
    "ratio": "normalised G-EED D / R (cosine): 0 = invariant (equivariant), 1 = transforming "
             "an input moves its features as far as swapping it for another input",
    "D": "mean cosine distance of the transformed features to their orbit centroid",
    "R": "mean cosine distance between the features of two different inputs",
    "relative_deviation": "euclidean D ÷ mean feature norm ‖f(x)‖ (float32 floor ≈ 1e-7)",
}
OUTPUT_LEGEND = {
    "accuracy": "top-1 accuracy on the upright test digits (NaN: no labels)",
    "orbit_accuracy": "fraction of test digits classified correctly in all four orientations",
    "DI": "mean KL(p(x) ‖ p(g·x)) over the three quarter turns",
    "LI": "mean ½‖f(x) − f(g·x)‖² of the logits",
    "consistency": "fraction of inputs whose predicted class is the same in all orientations",
}
FINDINGS_LEGEND = {
    "question": "the paper's question (module docstring)",
    "quantity": "what is compared",
    "value": "the measured number (mean over seeds)",
    "std": "its standard deviation over seeds",
}


# ---------------------------------------------------------------------------------- models


#: model -> its config in ``configs/origins/`` (the fine-tuning is ``cnn_aug.yaml`` started from
#: ``cnn.yaml``'s trained weights)
CONFIGS = {"CNN": "cnn", "CNN aug": "cnn_aug", "CNN aug+IR": "cnn_aug_ir", "G-CNN": "gcnn",
           "CNN pretrained→aug": "cnn_aug", "SimCLR": "simclr", "SimCLR+C4": "simclr_c4",
           "RotNet": "rotnet"}


def build(name: str, settings: Settings, seed: int):
    """``(module, datamodule)`` of model ``name``, untrained, from its config
    (:data:`CONFIGS`, :func:`~invreg.experiments.configs.from_config`): the CLI seeds torch with
    ``seed`` first, so the initial weights are a function of the seed alone."""
    if name not in CONFIGS:
        raise ValueError(f"unknown model {name!r}; choose from {MODELS}")
    return from_config(config_path(f"origins/{CONFIGS[name]}.yaml"),
                       scale_overrides(settings, seed))


def data_module(settings: Settings, seed: int) -> MNISTDataModule:
    """The data every model of seed ``seed`` trains on (``cnn.yaml``'s; the configs share it)."""
    return build("CNN", settings, seed)[1]


def cache_name(name: str) -> str:
    return f"{NAME}/" + name.replace(" ", "_").replace("→", "-").replace("+", "plus")


def fit(settings: Settings, name: str, seed: int, pretrained=None):
    """Model ``name`` of seed ``seed``, trained (or loaded from the model cache); a task of
    :func:`chains`. The fine-tuned model first gets the upright ``CNN``'s weights
    (``pretrained``: that model, already trained; ``None``: :func:`fit` it)."""
    module, data = build(name, settings, seed)
    init_from = None
    if name in PRETRAINED:
        pretrained = pretrained if pretrained is not None else fit(settings, "CNN", seed)
        init_from = model_key(training_description(pretrained, data, settings, seed))
        module.load_state_dict(pretrained.state_dict())
    return train(module, data, settings, cache_name(name), seed, init_from=init_from)


def chains(settings: Settings) -> list:
    """The trainings as chains of rounds (:mod:`invreg.experiments.executor`): every seed's
    fine-tuning after its upright ``CNN``; the rest in one round, slowest first."""
    from invreg.experiments.executor import Training

    check_sources(settings)

    def task(name, seed, after=()):
        return Training(cache_name(name), seed, 0.0, _fit_task, (name, seed), after=after)

    def independent():
        order = ("G-CNN", "SimCLR", "SimCLR+C4", "CNN aug+IR", "RotNet", "CNN aug")
        yield [task(name, seed) for name in order for seed in range(settings.seeds)]

    def pretrained_then_tuned(seed):
        first = task("CNN", seed)
        yield [first]
        yield [task(name, seed, (first.label,)) for name in PRETRAINED]

    return [independent(), *(pretrained_then_tuned(seed) for seed in range(settings.seeds))]


def _fit_task(settings: Settings, name: str, seed: int) -> None:
    fit(settings, name, seed)


# ------------------------------------------------------------------------------ measuring


def evaluation_sets(settings: Settings, seed: int, data: MNISTDataModule
                    ) -> dict[str, tuple[torch.Tensor, Any]]:
    """``split -> (x, y or None)``: the first ``eval_samples`` test digits of ``data`` and as
    many images of each out-of-distribution source, matched to the digits' mean and std."""
    x, y = held_out_tensors(data, settings.scale.eval_samples)
    sets = {IN_DISTRIBUTION: (x, y)}
    for index, source in enumerate(settings.extra.get("ood", OOD_SOURCES)):
        drawn = ood_source(source, settings).sample(
            x.shape[0], tuple(x.shape[1:]), torch.Generator().manual_seed(1000 * seed + index))
        sets[SPLIT_NAMES.get(source, source)] = (match_statistics(drawn, x), None)
    return sets


def check_sources(settings: Settings) -> None:
    """Every out-of-distribution source can be read (a FashionMNIST folder is found), before
    anything trains: ``ValueError`` / ``FileNotFoundError`` naming the fix."""
    sources = settings.extra.get("ood", OOD_SOURCES)
    if not sources:
        raise ValueError(f"ood: name at least one out-of-distribution set of {OOD_SOURCES}")
    for name in sources:
        ood_source(name, settings)


def ood_source(name: str, settings: Settings):
    """The drift source ``name``; FashionMNIST from ``--drift-dir`` (``extra["drift_dir"]``)
    when it was given."""
    if name == "fashion_mnist" and settings.extra.get("drift_dir"):
        return get_drift_source(name, root=settings.extra["drift_dir"])
    return get_drift_source(name)


def measured(name: str, seed: int, module, data: MNISTDataModule) -> torch.nn.Module:
    """Trained model ``name`` of seed ``seed`` as it is measured: the backbone in eval mode
    (a self-supervised encoder with its linear probe fitted on ``data``'s training images)."""
    backbone = module.backbone.eval()
    if name in SELF_SUPERVISED:
        from invreg.modules.selfsupervised import fit_linear_probe

        data.setup("fit")
        x, y = data.train_dataset.tensors
        backbone = fit_linear_probe(backbone, x, y, seed=seed)
    return backbone


def measure(model: torch.nn.Module, x: torch.Tensor, layers: dict[str, str]) -> list[dict]:
    """Per layer and mode: D, R and D/R (cosine) and the relative euclidean deviation."""
    batches = list(x.split(BATCH))
    cosine = layer_profile(model, batches, GROUP, list(layers), distance="cosine")
    euclidean = layer_profile(model, batches, GROUP, list(layers), distance="euclidean")
    rows = []
    for row, plain in zip(cosine, euclidean, strict=True):
        if row["reason"] is not None:  # logits, pooled features: nothing to act on
            continue
        rows.append({"stage": layers[row["layer"]], "layer": row["layer"], "mode": row["mode"],
                     "ratio": row["ratio"], "D": row["D"], "R": row["R"],
                     "relative_deviation": relative(plain["D"], plain["feature_norm"])})
    return rows


def relative(deviation: float, norm: float) -> float:
    return deviation / norm if norm > 0 else math.nan


def outputs(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor | None) -> dict[str, float]:
    """DI, LI, orbit consistency (and accuracies when ``y`` is given) of ``model`` on ``x``."""
    metrics = OrbitMetrics(GROUP, targets=y is not None)
    for index, chunk in enumerate(x.split(BATCH)):
        target = None if y is None else y[index * BATCH:(index + 1) * BATCH]
        metrics.update_from_model(model, chunk, target)
    values = {key: value.item() for key, value in metrics.compute().items()}
    return {key: values.get(key, math.nan)
            for key in ("accuracy", "orbit_accuracy", "DI", "LI", "consistency")}


def origins(settings: Settings) -> Results:
    check_sources(settings)
    layer_rows, output_rows, sizes = [], [], {}
    for seed in range(settings.seeds):
        data = data_module(settings, seed)
        sets = evaluation_sets(settings, seed, data)
        upright = None
        for name in MODELS:
            module = fit(settings, name, seed, upright)
            upright = module if name == "CNN" else upright
            model = measured(name, seed, module, data)
            sizes[name] = parameters(model)
            layers = GCNN_LAYERS if name == "G-CNN" else CNN_LAYERS
            for split, (x, y) in sets.items():
                for row in measure(model, x, layers):
                    layer_rows.append({"model": name, "split": split, **row, "seed": seed})
                output_rows.append({"model": name, "split": split, "seed": seed,
                                    **outputs(model, x, y)})
            settings.progress(f"{NAME} {name} seed {seed} done")
    summary = mean_std(layer_rows, ["ratio", "D", "R", "relative_deviation"],
                       ["model", "split", "stage", "layer", "mode"])
    output_summary = mean_std(output_rows, list(OUTPUT_LEGEND), ["model", "split"])
    found = findings(layer_rows, output_rows)
    return Results(
        summary,
        {"layer_curves": layer_figure(summary), "ood_ratios": ood_figure(summary),
         "pretrained_vs_scratch": pretrained_figure(summary),
         "self_supervised": self_supervised_figure(summary)},
        per_seed=layer_rows, legend=LEGEND,
        tables={"outputs": Table("Output-level invariance and accuracy", output_summary,
                                 OUTPUT_LEGEND),
                "findings": Table("The paper's questions, measured", found, FINDINGS_LEGEND)},
        notes=[MODEL_NOTE.format(cnn=sizes.get("CNN", 0), gcnn=sizes.get("G-CNN", 0))],
    )


MODEL_NOTE = (
    "Parameters: CNN {cnn:,}, G-CNN {gcnn:,}. The self-supervised encoders' linear probe is "
    "fitted on the features of the upright training digits; their blocks never saw a label. "
    "The plain CNN's equivariance rows rotate each feature map as an image and leave its "
    "channels in place: a CNN whose channels transform among themselves under a quarter turn "
    "(as a G-CNN's do) still reads as non-equivariant, and its 7 → 3 max pool (a window left "
    "out at the border) breaks exact equivariance of even an equivariant filter bank."
)


def parameters(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


# ------------------------------------------------------------------------------- findings


def _per_seed(rows: Sequence[dict], key: str, **match) -> list[float]:
    return [row[key] for row in rows if all(row.get(k) == v for k, v in match.items())]


def _stat(values: Sequence[float]) -> tuple[float, float]:
    """Mean and standard deviation (``n − 1``) of per-seed values; NaN when there are none."""
    if not values:
        return math.nan, math.nan
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def findings(layer_rows: Sequence[dict], output_rows: Sequence[dict]) -> list[dict]:
    """The numbers the questions of the module docstring are read from, mean ± std over
    seeds (each statistic taken per seed first, so a ratio is a mean of per-seed ratios)."""
    out: list[dict] = []

    def add(question, quantity, values):
        mean, std = _stat(values)
        out.append({"question": question, "quantity": quantity, "value": mean, "std": std})

    def inv(model, stage, split=IN_DISTRIBUTION):
        return _per_seed(layer_rows, "ratio", model=model, stage=stage, split=split,
                         mode="invariance")

    def output(model, key, split=IN_DISTRIBUTION):
        return _per_seed(output_rows, key, model=model, split=split)

    for stage in ("block 1", "block 3", "pooled features", "logits"):
        add("1 augmentation", f"D/R {stage}, CNN", inv("CNN", stage))
        add("1 augmentation", f"D/R {stage}, CNN aug", inv("CNN aug", stage))
    add("1 augmentation", "consistency, CNN", output("CNN", "consistency"))
    add("1 augmentation", "consistency, CNN aug", output("CNN aug", "consistency"))
    add("1 augmentation", "consistency, CNN aug+IR", output("CNN aug+IR", "consistency"))
    for stage in ("block 1", "block 3", "group pooling", "logits"):
        add("2 equivariant layers", f"D/R {stage}, G-CNN", inv("G-CNN", stage))
        kind = "invariance" if stage == "logits" else "equivariance"
        add("2 equivariant layers", f"relative {kind} deviation {stage}, G-CNN",
            _per_seed(layer_rows, "relative_deviation", model="G-CNN", stage=stage,
                      split=IN_DISTRIBUTION, mode="equivariance")
            if stage != "logits" else
            _per_seed(layer_rows, "relative_deviation", model="G-CNN", stage=stage,
                      split=IN_DISTRIBUTION, mode="invariance"))
    for stage in ("block 1", "block 2", "block 3"):
        add("2 equivariant layers", f"equivariance D/R {stage}, CNN aug",
            _per_seed(layer_rows, "ratio", model="CNN aug", stage=stage,
                      split=IN_DISTRIBUTION, mode="equivariance"))
    add("2 equivariant layers", "accuracy, CNN aug", output("CNN aug", "accuracy"))
    add("2 equivariant layers", "accuracy, G-CNN", output("G-CNN", "accuracy"))
    for stage in ("block 1", "block 3", "logits"):
        add("3 pretraining", f"D/R {stage}, CNN pretrained→aug",
            inv("CNN pretrained→aug", stage))
        add("3 pretraining", f"D/R {stage}, CNN aug (scratch)", inv("CNN aug", stage))
    add("3 pretraining", "accuracy, CNN pretrained→aug", output("CNN pretrained→aug", "accuracy"))
    add("3 pretraining", "accuracy, CNN aug (scratch)", output("CNN aug", "accuracy"))
    splits = list(dict.fromkeys(row["split"] for row in layer_rows if row["split"]
                                != IN_DISTRIBUTION))
    for model in ("CNN", "CNN aug", "CNN aug+IR", "CNN pretrained→aug", "SimCLR+C4"):
        for split in splits:
            add("4 out of distribution", f"logits D/R {split} ÷ MNIST, {model}",
                _ratios(inv(model, "logits", split), inv(model, "logits")))
            add("4 out of distribution", f"consistency {split}, {model}",
                output(model, "consistency", split))
    for model in ("CNN",) + SELF_SUPERVISED:
        add("5 self-supervision", f"D/R pooled features, {model}", inv(model, "pooled features"))
        add("5 self-supervision", f"probe accuracy, {model}", output(model, "accuracy"))
    return out


def _ratios(numerators: Sequence[float], denominators: Sequence[float]) -> list[float]:
    return [n / d for n, d in zip(numerators, denominators, strict=True) if d > 0]


# -------------------------------------------------------------------------------- figures


def _curve(ax, rows, model, color, key="ratio"):
    import numpy as np

    rows = sorted(rows, key=lambda e: STAGES.index(e["stage"]))
    if not rows:
        return
    xs = [STAGES.index(e["stage"]) for e in rows]
    mean = np.array([e[key] for e in rows], dtype=float)
    ax.plot(xs, mean, marker="o", color=color, label=model)
    if any(int(e.get("seeds", 1)) > 1 for e in rows):
        std = np.array([e.get(f"{key}_std", 0.0) for e in rows], dtype=float)
        ax.fill_between(xs, mean - std, mean + std, alpha=0.2, color=color, linewidth=0)


def _stage_axis(ax):
    ax.set_xticks(range(len(STAGES)), STAGES, rotation=30, ha="right")
    ax.set_xlim(-0.3, len(STAGES) - 0.7)


def _seeds_text(summary) -> str:
    seeds = max((int(e.get("seeds", 1)) for e in summary), default=1)
    return f"bands: mean ± std over {seeds} seeds" if seeds > 1 else f"{seeds} seed"


def layer_figure(summary):
    """Rows: invariance and equivariance D/R; columns: the splits; one curve per supervised
    model across the named stages, with seed bands."""
    from invreg.plotting import new_figure

    splits = list(dict.fromkeys(e["split"] for e in summary))
    fig = new_figure(3.4 * len(splits) + 1, 7.5)
    axes = fig.subplots(2, len(splits), sharey="row", squeeze=False)
    models = [m for m in MODELS if any(e["model"] == m for e in summary)]
    for column, split in enumerate(splits):
        for row, mode in enumerate(("invariance", "equivariance")):
            ax = axes[row][column]
            for index, model in enumerate(models):
                _curve(ax, [e for e in summary if e["model"] == model and e["split"] == split
                            and e["mode"] == mode], model, f"C{index}")
            _stage_axis(ax)
            ax.set_ylim(bottom=0.0)
            if row == 0:
                ax.set_title(split)
        axes[0][0].set_ylabel("invariance D / R  (0 = invariant)")
        axes[1][0].set_ylabel("equivariance D / R  (0 = equivariant)")
    fig.suptitle(f"Layer-wise G-EED (cosine) under C4 on MNIST and off distribution; "
                 f"{_seeds_text(summary)}")
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncols=min(len(labels), 5),
               title="model")
    return fig


def ood_figure(summary):
    """Bars: invariance D/R of the logits off distribution ÷ in distribution, per model and
    out-of-distribution set (1 = invariance holds as well off distribution as on it)."""
    import numpy as np

    from invreg.plotting import new_figure

    splits = [s for s in dict.fromkeys(e["split"] for e in summary) if s != IN_DISTRIBUTION]
    models = [m for m in MODELS if m != "G-CNN" and any(e["model"] == m for e in summary)]
    fig = new_figure(10, 4.5)
    ax = fig.subplots()
    width = 0.8 / max(len(splits), 1)

    def logits(model, split):
        found = [e for e in summary if e["model"] == model and e["split"] == split
                 and e["stage"] == "logits" and e["mode"] == "invariance"]
        return found[0]["ratio"] if found else math.nan

    for index, split in enumerate(splits):
        values = [logits(m, split) / logits(m, IN_DISTRIBUTION) for m in models]
        ax.bar(np.arange(len(models)) + index * width, values, width, label=split,
               color=f"C{index}")
    ax.axhline(1.0, color="black", linewidth=0.8)
    ax.set_xticks(np.arange(len(models)) + width * (len(splits) - 1) / 2, models, rotation=20,
                  ha="right")
    ax.set_ylabel("logits D/R off distribution ÷ MNIST")
    ax.set_title("Does learned invariance hold off distribution? (G-CNN left out: 0 ÷ 0; "
                 "ratio of the seed means)")
    ax.legend(title="out-of-distribution set")
    return fig


def comparison_figure(summary, models: Sequence[str], title: str):
    """Invariance D/R per stage on MNIST for ``models``, with seed bands."""
    from invreg.plotting import new_figure

    fig = new_figure(7, 4.5)
    ax = fig.subplots()
    for model in models:
        _curve(ax, [e for e in summary if e["model"] == model and e["split"] == IN_DISTRIBUTION
                    and e["mode"] == "invariance"], model, f"C{MODELS.index(model)}")
    _stage_axis(ax)
    ax.set_ylim(bottom=0.0)
    ax.set_ylabel("invariance D / R on MNIST (0 = invariant)")
    ax.set_title(f"{title}; {_seeds_text(summary)}")
    ax.legend()
    return fig


def pretrained_figure(summary):
    """Upright pretraining then augmentation, against augmentation from scratch."""
    return comparison_figure(summary, ("CNN", "CNN aug") + PRETRAINED,
                             "Pretrained on upright digits, fine-tuned with augmentation")


def self_supervised_figure(summary):
    """The self-supervised encoders (+ linear probe) against the augmented CNN."""
    return comparison_figure(summary, ("CNN aug",) + SELF_SUPERVISED,
                             "Self-supervised encoders + linear probe")
