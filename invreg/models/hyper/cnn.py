"""Hyper-network backbones for amortised invariance learning (HyperInvariances).

Chavhan, Gouk, Stühmer, Hospedales (2022, arXiv 2207.08304): a hyper-network, conditioned on
a low-dimensional *invariance descriptor* ``d ∈ [0, 1]^k``, generates the weights of a feature
extractor. Pre-trained once over many descriptors (upstream), it spans a family of feature
extractors with different invariances; a new task then fits only ``d`` and a linear head.

Two pieces live here:

* :class:`InvarianceDescriptor` — what the ``k`` components of ``d`` *mean*: each is a named
  transformation with a continuous strength (``"rotation"``, ``"flip"``, ``"translation"``,
  ``"scale"``, see :data:`DESCRIPTOR_COMPONENTS`). It draws group elements whose spread grows
  with the strength and asks the group to apply them (groups alone transform tensors).
* :class:`HyperCNN` — a CNN whose convolution kernels are generated from ``d``::

      d [k] or [B, k] → embedding MLP → e [E] or [B, E]
      for each conv block i:  W_i, b_i = generator_i(e)      (a linear map, if i is generated)
                              x = pool(act(norm(conv(x; W_i, b_i))))
      features = mean over positions → head (ordinary nn.Linear) → logits

  The weights of a generator are ``W_i(d) = W_i⁰ + A_i·e(d)``: its bias ``W_i⁰`` is
  initialised like an ordinary convolution, ``A_i`` small, so every descriptor starts from a
  sensible network. Normalisation layers, non-generated convolutions and the head are
  ordinary parameters shared by all descriptors.
"""

from __future__ import annotations

import difflib
import math
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from invreg.data.augment import act_with_fill
from invreg.groups import ContinuousRotations, Flips, Group
from invreg.groups.affine import Scalings, Translations
from invreg.models.base import Backbone, check_widths, make_activation


# --------------------------------------------------------------------------- the descriptor
class DescriptorComponent:
    """One component of an invariance descriptor: a transformation with a strength in [0, 1].

    ``elements(strength)`` draws, for each sample, an element of :attr:`group` whose spread is
    set by that sample's strength: strength 0 is always the identity, strength 1 is the full
    range given by ``limit``, and strengths in between interpolate continuously.

    Subclasses set :attr:`name`, :attr:`limit_name` (what ``limit`` means), and
    :attr:`default_limit`, and implement :meth:`_make_group` and :meth:`elements`.
    """

    name: ClassVar[str]
    limit_name: ClassVar[str]
    default_limit: ClassVar[float]

    def __init__(self, limit: float | None = None) -> None:
        limit = self.default_limit if limit is None else limit
        if isinstance(limit, bool) or not isinstance(limit, int | float):
            raise ValueError(f"{self.name} ({self.limit_name}): expected a number, got {limit!r}")
        self.limit = float(limit)
        self.group: Group = self._make_group()

    def _make_group(self) -> Group:
        raise NotImplementedError

    def elements(self, strength: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """Group elements ``[B, *group.element_shape]`` for strengths ``[B]`` in [0, 1]."""
        raise NotImplementedError

    @staticmethod
    def _symmetric(strength: Tensor, limit: float, shape: tuple[int, ...], generator) -> Tensor:
        """Uniform draws from ``[-strength·limit, strength·limit]`` (one interval per sample)."""
        u = torch.rand(*shape, generator=generator, dtype=strength.dtype).to(strength.device)
        scale = (strength * limit).reshape(shape[0], *([1] * (len(shape) - 1)))
        return (2 * u - 1) * scale

    def __repr__(self) -> str:
        return f"{self.name}({self.limit_name}={self.limit:g})"


class RotationComponent(DescriptorComponent):
    """Strength ``r``: rotate by an angle uniform in ``[-r·max_angle, r·max_angle]`` degrees."""

    name = "rotation"
    limit_name = "max_angle"
    default_limit = 180.0

    def _make_group(self) -> Group:
        return ContinuousRotations(self.limit)

    def elements(self, strength, generator=None):
        return self._symmetric(strength, self.limit, (strength.shape[0],), generator)


class FlipComponent(DescriptorComponent):
    """Strength ``r``: mirror left–right with probability ``r·probability`` (0.5: uniform)."""

    name = "flip"
    limit_name = "probability"
    default_limit = 0.5

    def _make_group(self) -> Group:
        if not 0 < self.limit <= 1:
            raise ValueError(f"flip (probability): expected 0 < probability <= 1, got {self.limit}")
        return Flips(("horizontal",))

    def elements(self, strength, generator=None):
        u = torch.rand(strength.shape[0], generator=generator, dtype=strength.dtype)
        return (u.to(strength.device) < strength * self.limit).long()


class TranslationComponent(DescriptorComponent):
    """Strength ``r``: shift by ``(dx, dy)``, each uniform in ``[-r·max_shift, r·max_shift]``
    pixels (sub-pixel shifts resample bilinearly)."""

    name = "translation"
    limit_name = "max_shift"
    default_limit = 2.0

    def _make_group(self) -> Group:
        return Translations(self.limit)

    def elements(self, strength, generator=None):
        return self._symmetric(strength, self.limit, (strength.shape[0], 2), generator)


class ScaleComponent(DescriptorComponent):
    """Strength ``r``: zoom by ``exp(s)``, ``s`` uniform in
    ``[-r·log(max_scale), r·log(max_scale)]``."""

    name = "scale"
    limit_name = "max_scale"
    default_limit = 1.5

    def _make_group(self) -> Group:
        return Scalings(self.limit)

    def elements(self, strength, generator=None):
        return self._symmetric(strength, math.log(self.limit), (strength.shape[0],), generator)


#: descriptor component name → class
DESCRIPTOR_COMPONENTS: dict[str, type[DescriptorComponent]] = {
    cls.name: cls
    for cls in (RotationComponent, FlipComponent, TranslationComponent, ScaleComponent)
}


class InvarianceDescriptor:
    """The meaning of a descriptor ``d ∈ [0, 1]^k``: ``k`` named transformation strengths.

    Args:
        names: component names, in order, from :data:`DESCRIPTOR_COMPONENTS`
            (``rotation``, ``flip``, ``translation``, ``scale``).
        limits: optional full-strength setting per name: ``rotation`` max angle in degrees
            (180), ``flip`` probability (0.5), ``translation`` max shift in pixels (2),
            ``scale`` max zoom factor (1.5).

    >>> desc = InvarianceDescriptor(["rotation", "flip"], limits={"rotation": 90})
    >>> desc
    InvarianceDescriptor(rotation(max_angle=90), flip(probability=0.5))
    >>> desc.as_tensor({"rotation": 1.0, "flip": 0.25}).tolist()
    [1.0, 0.25]
    """

    def __init__(
        self, names: Sequence[str] = ("rotation",), limits: Mapping[str, float] | None = None
    ) -> None:
        if isinstance(names, str) or not isinstance(names, Sequence) or not names:
            raise ValueError(
                f"descriptor: expected a non-empty list of names from "
                f"{sorted(DESCRIPTOR_COMPONENTS)}, got {names!r}"
            )
        names = tuple(names)
        for name in names:
            if name not in DESCRIPTOR_COMPONENTS:
                close = difflib.get_close_matches(str(name), DESCRIPTOR_COMPONENTS, n=1)
                hint = f" Did you mean {close[0]!r}?" if close else ""
                raise ValueError(
                    f"descriptor: unknown component {name!r}.{hint} Valid names: "
                    f"{sorted(DESCRIPTOR_COMPONENTS)}"
                )
        if len(set(names)) != len(names):
            raise ValueError(f"descriptor: names must be distinct, got {list(names)}")
        limits = dict(limits or {})
        extra = sorted(set(limits) - set(names))
        if extra:
            raise ValueError(
                f"descriptor_limits: {extra} are not components of the descriptor {list(names)}"
            )
        self.names: tuple[str, ...] = names
        self.components = tuple(DESCRIPTOR_COMPONENTS[n](limits.get(n)) for n in names)
        self.limits = {c.name: c.limit for c in self.components}

    @property
    def size(self) -> int:
        """``k``, the number of components."""
        return len(self.names)

    def check_input(self, x: Tensor) -> None:
        """``ValueError`` unless every component's group can act on ``x``."""
        for component in self.components:
            try:
                component.group.check_input(x)
            except ValueError as err:
                raise ValueError(f"descriptor component {component.name!r}: {err}") from err

    def as_tensor(
        self,
        value: float | Sequence[float] | Mapping[str, float] | Tensor,
        device: torch.device | str | None = None,
    ) -> Tensor:
        """A descriptor ``[k]`` (or ``[B, k]`` for a 2-D tensor) from a number (every
        component), a list in component order, a ``{name: strength}`` mapping, or a tensor.
        Values must lie in [0, 1]."""
        if isinstance(value, Mapping):
            missing = [n for n in self.names if n not in value]
            extra = [n for n in value if n not in self.names]
            if missing or extra:
                raise ValueError(
                    f"descriptor: expected a strength for each of {list(self.names)}, got "
                    f"{dict(value)!r}"
                )
            value = [float(value[n]) for n in self.names]
        if isinstance(value, Tensor):
            tensor = value
        else:
            tensor = torch.as_tensor(value, dtype=torch.get_default_dtype())
        if not tensor.is_floating_point():
            tensor = tensor.to(torch.get_default_dtype())
        if tensor.ndim == 0:
            tensor = tensor.expand(self.size)
        if tensor.ndim not in (1, 2) or tensor.shape[-1] != self.size:
            raise ValueError(
                f"descriptor: expected shape [{self.size}] or [B, {self.size}] for the components "
                f"{list(self.names)}, got {tuple(tensor.shape)}"
            )
        with torch.no_grad():
            if not torch.isfinite(tensor).all() or (tensor < 0).any() or (tensor > 1).any():
                raise ValueError(
                    f"descriptor: strengths must lie in [0, 1], got {tensor.detach().tolist()}"
                )
        return tensor if device is None else tensor.to(device)

    def sample(
        self,
        batch_size: int,
        per_sample: bool = True,
        corner_probability: float = 0.0,
        generator: torch.Generator | None = None,
        device: torch.device | str | None = None,
    ) -> Tensor:
        """Random descriptors ``[B, k]``: uniform on ``[0, 1]^k``; with probability
        ``corner_probability`` a component is set to 0 or 1 instead. ``per_sample=False``
        draws one descriptor and repeats it for the whole batch."""
        rows = batch_size if per_sample else 1
        d = torch.rand(rows, self.size, generator=generator)
        if corner_probability > 0:
            corner = torch.rand(rows, self.size, generator=generator) < corner_probability
            d = torch.where(corner, d.round(), d)
        return d.expand(batch_size, self.size).to(device)

    def augment(
        self,
        x: Tensor,
        descriptor: Tensor,
        generator: torch.Generator | None = None,
        fill: float = 0.0,
    ) -> Tensor:
        """Transform each ``x[i]`` by every component in turn, with strengths ``descriptor[i]``.

        Args:
            x: images ``[B, C, H, W]``.
            descriptor: ``[B, k]`` strengths (or ``[k]`` for the whole batch).
            generator: source of the random elements.
            fill: value of pixels entering the frame (the data's background).
        """
        descriptor = self.as_tensor(descriptor, device=x.device).detach()
        if descriptor.ndim == 1:
            descriptor = descriptor.expand(x.shape[0], self.size)
        if descriptor.shape[0] != x.shape[0]:
            raise ValueError(
                f"descriptor: expected one row per sample, [{x.shape[0]}, {self.size}], got "
                f"{tuple(descriptor.shape)}"
            )
        for k, component in enumerate(self.components):
            strength = descriptor[:, k]
            if not (strength > 0).any():
                continue
            elements = component.elements(strength.to(torch.get_default_dtype()), generator)
            x = act_with_fill(component.group, x, elements, fill)
        return x

    def to_dict(self, descriptor: Tensor) -> dict[str, float]:
        """``{name: strength}`` of one descriptor ``[k]``."""
        values = descriptor.detach().flatten().tolist()
        return {n: float(v) for n, v in zip(self.names, values, strict=True)}

    def __repr__(self) -> str:
        return f"InvarianceDescriptor({', '.join(repr(c) for c in self.components)})"


# --------------------------------------------------------------------------- layers
class HyperConv2d(nn.Module):
    """A 2-D convolution (``"same"`` padding) whose kernel and bias are generated.

    ``generator`` is one linear map from a descriptor embedding ``e`` to the flattened kernel
    and bias: ``[W; b] = W⁰ + A·e`` with ``W⁰`` (the generator's bias) initialised like an
    ``nn.Conv2d`` and ``A`` small. ``forward(x, e)`` with ``e`` of shape ``[E]`` convolves the
    whole batch with one kernel; with ``[B, E]`` each sample gets its own kernel (one grouped
    convolution over the batch).
    """

    def __init__(
        self, in_channels: int, out_channels: int, kernel_size: int, embedding_dim: int
    ) -> None:
        super().__init__()
        self.in_channels, self.out_channels = in_channels, out_channels
        self.kernel_size = kernel_size
        self.weight_shape = (out_channels, in_channels, kernel_size, kernel_size)
        self.num_weights = math.prod(self.weight_shape)
        self.generator = nn.Linear(embedding_dim, self.num_weights + out_channels)
        bound = 1.0 / math.sqrt(in_channels * kernel_size**2)  # nn.Conv2d's default range
        with torch.no_grad():
            self.generator.bias.uniform_(-bound, bound)
            self.generator.weight.normal_(0.0, bound / math.sqrt(3 * embedding_dim))

    @property
    def generation_macs(self) -> int:
        """Multiply–accumulates to generate this layer's kernel and bias for one descriptor."""
        return self.generator.in_features * self.generator.out_features

    def generate(self, embedding: Tensor) -> tuple[Tensor, Tensor]:
        """Kernel ``[*, out, in, k, k]`` and bias ``[*, out]`` for embeddings ``[*, E]``."""
        flat = self.generator(embedding)
        lead = embedding.shape[:-1]
        weight = flat[..., : self.num_weights].reshape(*lead, *self.weight_shape)
        return weight, flat[..., self.num_weights :]

    def forward(self, x: Tensor, embedding: Tensor) -> Tensor:
        weight, bias = self.generate(embedding)
        padding = self.kernel_size // 2
        if embedding.ndim == 1:
            return F.conv2d(x, weight, bias, padding=padding)
        batch, _, height, width = x.shape
        out = F.conv2d(
            x.reshape(1, batch * self.in_channels, height, width),
            weight.reshape(batch * self.out_channels, self.in_channels, *weight.shape[-2:]),
            bias.reshape(batch * self.out_channels),
            padding=padding,
            groups=batch,
        )
        return out.reshape(batch, self.out_channels, *out.shape[-2:])

    def extra_repr(self) -> str:
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
                f"generated from embedding_dim={self.generator.in_features}")


class StaticConv2d(nn.Conv2d):
    """An ordinary convolution with the :class:`HyperConv2d` call signature (ignores ``e``)."""

    def forward(self, x: Tensor, embedding: Tensor | None = None) -> Tensor:
        return super().forward(x)


class HyperBlock(nn.Sequential):
    """``conv(x, e) → norm → activation → pool``; only the convolution sees the embedding."""

    def forward(self, x: Tensor, embedding: Tensor) -> Tensor:  # type: ignore[override]
        for name, module in self.named_children():
            x = module(x, embedding) if name == "conv" else module(x)
        return x


_NORMS = ("layer", "group", "batch", "none")


def _norm_layer(kind: str, channels: int) -> nn.Module | None:
    if kind == "layer":
        return nn.GroupNorm(1, channels)
    if kind == "group":
        return nn.GroupNorm(math.gcd(channels, 8), channels)
    if kind == "batch":
        return nn.BatchNorm2d(channels)
    return None


# --------------------------------------------------------------------------- the backbone
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
        if norm not in _NORMS:
            raise ValueError(f"norm: expected one of {list(_NORMS)}, got {norm!r}")
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
            norm_layer = _norm_layer(norm, out_channels)
            if norm_layer is not None:
                layers["norm"] = norm_layer
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
