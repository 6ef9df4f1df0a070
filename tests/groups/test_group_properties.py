"""Property-based tests over every registered group (plus products and the affine groups).

Every input is either answered correctly or rejected with ``ValueError`` / ``TypeError``.
Exact groups must satisfy the group laws bit for bit on any dtype; resampling groups must
return the float64 result rounded to the input dtype, up to float32 computation error.
Tolerances: ``eps(dtype) / 2`` relative for one rounding to ``dtype``, plus
``8·eps(float32)·size·max|x|`` for the float32 sampling grid (see :func:`tolerance`).
"""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from invreg.groups import (
    ContinuousRotations,
    CyclicShifts,
    Dihedral,
    Flips,
    Group,
    Product,
    Rotations,
    Scalings,
    Translations,
    get_group,
)
from invreg.groups.registry import _EXAMPLES

EXTRA = [
    Rotations(3),
    Rotations(1),
    Dihedral(2),
    Dihedral(3),
    CyclicShifts(4, shift=3, dim=-2),
    Product(Flips("vertical"), CyclicShifts(4)),
    Product(ContinuousRotations(45), Rotations(2)),
    Product(Flips(), Scalings()),
    Translations(),
    Scalings(),
]
GROUPS = list({repr(g): g for g in [get_group(name) for name in _EXAMPLES] + EXTRA}.values())
EXACT = [g for g in GROUPS if g.is_exact]
FINITE = [g for g in GROUPS if g.is_finite]
FLOATS = [torch.float32, torch.float64, torch.bfloat16, torch.float16]
INTEGERS = [torch.uint8, torch.int32, torch.int64, torch.bool]
SHAPES = [(12, 12), (12, 24), (24, 12), (6, 6)]
# enough examples to cover element and shape corner cases; all properties run in a few seconds
FEW = settings(max_examples=12, deadline=None)


def accepts(group: Group, shape: tuple[int, int]) -> bool:
    try:
        group.check_input(torch.zeros(1, 1, *shape))
    except ValueError:
        return False
    return True


@st.composite
def images(draw, group: Group, dtypes=None):
    """A batch ``[B, C, H, W]`` (``B`` may be 0) of a size and dtype ``group`` acts on."""
    dtypes = dtypes or (FLOATS + INTEGERS if group.is_exact else FLOATS)
    h, w = draw(st.sampled_from([s for s in SHAPES if accepts(group, s)]))
    batch, channels = draw(st.integers(0, 3)), draw(st.integers(1, 2))
    dtype = draw(st.sampled_from(dtypes))
    gen = torch.Generator().manual_seed(draw(st.integers(0, 2**16)))
    x = torch.randn(batch, channels, h, w, generator=gen, dtype=torch.float64)
    if dtype.is_floating_point:
        return x.to(dtype)
    return (x * 40 + 60).clamp(0, 120).to(dtype) if dtype != torch.bool else x > 0


@st.composite
def valid_elements(draw, group: Group, batch: int):
    """``batch`` elements: the group's samples, and for continuous groups also scaled ones."""
    gen = torch.Generator().manual_seed(draw(st.integers(0, 2**16)))
    g = group.sample(batch, generator=gen)
    if not group.is_finite and not isinstance(group, Product):
        g = g * draw(st.sampled_from([1.0, 1e-3, 7.0]))
    return g


@st.composite
def raw_elements(draw, group: Group, batch: int):
    """Arbitrary element candidates: right and wrong dtypes, shapes and values."""
    single = group.element_shape
    shape = draw(st.sampled_from([(batch, *single), single, (batch + 1, *single),
                                  (batch, *single, 1), (batch, 3)]))
    count = 1
    for d in shape:
        count *= d
    kind = draw(st.sampled_from(["int", "float", "whole", "bool"]))
    if kind == "int":
        dtype = draw(st.sampled_from([torch.int64, torch.int32, torch.uint8]))
        low = 0 if dtype == torch.uint8 else -3
        values = draw(st.lists(st.integers(low, (group.order or 8) + 3), min_size=count,
                               max_size=count))
    elif kind == "bool":
        dtype, values = torch.bool, draw(st.lists(st.booleans(), min_size=count, max_size=count))
    else:
        dtype = draw(st.sampled_from(FLOATS))
        values = draw(st.lists(
            st.integers(-3, 10).map(float) if kind == "whole"
            else st.floats(-1e6, 1e6) | st.sampled_from([float("nan"), float("inf"), -0.0, 0.5]),
            min_size=count, max_size=count,
        ))
    return torch.tensor(values, dtype=torch.float64 if dtype.is_floating_point else torch.int64
                        ).to(dtype).reshape(shape)


def is_valid(group: Group, g: torch.Tensor, batch: int | None) -> bool:
    """Independent statement of what the group must accept: for :meth:`Group.act` on a batch
    of ``batch`` samples, or any number of elements (``batch=None``, e.g. :meth:`inverse`)."""
    single = group.element_shape
    batched = len(g.shape) == len(single) + 1 and tuple(g.shape[1:]) == single
    if batched and batch is not None:
        batched = g.shape[0] == batch
    if (tuple(g.shape) != single and not batched) or g.dtype == torch.bool:
        return False
    if group.is_finite:
        return not g.is_floating_point() and bool(((g >= 0) & (g < group.order)).all())
    values = g.to(torch.promote_types(g.dtype, torch.float32))
    if not torch.isfinite(values).all():
        return False
    if isinstance(group, Product):
        for i, factor in enumerate((group.first, group.second)):
            part = values[..., i]
            if factor.is_finite and not bool(
                ((part == part.round()) & (part >= 0) & (part < factor.order)).all()
            ):
                return False
    return True


def tolerance(x: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """Error bound of a resampled ``x`` against the float64 ``reference``.

    One rounding to ``x.dtype`` (``eps / 2`` relative), plus the float32 grid: a sampling
    coordinate off by a few float32 ulps of the image size (``4·eps32·size`` pixels) moves a
    bilinear value by at most that times the largest step between neighbours (``2·max|x|``).
    """
    if x.numel() == 0:
        return torch.zeros_like(reference, dtype=torch.float64)
    size = max(x.shape[-2:])
    compute = 8 * torch.finfo(torch.float32).eps * size * x.double().abs().max()
    return torch.finfo(x.dtype).eps / 2 * reference.double().abs() + compute


def ids(group):
    return repr(group)


def test_every_registry_example_is_covered():
    assert {repr(get_group(name)) for name in _EXAMPLES} <= {repr(g) for g in GROUPS}


@pytest.mark.parametrize("group", GROUPS, ids=ids)
@FEW
@given(data=st.data())
def test_act_answers_correctly_or_rejects(group, data):
    x = data.draw(images(group, dtypes=[torch.float32]))
    g = data.draw(raw_elements(group, x.shape[0]))
    valid = is_valid(group, g, x.shape[0])
    try:
        out = group.act(x, g)
    except (ValueError, TypeError):
        assert not valid, f"valid elements {g} rejected"
        return
    assert valid, f"invalid elements {g} accepted"
    assert out.shape == x.shape and out.dtype == x.dtype
    # the same elements one sample at a time through the orbit path
    g = g.expand(x.shape[0], *group.element_shape)
    for i in range(x.shape[0]):
        one = group.orbit_from_elements(x[i : i + 1], g[i : i + 1])[0, 0]
        assert torch.allclose(out[i], one, rtol=0.0, atol=float(tolerance(x, x).max()))


@pytest.mark.parametrize("group", GROUPS, ids=ids)
@FEW
@given(data=st.data())
def test_inverse_and_compose_answer_correctly_or_reject(group, data):
    batch = data.draw(st.integers(0, 3))
    g = data.draw(raw_elements(group, batch))
    valid = is_valid(group, g, None)
    try:
        inverse = group.inverse(g)
    except (ValueError, TypeError):
        assert not valid, f"valid elements {g} rejected"
        return
    assert valid, f"invalid elements {g} accepted"
    assert inverse.shape == g.shape
    identity = group.identity(1)[0].expand_as(inverse)
    assert torch.equal(group.compose(g, inverse), identity)
    assert torch.equal(group.compose(inverse, g), identity)


@pytest.mark.parametrize("group", GROUPS, ids=ids)
@FEW
@given(data=st.data())
def test_group_axioms_on_elements(group, data):
    batch = data.draw(st.integers(0, 4))
    g, h, k = (data.draw(valid_elements(group, batch)) for _ in range(3))
    e = group.identity(batch)
    assert torch.equal(group.compose(e, g), g) and torch.equal(group.compose(g, e), g)
    assert torch.equal(group.compose(g, group.inverse(g)), e)
    assert torch.equal(group.inverse(group.inverse(g)), g)
    left, right = group.compose(group.compose(g, h), k), group.compose(g, group.compose(h, k))
    if group.is_finite:
        assert torch.equal(left, right)
        assert bool(((left >= 0) & (left < group.order)).all())
    else:
        # float addition reassociated: a few ulps of the operands' magnitude
        size = g.abs() + h.abs() + k.abs()
        assert (left - right).abs().le(2 * torch.finfo(g.dtype).eps * size).all()


@pytest.mark.parametrize("group", EXACT, ids=ids)
@FEW
@given(data=st.data())
def test_exact_groups_obey_the_action_laws_bit_for_bit(group, data):
    x = data.draw(images(group))
    g, h = (data.draw(valid_elements(group, x.shape[0])) for _ in range(2))
    assert torch.equal(group.act(x, group.identity(x.shape[0])), x)
    assert torch.equal(group.act(group.act(x, h), g), group.act(x, group.compose(g, h)))
    assert torch.equal(group.act(group.act(x, g), group.inverse(g)), x)
    out = group.act(x, g)
    assert out.dtype == x.dtype and out.shape == x.shape


@pytest.mark.parametrize("group", GROUPS, ids=ids)
@FEW
@given(data=st.data())
def test_orbit_shape_dtype_and_identity_first(group, data):
    x = data.draw(images(group))
    num_samples = None if group.is_finite else data.draw(st.integers(2, 4))
    gen = torch.Generator().manual_seed(data.draw(st.integers(0, 2**16)))
    orbit = group.orbit(x, num_samples=num_samples, generator=gen)
    n = group.order or num_samples
    assert orbit.shape == (x.shape[0], n, *x.shape[1:]) and orbit.dtype == x.dtype
    if group.is_exact or isinstance(group, Rotations | Dihedral | ContinuousRotations):
        assert torch.equal(orbit[:, 0], x)  # the identity takes the exact path
    else:
        assert (orbit[:, 0].double() - x.double()).abs().le(tolerance(x, x)).all()
    if x.dtype.is_floating_point:
        assert torch.isfinite(orbit).all()
    if group.is_finite:
        for j in range(n):
            assert torch.equal(orbit[:, j], group.act(x, j))


@pytest.mark.parametrize("group", [g for g in GROUPS if not g.is_exact], ids=ids)
@FEW
@given(data=st.data())
def test_resampling_is_the_float64_result_rounded_to_the_input_dtype(group, data):
    x = data.draw(images(group))
    g = data.draw(valid_elements(group, x.shape[0]))
    out = group.act(x, g)
    assert out.dtype == x.dtype
    reference = group.act(x.double(), g)
    assert (out.double() - reference).abs().le(tolerance(x, reference)).all()
    integer = data.draw(st.sampled_from(INTEGERS))
    with pytest.raises(TypeError, match="float"):
        group.act(x.to(integer), g)
