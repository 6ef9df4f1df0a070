"""The hyper-network backbone: a CNN whose convolution weights are generated from an invariance
descriptor ``d`` (Chavhan, Gouk, Stühmer, Hospedales, 2022, arXiv 2207.08304)::

    d [k] or [B, k] → embedding MLP → e [E] or [B, E]
    for each conv block i:  W_i, b_i = generator_i(e)      (a linear map, if i is generated)
                            x = pool(act(norm(conv(x; W_i, b_i))))
    features = mean over positions → head (ordinary nn.Linear) → logits

The weights of a generator are ``W_i(d) = W_i⁰ + A_i·e(d)``: its bias ``W_i⁰`` is initialised
like an ordinary convolution, ``A_i`` small, so every descriptor starts from a sensible network.
Normalisation layers, non-generated convolutions and the head are ordinary parameters shared by
all descriptors. The layers are in :mod:`invreg.models.hyper.layers`, the meaning of ``d`` in
:mod:`invreg.models.hyper.descriptor`.
"""

from __future__ import annotations

import copy
import math
from collections import OrderedDict
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from invreg.models.base import Backbone, check_widths, make_activation
from invreg.models.hyper.descriptor import InvarianceDescriptor
from invreg.models.hyper.layers import NORMS, HyperBlock, HyperConv2d, StaticConv2d, norm_layer


class HyperCNN(Backbone):
    """A CNN feature extractor whose convolution weights are generated from a descriptor.

    ``forward(x, descriptor)`` maps images ``[B, C, H, W]`` and a descriptor ``d`` (``[k]``:
    one for the batch, or ``[B, k]``: one per sample; a number, list or ``{name: strength}``
    also works; ``None`` uses :attr:`default_descriptor`) to logits ``[B, num_classes]``;
    ``features(x, descriptor)`` returns the head's input ``[B, channels[-1]]`` (the feature
    map averaged over positions). The computation is differentiable in ``d``, so a descriptor
    can be learned by gradient descent through the generated weights.

    Submodules: ``descriptor_embedding`` (MLP ``k → embedding_hidden → embedding_dim``, ReLU),
    ``blocks.<i>`` with ``.conv`` (:class:`HyperConv2d` if generated, else
    :class:`StaticConv2d`), ``.norm``, ``.activation``, ``.pool``; ``head``.
    :meth:`hyper_parameters` are the parameters that depend on nothing but the upstream
    training (everything except the head). :meth:`summary` reports parameter counts and the
    cost of generating the weights; it is also the first line of ``repr``.

    Args:
        input_shape: ``(C, H, W)``; rotations need ``H == W``.
        num_classes: number of logits.
        descriptor: component names (see :class:`InvarianceDescriptor`).
        descriptor_limits: full-strength setting per component name (optional).
        channels: output channels of each conv block.
        kernel_size: odd kernel size.
        activation: ``relu``, ``gelu``, ... (see :data:`invreg.models.base.ACTIVATIONS`).
        norm: ``"group"`` (GroupNorm, per sample: safe with per-sample descriptors),
            ``"batch"`` or ``"none"``.
        generated_layers: indices of the conv blocks whose weights are generated; ``None``
            for all.
        embedding_dim: width ``E`` of the shared descriptor embedding.
        embedding_hidden: hidden width of the embedding MLP.

    >>> net = HyperCNN((1, 16, 16), num_classes=10, descriptor=["rotation", "flip"])
    >>> x = torch.randn(4, 1, 16, 16)
    >>> net(x, [1.0, 0.0]).shape, net.features(x, torch.rand(4, 2)).shape
    (torch.Size([4, 10]), torch.Size([4, 32]))
    """

    def __init__(
        self,
        input_shape: Sequence[int],
        num_classes: int,
        descriptor: Sequence[str] = ("rotation",),
        descriptor_limits: dict[str, float] | None = None,
        channels: Sequence[int] = (16, 32, 32),
        kernel_size: int = 3,
        activation: str = "relu",
        norm: str = "group",
        generated_layers: Sequence[int] | None = None,
        embedding_dim: int = 32,
        embedding_hidden: int = 64,
        pooling: str = "mean",
    ) -> None:
        super().__init__(input_shape, num_classes)
        if len(self.input_shape) != 3:
            raise ValueError(f"HyperCNN: input_shape must be (C, H, W), got {self.input_shape}")
        self.descriptor = InvarianceDescriptor(descriptor, descriptor_limits)
        self.descriptor.check_input(torch.zeros(1, *self.input_shape))
        channels = check_widths("channels", channels)
        if not isinstance(kernel_size, int) or kernel_size < 1 or kernel_size % 2 == 0:
            raise ValueError(f"kernel_size: expected a positive odd integer, got {kernel_size!r}")
        if norm not in NORMS:
            raise ValueError(f"norm: expected one of {list(NORMS)}, got {norm!r}")
        if pooling not in ("mean", "flatten"):
            raise ValueError(f"pooling: expected 'mean' or 'flatten', got {pooling!r}")
        for name, value in (("embedding_dim", embedding_dim),
                            ("embedding_hidden", embedding_hidden)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name}: expected a positive integer, got {value!r}")
        if generated_layers is None:
            generated = tuple(range(len(channels)))
        else:
            generated = tuple(sorted(set(generated_layers)))
            bad = [i for i in generated if not isinstance(i, int) or not 0 <= i < len(channels)]
            if bad or not generated:
                raise ValueError(
                    f"generated_layers: expected a non-empty list of block indices in "
                    f"0..{len(channels) - 1} (or None for all), got {generated_layers!r}"
                )
        self.channels = channels
        self.generated_layers = generated
        self._config = dict(
            input_shape=list(self.input_shape), num_classes=num_classes,
            descriptor=list(self.descriptor.names), descriptor_limits=dict(self.descriptor.limits),
            channels=list(channels), kernel_size=kernel_size, activation=activation, norm=norm,
            generated_layers=list(generated), embedding_dim=embedding_dim,
            embedding_hidden=embedding_hidden, pooling=pooling,
        )
        self.pooling = pooling

        k = self.descriptor.size
        self.descriptor_embedding = nn.Sequential(
            nn.Linear(k, embedding_hidden), nn.ReLU(),
            nn.Linear(embedding_hidden, embedding_dim), nn.ReLU(),
        )
        blocks = []
        in_channels = self.input_shape[0]
        sizes = list(self.input_shape[1:])
        self._conv_macs = 0
        for i, out_channels in enumerate(channels):
            if i in generated:
                conv: nn.Module = HyperConv2d(in_channels, out_channels, kernel_size, embedding_dim)
            else:
                conv = StaticConv2d(in_channels, out_channels, kernel_size,
                                    padding=kernel_size // 2)
            self._conv_macs += out_channels * in_channels * kernel_size**2 * math.prod(sizes)
            layers: OrderedDict[str, nn.Module] = OrderedDict(conv=conv)
            block_norm = norm_layer(norm, out_channels)
            if block_norm is not None:
                layers["norm"] = block_norm
            layers["activation"] = make_activation(activation)
            if min(sizes) >= 2:
                layers["pool"] = nn.MaxPool2d(2)
                sizes = [s // 2 for s in sizes]
            blocks.append(HyperBlock(layers))
            in_channels = out_channels
        self.blocks = nn.ModuleList(blocks)
        feature_dim = channels[-1] * (math.prod(sizes) if pooling == "flatten" else 1)
        self.head = nn.Linear(feature_dim, num_classes)
        self.register_buffer("default_descriptor", torch.zeros(k))

    # ------------------------------------------------------------------ descriptor
    @property
    def config(self) -> dict:
        """Constructor arguments (plain lists and dicts): ``HyperCNN(**net.config)`` rebuilds
        the architecture; checkpoints store it."""
        return {key: (dict(v) if isinstance(v, dict) else list(v) if isinstance(v, list) else v)
                for key, v in self._config.items()}

    def set_default_descriptor(self, descriptor) -> None:
        """The descriptor ``forward``/``features`` use when called without one."""
        value = self.descriptor.as_tensor(descriptor)
        if value.ndim != 1:
            raise ValueError(f"default descriptor: expected shape [{self.descriptor.size}]")
        self.default_descriptor.copy_(value.detach())

    def _descriptor_tensor(self, descriptor, batch_size: int, device) -> Tensor:
        if descriptor is None:
            return self.default_descriptor
        value = self.descriptor.as_tensor(descriptor, device=device)
        if value.ndim == 2 and value.shape[0] != batch_size:
            raise ValueError(
                f"descriptor: expected [{self.descriptor.size}] or one row per sample "
                f"[{batch_size}, {self.descriptor.size}], got {tuple(value.shape)}"
            )
        return value.to(self.default_descriptor.dtype)

    def embed(self, descriptor: Tensor) -> Tensor:
        """The shared embedding ``e(d)``: ``[k] → [E]`` or ``[B, k] → [B, E]``."""
        return self.descriptor_embedding(descriptor)

    def generate_weights(self, descriptor) -> dict[str, tuple[Tensor, Tensor]]:
        """Generated ``(kernel, bias)`` of each generated block, keyed ``"blocks.<i>.conv"``."""
        d = self.descriptor.as_tensor(descriptor, device=self.default_descriptor.device)
        embedding = self.embed(d.to(self.default_descriptor.dtype))
        return {
            f"blocks.{i}.conv": self.blocks[i].conv.generate(embedding)
            for i in self.generated_layers
        }

    # ------------------------------------------------------------------ forward
    def features(self, x: Tensor, descriptor=None) -> Tensor:  # type: ignore[override]
        """Features ``[B, channels[-1]]`` of images ``[B, C, H, W]`` under ``descriptor``."""
        self.check_input(x)
        embedding = self.embed(self._descriptor_tensor(descriptor, x.shape[0], x.device))
        for block in self.blocks:
            x = block(x, embedding)
        if self.pooling == "flatten":
            return x.flatten(start_dim=1)
        return x.flatten(start_dim=2).mean(dim=2)

    def forward(self, x: Tensor, descriptor=None) -> Tensor:  # type: ignore[override]
        """Logits ``[B, num_classes]``."""
        return self.head(self.features(x, descriptor))

    def fixed(self, descriptor=None) -> FixedDescriptorCNN:
        """An ordinary CNN with this network's architecture and the weights it generates for
        ``descriptor`` (``None``: :attr:`default_descriptor`); see :class:`FixedDescriptorCNN`."""
        return FixedDescriptorCNN(self, descriptor)

    # ------------------------------------------------------------------ bookkeeping
    def hyper_parameters(self):
        """Every parameter except the head's: the part a downstream task keeps frozen."""
        return (p for name, p in self.named_parameters() if not name.startswith("head."))

    def parameter_counts(self) -> dict[str, int]:
        """Parameters per part: ``embedding``, ``generators``, ``static_convs``, ``norms``,
        ``head``, ``total``."""
        counts = dict(embedding=0, generators=0, static_convs=0, norms=0, head=0)
        for name, p in self.named_parameters():
            if name.startswith("descriptor_embedding."):
                counts["embedding"] += p.numel()
            elif ".conv.generator." in name:
                counts["generators"] += p.numel()
            elif ".conv." in name:
                counts["static_convs"] += p.numel()
            elif name.startswith("head."):
                counts["head"] += p.numel()
            else:
                counts["norms"] += p.numel()
        counts["total"] = sum(counts.values())
        return counts

    def generation_cost(self) -> dict[str, int]:
        """Cost of producing the conv weights for one descriptor: ``generated_weights``
        (kernel and bias values), ``generation_macs`` (embedding plus generators, in
        multiply–accumulates), and for comparison ``conv_macs_per_image`` (all convolutions
        on one input). Per-sample descriptors pay the generation once per sample."""
        embedding_macs = sum(m.in_features * m.out_features
                             for m in self.descriptor_embedding if isinstance(m, nn.Linear))
        hyper = [self.blocks[i].conv for i in self.generated_layers]
        return dict(
            generated_weights=sum(c.generator.out_features for c in hyper),
            generation_macs=embedding_macs + sum(c.generation_macs for c in hyper),
            conv_macs_per_image=self._conv_macs,
        )

    def summary(self) -> str:
        """Parameter counts and weight-generation cost, one line each."""
        counts, cost = self.parameter_counts(), self.generation_cost()
        parts = ", ".join(f"{k} {v:,}" for k, v in counts.items() if k != "total")
        return (
            f"HyperCNN: descriptor ({', '.join(self.descriptor.names)}) → "
            f"{len(self.channels)} conv blocks {list(self.channels)}, generated "
            f"{list(self.generated_layers)}\n"
            f"  parameters: {counts['total']:,} ({parts})\n"
            f"  per descriptor: {cost['generated_weights']:,} generated weights, "
            f"{cost['generation_macs']:,} MACs to generate them; convolutions "
            f"{cost['conv_macs_per_image']:,} MACs per image"
        )

    def extra_repr(self) -> str:
        counts, cost = self.parameter_counts(), self.generation_cost()
        return (f"descriptor={list(self.descriptor.names)}, parameters={counts['total']:,}, "
                f"generated_weights={cost['generated_weights']:,}, "
                f"generation_macs={cost['generation_macs']:,}")


class FixedDescriptorCNN(Backbone):
    """The CNN a :class:`HyperCNN` generates for one descriptor, as an ordinary network.

    Every generated convolution becomes a :class:`StaticConv2d` holding the kernel and bias
    generated for ``descriptor``; norms, activations, pools, pooling and head are copies. So
    ``FixedDescriptorCNN(net, d)(x)`` equals ``net(x, d)`` (up to float rounding), and its
    parameters are those of a plain CNN of the same shape: what a conventional feature extractor
    of this architecture trains (fine-tuning, training from scratch on a fresh ``HyperCNN``).

    >>> net = HyperCNN((1, 16, 16), num_classes=10, descriptor=["rotation", "flip"])
    >>> cnn = net.fixed([1.0, 0.0])
    >>> x = torch.randn(4, 1, 16, 16)
    >>> bool(torch.allclose(cnn(x), net(x, [1.0, 0.0]), atol=1e-5))
    True
    >>> sum(p.numel() for p in cnn.parameters()) < sum(p.numel() for p in net.parameters())
    True
    """

    def __init__(self, hyper: HyperCNN, descriptor=None) -> None:
        if not isinstance(hyper, HyperCNN):
            raise TypeError(f"hyper: expected a HyperCNN, got {type(hyper).__name__}")
        super().__init__(hyper.input_shape, hyper.num_classes)
        with torch.no_grad():
            value = hyper.default_descriptor if descriptor is None else descriptor
            generated = hyper.generate_weights(value)
        self.pooling = hyper.pooling
        blocks = []
        for i, block in enumerate(hyper.blocks):
            layers: OrderedDict[str, nn.Module] = OrderedDict()
            for name, module in block.named_children():
                if name == "conv" and isinstance(module, HyperConv2d):
                    weight, bias = generated[f"blocks.{i}.conv"]
                    conv = StaticConv2d(module.in_channels, module.out_channels,
                                        module.kernel_size, padding=module.kernel_size // 2,
                                        dtype=weight.dtype, device=weight.device)
                    with torch.no_grad():
                        conv.weight.copy_(weight)
                        conv.bias.copy_(bias)
                    layers[name] = conv
                else:
                    layers[name] = copy.deepcopy(module)
            blocks.append(HyperBlock(layers))
        self.blocks = nn.ModuleList(blocks)
        self.head = copy.deepcopy(hyper.head)

    def _features(self, x: Tensor) -> Tensor:
        for block in self.blocks:
            x = block(x, None)
        if self.pooling == "flatten":
            return x.flatten(start_dim=1)
        return x.flatten(start_dim=2).mean(dim=2)
