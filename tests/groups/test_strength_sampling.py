"""Strength-parameterised sampling (Group.sample_with_strength) and Group.act with fill."""

import math

import pytest
import torch

from invreg.groups import ContinuousRotations, Flips, Rotations, Scalings, Translations

N = 4000
# (group, half-width of its full sampling range, in the units of its elements)
CONTINUOUS = [
    (ContinuousRotations(180), 180.0),
    (ContinuousRotations(30), 30.0),
    (Translations(2.0), 2.0),
    (Scalings(1.5), math.log(1.5)),
]


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize("group, half_width", CONTINUOUS, ids=repr)
def test_full_strength_is_the_law_of_sample_bit_for_bit(group, half_width):
    full = group.sample_with_strength(torch.ones(N), gen())
    assert torch.equal(full, group.sample(N, generator=gen()))


@pytest.mark.parametrize("group, half_width", CONTINUOUS, ids=repr)
def test_strength_scales_the_range_and_zero_is_the_identity(group, half_width):
    strength = torch.tensor([0.0, 0.25, 1.0]).repeat_interleave(N)
    elements = group.sample_with_strength(strength, gen()).reshape(3, N, -1).abs()
    assert elements[0].max() == 0
    for row, s in ((1, 0.25), (2, 1.0)):
        # uniform draws: the largest of N lands in the top 1% of [0, s·w] unless
        # 0.99^N ≈ 4e-18; float32 rounding of the scaled draw stays within a few ulps
        bound = s * half_width * (1 + 4 * torch.finfo(torch.float32).eps)
        assert elements[row].max() <= bound
        assert elements[row].max() > 0.99 * s * half_width


def test_flip_probability_is_strength_times_probability():
    strength = torch.tensor([0.0, 0.5, 1.0]).repeat_interleave(N)
    for probability, expected in ((None, 0.5), (1.0, 1.0), (0.3, 0.3)):
        flips = Flips().sample_with_strength(strength, gen(), probability=probability)
        rate = flips.reshape(3, N).double().mean(dim=1)
        assert rate[0] == 0
        # binomial standard error ≤ 0.5/√N ≈ 0.008: 5 of them is a 1-in-a-million miss
        tolerance = 5 * 0.5 / math.sqrt(N)
        assert abs(rate[1] - 0.5 * expected) < tolerance
        assert abs(rate[2] - expected) < tolerance
        assert set(flips.unique().tolist()) <= {0, 1}


def test_flips_over_two_axes_draw_every_non_identity_element():
    group = Flips(("horizontal", "vertical"))  # order 4
    elements = group.sample_with_strength(torch.ones(N), gen())
    counts = torch.bincount(elements, minlength=4).double() / N
    # default probability 1 − 1/4: the uniform law over the four elements
    uniform = torch.full((4,), 0.25, dtype=torch.float64)
    assert torch.allclose(counts, uniform, rtol=0, atol=5 * 0.5 / math.sqrt(N))


def test_draws_come_from_the_generator_and_land_on_the_strengths_device():
    group = ContinuousRotations()
    strength = torch.full((5,), 0.5, dtype=torch.float64)
    first = group.sample_with_strength(strength, gen(3))
    assert torch.equal(first, group.sample_with_strength(strength, gen(3)))
    assert not torch.equal(first, group.sample_with_strength(strength, gen(4)))
    assert first.dtype == torch.float64 and first.device == strength.device


@pytest.mark.parametrize(
    "strength, error, match",
    [
        ([0.5, 0.5], TypeError, "floating-point tensor, got list"),
        (torch.tensor([1, 0]), TypeError, "floating-point tensor, got torch.int64"),
        (torch.rand(2, 2), ValueError, r"one strength per sample, shape \[B\], got shape \(2, 2\)"),
        (torch.tensor([0.5, 1.5, -0.1]), ValueError, r"values in \[0, 1\], got 1.5, -0.1"),
        (torch.tensor([float("nan")]), ValueError, r"values in \[0, 1\], got nan"),
    ],
)
def test_bad_strengths_are_named(strength, error, match):
    for group in (ContinuousRotations(), Flips()):
        with pytest.raises(error, match=match):
            group.sample_with_strength(strength)


def test_groups_without_strength_sampling_say_which_have_it():
    with pytest.raises(TypeError, match="no strength-parameterised sampling.*ContinuousRotations"):
        Rotations(4).sample_with_strength(torch.ones(3))


@pytest.mark.parametrize("probability", [0.0, 1.5, True])
def test_bad_flip_probability(probability):
    with pytest.raises(ValueError, match="probability"):
        Flips().sample_with_strength(torch.ones(3), probability=probability)


def test_act_fill_keeps_a_constant_background_constant():
    background = -0.42
    x = torch.full((3, 1, 9, 9), background, dtype=torch.float64)
    angles = torch.tensor([30.0, 45.0, -100.0], dtype=torch.float64)
    group = ContinuousRotations()
    zero_filled = group.act(x, angles)
    assert (zero_filled - background).abs().max() > 0.1  # zeros came into the corners
    # float64 interpolation of a constant: exact up to a few rounding steps
    filled = group.act(x, angles, fill=background)
    torch.testing.assert_close(filled, x, rtol=0, atol=8 * torch.finfo(torch.float64).eps)
    assert torch.equal(group.act(x, angles, fill=0.0), zero_filled)
    flips = Flips()
    assert torch.equal(flips.act(x, torch.tensor([1, 0, 1]), fill=3.0),
                       flips.act(x, torch.tensor([1, 0, 1])))
