"""Multi-layer perceptron on flattened inputs (the paper's DA / IR model)."""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Sequence

from torch import Tensor, nn

from invreg.models.base import Backbone, check_widths, make_activation


def hidden_block(in_features: int, out_features: int, activation: str) -> nn.Sequential:
    """``Linear`` then activation, with submodules named ``linear`` and ``activation``."""
    return nn.Sequential(
        OrderedDict(
            linear=nn.Linear(in_features, out_features),
            activation=make_activation(activation),
        )
    )


def hidden_stack(in_features: int, widths: Sequence[int], activation: str) -> nn.Sequential:
    """``hidden.0, hidden.1, ...``: one :func:`hidden_block` per width."""
    sizes = (in_features, *widths)
    return nn.Sequential(
        *(hidden_block(sizes[i], sizes[i + 1], activation) for i in range(len(widths)))
    )


class MLP(Backbone):
    """A fully connected network on flattened inputs.

    ``x [B, *input_shape] → flatten [B, D] → (Linear → activation) per hidden width →
    Linear → logits [B, num_classes]``, with ``D = prod(input_shape)``.

    The paper's model (Moskalev et al. 2023) is ``MLP((1, 36, 36), 9)``: five hidden layers of
    128 ReLU units, ``1296·128 + 128 + 4·(128·128 + 128) + 128·9 + 9 = 233,225`` parameters.

    Submodule names (for forward hooks, e.g. ``model.get_submodule("hidden.2")``):

    * ``flatten`` — ``[B, D]``;
    * ``hidden.<i>`` — output of hidden layer ``i`` after its activation, ``[B, hidden_widths[i]]``;
      ``hidden.<i>.linear`` is the same layer before the activation;
    * ``head`` — the logits, ``[B, num_classes]``.

    :class:`~invreg.models.TiedMLP` uses the same names and parameter shapes, so state dicts
    transfer between the two.

    Args:
        input_shape: shape of one sample without the batch axis, e.g. ``(1, 36, 36)``.
        num_classes: number of logits.
        hidden_widths: width of each hidden layer (at least one).
        activation: one of ``elu, gelu, leaky_relu, relu, sigmoid, silu, tanh``.

    >>> import torch
    >>> model = MLP((1, 36, 36), num_classes=9)
    >>> model(torch.zeros(2, 1, 36, 36)).shape
    torch.Size([2, 9])
    >>> sum(p.numel() for p in model.parameters())
    233225
    >>> [name for name, _ in model.named_children()]
    ['flatten', 'hidden', 'head']
    """

    def __init__(
        self,
        input_shape: Sequence[int],
        num_classes: int,
        hidden_widths: Sequence[int] = (128, 128, 128, 128, 128),
        activation: str = "relu",
    ) -> None:
        super().__init__(input_shape, num_classes)
        widths = check_widths("hidden_widths", hidden_widths)
        self.hidden_widths = widths
        self.flatten = nn.Flatten()
        self.hidden = hidden_stack(math.prod(self.input_shape), widths, activation)
        self.head = nn.Linear(widths[-1], num_classes)

    def _features(self, x: Tensor) -> Tensor:
        return self.hidden(self.flatten(x))
