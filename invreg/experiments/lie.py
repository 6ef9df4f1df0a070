"""Lie-derivative training on continuously rotated digits: does ``ν·‖L f‖²`` beat augmentation?

``invreg-experiment lie``. The Lie derivative ``L f(x) = d/dt f(g_t·x)|_{t=0}`` along the
rotation generator (:func:`invreg.functional.lie.lie_derivative`, Gruver et al. 2023) used as a
training penalty (:class:`~invreg.losses.LieDerivativeL2`), against augmentation alone.

1. **Data**: scikit-learn's 8×8 digits, upscaled ×2 and padded by 4 to 24×24 (so a rotation
   keeps the digit in the frame), split 70 / 15 / 15 % by the seed; every split rotated once
   by a uniform random angle in [−180°, 180°) (``transform_group="so2"``, bilinear, fixed per
   seed), then standardised. Validation and test digits sit at continuous random angles.
2. **Models**: the same MLP (2 × 128, ReLU), Adam (lr 3·10⁻³), batch 64, every training batch
   rotated again by a fresh uniform angle (``augment=True`` on ``so2``):
   **DA**, augmentation alone, and **DA+Lie**, with ``ν · mean ‖L f(x)‖²`` on the logits
   added. The epoch with the best validation accuracy is kept
   (:func:`~invreg.experiments.core.train`).
3. **ν rule**: on the first seed, one DA+Lie model per ν of the scale's grid; the ν with the
   lowest *validation* error is used for every seed (ties: the larger ν). Every ν tried is
   recorded (``invariance_weights.csv``).
4. **Measured** on the rotated validation and test splits, model in ``eval()`` mode: the
   classification error ``100·(1 − accuracy)`` (%) and the Lie derivative error
   ``mean ‖L f(x)‖²`` of the logits (:class:`~invreg.metrics.LieDerivativeError`, the data's
   background as fill). The validation split chose ν and the epoch, so its numbers are
   optimistic; the test split chose nothing.
5. **Acceptance** (a table of its own): the reduction ``1 − DA+Lie / DA`` of the seed means of
   each value, and whether it reaches 50 %.
"""

from __future__ import annotations

import torch

from invreg.data import DigitsDataModule
from invreg.experiments.core import Results, Settings, Table, mean_std, train
from invreg.losses import LieDerivativeL2
from invreg.metrics import Accuracy, LieDerivativeError
from invreg.models import MLP
from invreg.modules import InvarianceModule

#: the acceptance threshold: DA+Lie must cut DA's value by at least this fraction
TARGET_REDUCTION = 0.5
MODELS = ("DA", "DA+Lie")
HIDDEN_WIDTHS = (128, 128)
LEARNING_RATE = 3e-3
BATCH_SIZE = 64

LEGEND = {
    "model": "DA: random continuous-rotation augmentation alone; DA+Lie: the same plus "
             "ν·‖L f‖² (LieDerivativeL2, rotation generator, on the logits)",
    "nu": "invariance weight ν (lowest validation error over the grid on the first seed; 0 "
          "for DA)",
    "seeds": "number of seeds averaged",
    "val_error": "classification error 100·(1 − accuracy) % on the validation digits, each "
                 "rotated by a random continuous angle (chose ν and the epoch: optimistic)",
    "test_error": "the same on the test digits (held out: chose nothing)",
    "val_lie": "Lie derivative error mean ‖d/dt f(g_t·x)|₀‖² of the logits (t in radians) on "
               "the rotated validation digits (0 = invariant)",
    "test_lie": "the same on the rotated test digits",
}
ACCEPTANCE_LEGEND = {
    "value": "the value compared (means over seeds)",
    "DA": "augmentation alone",
    "DA+Lie": "augmentation + ν·‖L f‖²",
    "reduction_pct": "100·(1 − DA+Lie / DA): how much the Lie penalty cuts the value",
    "meets_50pct": "reduction ≥ 50 %",
}
WEIGHT_LEGEND = {
    "nu": "invariance weight ν tried (first seed)",
    "val_error": "validation error % (rotated digits) of the model trained with that ν",
    "val_lie": "its validation Lie derivative error",
    "chosen": "the ν used in the tables above",
}


def lie_experiment(settings: Settings) -> Results:
    """DA and DA+Lie on rotated digits over ``settings.seeds`` seeds; see the module docstring.

    ``settings.extra["invariance_weight"]`` fixes ν instead of searching the grid.
    """
    fixed = settings.extra.get("invariance_weight")
    rows: list[dict] = []
    weight_rows: list[dict] = []
    nu = None if fixed is None else float(fixed)
    for seed in range(settings.seeds):
        data = digits(seed)
        da = train(module(data, 0.0, seed), data, settings, "lie/DA", seed)
        rows.append({"model": "DA", "nu": 0.0, "seed": seed, **measure(da, data, settings)})
        settings.progress(f"lie DA seed {seed}: test error {rows[-1]['test_error']:.1f} %")
        if nu is None:  # the grid, on the first seed
            tried = {}
            for weight in settings.scale.invariance_weights:
                model = train(module(data, weight, seed), data, settings,
                              f"lie/DA+Lie-nu{weight:g}", seed)
                tried[weight] = measure(model, data, settings)
                weight_rows.append({"nu": weight, "val_error": tried[weight]["val_error"],
                                    "val_lie": tried[weight]["val_lie"]})
                settings.progress(f"lie ν = {weight:g}: validation error "
                                  f"{tried[weight]['val_error']:.1f} %")
            nu = choose_weight({w: scores["val_error"] for w, scores in tried.items()})
            for row in weight_rows:
                row["chosen"] = row["nu"] == nu
            scores = tried[nu]
        else:
            model = train(module(data, nu, seed), data, settings, f"lie/DA+Lie-nu{nu:g}", seed)
            scores = measure(model, data, settings)
        rows.append({"model": "DA+Lie", "nu": nu, "seed": seed, **scores})
        settings.progress(f"lie DA+Lie seed {seed}: test error {scores['test_error']:.1f} %")
    keys = ["val_error", "test_error", "val_lie", "test_lie"]
    summary = mean_std(rows, keys, ["model", "nu"])
    tables = {"acceptance": Table("Acceptance: DA+Lie against DA", acceptance(summary, keys),
                                  ACCEPTANCE_LEGEND)}
    if weight_rows:
        tables["invariance_weights"] = Table("Choice of ν (validation set, first seed)",
                                             weight_rows, WEIGHT_LEGEND)
    note = (f"ν = {nu:g}, given" if fixed is not None else
            f"ν = {nu:g}: the lowest validation error of the grid "
            f"{list(settings.scale.invariance_weights)} on seed 0")
    return Results(summary, {"lie": figure(rows)}, per_seed=rows, legend=LEGEND, tables=tables,
                   notes=[note])


def digits(seed: int) -> DigitsDataModule:
    """24×24 digits, every split rotated once by a uniform continuous angle (step 1)."""
    return DigitsDataModule(upscale=2, pad=4, transform_group="so2", batch_size=BATCH_SIZE,
                            seed=seed)


def module(data: DigitsDataModule, weight: float, seed: int) -> InvarianceModule:
    """The MLP of step 2 with ``ν = weight`` (0: DA); initial weights from ``seed``."""
    torch.manual_seed(seed)
    backbone = MLP(data.input_shape, data.num_classes, hidden_widths=HIDDEN_WIDTHS)
    # so2's generator by its name: LieDerivativeL2(group="so2") is the same loss, but another
    # description, which would change the model cache keys of the models trained with it
    return InvarianceModule(backbone, group="so2", invariance_loss=LieDerivativeL2("rotation"),
                            invariance_weight=weight, augment=True, lr=LEARNING_RATE)


def choose_weight(val_errors: dict[float, float]) -> float:
    """The ν with the lowest validation error; ties go to the larger ν.

    >>> choose_weight({0.001: 12.0, 0.01: 11.0, 0.1: 11.0})
    0.1
    """
    if not val_errors:
        raise ValueError("invariance_weights: the scale's ν grid is empty; give at least one ν")
    return min(val_errors, key=lambda weight: (val_errors[weight], -weight))


def measure(model: InvarianceModule, data: DigitsDataModule,
            settings: Settings) -> dict[str, float]:
    """Classification error (%) and Lie derivative error on the rotated validation and test
    splits (the first ``settings.scale.eval_samples`` digits of each)."""
    data.setup("fit")
    data.setup("test")
    backbone = model.backbone.eval()
    scores = {}
    for split in ("val", "test"):
        x, y = getattr(data, f"{split}_dataset").tensors
        x, y = x[: settings.scale.eval_samples], y[: settings.scale.eval_samples]
        accuracy = Accuracy()
        lie = LieDerivativeError(group=model.group, fill=data.background)  # so2: "rotation"
        with torch.no_grad():
            accuracy.update(backbone(x).unsqueeze(1), y)
        lie.update(backbone, x)
        scores[f"{split}_error"] = 100 * (1 - accuracy.compute().item())
        scores[f"{split}_lie"] = lie.compute().item()
    return scores


def acceptance(summary: list[dict], keys: list[str]) -> list[dict]:
    """Per value, the seed means of DA and DA+Lie and the reduction ``1 − DA+Lie / DA``."""
    by_model = {row["model"]: row for row in summary}
    rows = []
    for key in keys:
        baseline, regularised = by_model["DA"][key], by_model["DA+Lie"][key]
        reduction = 1 - regularised / baseline if baseline > 0 else float("nan")
        rows.append({"value": key, "DA": baseline, "DA+Lie": regularised,
                     "reduction_pct": 100 * reduction,
                     "meets_50pct": bool(reduction >= TARGET_REDUCTION)})
    return rows


def figure(rows: list[dict]):
    """Test error and test Lie error of DA and DA+Lie: a bar at the seed mean, one dot per
    seed."""
    import statistics

    from invreg.plotting import new_figure

    fig = new_figure(9, 3.6)
    axes = fig.subplots(1, 2)
    seeds = len({row["seed"] for row in rows})
    for axis, key, label in ((axes[0], "test_error", "test error % (rotated digits)"),
                             (axes[1], "test_lie", "test Lie derivative error ‖L f‖²")):
        for index, name in enumerate(MODELS):
            values = [row[key] for row in rows if row["model"] == name]
            axis.bar(index, statistics.fmean(values), color=f"C{index}", alpha=0.6)
            axis.plot([index] * len(values), values, "o", color="black", markersize=3)
        axis.set_xticks(range(len(MODELS)), MODELS)
        axis.set_ylabel(label)
        axis.set_xlabel("model")
        axis.set_ylim(bottom=0.0)
    fig.suptitle(f"Lie derivative training on continuously rotated digits ({seeds} seed"
                 f"{'s' if seeds > 1 else ''}; bars: mean, dots: seeds)")
    return fig
