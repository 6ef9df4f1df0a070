"""A small convolutional network for images ``[B, C, H, W]`` or 1-D signals ``[B, C, L]``."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

from torch import Tensor, nn

from invreg.models.base import Backbone, GlobalMeanPool, check_widths, make_activation

_LAYERS = {
    1: (nn.Conv1d, nn.BatchNorm1d, nn.MaxPool1d),
    2: (nn.Conv2d, nn.BatchNorm2d, nn.MaxPool2d),
}


class SmallCNN(Backbone):
    """Conv blocks, global average pooling and a linear head.

    Each block is ``conv (kernel_size, "same" padding) → batch norm → activation → max pool
    (kernel 2, stride 2)``; the pool is skipped once a spatial side is down to 1. Then the
    feature map is averaged over all positions and a linear layer gives the logits::

        [B, C, *S] → blocks → [B, channels[-1], *S'] → mean over S' → [B, channels[-1]] → head

    ``input_shape = (C, H, W)`` uses 2-D layers; ``(C, L)`` (e.g. MNIST-1D, ``(1, 40)``) uses
    1-D layers. Not invariant to anything by construction (zero padding and strided pooling
    break even translation invariance); see :class:`~invreg.models.E2CNN` for rotations.

    Submodule names: ``blocks.<i>`` (output of block ``i``, ``[B, channels[i], ...]``), with
    ``blocks.<i>.conv``, ``.norm``, ``.activation``, ``.pool``; ``pool`` (the global mean,
    ``[B, channels[-1]]``: the features); ``head`` (logits).

    Args:
        input_shape: ``(C, H, W)`` or ``(C, L)``.
        num_classes: number of logits.
        channels: output channels of each conv block (at least one).
        activation: one of ``elu, gelu, leaky_relu, relu, sigmoid, silu, tanh``.
        kernel_size: odd convolution kernel size.
        batch_norm: add batch normalisation after each convolution.

    >>> import torch
    >>> SmallCNN((1, 28, 28), num_classes=10)(torch.zeros(2, 1, 28, 28)).shape
    torch.Size([2, 10])
    >>> SmallCNN((1, 40), num_classes=10)(torch.zeros(2, 1, 40)).shape
    torch.Size([2, 10])
    """

    def __init__(
        self,
        input_shape: Sequence[int],
        num_classes: int,
        channels: Sequence[int] = (16, 32, 32),
        activation: str = "relu",
        kernel_size: int = 3,
        batch_norm: bool = True,
    ) -> None:
        super().__init__(input_shape, num_classes)
        channels = check_widths("channels", channels)
        spatial_dims = len(self.input_shape) - 1
        if spatial_dims not in _LAYERS:
            raise ValueError(
                f"SmallCNN: input_shape must be (C, H, W) for images or (C, L) for signals, got "
                f"{self.input_shape}"
            )
        if not isinstance(kernel_size, int) or kernel_size < 1 or kernel_size % 2 == 0:
            raise ValueError(f"kernel_size: expected a positive odd integer, got {kernel_size!r}")
        conv, norm, pool = _LAYERS[spatial_dims]
        self.channels = channels
        sizes = list(self.input_shape[1:])
        blocks = []
        in_channels = self.input_shape[0]
        for out_channels in channels:
            layers: OrderedDict[str, nn.Module] = OrderedDict(
                conv=conv(in_channels, out_channels, kernel_size, padding=kernel_size // 2)
            )
            if batch_norm:
                layers["norm"] = norm(out_channels)
            layers["activation"] = make_activation(activation)
            if min(sizes) >= 2:
                layers["pool"] = pool(2)
                sizes = [s // 2 for s in sizes]
            blocks.append(nn.Sequential(layers))
            in_channels = out_channels
        self.blocks = nn.Sequential(*blocks)
        self.pool = GlobalMeanPool()
        self.head = nn.Linear(channels[-1], num_classes)

    def _features(self, x: Tensor) -> Tensor:
        return self.pool(self.blocks(x))
