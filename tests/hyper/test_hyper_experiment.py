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
        "rotated_digits": 10, "orientation": 4, "mirror": 2}
    with pytest.raises(ValueError, match="task: expected one of"):
        transformation_task("upside", images, digits, generator)


def _rows():
    rows = []
    for seed, noise in enumerate((0.0, 1.0, -1.0)):
        for task, best in (("rotated_digits", (1.0, 0.0, 0.0)), ("orientation", (0.0, 1.0, 0.0)),
                           ("mirror", (1.0, 0.0, 1.0))):
            for d in [(0.0, 0.0, 0.0), (1.0, 1.0, 1.0), best]:
                acc = 90.0 if d == best else 60.0
                rows.append(dict(task=task, method="fixed d", seed=seed, acc=acc + noise,
                                 seconds=0.1, trained_parameters=330, d_rotation=d[0],
                                 d_flip=d[1], d_scale=d[2]))
            fitted = dict(zip(("d_rotation", "d_flip", "d_scale"), best, strict=True))
            rows.append(dict(task=task, method="fitted d", seed=seed, acc=89.0 + noise,
                             seconds=1.0, trained_parameters=331, trajectory=[[0.5] * 3],
                             **fitted))
            rows.append(dict(task=task, method="linear probe", seed=seed, acc=70.0,
                             seconds=0.1, trained_parameters=330))
    return rows


def test_best_fixed_descriptor_and_the_summary_rows():
    rows = _rows()
    best = hyper.best_fixed(rows, "orientation")
    assert best["d"] == (0.0, 1.0, 0.0) and best["acc"] == pytest.approx(90.0)
    assert best["acc_std"] == pytest.approx(1.0)
    summary = hyper.summary_rows(rows)
    orientation = {r["method"]: r for r in summary if r["task"] == "orientation"}
    assert list(orientation) == ["fitted d", "best fixed d", "linear probe"]
    best_row = orientation["best fixed d"]
    assert best_row["d_flip"] == 1.0 and best_row["seeds"] == 3
    assert "d_rotation" not in orientation["linear probe"]  # no descriptor, no NaN column


def test_acceptance_compares_with_seed_noise_and_the_task_direction():
    rows = _rows()
    table = {r["task"]: r for r in hyper.acceptance(rows)}
    rotated = table["rotated_digits"]
    assert rotated["fitted_minus_best"] == pytest.approx(-1.0)
    assert rotated["seed_noise"] == pytest.approx(1.0) and rotated["within_noise"]
    assert rotated["points_right"] and table["orientation"]["points_right"]
    assert table["mirror"]["points_right"]  # flip strength 0 wanted, fitted 0
    assert table["mean over tasks"]["fitted_minus_probe"] == pytest.approx(19.0)
    for row in rows:  # a fitted descriptor on the wrong side, 5 points short
        if row["task"] == "orientation" and row["method"] == "fitted d":
            row["d_rotation"], row["acc"] = 0.9, row["acc"] - 4.0
    orientation = {r["task"]: r for r in hyper.acceptance(rows)}["orientation"]
    assert not orientation["points_right"] and not orientation["within_noise"]


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
        assert isinstance(figure.canvas, FigureCanvasAgg) and len(figure.axes) == 3
    bars = figures["accuracy"].axes[1]  # orientation: fitted d, best fixed d, linear probe
    assert [t.get_text() for t in bars.get_xticklabels()] == ["fitted d", "best fixed d",
                                                             "linear probe"]
    assert [p.get_height() for p in bars.patches] == pytest.approx([89.0, 90.0, 70.0])


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
        assert 0.0 <= row["acc"] <= 100.0 and math.isfinite(row["seconds"])
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
