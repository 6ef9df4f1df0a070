"""``invreg-experiment hyper``: the tasks, the summary and acceptance tables, Augerino, and the
quick run end to end."""

import math

import pytest
import torch

from invreg.data.tasks import TRANSFORMATION_TASKS, transformation_task
from invreg.experiments import hyper
from invreg.models.hyper import HyperCNN


def test_tasks_label_the_transformation_they_apply():
    generator = torch.Generator().manual_seed(0)
    images = torch.rand(64, 1, 10, 10)
    digits = torch.randint(0, 10, (64,))
    x, turns = transformation_task("orientation", images, digits, generator)
    assert set(turns.tolist()) == {0, 1, 2, 3}
    for image, k, out in zip(images, turns, x, strict=True):  # exact quarter turns
        assert torch.equal(out, torch.rot90(image, int(k), dims=(-2, -1)))
    x, labels = transformation_task("rotated_digits", images, digits, generator)
    assert torch.equal(labels, digits) and not torch.allclose(x, images)
    x, mirrored = transformation_task("mirror", images, digits, generator)
    assert set(mirrored.tolist()) == {0, 1}
    assert {name: c for name, (_, c) in TRANSFORMATION_TASKS.items()} == {
        "rotated_digits": 10, "orientation": 4, "mirror": 2, "zoom": 2}
    with pytest.raises(ValueError, match="task: expected one of"):
        transformation_task("upside", images, digits, generator)


def test_zoom_task_labels_whether_the_digit_was_enlarged():
    images = torch.zeros(200, 1, 14, 14)
    images[:, :, 5:9, 5:9] = 1.0  # a centred square: its ink grows with the zoom factor
    x, enlarged = transformation_task("zoom", images, torch.zeros(200, dtype=torch.long),
                                      torch.Generator().manual_seed(0))
    assert set(enlarged.tolist()) == {0, 1}
    ink = x.sum(dim=(1, 2, 3)) / images.sum(dim=(1, 2, 3))
    # factors at least 1.3^(1/4) either way: the ink changes by at least 1.3^(1/2) ≈ 1.14
    # (bilinear resampling of a 4-pixel square: a few percent off)
    assert bool((ink[enlarged == 1] > 1.08).all()) and bool((ink[enlarged == 0] < 0.93).all())
    assert set(hyper.TASK_TARGET) == set(TRANSFORMATION_TASKS) == set(hyper.TASK_AUGMENTATION)
    assert hyper.TASK_TARGET["zoom"] == ("scale", 0.0)


#: per task: the grid point best on validation, the one best on test, the fitted descriptor
ROWS = {"rotated_digits": ((1.0, 0.0, 1.0), (1.0, 0.0, 0.0), (1.0, 0.0, 1.0)),
        "orientation": ((0.0, 1.0, 0.0), (0.0, 0.0, 1.0), (0.0, 1.0, 0.0)),
        "mirror": ((1.0, 0.0, 1.0), (0.0, 1.0, 0.0), (1.0, 0.0, 1.0)),
        "zoom": ((0.0, 1.0, 0.0), (1.0, 0.0, 0.0), (0.0, 1.0, 0.3))}


def _rows():
    """Per seed and task: four fixed descriptors where validation and test disagree (the
    validation-best scores 95 on validation, 80 on test; the test-best 85 and 90; the others
    50 and 60), a fitted descriptor 1 point below the validation-best on test, a probe."""
    rows = []
    for seed, noise in enumerate((0.0, 1.0, -1.0)):
        for task, (val_best, test_best, fitted) in ROWS.items():
            for d in [(0.0, 0.0, 0.0), (1.0, 1.0, 1.0), test_best, val_best]:
                acc, val_acc = {val_best: (80.0, 95.0), test_best: (90.0, 85.0)}.get(d, (60.0,
                                                                                         50.0))
                rows.append(dict(task=task, method="fixed d", seed=seed, acc=acc + noise,
                                 val_acc=val_acc, val_loss=0.5, seconds=0.1,
                                 trained_parameters=330, d_rotation=d[0], d_flip=d[1],
                                 d_scale=d[2]))
            rows.append(dict(task=task, method="fitted d", seed=seed, acc=79.0 + noise,
                             val_acc=94.0, val_loss=0.4, seconds=1.0, trained_parameters=333,
                             trajectory=[[0.5] * 3, list(fitted)],
                             **dict(zip(("d_rotation", "d_flip", "d_scale"), fitted,
                                        strict=True))))
            rows.append(dict(task=task, method="linear probe", seed=seed, acc=70.0,
                             val_acc=70.0, seconds=0.1, trained_parameters=330))
    return rows


def test_best_fixed_descriptor_is_chosen_on_validation_not_on_test():
    rows = _rows()
    chosen = hyper.validation_choice(rows, "orientation")
    assert sorted(chosen) == [0, 1, 2]
    for seed, noise in enumerate((0.0, 1.0, -1.0)):  # 95 % on validation, 80 (not 90) on test
        row = chosen[seed]
        assert hyper.descriptor_of(row) == (0.0, 1.0, 0.0)
        assert row["acc"] == 80.0 + noise and row["val_acc"] == 95.0
    summary = hyper.summary_rows(rows)
    orientation = {r["method"]: r for r in summary if r["task"] == "orientation"}
    assert list(orientation) == ["fitted d", "best fixed d", "linear probe"]
    best_row = orientation["best fixed d"]
    assert best_row["acc"] == pytest.approx(80.0) and best_row["val_acc"] == 95.0
    assert best_row["d_flip"] == 1.0 and best_row["d_scale"] == 0.0 and best_row["seeds"] == 3
    assert "d_rotation" not in orientation["linear probe"]  # no descriptor, no NaN column


def test_validation_ties_go_to_the_lower_validation_loss_then_the_grid_order():
    def fixed(d, val_loss, acc):
        return dict(task="zoom", method="fixed d", seed=0, acc=acc, val_acc=90.0,
                    val_loss=val_loss, d_rotation=d, d_flip=0.0, d_scale=0.0)

    rows = [fixed(0.0, 0.7, 99.0), fixed(0.5, 0.3, 50.0), fixed(1.0, 0.3, 10.0)]
    assert hyper.validation_choice(rows, "zoom")[0]["d_rotation"] == 0.5


def test_acceptance_reports_spread_gap_and_the_validation_best_comparison():
    rows = _rows()
    table = {r["task"]: r for r in hyper.acceptance(rows)}
    assert list(table) == [*hyper.TASKS, "mean over tasks"]
    rotated = table["rotated_digits"]
    assert rotated["spread_val"] == pytest.approx(95.0 - 50.0)
    assert rotated["spread_test"] == pytest.approx(90.0 - 60.0)
    assert rotated["best_fixed_acc"] == pytest.approx(80.0)  # not the test-best 90
    assert rotated["fitted_minus_best"] == pytest.approx(-1.0)
    assert rotated["seed_noise"] == pytest.approx(1.0) and rotated["within_noise"]
    assert rotated["best_fixed_d"] == "(1, 0, 1); (1, 0, 1); (1, 0, 1)"
    assert rotated["d_gap"] == 0.0 and rotated["points_right"]
    zoom = table["zoom"]
    assert zoom["component"] == "scale" and zoom["d_gap"] == pytest.approx(0.3)
    assert zoom["points_right"]  # 0.3 is on the sensitive side of ½
    assert table["mean over tasks"]["fitted_minus_probe"] == pytest.approx(9.0)
    for row in rows:  # a fitted descriptor on the wrong side, 5 points short
        if row["task"] == "orientation" and row["method"] == "fitted d":
            row["d_rotation"], row["acc"] = 0.9, row["acc"] - 4.0
    orientation = {r["task"]: r for r in hyper.acceptance(rows)}["orientation"]
    assert not orientation["points_right"] and not orientation["within_noise"]
    assert orientation["d_gap"] == pytest.approx(0.9)
    assert set(orientation) - {"task"} <= set(hyper.ACCEPTANCE_LEGEND)


def test_fitted_descriptor_starts_in_the_middle_and_is_chosen_without_the_test_images():
    torch.manual_seed(0)
    net = HyperCNN((1, 10, 10), 2, descriptor=list(hyper.COMPONENTS), channels=(4, 8)).eval()
    generator = torch.Generator().manual_seed(0)

    def images(count):
        return (torch.rand(count, 1, 10, 10, generator=generator),
                torch.randint(0, 2, (count,), generator=generator))

    train, val, test = images(20), images(10), images(30)
    data = hyper.TaskData(*train, *val, *test, num_classes=2)
    scale = hyper.HyperScale(**{**hyper.asdict(hyper.HYPER_SCALES["smoke"]),
                                "descriptor_steps": 4})
    fitted = hyper.fitted_descriptor(data, net, scale, seed=0)
    assert len(fitted["trajectory"]) == 5 and fitted["trajectory"][0] == [0.5, 0.5, 0.5]
    assert list(fitted["descriptor"].values()) == fitted["trajectory"][-1]
    # other test labels: the same descriptor and validation score, another test accuracy
    flipped = hyper.TaskData(*train, *val, test[0], 1 - test[1], num_classes=2)
    other = hyper.fitted_descriptor(flipped, net, scale, seed=0)
    assert other["trajectory"] == fitted["trajectory"] and other["val_acc"] == fitted["val_acc"]
    assert other["acc"] == pytest.approx(1.0 - fitted["acc"])


def test_validation_part_is_disjoint_from_train_and_test():
    scale = hyper.HYPER_SCALES["full"]
    index = hyper.downstream_indices(scale, 0)
    train, val, test = (set(index[k].tolist()) for k in ("train", "val", "test"))
    assert (len(train), len(val), len(test)) == (205, 51, 5_000)  # 80/20 of 256
    assert not train & val and not train & test and not val & test
    assert max(train | val) < 5_000 <= min(test)  # labelled images from the first half
    again, other = hyper.downstream_indices(scale, 0), hyper.downstream_indices(scale, 1)
    assert torch.equal(again["val"], index["val"]) and not torch.equal(other["val"], index["val"])
    bad = hyper.HyperScale(**{**hyper.asdict(scale), "validation_fraction": 1.0})
    with pytest.raises(ValueError, match="validation_fraction: expected a fraction in"):
        hyper.downstream_indices(bad, 0)
    tiny = hyper.HyperScale(**{**hyper.asdict(scale), "downstream_train": 2,
                               "validation_fraction": 0.1})
    with pytest.raises(ValueError, match="leaves an empty train or validation part"):
        hyper.downstream_indices(tiny, 0)


def test_augerino_is_a_model_of_invreg_models_also_under_its_old_path():
    from invreg import models
    from invreg.models.augerino import Augerino

    assert models.Augerino is Augerino is hyper.Augerino and "Augerino" in models.__all__


def test_augerino_width_gets_a_gradient_and_evaluation_averages_rotations():
    from invreg.models import Augerino

    torch.manual_seed(0)
    cnn = HyperCNN((1, 10, 10), 3, descriptor=["rotation"], channels=(4,)).fixed(0.0)
    model = Augerino(cnn, width=0.5)
    x = torch.rand(8, 1, 10, 10)
    model.train()
    torch.nn.functional.cross_entropy(model(x), torch.zeros(8, dtype=torch.long)).backward()
    assert model.width.grad is not None and model.width.grad.abs() > 0
    model.eval()
    log_probabilities = model(x)
    # a log of averaged probabilities: exp sums to 1 per sample to float32 rounding
    assert torch.allclose(log_probabilities.exp().sum(-1), torch.ones(8),
                          atol=8 * torch.finfo(torch.float32).eps)
    model.width.data.fill_(0.0)  # no rotation: the plain network
    assert torch.allclose(model(x).exp(), cnn(x).softmax(-1), atol=1e-6)


def test_model_accuracy_is_the_exact_ratio_over_chunks():
    torch.manual_seed(0)
    x, y = torch.randn(2500, 6), torch.randint(0, 4, (2500,))
    head = torch.nn.Linear(6, 4)
    correct = int((head(x).argmax(1) == y).sum())
    value = hyper.model_accuracy(head, x, y)  # three chunks of at most 1,024 inputs
    assert isinstance(value, float) and value == correct / 2500


def test_figures_are_drawn_outside_pyplot():
    import matplotlib.pyplot as plt
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    rows = _rows()
    before = plt.get_fignums()
    figures = hyper.figures(rows, hyper.summary_rows(rows))
    assert plt.get_fignums() == before  # nothing registered: freed with the last reference
    assert set(figures) == {"descriptor_trajectories", "accuracy", "fixed_descriptors"}
    for figure in figures.values():
        assert isinstance(figure.canvas, FigureCanvasAgg) and len(figure.axes) == 4
    bars = figures["accuracy"].axes[1]  # orientation: fitted d, best fixed d, linear probe
    assert [t.get_text() for t in bars.get_xticklabels()] == ["fitted d", "best fixed d",
                                                             "linear probe"]
    assert [p.get_height() for p in bars.patches] == pytest.approx([79.0, 80.0, 70.0])


def test_upstream_cache_key_follows_the_upstream_configuration():
    full, quick = hyper.HYPER_SCALES["full"], hyper.HYPER_SCALES["quick"]
    assert hyper.upstream_key("hyper", full, 0) != hyper.upstream_key("hyper", quick, 0)
    assert hyper.upstream_key("hyper", full, 0) != hyper.upstream_key("conventional", full, 0)
    # downstream sizes do not change the upstream model
    changed = hyper.HyperScale(**{**hyper.asdict(full), "downstream_epochs": 3})
    assert hyper.upstream_key("hyper", full, 0) == hyper.upstream_key("hyper", changed, 0)


def test_quick_run_covers_every_method_and_reuses_its_cached_upstream(tmp_path):
    results = hyper.run_experiment(hyper.HYPER_SCALES["quick"], [0], tmp_path, lambda line: None)
    methods = {(r["task"], r["method"]) for r in results.rows}
    assert {(t, m) for t in hyper.TASKS for m in hyper.METHODS} == methods
    assert "upstream" in results.tables
    assert sorted(p.suffix for p in tmp_path.iterdir()) == [".ckpt", ".pt"]
    for row in results.rows:
        assert 0.0 <= row["acc"] <= 100.0 and 0.0 <= row["val_acc"] <= 100.0
        assert math.isfinite(row["seconds"])
    for row in results.per_seed:
        if row["method"] == "fitted d":  # d = sigmoid(θ): never on a bound
            assert all(0.0 < row[f"d_{c}"] < 1.0 for c in hyper.COMPONENTS)
    assert {r["task"] for r in results.tables["acceptance"].rows} == {*hyper.TASKS,
                                                                      "mean over tasks"}
    trained = {r["method"]: r["trained_parameters"] for r in results.rows
               if r["task"] == "orientation"}
    assert trained["fitted d"] == trained["linear probe"] + 3  # the descriptor's 3 strengths
    assert trained["fine-tune"] == trained["scratch"] > trained["linear probe"]
    again = hyper.run_experiment(hyper.HYPER_SCALES["quick"], [0], tmp_path, lambda line: None)
    assert "upstream" not in again.tables  # loaded, not trained


def test_runner_without_a_cache_keeps_no_upstream_model(tmp_path, monkeypatch):
    from invreg.experiments.runner import run

    monkeypatch.chdir(tmp_path)
    results = run("hyper", scale="smoke", out=tmp_path / "out", cache=None)
    assert (tmp_path / "out" / "results.md").is_file() and results.tables["upstream"].rows
    written = [p for p in tmp_path.rglob("*") if p.suffix in (".ckpt", ".pt")]
    assert written == []
