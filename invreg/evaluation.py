"""Evaluate a classifier's accuracy and invariance over a whole data loader."""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import Tensor, nn

from invreg import functional as IF
from invreg.groups import Group, get_group


@torch.no_grad()
def evaluate_invariance(
    model: nn.Module,
    batches: Iterable[tuple[Tensor, Tensor]],
    group: str | Group,
    num_samples: int | None = None,
    chunk_size: int | None = None,
) -> dict[str, float]:
    """Accuracy, DI, LI, orbit consistency and orbit accuracy of ``model`` on ``batches``.

    Every value is a mean over all samples (and, for DI and LI, over the non-identity orbit
    elements), accumulated as sums so the result does not depend on the batch size.
    ``model`` is put in eval mode for the evaluation and restored afterwards.
    """
    group = get_group(group)
    was_training = model.training
    model.eval()
    totals = dict.fromkeys(["acc", "DI", "LI", "consistency", "orbit_acc"], 0.0)
    samples = pairs = 0
    try:
        for x, y in batches:
            device = next(model.parameters()).device
            x, y = x.to(device), y.to(device)
            orbit = IF.orbit_logits(model, x, group, chunk_size=chunk_size, num_samples=num_samples)
            totals["acc"] += (orbit[:, 0].argmax(-1) == y).sum().item()
            totals["DI"] += IF.predictive_kl_invariance(orbit, reduction="sum").item()
            totals["LI"] += IF.logit_invariance(orbit, reduction="sum").item()
            totals["consistency"] += IF.orbit_consistency(orbit, reduction="sum").item()
            totals["orbit_acc"] += IF.orbit_accuracy(orbit, y, reduction="sum").item()
            samples += x.shape[0]
            pairs += x.shape[0] * (orbit.shape[1] - 1)
    finally:
        model.train(was_training)
    if samples == 0:
        raise ValueError("evaluate_invariance: the data loader yielded no samples")
    per_pair = {"DI", "LI"}
    return {k: v / (pairs if k in per_pair else samples) for k, v in totals.items()}
