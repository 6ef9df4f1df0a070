"""The :class:`Group` interface: the one object that knows how to transform a tensor.

Elements of a finite group are integers ``0 .. order - 1`` with ``0`` the identity; a batch of
elements is a ``LongTensor`` of shape ``[B]``, one element per sample. Elements of a continuous
group are real parameters (for example an angle), a floating tensor of shape
``[B, *element_shape]``.

Every public method that takes elements (:meth:`Group.act`, :meth:`Group.orbit_from_elements`,
:meth:`Group.inverse`, :meth:`Group.compose`) validates them with one helper,
:meth:`Group.check_elements`: a finite group accepts integer dtypes only (no floats, no bools)
with values in ``[0, order)``; a continuous group accepts real numbers (integers are converted
to floating point) that are finite. Python numbers and nested lists are accepted wherever a
tensor is. Problems with the values, the dtype or the shape raise ``ValueError``; something that
is not a number at all raises ``TypeError``.

Exactness: a group whose :attr:`Group.is_exact` is ``True`` only permutes entries (``rot90``,
``flip``, ``roll``), so its group laws hold bit for bit and it acts on any dtype, integers
included. Other groups resample bilinearly; they compute in float32 (float64 for float64
inputs), cast the result back to the input dtype, and reject non-floating inputs with
``TypeError`` (convert first, e.g. ``x.float()``).

Fill: resampling brings pixels from outside the frame into it. :meth:`Group.act`,
:meth:`Group.orbit` and :meth:`Group.orbit_from_elements` take ``fill``, the value of the plane
outside the frame (default 0); exact groups bring nothing in and ignore it. A run's module
passes its data module's ``background`` (see :class:`~invreg.modules.InvarianceModule`).

Lie generators: a continuous group that resamples by an affine map names its one-parameter
subgroups ``t ↦ g_t`` (:meth:`Group.lie_generators`, :class:`LieGenerator`), the directions
a Lie derivative follows (:mod:`invreg.functional.lie`); the map comes from the group's own
action, so the derivative and :meth:`Group.act` share it.
"""

from __future__ import annotations

import math
import operator
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import Tensor

from invreg.config import RecordsInit


@dataclass(frozen=True)
class LieGenerator:
    """A one-parameter subgroup ``t ↦ g_t`` of a group that acts on images by an affine
    resampling: the direction a Lie derivative follows (:mod:`invreg.functional.lie`).

    Calling it, ``generator(t, height, width)``, gives :attr:`theta`.

    Attributes:
        name: the generator's name, e.g. ``"rotation"``.
        group: the group ``g_t`` belongs to.
        theta: ``theta(t, height, width)``: the pull-back affine maps ``[..., 2, 3]`` of
            ``g_t`` for parameters ``t`` ``[...]`` on ``height × width`` images (normalised
            coordinates, :func:`~invreg.groups.rotations.resample`): the map the group's
            :meth:`~Group.act` resamples with, in ``t``'s dtype and differentiable in ``t``.
        element: ``element(t)``: the group elements ``g_t`` ``[..., *element_shape]`` in the
            group's own units (degrees, pixels, log-factors), so ``group.act(x, element(t))``
            is ``g_t·x``.
        parameter: what ``t`` measures, e.g. ``"radians, counter-clockwise as displayed"``.
        square: whether ``g_t`` needs square images (``H == W``).

    >>> from invreg.groups import ContinuousRotations
    >>> rotation = ContinuousRotations().lie_generator()
    >>> rotation.name, rotation.element(torch.tensor(math.pi / 2))
    ('rotation', tensor(90.))
    """

    name: str
    group: Group
    theta: Callable[[Tensor, int, int], Tensor] = field(compare=False, repr=False)
    element: Callable[[Tensor], Tensor] = field(compare=False, repr=False)
    parameter: str = field(compare=False)
    square: bool = field(default=False, compare=False)

    def __call__(self, t: Tensor, height: int, width: int) -> Tensor:
        return self.theta(t, height, width)


class Group(RecordsInit, ABC):
    """A group acting on batches of inputs.

    Subclasses implement :meth:`_inverse`, :meth:`_compose`, :meth:`_sample`, :meth:`_act` and
    :meth:`check_input` on already validated elements; the public :meth:`inverse`,
    :meth:`compose`, :meth:`sample`, :meth:`act`, :meth:`orbit` and :meth:`elements` validate
    their arguments and are derived from those.

    The action is a *left* action: ``act(act(x, h), g) == act(x, compose(g, h))``.
    """

    #: number of elements, or ``None`` for a continuous group
    order: int | None = None
    #: shape of one element: ``()`` for integers or angles, ``(k,)`` for parameter vectors
    element_shape: tuple[int, ...] = ()

    @property
    def is_finite(self) -> bool:
        return self.order is not None

    @property
    def is_exact(self) -> bool:
        """Whether :meth:`act` only permutes entries (exact group laws, any input dtype).

        ``False`` for groups that resample bilinearly; those need floating-point inputs.
        """
        return False

    # ------------------------------------------------------------------ elements
    def identity(self, batch_size: int = 1, device: torch.device | str | None = None) -> Tensor:
        """The identity element, repeated ``batch_size`` times: ``[batch_size, *element_shape]``."""
        batch_size = _count(self, "batch_size", batch_size)
        dtype = torch.long if self.is_finite else torch.get_default_dtype()
        return torch.zeros(batch_size, *self.element_shape, dtype=dtype, device=device)

    def inverse(self, g: Tensor | int | float) -> Tensor:
        """Elementwise inverse ``g⁻¹``: one element or a batch ``[N, *element_shape]``.

        Returns a tensor of the same shape (a Python number gives a 0-d tensor).
        """
        return self._inverse(self.check_elements(g, "inverse(g)"))

    def compose(self, g: Tensor | int | float, h: Tensor | int | float) -> Tensor:
        """Elementwise product ``g·h`` (apply ``h`` first, then ``g``).

        ``g`` and ``h`` are single elements or batches ``[N, *element_shape]``; a single element
        is paired with every element of the other batch.
        """
        g = self.check_elements(g, "compose(g)")
        h = self.check_elements(h, "compose(h)", device=g.device)
        if g.shape != h.shape:
            if g.shape == self.element_shape:
                g = g.expand_as(h)
            elif h.shape == self.element_shape:
                h = h.expand_as(g)
            else:
                raise ValueError(
                    f"{self!r}.compose(g, h): expected batches of the same size (or a single "
                    f"element), got shapes {tuple(g.shape)} and {tuple(h.shape)}"
                )
        out = self._compose(g, h)
        if out.is_floating_point() and not torch.isfinite(out).all():
            raise ValueError(
                f"{self!r}.compose(g, h): the product overflows {out.dtype} (got a non-finite "
                f"value); use smaller elements"
            )
        return out

    def sample(
        self,
        batch_size: int,
        generator: torch.Generator | None = None,
        device: torch.device | str | None = None,
    ) -> Tensor:
        """``batch_size`` elements drawn uniformly (finite) or from the group's sampling law."""
        return self._sample(_count(self, "batch_size", batch_size), generator, device)

    def sample_non_identity(
        self,
        batch_size: int,
        generator: torch.Generator | None = None,
        device: torch.device | str | None = None,
    ) -> Tensor:
        """``batch_size`` elements that move the input: what an invariance error compares.

        Finite groups draw uniformly from the ``order − 1`` non-identity elements
        ``1 .. order − 1`` (the identity would only add a zero error); the draw is
        ``1 + randint(order − 1)`` on the CPU from ``generator``, so a generator in the same
        state gives the same elements. Continuous groups draw from their sampling law
        (:meth:`sample`): it hits the identity with probability zero, so every draw is
        "non-identity" in that sense, though elements near the identity (small angles or
        shifts) are as likely as anywhere else in the range.

        Raises:
            ValueError: the group has only the identity (``order == 1``).

        >>> from invreg.groups import Rotations
        >>> g = Rotations(4).sample_non_identity(1000, torch.Generator().manual_seed(0))
        >>> sorted(g.unique().tolist())
        [1, 2, 3]
        """
        batch_size = _count(self, "batch_size", batch_size)
        if not self.is_finite:
            return self._sample(batch_size, generator, device)
        assert self.order is not None
        if self.order == 1:
            raise ValueError(
                f"{self!r}.sample_non_identity: the group has only the identity; use a group "
                f"with more than one element"
            )
        return (1 + torch.randint(self.order - 1, (batch_size,), generator=generator)).to(device)

    def sample_with_strength(
        self, strength: Tensor, generator: torch.Generator | None = None
    ) -> Tensor:
        """One element per sample, spread out as far as that sample's strength says.

        Strength ``s = 0`` is always the identity, ``s = 1`` the group's full sampling range
        (the law of :meth:`sample`), and in between the range shrinks linearly with ``s``; for
        :class:`~invreg.groups.ContinuousRotations` (``max_angle = 180``) the angle is uniform
        in ``[-180·s, 180·s]`` degrees. Random numbers are drawn on the CPU from
        ``generator``; the result lies on ``strength``'s device.

        Args:
            strength: ``[B]`` floating-point strengths in ``[0, 1]``, one per sample.
            generator: the source of randomness.

        Returns:
            Elements ``[B, *element_shape]``, in ``strength``'s dtype for a continuous group.

        >>> from invreg.groups import ContinuousRotations
        >>> angles = ContinuousRotations(180).sample_with_strength(torch.tensor([0.0, 0.5]))
        >>> bool(angles[0] == 0), bool(angles[1].abs() <= 90)
        (True, True)
        """
        return self._sample_with_strength(self.check_strength(strength), generator)

    def _sample_with_strength(self, strength: Tensor, generator: torch.Generator | None) -> Tensor:
        """:meth:`sample_with_strength` of validated strengths; groups that support it override
        this."""
        raise TypeError(
            f"{self!r} has no strength-parameterised sampling; groups that have one: "
            f"ContinuousRotations, Translations, Scalings, Flips"
        )

    def check_strength(self, strength: Tensor) -> Tensor:
        """Validate strengths for :meth:`sample_with_strength`: a floating tensor ``[B]`` with
        values in ``[0, 1]``, else ``TypeError`` / ``ValueError`` naming what was received."""
        where = f"{self!r}.sample_with_strength(strength)"
        if not isinstance(strength, Tensor) or not strength.is_floating_point():
            got = strength.dtype if isinstance(strength, Tensor) else type(strength).__name__
            raise TypeError(f"{where}: expected a floating-point tensor, got {got}")
        if strength.ndim != 1:
            raise ValueError(
                f"{where}: expected one strength per sample, shape [B], got shape "
                f"{tuple(strength.shape)}"
            )
        outside = ~((strength >= 0) & (strength <= 1))  # NaN counts as outside
        if outside.any():
            raise ValueError(
                f"{where}: expected values in [0, 1], got {_examples(strength[outside])}"
            )
        return strength

    @staticmethod
    def _uniform_within_strength(
        strength: Tensor,
        half_width: float,
        event_shape: tuple[int, ...],
        generator: torch.Generator | None,
    ) -> Tensor:
        """Uniform draws from ``[-s·half_width, s·half_width]``, ``[B, *event_shape]`` for
        strengths ``s`` of shape ``[B]`` (one interval per sample)."""
        shape = (strength.shape[0], *event_shape)
        u = torch.rand(*shape, generator=generator, dtype=strength.dtype).to(strength.device)
        scale = (strength * half_width).reshape(shape[0], *([1] * len(event_shape)))
        return (2 * u - 1) * scale

    @abstractmethod
    def _inverse(self, g: Tensor) -> Tensor:
        """:meth:`inverse` of validated elements."""

    @abstractmethod
    def _compose(self, g: Tensor, h: Tensor) -> Tensor:
        """:meth:`compose` of validated elements of the same shape."""

    @abstractmethod
    def _sample(
        self,
        batch_size: int,
        generator: torch.Generator | None,
        device: torch.device | str | None,
    ) -> Tensor:
        """:meth:`sample` with a validated ``batch_size``."""

    def elements(
        self,
        num_samples: int | None = None,
        generator: torch.Generator | None = None,
        device: torch.device | str | None = None,
    ) -> Tensor:
        """The elements an orbit is made of, identity first.

        Finite groups: all ``order`` elements (``num_samples`` must be ``None`` or ``order``).
        Continuous groups: the identity followed by ``num_samples - 1`` sampled elements.
        """
        if self.is_finite:
            if num_samples not in (None, self.order):
                raise ValueError(
                    f"{self!r} is finite with order {self.order}; its orbit has all "
                    f"{self.order} elements, got num_samples={num_samples}"
                )
            return torch.arange(self.order, device=device)
        if isinstance(num_samples, bool) or not isinstance(num_samples, int) or num_samples < 2:
            raise ValueError(
                f"{self!r} is continuous: pass num_samples >= 2 (identity plus sampled "
                f"elements), got num_samples={num_samples!r}"
            )
        sampled = self.sample(num_samples - 1, generator=generator, device=device)
        return torch.cat([self.identity(1, device=device).to(sampled.dtype), sampled])

    def fixed_elements(self, count: int, seed: int) -> Tensor | None:
        """The elements a repeated measurement uses every time, so evaluations compare alike.

        ``None`` for a finite group: measure its full orbit (:meth:`orbit`). For a continuous
        group, ``count`` elements (identity first, :meth:`elements`) drawn from a generator
        seeded with ``seed``: the same seed gives the same elements, call after call.

        >>> from invreg.groups import ContinuousRotations, Rotations
        >>> Rotations(4).fixed_elements(8, seed=0) is None
        True
        >>> angles = ContinuousRotations().fixed_elements(3, seed=0)
        >>> angles.shape, bool(angles[0] == 0)
        (torch.Size([3]), True)
        """
        if self.is_finite:
            return None
        return self.elements(count, generator=torch.Generator().manual_seed(seed))

    def element_labels(self, elements: Tensor) -> list[str]:
        """Short display names of a batch of elements ``[N, *element_shape]``, one per element
        (the column titles of an orbit figure).

        Scalar elements are named by their value (``"g=2"``; ``"g=0.785"`` for a continuous
        group, three significant digits), vector elements by their position (``"g0"``,
        ``"g1"``, ...). Groups with a more telling name override it: :class:`~invreg.groups.
        Rotations` gives the angle (``"90°"``). Elements are validated by
        :meth:`check_elements`.

        >>> from invreg.groups import CyclicShifts, Rotations
        >>> Rotations(4).element_labels(torch.arange(4))
        ['0°', '90°', '180°', '270°']
        >>> CyclicShifts(3).element_labels(torch.arange(3))
        ['g=0', 'g=1', 'g=2']
        """
        elements = self._element_batch(elements, "element_labels(elements)")
        if elements.ndim == 1:
            return [f"g={v:.3g}" if elements.is_floating_point() else f"g={v}"
                    for v in elements.tolist()]
        return [f"g{i}" for i in range(elements.shape[0])]

    def _element_batch(self, elements: Tensor, name: str) -> Tensor:
        """Validated elements (:meth:`check_elements`) that form a batch ``[N,
        *element_shape]``, else ``ValueError`` naming ``name`` and the shape received."""
        elements = self.check_elements(elements, name)
        if elements.ndim != len(self.element_shape) + 1:
            batch = "".join(f", {d}" for d in self.element_shape)
            raise ValueError(
                f"{self!r}.{name}: expected a batch of shape [N{batch}], got shape "
                f"{tuple(elements.shape)}"
            )
        return elements

    def check_elements(
        self,
        g: Tensor | int | float,
        name: str = "check_elements(g)",
        device: torch.device | str | None = None,
    ) -> Tensor:
        """Validate group elements; return them as a tensor in the group's element dtype.

        Args:
            g: one element (shape ``element_shape``) or a batch ``[N, *element_shape]``, as a
                tensor, a Python number or a nested list.
            name: the method and argument named in error messages, e.g. ``"act(g)"``.
            device: move the elements there (default: where they are; CPU for numbers).

        Returns:
            ``g`` with the same shape: ``int64`` for a finite group, floating point (at least
            the default dtype) for a continuous one.

        Raises:
            TypeError: ``g`` is not numeric.
            ValueError: wrong dtype (floats or bools for a finite group, bools or complex
                numbers for a continuous one), wrong shape, a value outside ``[0, order)``
                (finite) or a NaN / infinite value (continuous).
        """
        where = f"{self!r}.{name}"
        if not isinstance(g, Tensor):
            try:
                g = torch.as_tensor(g)
            except (TypeError, ValueError, RuntimeError) as err:
                raise TypeError(
                    f"{where}: expected group elements (a tensor or numbers), got "
                    f"{type(g).__name__}"
                ) from err
        if device is not None:
            g = g.to(device)
        if self.is_finite:
            if g.is_floating_point() or g.is_complex() or g.dtype == torch.bool:
                raise ValueError(
                    f"{where}: expected integers in [0, {self.order}), got dtype "
                    f"{g.dtype}; pass an integer tensor"
                )
            g = g.to(torch.long)
        else:
            if g.is_complex() or g.dtype == torch.bool:
                raise ValueError(f"{where}: expected real-valued elements, got dtype {g.dtype}")
            default = torch.get_default_dtype()
            g = g.to(torch.promote_types(g.dtype, default) if g.is_floating_point() else default)
        shape, single = tuple(g.shape), self.element_shape
        if shape != single and (len(shape) != len(single) + 1 or shape[1:] != single):
            batch = "".join(f", {d}" for d in single)
            raise ValueError(
                f"{where}: expected one element of shape {single} or a batch of shape "
                f"[N{batch}], got shape {shape}"
            )
        self._check_element_values(g, where)
        return g

    def _check_element_values(self, g: Tensor, where: str) -> None:
        """Raise ``ValueError`` for values that are not elements (``g`` has the right dtype)."""
        if self.is_finite:
            bad = (g < 0) | (g >= self.order)
            if bad.any():
                raise ValueError(
                    f"{where}: expected elements in [0, {self.order}), got {_examples(g[bad])}"
                )
        elif not torch.isfinite(g).all():
            raise ValueError(
                f"{where}: expected finite elements, got {_examples(g[~torch.isfinite(g)])}"
            )

    # ------------------------------------------------------------------ Lie generators
    def lie_generators(self) -> dict[str, LieGenerator]:
        """The group's one-parameter subgroups by name (:class:`LieGenerator`): what a Lie
        derivative can follow. Empty for a group without one (the finite groups); continuous
        groups that resample by an affine map override it (``"rotation"`` for
        :class:`~invreg.groups.ContinuousRotations`, ``"translate_x"`` and ``"translate_y"``
        for :class:`~invreg.groups.Translations`, ``"scale"`` for
        :class:`~invreg.groups.Scalings`, those of its factors for a
        :class:`~invreg.groups.Product`)."""
        return {}

    def lie_generator(self, name: str | None = None) -> LieGenerator:
        """The Lie generator called ``name``, or the group's only one (``name=None``).

        Raises:
            ValueError: the group has no Lie generator (a finite group), has several and
                ``name`` is ``None``, or has none called ``name``; the message names the
                choices.

        >>> from invreg.groups import Translations
        >>> Translations().lie_generator("translate_y").parameter
        'pixels, content moving down'
        """
        generators = self.lie_generators()
        names = ", ".join(repr(n) for n in generators)
        if not generators:
            raise ValueError(
                f"{self!r} has no Lie generator: a Lie derivative follows a continuous "
                f"transformation; use ContinuousRotations ('so2'), Translations, Scalings or "
                f"a Product with one of them"
            )
        if name is None:
            if len(generators) == 1:
                return next(iter(generators.values()))
            raise ValueError(
                f"generator: {self!r} has {len(generators)} Lie generators ({names}); name one, "
                f"e.g. generator={next(iter(generators))!r}"
            )
        if name not in generators:
            raise ValueError(
                f"generator: {self!r} has the Lie generators {names}, got {name!r}"
            )
        return generators[name]

    # ------------------------------------------------------------------ action
    @abstractmethod
    def check_input(self, x: Tensor) -> None:
        """Raise ``ValueError`` naming the shape if the group cannot act on ``x`` (``TypeError``
        if ``x`` is not a tensor, or not floating point for a group that resamples)."""

    def check_input_shape(self, shape: tuple[int, ...] | list[int]) -> None:
        """Raise ``ValueError`` if the group cannot act on inputs of shape ``shape``.

        ``shape`` is one sample's shape without the batch axis, e.g. a data module's
        ``input_shape`` ``(C, H, W)``: a run checks it once before training instead of failing
        at the first batch. The default asks :meth:`check_input` on a zero batch
        ``[1, *shape]``; groups whose constraint has a short list of valid choices (cyclic
        shifts) override it to name them.

        >>> from invreg.groups import Rotations
        >>> Rotations(4).check_input_shape((1, 28, 28))
        >>> Rotations(4).check_input_shape((1, 28, 36))  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        ValueError: Rotations(n=4) cannot act on inputs of shape (1, 28, 36): ...
        """
        shape = _input_shape(self, shape)
        try:
            self.check_input(torch.zeros(1, *shape))
        except ValueError as err:
            raise ValueError(f"{self!r} cannot act on inputs of shape {shape}: {err}") from None

    @abstractmethod
    def _act(self, x: Tensor, g: Tensor) -> Tensor:
        """Apply ``g[i]`` to ``x[i]``; inputs already validated, ``g`` of shape
        ``[B, *element_shape]``."""

    def act(self, x: Tensor, g: Tensor | int | float, fill: float = 0.0) -> Tensor:
        """Transform each sample ``x[i]`` by the element ``g[i]``.

        ``fill`` is the value of the plane outside the frame: what pixels entering the frame
        get. Exact groups (:attr:`is_exact`: ``rot90``, ``roll``, ``flip``) bring nothing in, so
        they ignore it and the result is bit for bit that of ``fill = 0``. Groups that resample
        bilinearly compute ``act(x) + fill·(1 − act(1))`` (zeros outside the frame in both
        terms), which is exactly the action with fill value ``fill`` because the resampling is
        linear in the pixels. After standardisation the empty background is ``-mean/std``,
        not 0: pass that value (a data module's ``background``), or a zero fill draws the
        frame's border (for a rotation, the visible inscribed disc) into the image.

        Args:
            x: a batch of inputs, shape ``[B, ...]`` (see :meth:`check_input`); ``B`` may be 0.
            g: elements of shape ``[B, *element_shape]``, or a single element applied to every
                sample (validated by :meth:`check_elements`).
            fill: the background value, a finite real number.

        Returns:
            The transformed batch, same shape, dtype and device as ``x``.

        >>> from invreg.groups import ContinuousRotations
        >>> x = torch.full((1, 1, 4, 4), -0.5)
        >>> bool((ContinuousRotations().act(x, 45.0, fill=-0.5) + 0.5).abs().max() < 1e-6)
        True
        """
        self.check_input(x)
        g = self.check_elements(g, "act(g)", device=x.device)
        fill = self.check_fill(fill, "act(fill)")
        expected = (x.shape[0], *self.element_shape)
        if g.shape == self.element_shape:
            g = g.expand(expected)
        if g.shape != expected:
            raise ValueError(
                f"{self!r}.act(g): expected one element per sample, shape {expected}, "
                f"got g of shape {tuple(g.shape)}"
            )
        out = self._act(x, g)
        if fill == 0.0 or self.is_exact:
            return out
        coverage = self._act(torch.ones_like(x[:, :1]), g)  # 1 inside the frame, 0 outside
        return out + fill * (1.0 - coverage)

    def check_fill(self, fill: float, name: str = "fill") -> float:
        """``fill`` as a float, else ``TypeError`` (not a real number) / ``ValueError`` (not
        finite) naming ``name`` and the value received."""
        where = f"{self!r}.{name}"
        if isinstance(fill, Tensor) and fill.numel() == 1 and not fill.is_complex():
            fill = fill.item()
        if isinstance(fill, bool) or not isinstance(fill, int | float):
            raise TypeError(f"{where}: expected a real number, got {type(fill).__name__}")
        if not math.isfinite(fill):
            raise ValueError(f"{where}: expected a finite number, got {fill!r}")
        return float(fill)

    def orbit(
        self,
        x: Tensor,
        num_samples: int | None = None,
        generator: torch.Generator | None = None,
        fill: float = 0.0,
    ) -> Tensor:
        """All transformed copies of each sample: ``[B, N, *x.shape[1:]]``, identity first.

        ``N`` is the group's order, or ``num_samples`` for a continuous group (see
        :meth:`elements`). Every sample sees the same elements in the same order. An empty
        batch (``B = 0``) gives an empty orbit ``[0, N, *x.shape[1:]]``. ``fill``: the value of
        pixels entering the frame, as in :meth:`act`.
        """
        self.check_input(x)
        elems = self.elements(num_samples, generator=generator, device=x.device)
        return self.orbit_from_elements(x, elems, fill=fill)

    def orbit_from_elements(self, x: Tensor, elems: Tensor, fill: float = 0.0) -> Tensor:
        """Apply every element of ``elems`` (shape ``[N, *element_shape]``, validated by
        :meth:`check_elements`) to the whole batch: ``[B, N, *x.shape[1:]]``; ``fill`` as in
        :meth:`act`."""
        self.check_input(x)
        elems = self._element_batch(elems, "orbit_from_elements(elems)")
        fill = self.check_fill(fill, "orbit_from_elements(fill)")
        out = x.new_empty(x.shape[0], elems.shape[0], *x.shape[1:])
        # one device-to-host transfer for all elements; each copy is written in place
        ones = None if fill == 0.0 or self.is_exact else torch.ones_like(x[:, :1])
        for i, element in enumerate(elems.cpu()):
            out[:, i] = self._act_one(x, element)
            if ones is not None:  # the fill of act(): linear in the pixels, so exact
                out[:, i] += fill * (1.0 - self._act_one(ones, element))
        return out

    def _act_one(self, x: Tensor, element: Tensor) -> Tensor:
        """Apply one element (a CPU scalar / vector) to every sample; override for speed."""
        g = element.to(x.device).expand(x.shape[0], *self.element_shape)
        return self._act(x, g)

    # ------------------------------------------------------------------ helpers
    def _finite_sample(
        self,
        batch_size: int,
        generator: torch.Generator | None,
        device: torch.device | str | None,
    ) -> Tensor:
        assert self.order is not None
        return torch.randint(self.order, (batch_size,), generator=generator).to(device)

    def _act_grouped(self, x: Tensor, g: Tensor, apply_one) -> Tensor:
        """Apply a finite group elementwise by grouping the samples that share an element."""
        out = torch.empty_like(x)
        for element in torch.unique(g).tolist():
            mask = g == element
            out[mask] = apply_one(x[mask], element)
        return out

    def __eq__(self, other: object) -> bool:
        return type(self) is type(other) and repr(self) == repr(other)

    def __hash__(self) -> int:
        return hash(repr(self))


def _count(group: Group, name: str, value: int) -> int:
    """A non-negative integer argument, else ``TypeError`` / ``ValueError`` naming it."""
    if isinstance(value, bool):
        raise TypeError(f"{group!r}: {name} must be a non-negative integer, got {value!r}")
    try:
        value = operator.index(value)
    except TypeError as err:
        raise TypeError(
            f"{group!r}: {name} must be a non-negative integer, got {type(value).__name__}"
        ) from err
    if value < 0:
        raise ValueError(f"{group!r}: {name} must be a non-negative integer, got {value}")
    return value


def _examples(values: Tensor, limit: int = 4) -> str:
    """A few offending values for an error message."""
    flat = values.flatten()
    shown = ", ".join(f"{v:g}" for v in flat[:limit].tolist())
    return shown + (f", … ({flat.numel()} in all)" if flat.numel() > limit else "")


def require_floating(x: Tensor, what: str) -> None:
    """``TypeError`` unless ``x`` is floating point (bilinear resampling needs it)."""
    if not x.is_floating_point():
        raise TypeError(
            f"{what} resamples bilinearly and needs a floating-point tensor, got dtype "
            f"{x.dtype}; convert it first, e.g. x.float()"
        )


def _input_shape(group: Group, shape: object) -> tuple[int, ...]:
    """``shape`` as a tuple of positive ints, or ``ValueError`` naming what was received."""
    if isinstance(shape, Tensor | str) or not hasattr(shape, "__iter__"):
        raise TypeError(
            f"{group!r}.check_input_shape(shape): expected a tuple of ints such as (1, 28, 28), "
            f"got {shape!r}"
        )
    dims = tuple(shape)
    if not dims or any(isinstance(d, bool) or not isinstance(d, int) or d < 1 for d in dims):
        raise ValueError(
            f"{group!r}.check_input_shape(shape): expected positive ints such as (1, 28, 28), "
            f"got {shape!r}"
        )
    return dims


def check_image(group: Group, x: Tensor, square: bool) -> None:
    """Shared validation for groups that act on images ``[B, C, H, W]``: the shape, squareness
    if asked, and a floating-point dtype for groups that are not exact."""
    if not isinstance(x, Tensor):
        raise TypeError(f"{group!r} acts on tensors, got {type(x).__name__}")
    if x.ndim != 4:
        raise ValueError(
            f"{group!r} acts on image batches of shape [B, C, H, W]; got a tensor of shape "
            f"{tuple(x.shape)} ({x.ndim} dims)"
        )
    if square and x.shape[-1] != x.shape[-2]:
        raise ValueError(
            f"{group!r} needs square images (H == W) so that rotated images keep their shape; "
            f"got shape {tuple(x.shape)}"
        )
    if not group.is_exact:
        require_floating(x, repr(group))
