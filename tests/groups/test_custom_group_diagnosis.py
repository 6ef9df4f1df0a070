"""A bad custom action is named for what it is, on every seed: a random augmentation is "not
deterministic" (it was reported as mixing the samples of a batch, or accepted in 1 seed of
20), an in-place function is named as such, and a small input shape cannot hide a function
that is not invertible."""

import pytest
import torch

from invreg.groups import FiniteGroup

SEEDS = range(30)


def identity(x):
    return x


def random_roll(x):  # an augmentation: a fresh shift per call
    return torch.roll(x, int(torch.randint(1, 4, ())), dims=-1)


def random_sign(x):  # two outcomes, each with probability 1/2
    return x * (1.0 if torch.rand(()) < 0.5 else -1.0)


def noisy_negation(x):
    return -x + 1e-3 * torch.randn_like(x)


def negate_in_place(x):
    return x.neg_()


BUILDS = {
    "generator random_roll": lambda seed: FiniteGroup.from_generator(
        random_roll, order=4, input_shape=(1, 4), seed=seed),
    "generator random_sign": lambda seed: FiniteGroup.from_generator(
        random_sign, order=2, input_shape=(1, 4), seed=seed),
    "actions random_roll": lambda seed: FiniteGroup.from_actions(
        [identity, random_roll], input_shape=(1, 4), seed=seed),
    "actions random_sign": lambda seed: FiniteGroup.from_actions(
        [identity, random_sign], input_shape=(1, 4), seed=seed),
    "actions noisy_negation": lambda seed: FiniteGroup.from_actions(
        [identity, noisy_negation], input_shape=(3, 8), seed=seed),
}


@pytest.mark.parametrize("build", list(BUILDS), ids=str)
def test_a_random_action_is_named_not_deterministic_on_every_seed(build):
    for seed in SEEDS:
        torch.manual_seed(seed)  # the action's draws
        with pytest.raises(ValueError, match=r"element 1( \(the generator\))? is not "
                                             r"deterministic: 16 calls on the same probe gave "
                                             r"different results .* a random augmentation is "
                                             r"not"):
            BUILDS[build](seed)


@pytest.mark.parametrize("seed", SEEDS)
def test_a_non_invertible_action_is_caught_on_a_small_shape(seed):
    # on 2 samples of shape (1, 2) all 4 probe entries were positive for 1 seed in 16, and
    # abs then looked like the identity; the probe now has 256 entries
    with pytest.raises(ValueError, match="element 1 has no inverse"):
        FiniteGroup.from_actions([identity, torch.abs], input_shape=(1, 2), seed=seed)


def test_an_in_place_action_is_named():
    with pytest.raises(ValueError, match=r"element 1 changed its input in place; return a new "
                                         r"tensor"):
        FiniteGroup.from_actions([identity, negate_in_place], input_shape=(1, 4))
    with pytest.raises(ValueError, match=r"element 1 \(the generator\) changed its input"):
        FiniteGroup.from_generator(negate_in_place, order=2, input_shape=(1, 4))


def test_a_deterministic_mixing_action_is_still_named_mixing():
    with pytest.raises(ValueError, match="element 1 mixes the samples of a batch"):
        FiniteGroup.from_actions([identity, lambda x: x.flip(0)], input_shape=(1, 4))


@pytest.mark.parametrize("seed", SEEDS)
def test_valid_actions_pass_on_every_seed(seed):
    torch.manual_seed(seed)
    shift = FiniteGroup.from_generator(lambda x: torch.roll(x, 1, dims=-1), order=4,
                                       input_shape=(1, 4), seed=seed)
    signs = FiniteGroup.from_actions([identity, torch.neg], input_shape=(1, 2), seed=seed)
    quarter = FiniteGroup.from_generator(lambda x: torch.rot90(x, 1, dims=(-2, -1)), order=4,
                                         input_shape=(1, 3, 3), seed=seed)
    assert (shift.order, signs.order, quarter.order) == (4, 2, 4)
    assert shift.is_exact and signs.is_exact and quarter.is_exact
