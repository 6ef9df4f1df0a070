"""The ν search in rounds whose candidates train at once chooses the ν of the sequential search,
with the same record; the rounds and the extra trainings are counted."""

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from invreg.experiments.genuine import (
    SEARCHES,
    choose_invariance_weight,
    one_two_five,
    parallel_choice,
    search_rounds,
)

FULL_GRID = (0.01, 0.1, 1.0, 10.0, 100.0)
VALUES = sorted({0.01, 100.0, *one_two_five(0.01, 100.0)})


def curves():
    """SI curves over every ν either search can ask for: any numbers in [0, 1]."""
    return st.lists(st.floats(0, 1), min_size=len(VALUES), max_size=len(VALUES)).map(
        lambda sis: dict(zip(VALUES, sis, strict=True)))


@settings(max_examples=300, deadline=None)
@given(curves(), st.sampled_from(sorted(SEARCHES)))
def test_rounds_choose_the_sequential_searchs_nu(curve, search):
    sequential = SEARCHES[search](curve.__getitem__, FULL_GRID)
    asked = []

    def measure(candidates):
        asked.append(list(candidates))
        return [curve[nu] for nu in candidates]

    choice, measured, rounds = parallel_choice(search, FULL_GRID, measure)
    assert choice == sequential  # the ν, whether it reached, and every (ν, SI) in order
    assert {nu for nu, _ in sequential.trials} <= set(measured)
    assert rounds == len(asked) and sum(map(len, asked)) == len(measured)
    assert all(len(set(r)) == len(r) for r in asked)  # no ν trained twice
    if search == "coarse-to-fine":
        assert rounds <= 2 and asked[0] == list(FULL_GRID)
        # one round more than the fine step's: the coarse grid in full, the fine values in full
        assert len(measured) - len(sequential.trials) <= len(FULL_GRID) - 1 + 1
    else:
        assert rounds <= 2 and len(measured) <= 6  # 4 steps of one, as 2 rounds of 3


def test_coarse_to_fine_costs_on_the_recorded_full_scale_curves():
    # the full-scale SI of docs/results/genuine-table1-jobs2 (1.0 where never measured)
    r4 = {0.01: 0.418, 0.1: 0.463, 1.0: 0.945, 2.0: 0.956, 10.0: 0.962}
    t3 = {0.01: 0.600, 0.1: 0.711, 1.0: 0.857, 10.0: 0.914, 20.0: 0.936, 50.0: 0.951,
          100.0: 0.965}
    for curve, nu, rounds, trained, sequential in ((r4, 2.0, 2, 7, 5), (t3, 50.0, 2, 7, 7)):
        get = lambda w, c=curve: c.get(w, 1.0)  # noqa: E731
        choice, measured, count = parallel_choice(
            "coarse-to-fine", FULL_GRID, lambda cs, g=get: [g(w) for w in cs])
        assert (choice.weight, count, len(measured)) == (nu, rounds, trained)
        assert len(choose_invariance_weight(get, FULL_GRID).trials) == sequential


def test_a_later_round_follows_from_the_earlier_rounds_results():
    rounds = search_rounds("coarse-to-fine", [0.1, 1, 10])
    assert next(rounds) == [0.1, 1.0, 10.0]
    # nothing reached 0.95: refine around the best coarse ν (1) between its neighbours
    assert rounds.send({0.1: 0.2, 1.0: 0.6, 10.0: 0.5}) == [0.2, 0.5, 2.0, 5.0]
    with pytest.raises(StopIteration):
        rounds.send({0.1: 0.2, 1.0: 0.6, 10.0: 0.5, 0.2: 0.3, 0.5: 0.4, 2.0: 0.5, 5.0: 0.5})
    rounds = search_rounds("bisect", [0.1, 10])
    assert next(rounds) == [1.0, 0.2, 5.0]  # the middle and both middles that can follow


def test_a_bad_search_is_named():
    with pytest.raises(ValueError, match="search: expected one of"):
        search_rounds("grid", FULL_GRID)
    with pytest.raises(ValueError, match="grid: expected positive"):
        search_rounds("bisect", [0.0, math.inf])
