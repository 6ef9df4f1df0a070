"""Property-based tests of the output-level functional metrics (LI, DI, consistency, accuracy).

Hypothesis draws shapes (batch 0 included), dtypes, magnitudes and special cases. Every input
must be either answered correctly — equal to a float64 reference written out plainly below —
or rejected with ``ValueError`` / ``TypeError``. Policy checked here: NaN or Inf anywhere in
an orbit is rejected (``ValueError``), never propagated; the mean of an empty batch is
rejected, its sum (0) and per-pair values (empty) are answered.

Tolerances: the inputs are upcast exactly (float16 / bfloat16 / float32 → float32, float64
stays), so only the working precision's rounding separates result and reference. For the
nonnegative LI terms that is the summation bound ``(number of terms + a few)·eps`` relative;
for KL the log-softmax error ``eps·(2·max|x| + ln C + 3)`` per entry, weighted by the spread of
``log p − log q``. Examples are derandomised (the same every run): never flaky.
"""

import math

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from invreg.functional import (
    logit_invariance,
    orbit_accuracy,
    orbit_consistency,
    predictive_kl_invariance,
)

DTYPES = [torch.float16, torch.bfloat16, torch.float32, torch.float64]
SETTINGS = settings(
    max_examples=150,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)


@st.composite
def orbits(draw):
    """``[B, N, C]`` logits of a drawn dtype: B in 0..5, N in 1..5, C in 1..6, magnitudes from
    1e-3 to 1e5 (beyond float16's range: Inf after rounding), optionally invariant (all orbit
    elements equal) and optionally with one NaN / Inf entry."""
    batch, n, classes = draw(st.integers(0, 5)), draw(st.integers(1, 5)), draw(st.integers(1, 6))
    dtype = draw(st.sampled_from(DTYPES))
    magnitude = draw(st.sampled_from([1e-3, 1.0, 30.0, 1e3, 1e5]))
    gen = torch.Generator().manual_seed(draw(st.integers(0, 2**31 - 1)))
    values = torch.randn(batch, n, classes, generator=gen, dtype=torch.float64) * magnitude
    if draw(st.booleans()):
        values = values[:, :1].expand(batch, n, classes).clone()
    if batch and draw(st.integers(0, 5)) == 0:
        special = draw(st.sampled_from([math.nan, math.inf, -math.inf]))
        index = tuple(draw(st.integers(0, s - 1)) for s in values.shape)
        values[index] = special
    return values.to(dtype)


def eps_of(orbit):
    """Machine epsilon of the working precision (at least float32)."""
    return torch.finfo(torch.promote_types(orbit.dtype, torch.float32)).eps


def as_lists(orbit):
    return orbit.double().tolist()


def li_reference(orbit, normalized):
    """Per-pair LI ``[B][N − 1]`` in float64, plainly."""
    out = []
    for sample in as_lists(orbit):
        ref = sample[0]
        row = []
        for other in sample[1:]:
            num = sum((a - b) ** 2 for a, b in zip(ref, other, strict=True))
            row.append(num / max(sum(a * a for a in ref), 1e-12) if normalized else 0.5 * num)
        out.append(row)
    return out


def log_softmax(row):
    top = max(row)
    lse = top + math.log(sum(math.exp(v - top) for v in row))
    return [v - lse for v in row]


def kl_reference(orbit):
    """Per-pair KL ``[B][N − 1]`` in float64, and the spread ``max|log p − log q|``."""
    out, spread = [], 0.0
    for sample in as_lists(orbit):
        log_p = log_softmax(sample[0])
        row = []
        for other in sample[1:]:
            log_q = log_softmax(other)
            row.append(sum(math.exp(p) * (p - q) for p, q in zip(log_p, log_q, strict=True)))
            spread = max(spread, max(abs(p - q) for p, q in zip(log_p, log_q, strict=True)))
        out.append(row)
    return out, spread


def argmax(row):
    return row.index(max(row))  # the first maximal entry, as torch.argmax


def flat(rows):
    return [v for row in rows for v in row]


def check_reductions(fn, orbit, reference, tolerance):
    """``fn(orbit, reduction)`` against per-pair float64 values for all three reductions."""
    values = flat(reference)
    none = fn(orbit, reduction="none")
    assert none.shape == (len(reference), len(reference[0]) if reference else none.shape[1])
    for got, expected in zip(none.flatten().tolist(), values, strict=True):
        assert got == pytest.approx(expected, abs=tolerance(abs(expected), 1))
    total = sum(values)
    assert fn(orbit, reduction="sum").item() == pytest.approx(
        total, abs=tolerance(sum(abs(v) for v in values), len(values))
    )
    if not values:
        with pytest.raises(ValueError, match="empty batch"):
            fn(orbit)
        return
    mean = fn(orbit).item()
    scale = sum(abs(v) for v in values) / len(values)
    assert mean == pytest.approx(total / len(values), abs=tolerance(scale, len(values) + 1))


@SETTINGS
@given(orbits(), st.booleans())
def test_logit_invariance_is_right_or_rejected(orbit, normalized):
    def fn(o, reduction="mean"):
        return logit_invariance(o, normalized=normalized, reduction=reduction)

    if orbit.shape[1] < 2:
        with pytest.raises(ValueError, match="at least 2 orbit elements"):
            fn(orbit, "mean")
        return
    if not torch.isfinite(orbit).all():
        with pytest.raises(ValueError, match="NaN or Inf"):
            fn(orbit, "mean")
        return
    eps, classes = eps_of(orbit), orbit.shape[2]

    def tolerance(scale, terms):
        # nonnegative terms: C per pair (twice and a division when normalised), then `terms`
        return (2 * classes + terms + 6) * eps * scale

    check_reductions(fn, orbit, li_reference(orbit, normalized), tolerance)
    if torch.equal(orbit, orbit[:, :1].expand_as(orbit)):  # invariant: exactly 0
        assert (fn(orbit, "none") == 0).all()


@SETTINGS
@given(orbits())
def test_predictive_kl_is_right_or_rejected(orbit):
    if orbit.shape[1] < 2:
        with pytest.raises(ValueError, match="at least 2 orbit elements"):
            predictive_kl_invariance(orbit)
        return
    if not torch.isfinite(orbit).all():
        with pytest.raises(ValueError, match="NaN or Inf"):
            predictive_kl_invariance(orbit)
        return
    reference, spread = kl_reference(orbit)
    eps, classes = eps_of(orbit), orbit.shape[2]
    top = orbit.double().abs().max().item() if orbit.numel() else 0.0
    per_pair = 2 * eps * ((2 * top + math.log(classes) + 3) * (spread + 2) + classes * spread)

    def tolerance(scale, terms):
        return terms * per_pair + (terms + 2) * eps * scale

    check_reductions(predictive_kl_invariance, orbit, reference, tolerance)
    if torch.equal(orbit, orbit[:, :1].expand_as(orbit)):  # invariant: exactly 0
        assert (predictive_kl_invariance(orbit, reduction="none") == 0).all()


@SETTINGS
@given(orbits(), st.data())
def test_consistency_and_accuracy_are_exact_or_rejected(orbit, data):
    batch, classes = orbit.shape[0], orbit.shape[2]
    target = torch.tensor(
        data.draw(st.lists(st.integers(-1, classes), min_size=batch, max_size=batch)),
        dtype=torch.long,
    )
    if not torch.isfinite(orbit).all():
        for call in (lambda: orbit_consistency(orbit), lambda: orbit_accuracy(orbit, target)):
            with pytest.raises(ValueError, match="NaN or Inf"):
                call()
        return
    if ((target < 0) | (target >= classes)).any():
        with pytest.raises(ValueError, match=r"target: class indices must lie in \[0, "):
            orbit_accuracy(orbit, target)
        target = target.clamp(0, classes - 1)
    predictions = [[argmax(row) for row in sample] for sample in as_lists(orbit)]
    consistent = [all(p == sample[0] for p in sample) for sample in predictions]
    labels = target.tolist()
    correct = [all(p == t for p in row) for row, t in zip(predictions, labels, strict=True)]
    assert orbit_consistency(orbit, reduction="none").tolist() == consistent
    assert orbit_accuracy(orbit, target, reduction="none").tolist() == correct
    assert orbit_accuracy(orbit, target, reduction="sum").item() == sum(correct)
    if batch == 0:
        with pytest.raises(ValueError, match="empty batch"):
            orbit_consistency(orbit)
        return
    eps = torch.finfo(torch.float32).eps  # a count over B in float32: one rounding
    assert orbit_consistency(orbit).item() == pytest.approx(sum(consistent) / batch, rel=eps)
    if torch.equal(orbit, orbit[:, :1].expand_as(orbit)):  # invariant: consistent
        assert orbit_consistency(orbit).item() == 1.0


@SETTINGS
@given(st.sampled_from([torch.float32, torch.bfloat16, torch.bool, torch.int32]))
def test_targets_of_a_wrong_dtype_are_rejected(dtype):
    orbit = torch.zeros(2, 3, 4)
    target = torch.zeros(2, dtype=dtype)
    if dtype == torch.int32:
        assert orbit_accuracy(orbit, target).item() == 1.0  # any integer dtype is fine
        return
    with pytest.raises(TypeError, match=f"target: expected integer.*{dtype}"):
        orbit_accuracy(orbit, target)
