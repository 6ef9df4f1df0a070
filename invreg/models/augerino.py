"""Augerino (Benton et al. 2020): a classifier averaged over rotations in a learned range."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from invreg.groups import ContinuousRotations


class Augerino(nn.Module):
    """A classifier averaged over rotations in a learned range (Benton et al. 2020, Augerino):
    ``width ∈ [0, 1]`` scales angles ``width·180°·u``, ``u ~ U[-1, 1]`` (reparameterised, so
    ``width`` gets a gradient through the resampling); training draws one angle per sample,
    evaluation averages the softmax over ``copies`` angles.

    ``forward`` maps ``[B, *D]`` to ``[B, C]``: ``model``'s logits in training, the log of the
    averaged probabilities in evaluation. Train ``width`` with a loss that rewards a wide range,
    e.g. ``cross_entropy − λ·width.clamp(0, 1)`` (``invreg-experiment hyper``'s ``augerino``).

    >>> net = Augerino(nn.Sequential(nn.Flatten(), nn.Linear(16, 3)), width=0.0).eval()
    >>> x = torch.rand(2, 1, 4, 4)
    >>> torch.allclose(net(x).exp(), net.model(x).softmax(-1), atol=1e-6)  # no rotation
    True
    """

    def __init__(self, model: nn.Module, width: float = 0.5, copies: int = 4) -> None:
        super().__init__()
        self.model = model
        self.width = nn.Parameter(torch.tensor(float(width)))
        self.copies = copies
        self.rotations = ContinuousRotations(180.0)

    def rotated(self, x: Tensor) -> Tensor:
        u = torch.rand(x.shape[0], device=x.device) * 2 - 1
        angles = self.width.clamp(0.0, 1.0) * 180.0 * u
        return self.rotations.act(x, angles)

    def forward(self, x: Tensor) -> Tensor:
        if self.training:
            return self.model(self.rotated(x))
        probabilities = torch.stack([self.model(self.rotated(x)).softmax(-1)
                                     for _ in range(self.copies)]).mean(0)
        return probabilities.log()
