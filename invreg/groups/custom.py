"""Finite groups built from a user's own functions: audio time shifts, token permutations, ...

A transformation invreg does not ship becomes a :class:`~invreg.groups.Group` in one call, and
with it orbits, the invariance metrics and losses, :class:`~invreg.modules.InvarianceModule`,
the callbacks and :func:`~invreg.evaluation.evaluate_invariance`:

* :meth:`FiniteGroup.from_generator` — a cyclic group: element ``k`` is the generator applied
  ``k`` times (``g^k``), ``g^k · g^l = g^((k + l) mod n)``, ``(g^k)⁻¹ = g^(n − k)``; an
  optional closed form ``power(x, k)`` replaces the ``k`` repeated calls;
* :meth:`FiniteGroup.from_actions` (the same as ``FiniteGroup(actions, ...)``) — any finite
  group: element ``i`` applies ``actions[i]``, ``actions[0]`` is the identity; the
  composition table is derived from the actions or given.

Every function maps a batch ``[B, *input_shape]`` to a batch of the same shape, acting on each
sample independently. Elements are integers ``0 .. n − 1`` like those of the shipped finite
groups; :meth:`~invreg.groups.Group.act` with one element per sample applies each function to
the samples that share it.

The group axioms are checked at construction on a probe batch (``probe=``, or a seeded
standard-normal batch of ``input_shape`` samples: two, or more for a small shape so that the
probe has at least 256 entries, at most 64 samples). First each function on its own: it keeps
the shape, is deterministic (16 calls on the probe agree: a random augmentation is not a
group element) and leaves its input alone (no in-place change); then the identity, that each
function treats samples independently, that elements act differently, closure
(applying ``j`` then ``i`` equals some element ``i·j``), inverses, associativity of the table,
and for a generator its order (``g^n`` is the identity and no smaller power is). A failure
raises ``ValueError`` naming the element(s), what failed and the fix.

Two results count as equal when no entry differs by more than ``sqrt(eps)·max(1, max|probe|)``
(``eps`` of the probe's dtype: 3.5e-4 relative in float32, room for the rounding of any
arithmetic in the functions, far below the O(1) differences between distinct transformations
of a random probe); integer probes are compared exactly. :attr:`FiniteGroup.is_exact` is
``True`` when every law held bit for bit.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from invreg.config import try_config
from invreg.groups.base import Group

Action = Callable[[Tensor], Tensor]

#: the fewest samples in the random probe drawn from ``input_shape`` (two show whether a
#: function mixes the samples of a batch)
PROBE_SAMPLES = 2
#: the random probe has at least this many entries (up to ``MAX_PROBE_SAMPLES`` samples), so a
#: small ``input_shape`` cannot make two different transformations agree on it by chance (an
#: ``abs`` looks like the identity on a probe of 4 positive numbers, 1 seed in 16)
PROBE_ENTRIES = 256
MAX_PROBE_SAMPLES = 64
#: each function is called this many times on the probe: all results must agree. A random
#: augmentation (a draw per call) is not a group element; one with two equally likely outcomes
#: agrees on all calls with probability 2^-15
DETERMINISM_CALLS = 16


@dataclass(frozen=True)
class _Power:
    """Element ``k`` of a cyclic group: ``generator`` applied ``k`` times, or ``power(x, k)``."""

    generator: Action
    k: int
    power: Callable[[Tensor, int], Tensor] | None = None

    def __call__(self, x: Tensor) -> Tensor:
        if self.power is not None:
            return self.power(x, self.k)
        for _ in range(self.k):
            x = self.generator(x)
        return x


class FiniteGroup(Group):
    """A finite group acting through a list of functions, one per element.

    Build it with :meth:`from_generator` (cyclic) or :meth:`from_actions` (any finite group);
    ``FiniteGroup(actions, ...)`` is :meth:`from_actions`. The action is a left action:
    ``act(act(x, h), g) == act(x, compose(g, h))``, ``compose(g, h)`` being the element that
    applies ``h`` first, then ``g``.

    ``fill`` is accepted and ignored: the functions decide what enters the frame. Inputs must
    have the probe's per-sample shape (the axioms were checked there): ``check_input`` raises
    ``ValueError`` otherwise, and accepts any dtype the functions accept.

    Equality: two groups are equal when they have the same name, the same functions (the same
    Python objects), the same table and the same input shape.

    A group built from functions has no plain description, so it is passed as a Python object
    (``InvarianceModule(backbone, group=my_group)``), not by name in a YAML config; a
    checkpoint leaves it out, and ``load_from_checkpoint(path, group=my_group)`` gives it back.
    Pickling it (DataLoader workers started with ``spawn``) needs module-level functions, not
    lambdas.

    >>> shift = FiniteGroup.from_generator(
    ...     lambda x: torch.roll(x, 2, dims=-1), order=4, name="shift", input_shape=(1, 8))
    >>> shift
    FiniteGroup(name='shift', order=4, input_shape=(1, 8))
    >>> shift.compose(3, 2).item(), shift.inverse(1).item(), shift.is_exact
    (1, 3, True)
    >>> shift.orbit(torch.arange(8.0).reshape(1, 1, 8))[0, :, 0, 0].tolist()
    [0.0, 6.0, 4.0, 2.0]
    """

    def __init__(
        self,
        actions: Sequence[Action],
        compose_table: Sequence[Sequence[int]] | Tensor | None = None,
        *,
        name: str = "custom",
        probe: Tensor | None = None,
        input_shape: Sequence[int] | None = None,
        seed: int = 0,
    ) -> None:
        self._setup(actions, name, probe, input_shape, seed)
        images = self._images()
        if compose_table is None:
            table = self._derived_table(images)
        else:
            table = self._given_table(compose_table, images)
        self._finish(table)

    @classmethod
    def from_actions(
        cls,
        actions: Sequence[Action],
        compose_table: Sequence[Sequence[int]] | Tensor | None = None,
        *,
        name: str = "custom",
        probe: Tensor | None = None,
        input_shape: Sequence[int] | None = None,
        seed: int = 0,
    ) -> FiniteGroup:
        """The finite group whose element ``i`` applies ``actions[i]``.

        Args:
            actions: functions ``[B, *input_shape] → [B, *input_shape]``, one per element;
                ``actions[0]`` must be the identity. Every product must be in the list.
            compose_table: ``[n, n]`` integers, ``compose_table[i][j]`` the element that
                applies ``j`` first, then ``i``. ``None``: derived by applying the actions to
                the probe and matching the results (``n²`` calls); given: checked the same way.
            name: shown in ``repr`` and error messages.
            probe: a batch ``[B, *input_shape]`` the axioms are checked on (``B >= 2`` also
                checks that the functions treat samples independently).
            input_shape: one sample's shape; the probe is then seeded standard-normal
                samples (two, or enough for 256 entries, at most 64). Pass ``probe`` or
                ``input_shape``.
            seed: of that random probe.

        Raises:
            TypeError: an action is not callable, or the probe is not a tensor.
            ValueError: a group axiom fails on the probe (the message names the elements).
        """
        return cls(
            actions, compose_table, name=name, probe=probe, input_shape=input_shape, seed=seed
        )

    @classmethod
    def from_generator(
        cls,
        generator: Action,
        order: int,
        *,
        power: Callable[[Tensor, int], Tensor] | None = None,
        name: str | None = None,
        probe: Tensor | None = None,
        input_shape: Sequence[int] | None = None,
        seed: int = 0,
    ) -> FiniteGroup:
        """The cyclic group ``{g^0, g^1, ..., g^(order−1)}`` generated by one function.

        Element ``k`` applies ``generator`` ``k`` times; ``compose(k, l) = (k + l) mod order``
        and ``inverse(k) = (order − k) mod order``. Checked on the probe: ``g^order`` is the
        identity and no power ``g^k``, ``0 < k < order``, is (so ``order`` is the generator's
        order), and ``power(x, k) == g^k(x)`` for every ``k`` when ``power`` is given.

        Args:
            generator: ``[B, *input_shape] → [B, *input_shape]``, invertible, per sample.
            order: the number of elements ``n`` (``g^n`` is the identity).
            power: optional closed form ``power(x, k) = g^k(x)``: one call per element instead
                of ``k`` (e.g. ``torch.roll(x, k * step, -1)``).
            name: shown in ``repr``; default: the generator's ``__name__``.
            probe, input_shape, seed: as in :meth:`from_actions`.
        """
        if isinstance(order, bool) or not isinstance(order, int) or order < 1:
            raise ValueError(f"FiniteGroup.from_generator(order): expected a positive integer, "
                             f"got {order!r}")
        if not callable(generator):
            raise TypeError(f"FiniteGroup.from_generator(generator): expected a function, got "
                            f"{type(generator).__name__}")
        if power is not None and not callable(power):
            raise TypeError(f"FiniteGroup.from_generator(power): expected a function (x, k) or "
                            f"None, got {type(power).__name__}")
        if name is None:
            name = getattr(generator, "__name__", "<lambda>")
            name = "cyclic" if name == "<lambda>" else name
        group = cls.__new__(cls)
        actions = [_Power(generator, k, power) for k in range(order)]
        group._setup(actions, name, probe, input_shape, seed)
        group._check_cyclic(generator, power)
        k = torch.arange(order)
        group._finish((k[:, None] + k[None, :]) % order)
        return group

    # ------------------------------------------------------------------ construction
    def _setup(
        self,
        actions: Sequence[Action],
        name: str,
        probe: Tensor | None,
        input_shape: Sequence[int] | None,
        seed: int,
    ) -> None:
        if not isinstance(name, str) or not name:
            raise ValueError(f"FiniteGroup(name): expected a non-empty string, got {name!r}")
        self.name = name
        if isinstance(actions, str | Tensor) or not isinstance(actions, Sequence) or not actions:
            raise ValueError(f"{self._where('actions')}: expected a non-empty list of functions, "
                             f"got {actions!r}")
        for i, action in enumerate(actions):
            if not callable(action):
                raise TypeError(f"{self._where(f'actions[{i}]')}: expected a function, got "
                                f"{type(action).__name__}")
        self._actions = tuple(actions)
        self.order = len(self._actions)
        self._probe = self._make_probe(probe, input_shape, seed)
        self.input_shape = tuple(self._probe.shape[1:])
        if self._probe.is_floating_point():
            scale = max(1.0, float(self._probe.abs().max()))
            self._tolerance = math.sqrt(torch.finfo(self._probe.dtype).eps) * scale
        else:
            self._tolerance = 0.0
        self._exact = True

    def _make_probe(self, probe: Tensor | None, input_shape: Sequence[int] | None,
                    seed: int) -> Tensor:
        if probe is not None:
            if not isinstance(probe, Tensor):
                raise TypeError(f"{self._where('probe')}: expected a tensor [B, *input_shape], "
                                f"got {type(probe).__name__}")
            if probe.ndim < 2 or probe.shape[0] < 1:
                raise ValueError(f"{self._where('probe')}: expected a batch [B, *input_shape] "
                                 f"with B >= 1, got shape {tuple(probe.shape)}")
            if input_shape is not None and tuple(input_shape) != tuple(probe.shape[1:]):
                raise ValueError(f"{self._where('input_shape')}: {tuple(input_shape)} differs "
                                 f"from the probe's sample shape {tuple(probe.shape[1:])}; "
                                 f"pass one of them")
            if probe.is_floating_point() and not torch.isfinite(probe).all():
                raise ValueError(f"{self._where('probe')}: expected finite values, got NaN or "
                                 f"Inf")
            return probe.detach()  # on its device: the functions may need it there
        if input_shape is None:
            raise ValueError(f"{self._where('probe')}: pass probe= (a batch [B, *input_shape]) "
                             f"or input_shape= so the group axioms can be checked")
        shape = tuple(input_shape) if isinstance(input_shape, Sequence) else ()
        if not shape or any(isinstance(d, bool) or not isinstance(d, int) or d < 1
                            for d in shape):
            raise ValueError(f"{self._where('input_shape')}: expected positive ints such as "
                             f"(1, 16000), got {input_shape!r}")
        generator = torch.Generator().manual_seed(seed)
        samples = max(PROBE_SAMPLES, -(-PROBE_ENTRIES // math.prod(shape)))
        return torch.randn(min(samples, MAX_PROBE_SAMPLES), *shape, generator=generator)

    def _apply(self, x: Tensor, k: int) -> Tensor:
        """``actions[k](x)``, checked to be a tensor of ``x``'s shape."""
        out = self._actions[k](x)
        if not isinstance(out, Tensor) or out.shape != x.shape or out.dtype != x.dtype:
            got = (f"shape {tuple(out.shape)}, {out.dtype}" if isinstance(out, Tensor)
                   else type(out).__name__)
            raise ValueError(f"{self!r}: element {k} returned {got} for an input of shape "
                             f"{tuple(x.shape)}, {x.dtype}; each function must keep the shape "
                             f"and dtype")
        return out

    def _check_function(self, function: Action, label: str) -> Tensor:
        """``function(probe)`` after checking that it is deterministic and leaves its input
        alone: the first thing checked, so a random or in-place function is named as such
        instead of failing a later law by chance."""
        probe = self._probe
        before = probe.clone()
        results = []
        for _ in range(DETERMINISM_CALLS):
            out = function(probe)
            if not isinstance(out, Tensor) or out.shape != probe.shape:
                got = tuple(out.shape) if isinstance(out, Tensor) else type(out).__name__
                raise ValueError(f"{self!r}: {label} returned {got} for an input of shape "
                                 f"{tuple(probe.shape)}; each function must keep the shape")
            if not torch.equal(probe, before):
                raise ValueError(f"{self!r}: {label} changed its input in place; return a new "
                                 f"tensor (e.g. torch.flip(x, ...) or -x, not x.neg_())")
            results.append(out)
        spread = max(self._difference(out, results[0]) for out in results[1:]) if len(
            results) > 1 else 0.0
        if spread > self._tolerance:
            raise ValueError(f"{self!r}: {label} is not deterministic: {DETERMINISM_CALLS} "
                             f"calls on the same probe gave different results (max difference "
                             f"{spread:.3g}). A group element is one fixed transformation; a "
                             f"random augmentation is not: pass each transformation it can "
                             f"draw as its own element (the group samples among them)")
        return results[0]

    def _difference(self, a: Tensor, b: Tensor) -> float:
        """Largest entry-wise difference (``inf`` for NaN)."""
        if a.dtype != b.dtype:
            return math.inf
        if torch.equal(a, b):
            return 0.0
        if not a.is_floating_point():
            return float((a.long() - b.long()).abs().max())
        d = float((a.double() - b.double()).abs().max())
        return math.inf if math.isnan(d) else d

    def _same(self, a: Tensor, b: Tensor) -> bool:
        d = self._difference(a, b)
        if 0 < d <= self._tolerance:  # a law that held only up to rounding
            self._exact = False
        return d <= self._tolerance

    def _images(self) -> list[Tensor]:
        """``actions[i](probe)`` for every ``i``, after the per-element checks: shape,
        per-sample action, identity first, distinct elements."""
        probe = self._probe
        images = [self._apply(probe, k) for k in range(self.order)]  # shape and dtype first
        for k in range(self.order):
            self._check_function(self._actions[k], f"element {k}")
        if not self._same(images[0], probe):
            raise ValueError(f"{self!r}: element 0 must be the identity, but it changes the "
                             f"probe (max difference {self._difference(images[0], probe):.3g}); "
                             f"put the identity first")
        if probe.shape[0] >= 2:
            for k in range(self.order):
                if not self._same(self._apply(probe[:1], k), images[k][:1]):
                    raise ValueError(f"{self!r}: element {k} mixes the samples of a batch (its "
                                     f"result on one sample depends on the others); act on "
                                     f"each sample x[i] independently")
        for i in range(self.order):
            for j in range(i):
                if self._same(images[i], images[j]):
                    raise ValueError(f"{self!r}: elements {j} and {i} act identically on the "
                                     f"probe; remove the duplicate (or pass a probe that tells "
                                     f"them apart)")
        return images

    def _match(self, y: Tensor, images: list[Tensor]) -> int | None:
        """The element whose image equals ``y``, or ``None``."""
        differences = [self._difference(y, image) for image in images]
        best = min(range(len(images)), key=differences.__getitem__)
        return best if self._same(y, images[best]) else None

    def _derived_table(self, images: list[Tensor]) -> Tensor:
        n = self.order
        table = torch.empty(n, n, dtype=torch.long)
        for i in range(n):
            for j in range(n):
                k = self._match(self._apply(images[j], i), images)
                if k is None:
                    raise ValueError(f"{self!r} is not closed: element {j} followed by element "
                                     f"{i} is none of the {n} elements; add the missing "
                                     f"transformation to actions")
                table[i, j] = k
        return table

    def _given_table(self, compose_table: Sequence[Sequence[int]] | Tensor,
                     images: list[Tensor]) -> Tensor:
        n = self.order
        where = self._where("compose_table")
        try:
            table = torch.as_tensor(compose_table)
        except (TypeError, ValueError, RuntimeError) as err:
            raise TypeError(f"{where}: expected [{n}, {n}] integers, got "
                            f"{type(compose_table).__name__}") from err
        if table.shape != (n, n) or table.is_floating_point() or table.dtype == torch.bool:
            raise ValueError(f"{where}: expected [{n}, {n}] integers (one row and column per "
                             f"action), got shape {tuple(table.shape)} and dtype {table.dtype}")
        table = table.long().cpu()
        if ((table < 0) | (table >= n)).any():
            raise ValueError(f"{where}: expected entries in [0, {n}), got "
                             f"{sorted(set(table[(table < 0) | (table >= n)].tolist()))}")
        for i in range(n):
            for j in range(n):
                k = int(table[i, j])
                if not self._same(self._apply(images[j], i), images[k]):
                    raise ValueError(f"{where}[{i}][{j}] = {k}, but element {j} followed by "
                                     f"element {i} differs from element {k} on the probe; fix "
                                     f"the table (or pass compose_table=None to derive it)")
        return table

    def _check_cyclic(self, generator: Action, power: Callable[[Tensor, int], Tensor] | None
                      ) -> None:
        """``g^n`` is the identity, no smaller power is, and ``power`` agrees with ``g^k``."""
        probe, n = self._probe, self.order
        powers = [probe, self._check_function(generator, "element 1 (the generator)")]
        for _ in range(n - 1):
            step = generator(powers[-1])
            if not isinstance(step, Tensor) or step.shape != probe.shape:
                got = tuple(step.shape) if isinstance(step, Tensor) else type(step).__name__
                raise ValueError(f"{self!r}: the generator returned {got} for an input of shape "
                                 f"{tuple(probe.shape)}; it must keep the shape")
            powers.append(step)
        for k in range(1, n):
            if self._same(powers[k], probe):
                raise ValueError(f"{self!r}: element {k} (the generator applied {k} times) is "
                                 f"already the identity, so the generator's order is {k}, not "
                                 f"{n}; pass order={k}")
        if not self._same(powers[n], probe):
            raise ValueError(
                f"{self!r}: element 1 (the generator) applied order={n} times does not give the "
                f"probe back (max difference {self._difference(powers[n], probe):.3g}): the "
                f"generator is not invertible or its order is not {n}; pass the generator's "
                f"order (g^order = identity)"
            )
        if power is not None:
            images = self._images()  # identity, per-sample action, distinct elements
            for k in range(n):
                if not self._same(images[k], powers[k]):
                    raise ValueError(f"{self!r}: power(x, {k}) differs from the generator "
                                     f"applied {k} times (element {k}); fix power")
        elif probe.shape[0] >= 2 and not self._same(generator(probe[:1]), powers[1][:1]):
            raise ValueError(f"{self!r}: element 1 (the generator) mixes the samples of a batch "
                             f"(its result on one sample depends on the others); act on each "
                             f"sample x[i] independently")

    def _finish(self, table: Tensor) -> None:
        """Check the table's group axioms and store it with the inverses."""
        n = self.order
        where = f"{self!r}"
        identity = torch.arange(n)
        if not (torch.equal(table[0], identity) and torch.equal(table[:, 0], identity)):
            raise ValueError(f"{where}: element 0 must be the identity of the composition "
                             f"table (row 0 and column 0 equal 0, 1, ..., {n - 1})")
        inverses = torch.empty(n, dtype=torch.long)
        for i in range(n):
            right = (table[i] == 0).nonzero().flatten()
            if right.numel() == 0 or int(table[int(right[0]), i]) != 0:
                raise ValueError(f"{where}: element {i} has no inverse (no element j with "
                                 f"i·j = j·i = identity); is its action invertible? Add its "
                                 f"inverse to actions")
            inverses[i] = right[0]
        # (i·j)·k == i·(j·k) for all i, j, k at once: [n, n, n] indices
        left = table[table]  # left[i, j, k] = table[table[i, j], k]
        right = table[:, table]  # right[i, j, k] = table[i, table[j, k]]
        bad = (left != right).nonzero()
        if bad.numel():
            i, j, k = bad[0].tolist()
            raise ValueError(f"{where}: composition is not associative: ({i}·{j})·{k} = "
                             f"{int(left[i, j, k])} but {i}·({j}·{k}) = {int(right[i, j, k])}; "
                             f"fix the actions or compose_table")
        self._table = table
        self._inverses = inverses

    def _where(self, argument: str) -> str:
        name = self.__dict__.get("name")
        return f"FiniteGroup({name!r}).{argument}" if name else f"FiniteGroup({argument})"

    # ------------------------------------------------------------------ Group interface
    @property
    def compose_table(self) -> Tensor:
        """``[n, n]`` long tensor: entry ``[i, j]`` is ``compose(i, j)`` (``j`` first)."""
        return self._table.clone()

    @property
    def is_exact(self) -> bool:
        """Whether every group law held bit for bit on the probe (e.g. ``roll``, permutations)."""
        return self._exact

    def _inverse(self, g: Tensor) -> Tensor:
        return self._inverses.to(g.device)[g]

    def _compose(self, g: Tensor, h: Tensor) -> Tensor:
        return self._table.to(g.device)[g, h]

    def _sample(self, batch_size, generator, device) -> Tensor:
        return self._finite_sample(batch_size, generator, device)

    def check_input(self, x: Tensor) -> None:
        """``TypeError`` unless ``x`` is a tensor; ``ValueError`` unless its samples have the
        probe's shape (the shape the axioms were checked on). Any dtype is accepted."""
        if not isinstance(x, Tensor):
            raise TypeError(f"{self!r} acts on tensors, got {type(x).__name__}")
        if tuple(x.shape[1:]) != self.input_shape or x.ndim != len(self.input_shape) + 1:
            batch = "".join(f", {d}" for d in self.input_shape)
            raise ValueError(f"{self!r} was checked on inputs [B{batch}]; got shape "
                             f"{tuple(x.shape)}. Build the group with a probe (or input_shape) "
                             f"of the inputs' shape")

    def _act(self, x: Tensor, g: Tensor) -> Tensor:
        return self._act_grouped(x, g, self._apply)

    def _act_one(self, x: Tensor, element: Tensor) -> Tensor:
        return self._apply(x, int(element))

    def act(self, x: Tensor, g: Tensor | int | float, fill: float = 0.0) -> Tensor:
        """:meth:`Group.act`; ``fill`` is validated and ignored (the functions decide what
        enters the frame)."""
        self.check_fill(fill, "act(fill)")
        return super().act(x, g, fill=0.0)

    def orbit_from_elements(self, x: Tensor, elems: Tensor, fill: float = 0.0) -> Tensor:
        """:meth:`Group.orbit_from_elements`; ``fill`` is validated and ignored."""
        self.check_fill(fill, "orbit_from_elements(fill)")
        return super().orbit_from_elements(x, elems, fill=0.0)

    def _key(self) -> tuple:
        return (self.name, self._actions, tuple(self._table.flatten().tolist()), self.input_shape)

    def _described(self) -> dict[str, Any] | None:
        """The plain constructor arguments of a subclass that builds its functions itself
        (``class Rolls(FiniteGroup)`` with ``__init__(self, size=8, step=2)``), else ``None``."""
        if type(self) is FiniteGroup or "_init_args" not in self.__dict__:
            return None
        return try_config(self.init_args)

    def __eq__(self, other: object) -> bool:
        if type(self) is not type(other):
            return False
        described = self._described()
        if described is not None:  # same class, same arguments: the same group, new closures
            return described == other._described()  # type: ignore[attr-defined]
        return self._key() == other._key()  # type: ignore[attr-defined]

    def __hash__(self) -> int:
        return hash((self.name, self.order, self.input_shape))

    def __repr__(self) -> str:
        described = self._described() if "order" in self.__dict__ else None
        if described is not None:
            arguments = ", ".join(f"{k}={v!r}" for k, v in described.items())
            return f"{type(self).__name__}({arguments})"
        name = self.__dict__.get("name", "custom")
        order = self.__dict__.get("order")
        shape = self.__dict__.get("input_shape")
        return f"FiniteGroup(name={name!r}, order={order}, input_shape={shape})"
