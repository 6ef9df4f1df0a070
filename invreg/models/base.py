"""Shared shell of every invreg backbone: argument checks, input checks, features → head."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from invreg.config import RecordsInit

#: activation name → module class; every backbone accepts these names (E2CNN a subset)
ACTIVATIONS: dict[str, type[nn.Module]] = {
    "elu": nn.ELU,
    "gelu": nn.GELU,
    "leaky_relu": nn.LeakyReLU,
    "relu": nn.ReLU,
    "sigmoid": nn.Sigmoid,
    "silu": nn.SiLU,
    "tanh": nn.Tanh,
}


def make_activation(name: str) -> nn.Module:
    """A fresh activation module from its name (case-insensitive), e.g. ``"relu"``.

    >>> make_activation("relu")
    ReLU()
    """
    return ACTIVATIONS[check_activation(name, ACTIVATIONS)]()


def check_activation(name: str, valid: Sequence[str] | dict) -> str:
    """The lower-cased ``name`` if it is one of ``valid``, else ``ValueError`` listing them."""
    key = name.lower() if isinstance(name, str) else name
    if key not in valid:
        raise ValueError(f"activation: expected one of {sorted(valid)}, got {name!r}")
    return key


def check_widths(name: str, widths: Sequence[int]) -> tuple[int, ...]:
    """``widths`` as a tuple of positive integers, else ``ValueError`` naming the argument."""
    if isinstance(widths, int | str) or not isinstance(widths, Sequence):
        raise ValueError(f"{name}: expected a sequence of positive integers, got {widths!r}")
    widths = tuple(widths)
    if not widths or not all(isinstance(w, int) and w >= 1 for w in widths):
        raise ValueError(
            f"{name}: expected a non-empty sequence of positive integers, got {widths!r}"
        )
    return widths


class GlobalMeanPool(nn.Module):
    """The mean of a feature map over all its positions: ``[B, C, *S]`` → ``[B, C]``.

    A module of its own so that the pooled features have a name to hook (a network's
    ``pool``: what :func:`~invreg.metrics.layer_profile` and the layer-wise metrics measure
    between the last block and the head); it has no parameters, so adding it changes no
    ``state_dict``.

    >>> import torch
    >>> GlobalMeanPool()(torch.ones(2, 3, 4, 4)).shape
    torch.Size([2, 3])
    """

    def forward(self, x: Tensor) -> Tensor:
        return x.flatten(start_dim=2).mean(dim=2)


class Backbone(nn.Module, RecordsInit):
    """Base class: ``forward(x) = head(features(x))`` with the input shape checked first.

    Subclasses set :attr:`head` (an ``nn.Linear``) and implement :meth:`_features`, which maps
    a validated batch ``[B, *input_shape]`` to features ``[B, feature_dim]``.

    Attributes:
        input_shape: shape of one sample, without the batch axis.
        num_classes: number of outputs (logits).
        feature_dim: width of :meth:`features`, the input of :attr:`head`.
    """

    head: nn.Linear

    def __init__(self, input_shape: Sequence[int], num_classes: int) -> None:
        super().__init__()
        if isinstance(input_shape, int | str) or not isinstance(input_shape, Sequence | torch.Size):
            raise ValueError(
                f"input_shape: expected the shape of one sample (no batch axis), e.g. (1, 36, 36), "
                f"got {input_shape!r}"
            )
        input_shape = tuple(input_shape)
        if not input_shape or not all(isinstance(s, int) and s >= 1 for s in input_shape):
            raise ValueError(
                f"input_shape: expected a non-empty sequence of positive integers, got "
                f"{input_shape!r}"
            )
        if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
            raise ValueError(f"num_classes: expected an integer >= 1, got {num_classes!r}")
        self.input_shape: tuple[int, ...] = input_shape
        self.num_classes = num_classes

    @property
    def feature_dim(self) -> int:
        return self.head.in_features

    def check_input(self, x: Tensor) -> None:
        """Raise ``ValueError`` unless ``x`` has shape ``[B, *input_shape]``."""
        if not isinstance(x, Tensor):
            raise TypeError(f"{type(self).__name__}: expected a Tensor, got {type(x).__name__}")
        if x.ndim != len(self.input_shape) + 1 or tuple(x.shape[1:]) != self.input_shape:
            expected = ", ".join(str(s) for s in self.input_shape)
            raise ValueError(
                f"{type(self).__name__}: expected input of shape [B, {expected}] "
                f"(input_shape={self.input_shape}), got {tuple(x.shape)}"
            )

    def features(self, x: Tensor) -> Tensor:
        """The representation fed to :attr:`head`: ``[B, *input_shape]`` → ``[B, feature_dim]``."""
        self.check_input(x)
        return self._features(x)

    def _features(self, x: Tensor) -> Tensor:
        raise NotImplementedError

    def forward(self, x: Tensor) -> Tensor:
        """Logits ``[B, num_classes]`` of a batch ``[B, *input_shape]``."""
        return self.head(self.features(x))
