"""The invariance descriptor ``d ∈ [0, 1]^k``: what each of its ``k`` components means.

Each component is a named transformation with a continuous strength (``"rotation"``,
``"flip"``, ``"translation"``, ``"scale"``, see :data:`DESCRIPTOR_COMPONENTS`). It owns a group
and asks it for elements whose spread grows with the strength
(:meth:`invreg.groups.Group.sample_with_strength`) and to apply them
(:meth:`invreg.groups.Group.act`, with the data's background as ``fill``): the groups alone
sample and transform.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Mapping, Sequence
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor

from invreg.groups import ContinuousRotations, Flips, Group, Scalings, Translations


class DescriptorComponent:
    """One component of an invariance descriptor: a transformation with a strength in [0, 1].

    ``elements(strength)`` draws, for each sample, an element of :attr:`group` whose spread is
    set by that sample's strength (:meth:`~invreg.groups.Group.sample_with_strength`): strength
    0 is always the identity, strength 1 the full range given by ``limit``, and strengths in
    between interpolate continuously.

    Subclasses set :attr:`name`, :attr:`limit_name` (what ``limit`` means) and
    :attr:`default_limit`, and implement :meth:`_make_group` (the group whose full sampling
    range is ``limit``).
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

    #: width of :meth:`target`, what a head predicting the applied element outputs
    target_size: ClassVar[int] = 1

    def elements(self, strength: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """Group elements ``[B, *group.element_shape]`` for strengths ``[B]`` in [0, 1]."""
        return self.group.sample_with_strength(strength, generator)

    def target(self, elements: Tensor) -> Tensor:
        """What a head should predict about the applied elements: ``[B, target_size]``, each
        value in ``[-1, 1]`` (the element divided by the full-strength limit)."""
        return (elements.reshape(elements.shape[0], -1) / self.limit).to(
            torch.get_default_dtype())

    def prediction_loss(self, prediction: Tensor, elements: Tensor) -> Tensor:
        """Per-sample loss ``[B]`` of ``prediction`` ``[B, target_size]`` against the applied
        ``elements``: squared error to :meth:`target`, summed over its ``target_size`` values."""
        target = self.target(elements).to(prediction)
        return (prediction - target).pow(2).sum(dim=1)

    def __repr__(self) -> str:
        return f"{self.name}({self.limit_name}={self.limit:g})"


class RotationComponent(DescriptorComponent):
    """Strength ``r``: rotate by an angle uniform in ``[-r·max_angle, r·max_angle]`` degrees."""

    name = "rotation"
    limit_name = "max_angle"
    default_limit = 180.0

    target_size = 2

    def _make_group(self) -> Group:
        return ContinuousRotations(self.limit)

    def target(self, elements: Tensor) -> Tensor:
        """``(cos θ, sin θ)`` of the angles ``θ`` ``[B]`` (degrees): continuous across ±180°."""
        radians = elements.to(torch.get_default_dtype()) * (math.pi / 180.0)
        return torch.stack([radians.cos(), radians.sin()], dim=1)


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
        return self.group.sample_with_strength(strength, generator, probability=self.limit)

    def target(self, elements: Tensor) -> Tensor:
        """``[B, 1]``: 1 where the image was mirrored, 0 where not."""
        return (elements != 0).to(torch.get_default_dtype()).unsqueeze(1)

    def prediction_loss(self, prediction: Tensor, elements: Tensor) -> Tensor:
        """Binary cross-entropy of the logit ``prediction[:, 0]`` against "mirrored"."""
        target = self.target(elements).to(prediction)
        return F.binary_cross_entropy_with_logits(prediction, target, reduction="none")[:, 0]


class TranslationComponent(DescriptorComponent):
    """Strength ``r``: shift by ``(dx, dy)``, each uniform in ``[-r·max_shift, r·max_shift]``
    pixels (sub-pixel shifts resample bilinearly)."""

    name = "translation"
    limit_name = "max_shift"
    default_limit = 2.0
    target_size = 2

    def _make_group(self) -> Group:
        return Translations(self.limit)


class ScaleComponent(DescriptorComponent):
    """Strength ``r``: zoom by ``exp(s)``, ``s`` uniform in
    ``[-r·log(max_scale), r·log(max_scale)]``."""

    name = "scale"
    limit_name = "max_scale"
    default_limit = 1.5

    def _make_group(self) -> Group:
        return Scalings(self.limit)

    def target(self, elements: Tensor) -> Tensor:
        """``[B, 1]``: the log-factor over ``log(max_scale)``, in ``[-1, 1]``."""
        return (elements / math.log(self.limit)).to(torch.get_default_dtype()).reshape(-1, 1)


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
            x = component.group.act(x, elements, fill=fill)
        return x

    def full_range_elements(
        self, batch_size: int, generator: torch.Generator | None = None,
        device: torch.device | str | None = None,
    ) -> list[Tensor]:
        """One element per sample of every component, drawn at full strength: a list of ``k``
        tensors ``[B, *element_shape]`` (:meth:`act` applies them)."""
        strength = torch.ones(batch_size)
        return [c.elements(strength, generator).to(device) for c in self.components]

    def act(self, x: Tensor, elements: Sequence[Tensor], fill: float = 0.0) -> Tensor:
        """Apply every component's ``elements[j]`` ``[B, ...]`` to ``x`` ``[B, C, H, W]``, in
        component order (as :meth:`augment` does)."""
        if len(elements) != self.size:
            raise ValueError(
                f"elements: expected one tensor per component ({self.size}), got {len(elements)}"
            )
        for component, element in zip(self.components, elements, strict=True):
            x = component.group.act(x, element, fill=fill)
        return x

    def to_dict(self, descriptor: Tensor) -> dict[str, float]:
        """``{name: strength}`` of one descriptor ``[k]``."""
        values = descriptor.detach().flatten().tolist()
        return {n: float(v) for n, v in zip(self.names, values, strict=True)}

    def __repr__(self) -> str:
        return f"InvarianceDescriptor({', '.join(repr(c) for c in self.components)})"
