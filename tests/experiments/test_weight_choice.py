"""The rule that picks ν for Table 1's IR model, on synthetic ν → validation-SI curves."""

import math

import pytest

from invreg.experiments.genuine import SI_TARGET, choose_invariance_weight, one_two_five

DECADES = [0.01, 0.1, 1.0, 10.0, 100.0]
FINE = one_two_five(0.005, 200)  # every 1-2-5 value of the decades' range: 0.01 … 100


class Curve:
    """A ν → SI function that counts how often each ν is measured."""

    def __init__(self, si):
        self.si, self.calls = si, []

    def __call__(self, nu):
        self.calls.append(nu)
        return self.si(nu)


def logistic(midpoint, top=1.0):
    """SI rising with log ν from 0 to ``top``, half-way at ``midpoint``."""
    return lambda nu: top / (1 + math.exp(-4 * (math.log10(nu) - math.log10(midpoint))))


def test_fine_grid_is_one_two_five_per_decade():
    assert FINE == [0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0]
    assert one_two_five(10, 100) == [20.0, 50.0]
    assert one_two_five(1, 2) == []


@pytest.mark.parametrize("midpoint", [0.001, 0.003, 0.013, 0.07, 0.4, 0.9, 3.3, 12.0])
def test_monotone_curve_gives_the_smallest_fine_value_that_reaches_the_target(midpoint):
    curve = Curve(logistic(midpoint))
    choice = choose_invariance_weight(curve, DECADES)
    reaching = [nu for nu in FINE if curve.si(nu) >= SI_TARGET]
    assert reaching, "every midpoint above is reachable within the range"
    assert choice.weight == reaching[0] and choice.reached
    assert len(curve.calls) == len(set(curve.calls)) <= len(DECADES) + 2
    assert dict(choice.trials) == {nu: curve.si(nu) for nu in curve.calls}


def test_first_value_reaching_ends_the_search():
    curve = Curve(lambda nu: 0.99)
    choice = choose_invariance_weight(curve, DECADES)
    assert (choice.weight, choice.reached, curve.calls) == (0.01, True, [0.01])


def test_monotone_curve_that_never_reaches_gives_the_largest():
    curve = Curve(logistic(1e4))
    choice = choose_invariance_weight(curve, DECADES)
    assert (choice.weight, choice.reached) == (100.0, False)
    # the refinement around the best (largest) ν looks only below it: 20 and 50
    assert curve.calls == DECADES + [20.0, 50.0]


def test_non_monotone_curve_that_never_reaches_gives_the_best_not_the_largest():
    # the shape measured on T3 after 15 epochs: SI peaks at ν = 1 and falls beyond it
    measured = {0.01: 0.604, 0.1: 0.719, 1.0: 0.848, 10.0: 0.815, 100.0: 0.822}
    si = {nu: measured.get(nu, 0.8) for nu in FINE}
    si[2.0] = 0.86
    curve = Curve(si.__getitem__)
    choice = choose_invariance_weight(curve, DECADES)
    assert (choice.weight, choice.reached) == (2.0, False)
    assert curve.calls == DECADES + [0.2, 0.5, 2.0, 5.0]
    assert len(curve.calls) == len(DECADES) + 4


def test_non_monotone_curve_reaching_between_coarse_values_is_found():
    # no decade reaches the target, 5 does: the search around the best decade finds it
    si = {nu: 0.8 for nu in FINE} | {1.0: 0.9, 5.0: 0.96, 10.0: 0.85}
    choice = choose_invariance_weight(Curve(si.__getitem__), DECADES)
    assert (choice.weight, choice.reached) == (5.0, True)


def test_non_monotone_curve_that_dips_after_reaching_keeps_the_smallest():
    si = {nu: 0.5 for nu in FINE} | {1.0: 0.97, 0.5: 0.96, 10.0: 0.7, 100.0: 0.99}
    choice = choose_invariance_weight(Curve(si.__getitem__), DECADES)
    assert (choice.weight, choice.reached) == (0.5, True)


def test_tie_in_si_prefers_the_smaller_weight():
    choice = choose_invariance_weight(Curve(lambda nu: 0.5), [1.0, 10.0])
    assert (choice.weight, choice.reached) == (1.0, False)


def test_other_target():
    choice = choose_invariance_weight(Curve(logistic(1.0)), DECADES, target=0.5)
    assert choice.weight == 1.0


@pytest.mark.parametrize("grid", [[], [1.0, 1.0], [10.0, 1.0], [0.0, 1.0], [-1.0], [math.inf]])
def test_bad_grid_is_rejected(grid):
    with pytest.raises(ValueError, match="grid: expected"):
        choose_invariance_weight(Curve(lambda nu: 1.0), grid)


# --- the bisection variant (spectral-decay's KL and normalised-L2 searches) ------------------

from invreg.experiments.genuine import bisect_invariance_weight  # noqa: E402


@pytest.mark.parametrize("midpoint", [0.001, 0.003, 0.013, 0.07, 0.4, 0.9, 3.3, 12.0])
def test_bisection_agrees_with_the_coarse_to_fine_search_on_monotone_curves(midpoint):
    curve = Curve(logistic(midpoint))
    choice = bisect_invariance_weight(curve, DECADES)
    assert choice.weight == choose_invariance_weight(logistic(midpoint), DECADES).weight
    reaching = [nu for nu in FINE if curve.si(nu) >= SI_TARGET]
    assert (choice.weight, choice.reached) == (reaching[0], True)
    # 13 grid values: ⌈log2(14)⌉ = 4 measurements, never one twice
    assert len(curve.calls) == len(set(curve.calls)) <= 4
    assert dict(choice.trials) == {nu: curve.si(nu) for nu in curve.calls}


def test_bisection_when_nothing_reaches_takes_the_best_measured():
    curve = Curve(logistic(1e4))
    choice = bisect_invariance_weight(curve, DECADES)
    assert not choice.reached and choice.weight == max(curve.calls)  # SI grows: the largest
    assert curve.calls[-1] == 100.0 and len(curve.calls) <= 4


def test_bisection_on_a_non_monotone_curve_records_what_it_measured():
    si = {nu: 0.5 for nu in FINE} | {1.0: 0.97}
    curve = Curve(si.__getitem__)
    choice = bisect_invariance_weight(curve, DECADES)
    # ν = 1 sits in the middle of the grid: measured first, it reaches; nothing below does
    assert (choice.weight, choice.reached) == (1.0, True) and curve.calls[0] == 1.0


@pytest.mark.parametrize("grid", [[], [0.0, 1.0], [1.0, math.inf]])
def test_bisection_rejects_bad_grids(grid):
    with pytest.raises(ValueError, match="grid"):
        bisect_invariance_weight(lambda nu: 1.0, grid)
