"""The weight-tied baseline: an MLP whose first layer is shared over a group orbit and pooled."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from invreg.groups import Group, get_group
from invreg.models.base import Backbone, check_widths
from invreg.models.mlp import hidden_stack

POOLINGS = ("mean", "max")


class OrbitPool(nn.Module):
    """Pool ``[B, N, F]`` over the orbit axis ``N`` to ``[B, F]`` by ``"mean"`` or ``"max"``.

    Both are symmetric functions of the ``N`` orbit elements, so a permutation of the orbit
    (which is what a group element does to it) leaves the result unchanged.
    """

    def __init__(self, mode: str = "mean") -> None:
        super().__init__()
        if mode not in POOLINGS:
            raise ValueError(f"pooling: expected one of {list(POOLINGS)}, got {mode!r}")
        self.mode = mode

    def forward(self, x: Tensor) -> Tensor:
        return x.mean(dim=1) if self.mode == "mean" else x.amax(dim=1)

    def extra_repr(self) -> str:
        return f"mode={self.mode!r}"


class TiedMLP(Backbone):
    """The paper's weight-tied (WT) model: exactly invariant to a finite group by construction.

    For a finite group ``G`` with orbit ``{g·x : g ∈ G}`` (``group.orbit``), the first hidden
    layer ``h₁ = σ(W·vec(x) + b)`` is applied to every orbit element and pooled::

        h₁(x) = pool_{g ∈ G} σ(W·vec(g·x) + b)          pool = mean or max over the orbit
        f(x)  = head(hidden_{k}(... hidden_2(h₁(x))))

    Acting on ``x`` by ``g'`` permutes the orbit (``{g·g'·x} = {g·x}``), and the pool is
    symmetric, so ``f(g'·x) = f(x)`` for every ``g'`` (up to float summation order for
    ``"mean"``). The activation comes *before* the pool: mean-pooling pre-activations would
    equal the first layer applied to the orbit-averaged input, a much weaker model.

    Same parameters (names and shapes) as :class:`~invreg.models.MLP` with the same widths; the
    first layer costs ``|G|`` times as much. Submodule names (forward hooks):

    * ``hidden.0`` — per-orbit-element features ``[B, |G|, hidden_widths[0]]`` (before pooling);
    * ``pool`` — pooled, invariant features ``[B, hidden_widths[0]]``;
    * ``hidden.<i>`` for ``i ≥ 1`` — ``[B, hidden_widths[i]]``, invariant; ``head`` — logits.

    Args:
        input_shape: shape of one sample, e.g. ``(1, 36, 36)``; the group must act on it.
        num_classes: number of logits.
        group: a finite :class:`~invreg.groups.Group` or its name (``"c4"``, ``"d4"``, ``"t3"``...).
            Required: ``None`` (the default) is an error, except in a config, where the CLI
            sets it to the run's group (``model.init_args.group``).
        hidden_widths: width of each hidden layer (at least one).
        activation: one of ``elu, gelu, leaky_relu, relu, sigmoid, silu, tanh``.
        pooling: ``"mean"`` or ``"max"`` over the orbit.

    Raises:
        ValueError: no group, a continuous group (``order`` is ``None``), or a group that
            cannot act on ``input_shape``.

    >>> import torch
    >>> model = TiedMLP((1, 36, 36), num_classes=9, group="c4")
    >>> model(torch.zeros(2, 1, 36, 36)).shape
    torch.Size([2, 9])
    >>> sum(p.numel() for p in model.parameters())
    233225
    """

    def __init__(
        self,
        input_shape: Sequence[int],
        num_classes: int,
        group: str | Group | None = None,
        hidden_widths: Sequence[int] = (128, 128, 128, 128, 128),
        activation: str = "relu",
        pooling: str = "mean",
    ) -> None:
        super().__init__(input_shape, num_classes)
        widths = check_widths("hidden_widths", hidden_widths)
        if group is None:
            raise ValueError(
                "TiedMLP: group is missing; pass the finite group to tie over, e.g. "
                "group='c4' (in a config, model.init_args.group is passed to the backbone)"
            )
        group = get_group(group)
        if not group.is_finite:
            raise ValueError(
                f"TiedMLP ties its first layer over the whole orbit, so it needs a finite group "
                f"(e.g. 'c4', 'd4', 't3'); got {group!r}, which is continuous (order None)"
            )
        try:
            group.check_input(torch.zeros(1, *self.input_shape))
        except ValueError as err:
            raise ValueError(
                f"TiedMLP: group {group!r} cannot act on input_shape={self.input_shape}: {err}"
            ) from err
        self.group = group
        self.hidden_widths = widths
        self.hidden = hidden_stack(math.prod(self.input_shape), widths, activation)
        self.pool = OrbitPool(pooling)
        self.head = nn.Linear(widths[-1], num_classes)

    def _features(self, x: Tensor) -> Tensor:
        orbit = self.group.orbit(x)  # [B, |G|, *input_shape], identity first
        per_element = self.hidden[0](orbit.flatten(start_dim=2))  # [B, |G|, width_0]
        h = self.pool(per_element)
        for block in self.hidden[1:]:
            h = block(h)
        return h

    def extra_repr(self) -> str:
        return f"group={self.group!r}"
