"""Spectral decay (Moskalev et al. 2023, Fig. 5): regularisers shrink all input sensitivity.

R4 and T3 on MNIST with Table 1's setup (the paper's MLP, every model trained with random group
augmentation): augmentation alone (DA) and three invariance errors added with weight ν
(predictive KL, normalised logit L2, logit L2). ν of each regulariser is chosen by the SI rule
on the first seed (the smallest 1-2-5 ν whose validation SI ≥ 0.95, else the best SI): for the
logit L2 it is Table 1's choice (the same search, the same models), for KL and normalised L2 a
bisection on the same grid (:func:`~invreg.experiments.genuine.bisect_invariance_weight`, 4
trainings instead of 5–9). Reported per model: test accuracy, σ_max of the input→logit Jacobian
(mean over test images) and of the first weight matrix, in the standardised units the model
sees and in raw pixel units (intensities in [0, 1]: σ divided by the data's std), and LI.
"""

from __future__ import annotations

import torch

from invreg.evaluation import evaluate_invariance
from invreg.experiments.core import Results, Settings, Table, held_out_tensors, mean_std, train
from invreg.experiments.genuine import (
    WEIGHT_LEGEND,
    build,
    choice_note,
    choose_weight,
    selected_groups,
)
from invreg.functional.spectral import jacobian_spectral_norm, weight_singular_values

#: name -> (invariance loss, how its ν is searched); DA trains with augmentation alone. The
#: logit L2 comes last: it is Table 1's IR, so with a model cache it is usually trained already.
REGULARISERS = {
    "KL": ("predictive_kl", "bisect"),
    "normalised L2": ("normalized_logit_l2", "bisect"),
    "DA": ("logit_l2", None),
    "L2": ("logit_l2", "coarse-to-fine"),
}

LEGEND = {
    "group": "R4: rotations by multiples of 90°; T3: cyclic x-shifts by 12 of 36 pixels",
    "regulariser": "invariance error added to the task loss with weight ν (DA: none, "
                   "augmentation only)",
    "nu": "invariance weight ν (the SI rule on the first seed's validation set; 0 for DA)",
    "seeds": "number of seeds averaged",
    "acc": "test accuracy (%) on upright (untransformed) images",
    "jacobian_sigma_max": "largest singular value of the input→logit Jacobian w.r.t. the "
                          "standardised input the model sees, mean over test images",
    "jacobian_sigma_max_raw": "the same w.r.t. raw pixel intensities in [0, 1] "
                              "(jacobian_sigma_max ÷ the data's std)",
    "first_layer_sigma_max": "largest singular value of the first weight matrix (standardised "
                             "input units)",
    "first_layer_sigma_max_raw": "the same in raw pixel units (÷ the data's std)",
    "LI": "logit invariance error on the group's orbits of the test images (0 best)",
}


def spectral_decay(settings: Settings) -> Results:
    """σ_max of the Jacobian and of the first layer for DA and three regularisers, per group.

    ``settings.extra["weights"]`` (``{regulariser: ν}``) fixes ν instead of searching for it.
    """
    fixed = settings.extra.get("weights", {})
    rows, weight_rows, notes = [], [], []
    for group_name, group in selected_groups(settings).items():
        for name, (loss, search) in REGULARISERS.items():
            if search is None:
                nu = 0.0
            elif name in fixed:
                nu = float(fixed[name])
                notes.append(f"{group_name} {name}: ν = {nu:g}, given")
            else:
                choice, _, tried = choose_weight(group_name, settings, 0, loss, search)
                nu = choice.weight
                weight_rows += [{"regulariser": name, **row} for row in tried]
                notes.append(choice_note(f"{group_name} {name}", choice, tried, 0, search))
            for seed in range(settings.seeds):
                kind = "DA" if search is None else "IR"
                module, data = build(kind, group, settings, seed, nu, loss)
                model = train(module, data, settings,
                              f"table1/{group_name}/{kind}" + ("" if name in ("DA", "L2") else
                                                               f"-{loss}-nu{nu:g}"), seed)
                rows.append({"group": group_name, "regulariser": name, "nu": nu, "seed": seed,
                             **measure(model, data, group, settings)})
                settings.progress(f"spectral {group_name} {name} seed {seed}: σ_max(J) "
                                  f"{rows[-1]['jacobian_sigma_max']:.3g}")
    summary = mean_std(rows, ["acc", "jacobian_sigma_max", "jacobian_sigma_max_raw",
                              "first_layer_sigma_max", "first_layer_sigma_max_raw", "LI"],
                       ["group", "regulariser", "nu"])
    summary = [{"group": e.pop("group"), "regulariser": e.pop("regulariser"), "nu": e.pop("nu"),
                "seeds": e.pop("seeds"), **e} for e in summary]
    tables = {}
    if weight_rows:
        legend = dict(WEIGHT_LEGEND, regulariser="the invariance error whose ν is searched",
                      chosen="the ν used in the table above")
        tables["invariance_weights"] = Table("Choice of ν (validation set, first seed)",
                                             weight_rows, legend)
    return Results(summary, {"spectral_decay": figure(summary)}, per_seed=rows, legend=LEGEND,
                   tables=tables, notes=notes + [
                       "Paper (Fig. 5, R4, after 300 epochs): σ_max(J) ≈ 10 for DA and ≈ 3 "
                       "with the L2 regulariser (units not stated)."])


def measure(model, data, group: str, settings: Settings) -> dict[str, float]:
    """Test accuracy (%) and LI over the group's orbits of the held-out images (one
    :class:`~invreg.metrics.OrbitMetrics` through :func:`~invreg.evaluation.evaluate_invariance`),
    σ_max of the Jacobian on the first ``eval_samples`` of them and of the first weight matrix."""
    x, y = held_out_tensors(data)
    scores = evaluate_invariance(model, [(x, y)], group)
    xs = x[: settings.scale.eval_samples]
    sigma = jacobian_spectral_norm(model, xs, generator=torch.Generator().manual_seed(0)).mean()
    first = next(iter(weight_singular_values(model.backbone, k=1).values()))[0]
    return {"acc": 100 * scores["accuracy"],
            "jacobian_sigma_max": sigma.item(), "jacobian_sigma_max_raw": sigma.item() / data.std,
            "first_layer_sigma_max": first.item(), "first_layer_sigma_max_raw":
            first.item() / data.std, "LI": scores["LI"]}


def figure(summary):
    """Per group: σ_max(J) (log axis when the regularisers span decades) and test accuracy per
    regulariser, bars at the mean with error bars of ± std over the seeds (``seeds`` > 1)."""
    from invreg.plotting import new_figure, scale_for

    groups = list(dict.fromkeys(e["group"] for e in summary))
    fig = new_figure(9, 3.5 * len(groups) + 0.4)
    axes = fig.subplots(len(groups), 2, squeeze=False)
    seeds = max(int(e.get("seeds", 1)) for e in summary)
    for (left, right), group in zip(axes, groups, strict=True):
        entries = [e for e in summary if e["group"] == group]
        names = [e["regulariser"] for e in entries]
        sigma = [e["jacobian_sigma_max"] for e in entries]
        left.bar(names, sigma, yerr=[e["jacobian_sigma_max_std"] for e in entries], capsize=4)
        scale_for(left, sigma, decades=1.0)
        left.set_title(f"{group}: σ_max(J), standardised input")
        right.bar(names, [e["acc"] for e in entries], yerr=[e["acc_std"] for e in entries],
                  capsize=4)
        right.set_title(f"{group}: test accuracy %")
        right.set_ylim(0, 100)
        for axis in (left, right):
            axis.set_xlabel("regulariser")
        spread = "mean ± std over seeds" if seeds > 1 else "one seed"
        left.set_ylabel(f"σ_max(J), {spread}")
        right.set_ylabel(f"accuracy %, {spread}")
    fig.suptitle(f"Spectral decay of MNIST MLPs, groups {', '.join(groups)} ({seeds} seed"
                 f"{'s' if seeds > 1 else ''})")
    return fig
