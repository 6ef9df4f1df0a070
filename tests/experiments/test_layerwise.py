"""Layer-wise G-EED experiment: layers aligned by named stage, D and R kept beside D/R."""

import math

import pytest

from invreg.experiments import layerwise
from invreg.experiments.layerwise import CNN_LAYERS, GCNN_LAYERS, STAGES, figure, ood_changes
from invreg.experiments.runner import run


def summary_rows():
    rows = []
    for model, layers in (("DA CNN", CNN_LAYERS), ("e2cnn G-CNN", GCNN_LAYERS)):
        for split, scale in (("in distribution", 1.0), ("OOD (β=0.5)", 0.5)):
            for depth, (layer, stage) in enumerate(layers.items()):
                deviation, random_pairs = 0.1 * (depth + 1), 0.4 / scale
                rows.append({"model": model, "split": split, "stage": stage, "layer": layer,
                             "geed": deviation / random_pairs, "deviation": deviation,
                             "random_pair_distance": random_pairs})
    return rows


def test_figure_puts_shared_stages_at_one_position_with_named_ticks():
    fig = figure(summary_rows())
    for ax in fig.axes:
        assert [t.get_text() for t in ax.get_xticklabels()] == list(STAGES)
        lines = {line.get_label(): list(line.get_xdata()) for line in ax.get_lines()}
        # the CNN has no group pooling: its head sits above the G-CNN's head, not its pooling
        assert lines["DA CNN"] == [STAGES.index(s) for s in CNN_LAYERS.values()]
        assert lines["e2cnn G-CNN"] == [STAGES.index(s) for s in GCNN_LAYERS.values()]
        assert lines["DA CNN"][-1] == lines["e2cnn G-CNN"][-1] == STAGES.index("logits")


def test_ood_changes_names_the_source_of_a_fall():
    # every stage: D unchanged, R doubled off distribution -> D/R halves
    text = ood_changes(summary_rows())
    assert text.startswith("block 1: D ×1, R ×2, D/R ×0.5;")
    assert "group pooling: D ×1, R ×2, D/R ×0.5" in text


def test_smoke_run_records_stages_and_both_parts_of_the_ratio(tmp_path, monkeypatch):
    # untrained models: what is checked is the bookkeeping (training is in test_experiments)
    monkeypatch.setattr(layerwise, "train", lambda module, *args: module.eval())
    results = run("layerwise", scale="smoke", out=tmp_path)
    assert {row["stage"] for row in results.rows} == set(STAGES)
    heads = [row for row in results.rows if row["layer"] == "head"]
    assert heads and all(row["stage"] == "logits" for row in heads)
    for row in results.rows:
        if row["geed"] > 0:  # R = D / (D/R), up to float32 rounding of the two metrics
            expected = row["deviation"] / row["geed"]
            assert row["random_pair_distance"] == pytest.approx(expected, rel=1e-9)
        assert math.isfinite(row["deviation"])
    markdown = (tmp_path / "results.md").read_text()
    assert "falls* off distribution" in markdown and "block 1: D ×" in markdown
