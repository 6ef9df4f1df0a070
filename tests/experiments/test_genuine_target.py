"""Table 1's "IR, ν learned" row (``IR-target``): ε from the ν search's model, its training
cost beside the search's, both kept with the cached models."""

import csv
import json
import math

import pytest

from invreg.experiments.core import SCALES, Settings, train
from invreg.experiments.genuine import (
    LEARNED,
    LEARNED_INITIAL_WEIGHT,
    TRAIN_SECONDS,
    build,
    mnist,
    validation_li,
)
from invreg.experiments.runner import run


@pytest.fixture(autouse=True)
def _no_wandb(monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "disabled")


def test_learned_row_targets_the_chosen_models_validation_li_and_reports_its_cost(tmp_path):
    cache = tmp_path / "models"
    results = run("genuine-table1", scale="smoke", out=tmp_path / "a", cache=cache,
                  groups=["T3"])
    rows = {r["model"]: r for r in results.rows}
    assert list(rows) == ["WT", "DA", "IR", LEARNED]
    ir, learned = rows["IR"], rows[LEARNED]

    # ε: the validation LI of the model the search chose (loaded back from the cache)
    settings = Settings(SCALES["smoke"], tmp_path / "check", 1, 1, cache=cache)
    module, data = build("IR", "t3", settings, 0, ir["nu"])
    chosen = train(module, data, settings, "check", 0)
    assert learned["target_LI"] == validation_li(chosen, mnist(settings, 0), "t3") > 0

    # the learned model: IR's config with the target, ν moved from ν₀ by the dual ascent
    (description,) = [json.loads(p.read_text()) for p in cache.glob("*/description.json")
                      if "invariance_target" in p.read_text()]
    init_args = description["module"]["init_args"]
    assert init_args["invariance_target"] == learned["target_LI"]
    assert init_args["invariance_weight"] == LEARNED_INITIAL_WEIGHT
    assert learned["nu"] > 0 and learned["nu"] != LEARNED_INITIAL_WEIGHT

    # cost: one training each; the search's trainings for IR (here a grid of one ν)
    for row in rows.values():
        assert row["train_s"] > 0
    assert ir["search_s"] >= ir["train_s"]
    assert math.isnan(learned["search_s"]) and math.isnan(ir["target_LI"])
    # every cell of the CSV reads as a number (nan where a column does not apply)
    with open(tmp_path / "a" / "results.csv") as handle:
        for row in csv.DictReader(handle):
            [float(v) for k, v in row.items() if k not in ("group", "model")]
    # the per-seed rows hold no times: equal configurations give equal rows
    assert not {"train_s", "search_s"} & {k for r in results.per_seed for k in r}
    markdown = (tmp_path / "a" / "results.md").read_text()
    assert "- `target_LI`:" in markdown and "- `search_s`:" in markdown

    # every model now comes from the cache, with the time its training took, not the load's
    assert len(list(cache.glob(f"*/{TRAIN_SECONDS}"))) == 4
    again = {r["model"]: r for r in run("genuine-table1", scale="smoke", out=tmp_path / "b",
                                        cache=cache, groups=["T3"]).rows}
    for kind, row in rows.items():
        assert again[kind]["train_s"] == pytest.approx(row["train_s"], abs=1e-3), kind
    assert again["IR"]["search_s"] == pytest.approx(ir["search_s"], abs=1e-3)
    assert again[LEARNED]["nu"] == learned["nu"]


# model cache keys of learned-ν models at Table 1's full scale, computed while the target took
# four arguments of the module: models trained then are stored under them and stay valid
PINNED_LEARNED_KEYS = {
    ("t3", 0, 1.0, "logit_l2", 0.0123): "3f2a191940919749",
    ("c4", 1, 2.5, "predictive_kl", 0.5): "8de4abd8251e3db4",
}


@pytest.mark.parametrize("case", list(PINNED_LEARNED_KEYS), ids=lambda c: "-".join(map(str, c)))
def test_a_learned_weight_keeps_its_model_cache_key(tmp_path, case):
    from invreg.experiments.core import get_scale, model_key, training_description

    group, seed, initial, loss, target = case
    settings = Settings(get_scale("genuine-table1", "full"), tmp_path, 4, 300,
                        accelerator="cpu")
    module, data = build("IR", group, settings, seed, initial, loss, target=target)
    description = training_description(module, data, settings, seed)
    assert model_key(description) == PINNED_LEARNED_KEYS[case]
    # keyed by the fields it had: ν₀ and the four target arguments, no weight object
    init_args = description["module"]["init_args"]
    assert (init_args["invariance_weight"], init_args["invariance_target"],
            init_args["target_metric"], init_args["target_update"], init_args["target_lr"]) == (
        initial, target, "LI", "multiplicative", None)
    assert "track_invariance" not in init_args


def test_the_key_reads_the_weight_not_how_it_was_written(tmp_path):
    from invreg.experiments.core import model_key, training_description
    from invreg.models import MLP
    from invreg.modules import DualAscentWeight, FixedWeight, InvarianceModule

    settings = Settings(SCALES["smoke"], tmp_path, 1, 1)
    data = mnist(settings, 0)

    def key(weight, **options):
        module = InvarianceModule(MLP((1, 36, 36), 9, hidden_widths=(8,)), group="c4",
                                  invariance_weight=weight, **options)
        return model_key(training_description(module, data, settings, 0))

    assert key(2.0) == key(2) == key(FixedWeight(2.0)) != key(3.0)
    # track_invariance changes training only with a fixed ν = 0
    assert key(2.0, track_invariance=True) == key(2.0)
    assert key(0.0, track_invariance=True) != key(0.0)
    learned = key(DualAscentWeight(target=0.1))
    assert learned == key(DualAscentWeight(target=0.1), track_invariance=True)
    assert learned != key(DualAscentWeight(target=0.2)) != key(1.0)
    assert learned != key(DualAscentWeight(target=0.1, lr=0.02))  # lr as given, as before
