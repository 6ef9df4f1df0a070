"""``invreg.report`` as a package: every public name importable from ``invreg.report``, and
each checkpoint file checked whole by the report once (not again when it is loaded)."""

from __future__ import annotations

from pathlib import Path

import pytest

import invreg.report
from invreg import checkpoints
from invreg.checkpoints import CheckpointError
from invreg.cli import run_cli
from invreg.report import ReportSettings, evaluate_checkpoint, load_checkpoint, write_report

ROOT = Path(__file__).resolve().parent.parent
QUICKSTART = ROOT / "configs" / "quickstart.yaml"

#: the public names of ``invreg.report`` (its API before it became a package, unchanged)
PUBLIC = {
    "CSS", "DATA_FIX", "METRICS", "REPORT_DPI", "REPORT_FILES", "SAME_MODEL_ARGUMENTS",
    "SUBSET_METRICS", "UNSAVED_FIX", "CheckpointReport", "LoadedCheckpoint", "ReportSettings",
    "available_devices", "build_parser", "check_report_dir", "comparison_figure", "default_name",
    "evaluate_checkpoint", "feature_layers", "format_value", "geed_figure", "load_checkpoint",
    "measure", "merge_layers", "metric_cell", "mixed_groups_warning", "render_html",
    "render_markdown", "resolve_device", "resolve_report_group", "run_report_cli",
    "unique_names", "write_report",
}


def test_every_public_name_is_importable_from_invreg_report():
    assert set(invreg.report.__all__) == PUBLIC
    missing = [name for name in sorted(PUBLIC) if not hasattr(invreg.report, name)]
    assert not missing, missing
    # a submodule of the same name would hide the function
    assert callable(invreg.report.measure) and invreg.report.measure.__name__ == "measure"


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory) -> Path:
    """The checkpoint of a tiny quickstart run (it carries its model and data)."""
    root = tmp_path_factory.mktemp("run")
    run_cli(["fit", "--config", str(QUICKSTART), "--trainer.max_epochs", "1",
             "--trainer.limit_train_batches", "1", "--trainer.limit_val_batches", "1",
             "--trainer.logger", "false", "--trainer.default_root_dir", str(root),
             "--trainer.callbacks", "[{class_path: pytorch_lightning.callbacks.ModelCheckpoint, "
             "init_args: {filename: best}}]"])
    path = root / "version_0" / "checkpoints" / "best.ckpt"
    assert path.is_file(), list(root.rglob("*.ckpt"))
    return path


class Loaded(Exception):
    """Raised in place of the first measurement: everything was loaded by then."""


@pytest.fixture
def checks(monkeypatch) -> list[str]:
    """The whole-file checks (CRC-32 of every member) of checkpoint files, by the name
    each check reports."""
    seen: list[str] = []
    check = checkpoints._check_archive

    def counted(file, name: str) -> None:
        seen.append(name)
        check(file, name)

    monkeypatch.setattr(checkpoints, "_check_archive", counted)
    return seen


def stop_before_measuring(monkeypatch, function) -> None:
    def stop(*args, **kwargs):
        raise Loaded

    monkeypatch.setitem(function.__globals__, "measure", stop)


def test_write_report_checks_each_checkpoint_file_once(ckpt, tmp_path, monkeypatch, checks):
    stop_before_measuring(monkeypatch, write_report)
    with pytest.raises(Loaded):
        write_report([ckpt], tmp_path / "out", settings=ReportSettings(progress=False,
                                                                       device="cpu"))
    # the report checks it once (named ckpt_path); the module's own load_from_checkpoint
    # checks the file it is given too (named checkpoint_path)
    assert checks.count(f"ckpt_path: {str(ckpt)!r}") == 1, checks


def test_loading_alone_still_checks_the_file(ckpt, tmp_path, monkeypatch, checks):
    stop_before_measuring(monkeypatch, evaluate_checkpoint)
    with pytest.raises(Loaded):
        evaluate_checkpoint("IR", ckpt)
    assert checks.count(f"ckpt_path: {str(ckpt)!r}") == 1, checks
    truncated = tmp_path / "truncated.ckpt"
    truncated.write_bytes(ckpt.read_bytes()[:-200])
    with pytest.raises(CheckpointError, match="truncated or damaged"):
        load_checkpoint(truncated)
