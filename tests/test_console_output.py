"""What ``invreg fit`` / ``invreg test`` print when a user runs them with output to a file: no
Lightning tips or internal deprecations, no progress-bar ``\\r`` redraws, no colour codes, one
table per run with the useful numbers first, and a note on the rows measured on a subset."""

import json
import logging
import os
import re
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import pytorch_lightning as pl
from pytorch_lightning.callbacks import TQDMProgressBar
from pytorch_lightning.loggers import WandbLogger

from invreg.console import (
    EpochLinePrinter,
    prepare_wandb_logger,
    quiet_console,
    use_line_progress,
)
from invreg.runs import console_metrics

ROOT = Path(__file__).resolve().parent.parent
QUICKSTART = ROOT / "configs" / "quickstart.yaml"
TINY = ["--trainer.max_epochs", "2", "--trainer.limit_train_batches", "2",
        "--trainer.limit_val_batches", "1", "--trainer.limit_test_batches", "1"]
NOISE = ("Tip", "litlogger", "litmodels", "LeafSpec", "log_every_n_steps",
         "anonymous setting", "git root", "dirpath has changed", "Run history", "Run summary")
FIT_ROWS = ["train/acc_epoch", "val/acc", "orbit/val/DI", "orbit/val/LI", "orbit/val/SI",
            "orbit/val/consistency", "orbit/val/orbit_accuracy", "orbit/val/accuracy",
            "drift/val/DI/beta_0.50", "drift/val/accuracy_ratio/beta_0.50",
            "spectral/val/jacobian_sigma_max", "train/loss_epoch", "val/loss"]


def invreg(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    """The console script with stdout and stderr going to pipes (not a terminal), read as
    bytes (``text=True`` would turn every ``\r`` into a newline)."""
    env = {**os.environ, "WANDB_MODE": "offline", "OMP_NUM_THREADS": "1"}
    env.pop("INVREG_TRACEBACK", None)
    command = [str(Path(sys.executable).parent / "invreg"), *args]
    done = subprocess.run(command, cwd=cwd, env=env, capture_output=True, timeout=300)
    done.stdout, done.stderr = done.stdout.decode(), done.stderr.decode()
    return done


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, subprocess.CompletedProcess]:
    """``invreg fit`` of the quickstart (progress bar on, W&B offline), then ``invreg test`` of
    its best checkpoint, both with output to pipes."""
    folder = tmp_path_factory.mktemp("console")
    common = ["--config", str(QUICKSTART), *TINY, "--trainer.default_root_dir", str(folder),
              "--trainer.logger.init_args.save_dir", str(folder / "wandb_runs")]
    fit = invreg(["fit", *common, "--trainer.enable_progress_bar", "true"], cwd=folder)
    assert fit.returncode == 0, fit.stderr[-3000:]
    best = next(folder.rglob("best.ckpt"))
    test = invreg(["test", *common, "--ckpt_path", str(best)], cwd=folder)
    assert test.returncode == 0, test.stderr[-3000:]
    return {"fit": fit, "test": test}


def table(stdout: str) -> tuple[list[str], list[str]]:
    """The rows of the one metrics table (names) and the lines after it."""
    lines = stdout.splitlines()
    headers = [i for i, line in enumerate(lines) if line.split()[:2] == ["metric", "value"]]
    assert len(headers) == 1, stdout  # one table
    rows, rest = [], lines[headers[0] + 2:]
    while rest and re.fullmatch(r"  \S+ +\S+", rest[0]):
        rows.append(rest.pop(0).split()[0])
    return rows, rest


def test_no_lightning_tips_internal_deprecations_or_wandb_warnings(runs):
    for stage, done in runs.items():
        for name, text in (("stdout", done.stdout), ("stderr", done.stderr)):
            for noise in NOISE:
                assert noise not in text, f"{noise!r} in the {stage} {name}:\n{text}"
    assert "wandb sync" in runs["fit"].stderr  # W&B's own useful line stays


def test_a_log_file_gets_a_line_per_epoch_no_bar_and_no_colour_codes(runs):
    for stage, done in runs.items():
        for name, text in (("stdout", done.stdout), ("stderr", done.stderr)):
            assert "\x1b[" not in text, f"colour codes in the {stage} {name}:\n{text}"
            assert "\r" not in text, f"carriage returns in the {stage} {name}:\n{text[-2000:]}"
    epochs = [line for line in runs["fit"].stdout.splitlines() if line.startswith("epoch ")]
    assert [line.split()[1] for line in epochs] == ["1/2", "2/2"], runs["fit"].stdout
    assert "train/loss_epoch" in epochs[-1] and "val/acc" in epochs[-1]


def test_the_table_leads_with_accuracy_then_invariance_and_keeps_settings_out(runs):
    fit = runs["fit"].stdout
    rows, after = table(fit)
    # accuracy, invariance, drift at the largest beta, one sigma_max, loss; no setting
    assert rows == FIT_ROWS, fit
    assert "SI_baseline" not in fit and "jacobian_sigma_max_p10" not in fit
    summary = Path(next(line.split("summary: ")[1] for line in after if "summary: " in line))
    saved = json.loads(summary.read_text())["metrics"]
    assert {"orbit/val/SI_baseline", "spectral/val/jacobian_sigma_max_p10",
            "drift/val/DI/beta_0.10"} <= set(saved)  # everything stays in summary.json
    rows, _ = table(runs["test"].stdout)
    assert rows[:2] == ["test/acc", "orbit/test/DI"], runs["test"].stdout


def test_test_prints_its_metrics_once(runs):
    test = runs["test"].stdout
    table(test)  # one invreg table
    assert "DataLoader 0" not in test and "Test metric" not in test, test  # no Lightning table


def test_rows_measured_on_a_subset_are_labelled(runs):
    _, after = table(runs["fit"].stdout)
    assert re.fullmatch(r"  note: orbit/val/…, drift/val/…: a subset of \d+ val samples; "
                        r"spectral/val/…: \d+ \(the callbacks' num_samples\); "
                        r"val/acc: every val batch", after[0]), runs["fit"].stdout
    rows, after = table(runs["test"].stdout)
    assert "orbit/test/accuracy" in rows and "test/acc" in rows
    assert re.match(r"  note: orbit/test/…, drift/test/…: a subset of \d+ test samples", after[0])
    assert after[0].endswith("test/acc: every test batch"), after[0]


def test_a_terminal_keeps_the_bar_a_file_gets_epoch_lines():
    class Stream:
        def __init__(self, tty: bool) -> None:
            self.tty = tty

        def isatty(self) -> bool:
            return self.tty

    def trainer(**kwargs) -> pl.Trainer:
        return pl.Trainer(logger=False, enable_checkpointing=False,
                          enable_model_summary=False, **kwargs)

    terminal = trainer()
    assert not use_line_progress(terminal, Stream(True))
    assert type(terminal.progress_bar_callback) is TQDMProgressBar
    to_file = trainer()
    assert use_line_progress(to_file, Stream(False))
    assert isinstance(to_file.progress_bar_callback, EpochLinePrinter)
    assert sum(isinstance(c, TQDMProgressBar) for c in to_file.callbacks) == 0
    off = trainer(enable_progress_bar=False)
    assert not use_line_progress(off, Stream(False)) and off.progress_bar_callback is None


def test_quiet_console_drops_only_its_messages_and_only_inside():
    before = list(warnings.filters)
    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append
    lightning = logging.getLogger("pytorch_lightning")
    lightning.addHandler(handler)
    try:
        from pytorch_lightning.utilities.rank_zero import rank_zero_info

        with quiet_console("test"), warnings.catch_warnings(record=True) as caught:
            warnings.warn("`isinstance(treespec, LeafSpec)` is deprecated, use ...",
                          FutureWarning, stacklevel=1)
            warnings.warn("The dirpath has changed from 'a' to 'b', therefore ... won't be "
                          "reloaded. Only `best_model_path` will be reloaded.", UserWarning,
                          stacklevel=1)
            warnings.warn("a real warning", UserWarning, stacklevel=1)
            rank_zero_info("💡 Tip: try installing litlogger")
            rank_zero_info("Seed set to 0")
        assert [str(w.message) for w in caught] == ["a real warning"]
        assert [r.getMessage() for r in records] == ["Seed set to 0"]
        rank_zero_info("💡 Tip: outside")  # a library user's own Lightning run: untouched
        assert records[-1].getMessage() == "💡 Tip: outside"
    finally:
        lightning.removeHandler(handler)
    assert warnings.filters == before


def test_console_table_order_and_what_stays_in_summary_json():
    metrics = {name: 0.5 for name in [
        "val/f1", "val/task_loss", "val/invariance_loss", "val/loss", "val/acc",
        "train/acc_epoch", "train/acc_step", "train/loss_epoch",
        "train/invariance_weight_epoch", "orbit/val/SI_baseline", "orbit/val/SI",
        "orbit/val/DI", "spectral/val/jacobian_sigma_max",
        "spectral/val/jacobian_sigma_max_p90", "spectral/first_layer_sigma_max",
        "drift/val/DI/beta_0.00", "drift/val/DI/beta_0.25", "drift/val/DI/beta_1.00",
        "spectral/weights/backbone.head.weight/sigma_1"]}
    assert list(console_metrics(metrics)) == [
        "train/acc_epoch", "val/acc", "orbit/val/DI", "orbit/val/SI", "drift/val/DI/beta_1.00",
        "spectral/val/jacobian_sigma_max", "train/invariance_weight_epoch",
        "train/loss_epoch", "val/loss", "val/f1"]


def test_wandb_logger_starts_without_the_settings_wandb_warns_about(tmp_path):
    logger = WandbLogger(project="p", save_dir=str(tmp_path / "new"), offline=True)
    prepare_wandb_logger(logger, console=True)
    assert "anonymous" not in logger._wandb_init
    assert (tmp_path / "new").is_dir()  # W&B's git lookup finds the folder
    assert logger._wandb_init["settings"]["max_end_of_run_history_metrics"] == 0
    asked = WandbLogger(project="p", save_dir=str(tmp_path), offline=True, anonymous=True)
    prepare_wandb_logger(asked)
    assert asked._wandb_init["anonymous"] == "allow"  # the config's own choice is passed on
