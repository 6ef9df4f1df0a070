"""MetricsHistory: metrics.csv in the run folder whatever the logger, and the figure of DI, LI,
SI and accuracy over training."""

from __future__ import annotations

import csv

import pytest
from callback_helpers import TinyData, make_trainer, tiny_module
from pytorch_lightning.loggers import CSVLogger, TensorBoardLogger

from invreg.callbacks import MetricsHistory, OrbitConsistencyCallback
from invreg.callbacks.history import history_figure
from invreg.runs import run_directory


def _rows(path):
    with path.open() as handle:
        return list(csv.DictReader(handle))


def _callbacks():
    return [OrbitConsistencyCallback(num_samples=8, every_n_epochs=1, saliency_samples=2,
                                     saliency_steps=2), MetricsHistory()]


@pytest.mark.parametrize("logger", ["none", "tensorboard"])
def test_one_row_per_epoch_without_a_csv_logger(tmp_path, logger):
    loggers = {"none": False, "tensorboard": TensorBoardLogger(tmp_path, name="tb")}
    trainer = make_trainer(tmp_path, _callbacks(), logger=loggers[logger], max_epochs=3,
                           enable_checkpointing=False)
    trainer.fit(tiny_module(), TinyData())
    folder = run_directory(trainer)
    rows = _rows(folder / "metrics.csv")
    assert [row["epoch"] for row in rows] == ["0", "1", "2"]
    assert {row["stage"] for row in rows} == {"fit"}
    # the module's and the callbacks' epoch values, as the run ended each epoch
    last = rows[-1]
    assert float(last["val/acc"]) == pytest.approx(trainer.callback_metrics["val/acc"].item())
    for name in ("orbit/val/DI", "orbit/val/LI", "orbit/val/SI", "train/acc_epoch"):
        assert last[name] != "", name
    assert not any(name.endswith("_step") for name in last)
    assert (folder / "metrics_over_training.png").stat().st_size > 0


def test_a_csv_logger_in_the_run_folder_keeps_its_own_file(tmp_path):
    logger = CSVLogger(tmp_path, name="csv")
    trainer = make_trainer(tmp_path, _callbacks(), logger=logger, max_epochs=2,
                           enable_checkpointing=False)
    trainer.fit(tiny_module(), TinyData())
    folder = run_directory(trainer)
    assert folder.resolve() == (tmp_path / "csv" / "version_0").resolve()
    rows = _rows(folder / "metrics.csv")
    assert "stage" not in rows[0]  # Lightning's file: one row per logging step
    assert (folder / "metrics_over_training.png").is_file()


def test_test_stage_writes_a_row(tmp_path):
    trainer = make_trainer(tmp_path, [MetricsHistory()], max_epochs=1,
                           enable_checkpointing=False)
    module, data = tiny_module(), TinyData()
    trainer.test(module, data)
    rows = _rows(run_directory(trainer) / "metrics.csv")
    assert len(rows) == 1 and rows[0]["stage"] == "test" and rows[0]["test/acc"] != ""


def test_rows_survive_a_checkpoint(tmp_path):
    history = MetricsHistory()
    history.rows = [{"stage": "fit", "epoch": 0, "step": 2, "val/acc": 0.5}]
    restored = MetricsHistory()
    restored.load_state_dict(history.state_dict())
    assert restored.rows == history.rows and restored.rows is not history.rows


def test_figure_draws_only_logged_quantities():
    rows = [{"stage": "fit", "epoch": e, "step": e, "val/acc": 0.5 + e / 10,
             "orbit/val/DI": 1.0 / (e + 1), "orbit/val/LI": float("nan")} for e in range(3)]
    figure = history_figure(rows)
    titles = [axis.get_title() for axis in figure.axes]
    assert len(titles) == 2 and titles[0] == "accuracy" and titles[1].startswith("DI")
    assert history_figure([{"stage": "test", "epoch": 0, "step": 0, "test/acc": 1.0}]) is None


@pytest.mark.parametrize("kwargs, error", [
    ({"figure_format": "jpg"}, ValueError), ({"dpi": 0}, ValueError), ({"figure": 1}, TypeError),
])
def test_bad_arguments(kwargs, error):
    with pytest.raises(error):
        MetricsHistory(**kwargs)


def test_figure_values_follow_the_rows():
    rows = [{"stage": "fit", "epoch": e, "step": e, "val/acc": v}
            for e, v in enumerate((0.25, 0.5, 0.75))]
    line = history_figure(rows).axes[0].get_lines()[0]
    assert list(line.get_xdata()) == [0, 1, 2]
    assert [float(v) for v in line.get_ydata()] == [0.25, 0.5, 0.75]  # exact binary fractions
