"""Direct products of two groups."""

from __future__ import annotations

import dataclasses
import functools
import math

import torch
from torch import Tensor

from invreg.groups.base import Group, LieGenerator, _examples
from invreg.groups.shifts import CyclicShifts


class Product(Group):
    """The direct product ``first × second``, acting by ``(g1, g2)·x = g1·(g2·x)``.

    This is an action of the direct product only when the two actions commute: flips and
    cyclic shifts along the other axis, shifts along different axes, rotations and isotropic
    scalings (both about the centre), half turns and flips. Rotations by other angles and flips
    do not commute (``flip ∘ rot(θ) = rot(−θ) ∘ flip``): together they form the dihedral group,
    :class:`~invreg.groups.Dihedral` (``"d4"``); neither do a flip and a shift along the same
    axis, nor translations and rotations or scalings.

    Construction checks it (:meth:`check_commutation`) and raises ``ValueError`` naming the
    first pair of elements that does not commute. The check runs on a seeded probe of a shape
    both factors accept (a square image ``(1, L, L)`` when they act on images; the input shape
    of a :class:`~invreg.groups.FiniteGroup`); when no such shape is found it runs on the first
    input the group is asked about (:meth:`check_input`, :meth:`check_input_shape`). Elements
    checked: every element of a finite factor (12 sampled ones past order 13), and for a
    continuous factor 6 draws of its sampling law with their squares and fourth powers.
    Exact factors (``rot90``, ``flip``, ``roll``, exact custom groups) are compared on random
    noise up to float32 rounding; a resampling factor on smooth random blobs, where both
    composites cover the frame, and must agree within ``0.03 + 4·noise`` of the probe's peak
    (``noise``: how far undoing the last resampling of each composite misses, the
    interpolation error of those very elements). So a non-commutation smaller than the
    interpolation error over a tiny sampling range (e.g. ``Scalings(1.05)`` ×
    ``Translations(0.5)``) can pass.

    Elements: if both factors are finite, the integer ``g1·order(second) + g2`` (order
    ``order(first)·order(second)``); if either is continuous, a float vector ``[g1, g2]``
    (``element_shape == (2,)``), finite components stored as whole numbers. Validation checks
    each component against its factor: a finite component must be a whole number in
    ``[0, order)``, a continuous one a finite number.

    >>> from invreg.groups import ContinuousRotations, Flips, Rotations, Scalings
    >>> group = Product(ContinuousRotations(), Scalings())
    >>> group.compose(torch.tensor([30.0, 0.5]), torch.tensor([15.0, -0.25]))
    tensor([45.0000,  0.2500])
    >>> Product(Rotations(4), Flips())  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: Product(Rotations(n=4), Flips(axes=('horizontal',))): the factors do not commute...
    """

    def __init__(self, first: Group, second: Group) -> None:
        for name, g in (("first", first), ("second", second)):
            if isinstance(g, type) and issubclass(g, Group):
                raise TypeError(
                    f"Product({name}): expected a Group instance, got the class {g.__name__}; "
                    f"instantiate it, e.g. {g.__name__}()"
                )
            if not isinstance(g, Group):
                raise TypeError(f"Product({name}): expected a Group, got {type(g).__name__}")
            if g.element_shape != ():
                raise ValueError(f"Product({name}): nested products are not supported, got {g!r}")
        self.first, self.second = first, second
        finite = first.is_finite and second.is_finite
        self.order = first.order * second.order if finite else None
        self.element_shape = () if finite else (2,)
        self._commutation_checked = False
        shape = _common_shape(first, second)
        if shape is not None:
            self.check_commutation(shape)

    @property
    def is_exact(self) -> bool:
        return self.first.is_exact and self.second.is_exact

    def split(self, g: Tensor) -> tuple[Tensor, Tensor]:
        """The two components of a batch of (validated) product elements."""
        if self.is_finite:
            return g // self.second.order, g % self.second.order
        a, b = g[..., 0], g[..., 1]
        a = a.round().long() if self.first.is_finite else a
        b = b.round().long() if self.second.is_finite else b
        return a, b

    def join(self, a: Tensor, b: Tensor) -> Tensor:
        """Product elements from their two components."""
        if self.is_finite:
            return a * self.second.order + b
        dtype = torch.get_default_dtype()
        if a.is_floating_point() or b.is_floating_point():
            dtype = torch.promote_types(dtype, a.dtype if a.is_floating_point() else b.dtype)
        return torch.stack([a.to(dtype), b.to(dtype)], dim=-1)

    def _check_element_values(self, g: Tensor, where: str) -> None:
        super()._check_element_values(g, where)
        if self.is_finite:
            return
        for i, factor in enumerate((self.first, self.second)):
            if not factor.is_finite:
                continue
            component = g[..., i]
            context = f"{where}, component {i} ({factor!r})"
            fractional = component != component.round()
            if fractional.any():
                raise ValueError(
                    f"{context}: expected whole numbers, got {_examples(component[fractional])}"
                )
            factor._check_element_values(component.long(), context)

    def _inverse(self, g: Tensor) -> Tensor:
        a, b = self.split(g)
        return self.join(self.first.inverse(a), self.second.inverse(b))

    def _compose(self, g: Tensor, h: Tensor) -> Tensor:
        (a1, b1), (a2, b2) = self.split(g), self.split(h)
        return self.join(self.first.compose(a1, a2), self.second.compose(b1, b2))

    def _sample(self, batch_size, generator, device) -> Tensor:
        a = self.first.sample(batch_size, generator=generator, device=device)
        b = self.second.sample(batch_size, generator=generator, device=device)
        return self.join(a, b)

    def check_input(self, x: Tensor) -> None:
        self.first.check_input(x)
        self.second.check_input(x)
        if not self._commutation_checked:  # no probe shape was found at construction
            self.check_commutation(tuple(x.shape[1:]))

    def check_input_shape(self, shape: tuple[int, ...] | list[int]) -> None:
        """Both factors must act on ``shape``; the first that cannot raises its message."""
        self.first.check_input_shape(shape)
        self.second.check_input_shape(shape)
        if not self._commutation_checked:
            self.check_commutation(tuple(shape))

    def check_commutation(self, shape: tuple[int, ...]) -> None:
        """Raise ``ValueError`` unless the factors' actions commute on a seeded probe of
        per-sample shape ``shape`` (see the class docstring for the elements and tolerance)."""
        first, second = self.first, self.second
        gen = torch.Generator().manual_seed(0)
        a, b = _probe_elements(first, gen), _probe_elements(second, gen)
        a_pairs = a.repeat_interleave(b.shape[0], dim=0)
        b_pairs = b.repeat(a.shape[0], *([1] * (b.ndim - 1)))
        n = a_pairs.shape[0]
        device = next((g._probe.device for g in (first, second) if hasattr(g, "_probe")), None)
        exact = first.is_exact and second.is_exact
        if exact:
            x = torch.randn(n, *shape, generator=gen)
        else:
            x = _smooth_probe(n, shape, gen)
        x, a_pairs, b_pairs = x.to(device), a_pairs.to(device), b_pairs.to(device)
        bx, ax = second._act(x, b_pairs), first._act(x, a_pairs)
        ab, ba = first._act(bx, a_pairs), second._act(ax, b_pairs)
        peak = x.flatten(1).abs().amax(1).clamp_min(1.0 if exact else 0.0)
        if exact:
            allowed = math.sqrt(torch.finfo(x.dtype).eps) * peak
            mask = torch.ones_like(x, dtype=torch.bool)
        else:
            ones = torch.ones_like(x)
            mask = (first._act(second._act(ones, b_pairs), a_pairs) > 0.999) & (
                second._act(first._act(ones, a_pairs), b_pairs) > 0.999)
            # interpolation noise of these very elements: undo the last step of each composite
            undo_a, undo_b = first._inverse(a_pairs), second._inverse(b_pairs)
            back = mask & (first._act(first._act(ones, a_pairs), undo_a) > 0.999) & (
                second._act(second._act(ones, b_pairs), undo_b) > 0.999)
            noise = torch.maximum(_masked_max(first._act(ab, undo_a) - bx, back),
                                  _masked_max(second._act(ba, undo_b) - ax, back))
            allowed = (_COMMUTE_FLOOR + _COMMUTE_NOISE * noise / peak) * peak
        difference = _masked_max(ab - ba, mask)
        bad = (difference > allowed) | ~torch.isfinite(difference)
        if bad.any():
            i = int(bad.nonzero()[0])
            relative = float(difference[i] / peak[i])
            raise ValueError(
                f"{self!r}: the factors do not commute, so (g1, g2)·x = g1·(g2·x) is not an "
                f"action of the direct product: for g1 = {_show(a_pairs[i])} of {first!r} and "
                f"g2 = {_show(b_pairs[i])} of {second!r}, g1·(g2·x) and g2·(g1·x) differ by "
                f"{relative:.3g} of the probe's peak on a random probe of shape {tuple(shape)}. "
                f"{_hint(first, second)}"
            )
        self._commutation_checked = True

    def _act(self, x: Tensor, g: Tensor) -> Tensor:
        a, b = self.split(g)
        return self.first._act(self.second._act(x, b), a)

    def lie_generators(self) -> dict[str, LieGenerator]:
        """The Lie generators of the factors (``g_t`` of one factor, the identity of the other):
        ``Product(ContinuousRotations(), Scalings())`` has ``"rotation"`` and ``"scale"``; a
        name both factors use is the first factor's."""
        generators: dict[str, LieGenerator] = {}
        for index, factor in enumerate((self.first, self.second)):
            for name, generator in factor.lie_generators().items():
                element = functools.partial(_factor_element, self, index, generator.element)
                generators.setdefault(
                    name, dataclasses.replace(generator, group=self, element=element)
                )
        return generators

    def commutes(self, x: Tensor, atol: float = 1e-5) -> bool:
        """Whether the factors' actions commute on ``x`` for every pair of sampled elements."""
        self.check_input(x)
        gen = torch.Generator().manual_seed(0)
        a = self.first.sample(x.shape[0], generator=gen, device=x.device)
        b = self.second.sample(x.shape[0], generator=gen, device=x.device)
        ab = self.first._act(self.second._act(x, b), a)
        ba = self.second._act(self.first._act(x, a), b)
        return bool(torch.allclose(ab, ba, atol=atol))

    def __repr__(self) -> str:
        return f"Product({self.first!r}, {self.second!r})"


#: a resampling product commutes when ``g1·(g2·x)`` and ``g2·(g1·x)`` agree within
#: ``_COMMUTE_FLOOR + _COMMUTE_NOISE · noise`` of the probe's peak (measured: commuting pairs
#: such as ContinuousRotations × Scalings(3) stay 0.01 below, ContinuousRotations(2) × Flips
#: exceeds it by 0.08)
_COMMUTE_FLOOR = 0.03
_COMMUTE_NOISE = 4.0
#: finite factors up to this order are checked on every element, larger ones on this many
_MAX_FINITE_ELEMENTS = 12
#: draws of a continuous factor's sampling law (each with its square and fourth power)
_CONTINUOUS_DRAWS = 4


def _factor_element(group: Product, index: int, element, t: Tensor) -> Tensor:
    """The product element ``g_t`` of a factor's generator: ``element(t)`` in component
    ``index``, the other factor's identity in the other."""
    moved = element(t)
    still = torch.zeros_like(moved)
    return group.join(moved, still) if index == 0 else group.join(still, moved)


def _probe_elements(group: Group, gen: torch.Generator) -> Tensor:
    """The elements of one factor the commutation check pairs up (identity excluded)."""
    if group.is_finite:
        assert group.order is not None
        if group.order - 1 <= _MAX_FINITE_ELEMENTS:
            return torch.arange(1, group.order)
        return group.sample_non_identity(_MAX_FINITE_ELEMENTS, generator=gen)
    drawn = group.sample(_CONTINUOUS_DRAWS, generator=gen)
    square = group.compose(drawn, drawn)
    return torch.cat([drawn, square, group.compose(square, square)])


def _smooth_probe(n: int, shape: tuple[int, ...], gen: torch.Generator) -> Tensor:
    """``n`` samples of ``shape``: four random Gaussian blobs each (width 1/10 of the frame)
    inside the central half of the last one or two axes, so that resampling barely blurs them
    and little of them leaves the frame."""
    spatial = shape[-2:] if len(shape) >= 2 else shape[-1:]
    axes = [torch.arange(d, dtype=torch.float32) + 0.5 - d / 2 for d in spatial]
    grids = torch.meshgrid(*axes, indexing="ij")
    out = torch.zeros(n, *spatial)
    for _ in range(4):
        centre = (torch.rand(n, len(spatial), generator=gen) - 0.5) * 0.5
        amplitude = 0.5 + 0.5 * torch.rand(n, generator=gen)
        squared = sum(((grid - c.view(-1, *[1] * len(spatial)) * d) / (d / 10)) ** 2
                      for grid, c, d in zip(grids, centre.T, spatial, strict=True))
        out += amplitude.view(-1, *[1] * len(spatial)) * torch.exp(-0.5 * squared)
    lead = shape[: len(shape) - len(spatial)]
    return out.reshape(n, *[1] * len(lead), *spatial).expand(n, *shape).contiguous()


def _masked_max(difference: Tensor, mask: Tensor) -> Tensor:
    """Per-sample largest ``|difference|`` where ``mask`` holds (NaN counts as infinite)."""
    d = torch.where(mask, difference.abs().nan_to_num(nan=math.inf), 0.0)
    return d.flatten(1).amax(1)


def _show(element: Tensor) -> str:
    value = element.item() if element.ndim == 0 else element.tolist()
    return f"{value:g}" if isinstance(value, float) else str(value)


def _hint(first: Group, second: Group) -> str:
    kinds = {type(first).__name__, type(second).__name__}
    if "Flips" in kinds and kinds & {"Rotations", "ContinuousRotations"}:
        rotations = first if type(first).__name__ != "Flips" else second
        n = getattr(rotations, "n", 4)
        return (f"Rotations and mirror images together form the dihedral group: use "
                f"Dihedral({n}) (name 'd{n}') instead")
    return ("Combine factors that commute (e.g. flips and cyclic shifts along the other axis, "
            "shifts along different axes, rotations and scalings), or describe the group with "
            "FiniteGroup.from_actions, which derives its composition table")


def _common_shape(first: Group, second: Group) -> tuple[int, ...] | None:
    """A per-sample shape both factors act on, for the commutation check, or ``None``."""
    candidates: list[tuple[int, ...]] = []
    for group in (first, second):
        shape = getattr(group, "input_shape", None)  # a FiniteGroup's probe shape
        if isinstance(shape, tuple):
            candidates.append(shape)
    lengths = [36, 24, 48]
    for group in (first, second):
        if isinstance(group, CyclicShifts):
            n = group.n
            lengths.append(n * group.shift if group.shift else n * max(1, math.ceil(36 / n)))
    candidates += [(1, length, length) for length in lengths]
    candidates += [(1, h, w) for h in lengths for w in lengths if h != w]
    candidates += [(1, length) for length in lengths]
    for shape in candidates:
        try:
            first.check_input_shape(shape)
            second.check_input_shape(shape)
        except (TypeError, ValueError):
            continue
        return shape
    return None
