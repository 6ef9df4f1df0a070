"""Spectral decay (Moskalev et al. 2023, Fig. 5): regularisers shrink all input sensitivity.

R4 on MNIST with the paper's MLP, trained with augmentation alone (DA) and with three
invariance errors (predictive KL, normalised logit L2, logit L2). Reported per model: test
accuracy, σ_max of the input→logit Jacobian (mean over samples), σ_max of the first weight
matrix, and LI.
"""

from __future__ import annotations

import torch

from invreg import functional as IF
from invreg.experiments.core import Results, Settings, held_out_tensors, mean_std, train
from invreg.experiments.genuine import WIDTHS, mnist
from invreg.functional.spectral import jacobian_spectral_norm, weight_singular_values
from invreg.groups import get_group
from invreg.models import MLP
from invreg.modules import InvarianceModule

REGULARISERS = {  # name -> (invariance loss, weight)
    "DA": ("logit_l2", 0.0),
    "KL": ("predictive_kl", 1.0),
    "normalised L2": ("normalized_logit_l2", 1.0),
    "L2": ("logit_l2", 1.0),
}

LEGEND = {
    "regulariser": "invariance error added to the task loss (DA: none, augmentation only)",
    "seeds": "number of seeds averaged",
    "acc": "test accuracy (%) on upright (untransformed) images",
    "jacobian_sigma_max": "largest singular value of the input→logit Jacobian, mean over "
                          "test images",
    "first_layer_sigma_max": "largest singular value of the first weight matrix",
    "LI": "logit invariance error on R4 orbits of the test images (0 best)",
}


def spectral_decay(settings: Settings) -> Results:
    weights = settings.extra.get("weights", {})
    rows = []
    for seed in range(settings.seeds):
        data = mnist(settings, seed)
        x, y = held_out_tensors(data)
        for name, (loss, weight) in REGULARISERS.items():
            weight = weights.get(name, weight)
            torch.manual_seed(seed)
            backbone = MLP(data.input_shape, data.num_classes, hidden_widths=WIDTHS)
            module = InvarianceModule(backbone, group="c4", invariance_loss=loss,
                                      invariance_weight=weight, num_classes=data.num_classes,
                                      lr=8e-4)
            model = train(module, data, settings, f"spectral/{name}", seed)
            with torch.no_grad():
                orbit = IF.orbit_logits(model, x, get_group("c4"))
            xs = x[: settings.scale.eval_samples]
            sigma = jacobian_spectral_norm(model, xs, generator=torch.Generator().manual_seed(0))
            first = next(iter(weight_singular_values(model.backbone, k=1).values()))
            rows.append({"regulariser": name, "nu": weight, "seed": seed,
                         "acc": 100 * (orbit[:, 0].argmax(-1) == y).float().mean().item(),
                         "jacobian_sigma_max": sigma.mean().item(),
                         "first_layer_sigma_max": first[0].item(),
                         "LI": IF.logit_invariance(orbit).item()})
            settings.progress(f"spectral {name} seed {seed}: σ_max(J) {sigma.mean():.3g}")
    summary = mean_std(rows, ["acc", "jacobian_sigma_max", "first_layer_sigma_max", "LI"],
                       ["regulariser"])
    return Results(summary, {"spectral_decay": figure(summary)}, per_seed=rows, legend=LEGEND,
                   notes=["Paper (Fig. 5, R4): σ_max(J) ≈ 10 for DA and ≈ 3 with the L2 "
                          "regulariser."])


def figure(summary):
    from invreg.callbacks.media import new_figure

    fig = new_figure(9, 3.5)
    left, right = fig.subplots(1, 2)
    names = [e["regulariser"] for e in summary]
    left.bar(names, [e["jacobian_sigma_max"] for e in summary],
             yerr=[e["jacobian_sigma_max_std"] for e in summary])
    left.set_title("σ_max of the input→logit Jacobian")
    right.bar(names, [e["acc"] for e in summary], yerr=[e["acc_std"] for e in summary])
    right.set_title("test accuracy %")
    return fig
