"""``invreg report`` on a researcher's own model, as a user runs it from their own folder:
a checkpoint saved from Python with their own backbone class, a checkpoint of ``invreg fit``
naming their own LightningModule, and reports on several groups (``--group``)."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
from report_pages import parse

from invreg.cli import main, run_cli
from invreg.data import DigitsDataModule
from invreg.modules import InvarianceModule
from invreg.report import METRICS, ReportSettings, load_checkpoint

MYPACKAGE = '''
from torch import nn

from invreg.config import RecordsInit
from invreg.modules import InvarianceModule


class MyNet(nn.Module):
    def __init__(self, num_classes: int = 10, channels: int = 4) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.features = nn.Sequential(nn.Conv2d(1, channels, 3, padding=1), nn.ReLU(),
                                      nn.AdaptiveAvgPool2d(2), nn.Flatten())
        self.head = nn.Linear(4 * channels, num_classes)

    def forward(self, x):
        return self.head(self.features(x))


class MyRecordedNet(RecordsInit, MyNet):
    pass


class MyModule(InvarianceModule):
    def forward_with_features(self, x):
        logits = self.backbone(x)
        return logits, logits.softmax(dim=-1)
'''
MY_YAML = """
seed_everything: 0
model:
  class_path: invreg.modules.InvarianceModule
  init_args:
    backbone:
      class_path: mypackage.MyNet
      init_args:
        num_classes: 10
    group: c4
    invariance_weight: 1.0
    lr: 0.003
data:
  class_path: invreg.data.DigitsDataModule
  init_args:
    batch_size: 64
"""
TINY = ["--trainer.max_epochs", "1", "--trainer.limit_train_batches", "1",
        "--trainer.limit_val_batches", "1", "--trainer.logger", "false",
        "--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false"]
QUICK = ["--samples", "8", "--bootstrap", "100", "--saliency_steps", "2", "--betas", "[0.0, 0.5]",
         "--batch_size", "8", "--saliency_rows", "2", "--progress", "false"]


def invreg(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    """The ``invreg`` console script run in ``cwd`` with ``PYTHONPATH=.``."""
    script = Path(sys.executable).parent / "invreg"
    env = {**os.environ, "WANDB_MODE": "disabled", "OMP_NUM_THREADS": "1",
           "PYTHONPATH": "."}
    env.pop("INVREG_TRACEBACK", None)
    return subprocess.run([str(script) if script.exists() else "invreg", *args], cwd=cwd,
                          env=env, capture_output=True, text=True, timeout=300)


def summary_rows(html_path: Path) -> list[dict[str, str]]:
    header, *rows = parse(html_path).tables[0]
    return [dict(zip(header, row, strict=True)) for row in rows]


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    """A user's folder: ``mypackage.py``, ``my.yaml``, and checkpoints of
    ``python.ckpt``: MyNet (no recorded arguments) trained and saved from Python;
    ``recorded.ckpt``: the same with MyRecordedNet (RecordsInit);
    ``cli_c4.ckpt``: ``invreg fit`` of ``mypackage.MyModule`` with MyNet on C4;
    ``cli_t2.ckpt``: ``invreg fit`` of InvarianceModule with MyNet on T2."""
    root = tmp_path_factory.mktemp("user")
    (root / "mypackage.py").write_text(MYPACKAGE)
    (root / "my.yaml").write_text(MY_YAML)
    spec = importlib.util.spec_from_file_location("mypackage", root / "mypackage.py")
    mypackage = importlib.util.module_from_spec(spec)
    saved_path, saved_module = list(sys.path), sys.modules.get("mypackage")
    sys.modules["mypackage"] = mypackage
    sys.path.insert(0, str(root))
    try:
        spec.loader.exec_module(mypackage)
        for backbone, name in ((mypackage.MyNet, "python"), (mypackage.MyRecordedNet,
                                                             "recorded")):
            pl.seed_everything(0, verbose=False)
            model = InvarianceModule(backbone(num_classes=10), group="c4", lr=3e-3)
            trainer = pl.Trainer(max_epochs=1, limit_train_batches=1, limit_val_batches=1,
                                 logger=False, enable_checkpointing=False,
                                 enable_progress_bar=False, enable_model_summary=False)
            trainer.fit(model, DigitsDataModule(batch_size=64, seed=0))
            trainer.save_checkpoint(root / f"{name}.ckpt")
        for name, extra in (("cli_c4", ["--model.class_path", "mypackage.MyModule"]),
                            ("cli_t2", ["--model.init_args.group", "t2"])):
            cli = run_cli(["fit", "--config", str(root / "my.yaml"), *TINY, *extra,
                           "--trainer.default_root_dir", str(root / name),
                           "--trainer.enable_checkpointing", "false"])
            cli.trainer.save_checkpoint(root / f"{name}.ckpt")  # what invreg fit writes
    finally:
        sys.path[:] = saved_path
        sys.modules.pop("mypackage", None)
        if saved_module is not None:
            sys.modules["mypackage"] = saved_module
    return root


def test_a_python_saved_checkpoint_of_an_own_backbone_is_reported_with_its_config(folder):
    """Before: refused, comparing the checkpoint's "not saved" mark with the config's
    backbone ('does not fit the model of config'). Now the config supplies the backbone,
    checked by class; and --group measures it on each named group, one row and one set of
    figures each, the files in the chosen format and the HTML with PNG."""
    out = folder / "report_python"
    done = invreg(["report", "--ckpt_path", "python.ckpt", "--config", "my.yaml",
                   "--group", "c4", "flip", "--figure-format", "pdf", "--dpi", "50",
                   "--report_dir", str(out), *QUICK], cwd=folder)
    assert done.returncode == 0, done.stderr[-3000:]
    rows = summary_rows(out / "report.html")
    assert [(row["checkpoint"], row["group"]) for row in rows] == [("my", "c4"), ("my", "flip")]
    assert list(rows[0])[2:] == [label for _, label, _ in METRICS]
    # one model, two groups: the accuracy on untransformed inputs is the same, the orbit
    # (4 rotations vs 2 mirror images) is not
    assert rows[0]["accuracy"] == rows[1]["accuracy"]
    assert rows[0]["orbit consistency"] != rows[1]["orbit consistency"]
    files = sorted(p.name for p in (out / "figures").iterdir())
    assert files == sorted(["comparison.pdf"] + [f"{i}_my_{group}_{name}.pdf" for i, group in
                                                 enumerate(("c4", "flip"))
                                                 for name in ("drift", "geed", "saliency")])
    assert all((out / "figures" / name).read_bytes().startswith(b"%PDF") for name in files)
    page = parse(out / "report.html")
    assert len(page.images) == 7 and all(src.startswith("data:image/png;base64,")
                                         for src in page.images)
    markdown = (out / "report.md").read_text()
    assert "| my | flip |" in markdown and "(figures/1_my_flip_geed.pdf)" in markdown
    assert "## my, group flip" in markdown


def report_error(args: list[str], folder: Path, capsys, monkeypatch,
                 importable: bool = True) -> str:
    """``invreg report ARGS`` (the console script's entry, in this process) run from
    ``folder``, where ``mypackage`` imports or not: its one-line error."""
    monkeypatch.chdir(folder)
    monkeypatch.delitem(sys.modules, "mypackage", raising=False)
    if importable:
        monkeypatch.syspath_prepend(str(folder))
    try:
        code = main(["report", *args, "--report_dir", str(folder / "none"), *QUICK])
    finally:
        sys.modules.pop("mypackage", None)
    err = capsys.readouterr().err
    assert code == 1 and len(err.strip().splitlines()) <= 2, err
    assert err.startswith("invreg: error: ") and "Traceback" not in err, err
    assert "test split" not in err and not (folder / "none").exists()
    return err.splitlines()[0]


def test_a_python_saved_checkpoint_without_config_names_what_is_missing(
        folder, capsys, monkeypatch):
    """Before: 'does not store its model', although the model reloads. Now a checkpoint saved
    from Python names its module's and data module's classes; what is missing is the
    backbone that records no arguments, and the error says so with the fix. A file without
    the data module's class (saved by another module or an older invreg) names that."""
    line = report_error(["--ckpt_path", "python.ckpt"], folder, capsys, monkeypatch)
    assert "does not store its model" not in line
    assert "could not store its backbone (a MyNet)" in line, line
    assert "invreg.config.RecordsInit" in line and "--config" in line, line

    checkpoint = torch.load(folder / "python.ckpt", weights_only=True)
    del checkpoint["datamodule_hyper_parameters"]["_class_path"]
    torch.save(checkpoint, folder / "no_data_class.ckpt")
    line = report_error(["--ckpt_path", "no_data_class.ckpt"], folder, capsys, monkeypatch)
    assert "not the data module's class (DigitsDataModule)" in line, line
    assert "saved from Python (Trainer.save_checkpoint)" in line, line
    assert "pass --config with a `data:` section" in line, line


def test_a_python_saved_checkpoint_of_a_recorded_backbone_is_reported_without_config(folder):
    """Before: refused ('does not store its model' / 'loaded only from a config'). Now the
    checkpoint written by trainer.save_checkpoint names its classes, and the user's backbone
    (RecordsInit) is rebuilt from its recorded arguments: the file alone is enough."""
    out = folder / "report_recorded"
    done = invreg(["report", "--ckpt_path", "recorded.ckpt", "--report_dir", str(out), *QUICK],
                  cwd=folder)
    assert done.returncode == 0, done.stderr[-3000:]
    rows = summary_rows(out / "report.html")
    assert [row["group"] for row in rows] == ["c4"]
    assert "MyRecordedNet" in (out / "report.html").read_text()


def test_the_config_is_checked_against_a_stored_backbone_by_class(folder, monkeypatch):
    """The "not saved" mark names the backbone's class: a config with another class is still
    refused (an MLP's weights would not fit anyway, but a same-shaped class would load)."""
    monkeypatch.syspath_prepend(str(folder))
    monkeypatch.chdir(folder)
    other = folder / "other.yaml"
    other.write_text(MY_YAML.replace("mypackage.MyNet", "mypackage.MyRecordedNet"))
    with pytest.raises(ValueError, match=r"backbone is a MyNet in the checkpoint, a "
                                         r"MyRecordedNet in the config"):
        load_checkpoint(folder / "python.ckpt", other)
    # a recorded backbone is compared by its description: the same class passes
    module, _, _ = load_checkpoint(folder / "recorded.ckpt", other)
    assert type(module.backbone).__name__ == "MyRecordedNet"
    monkeypatch.delitem(sys.modules, "mypackage", raising=False)


def test_own_module_from_invreg_fit_is_reported_without_config_and_groups_are_named(folder):
    """Before: a checkpoint of `invreg fit` naming mypackage.MyModule was refused ('loaded only
    from a config'). Now it is imported as `invreg fit` imports it (PYTHONPATH=.). Reported
    beside a T2 checkpoint without --group, each row says its group and a warning says the
    rows measure different groups (report.md, report.html, stderr)."""
    out = folder / "report_cli"
    done = invreg(["report", "--ckpt_path", "cli_c4.ckpt", "cli_t2.ckpt", "--name", "C4", "T2",
                   "--report_dir", str(out), *QUICK], cwd=folder)
    assert done.returncode == 0, done.stderr[-3000:]
    rows = summary_rows(out / "report.html")
    assert [(row["checkpoint"], row["group"]) for row in rows] == [("C4", "c4"), ("T2", "t2")]
    html_text = (out / "report.html").read_text()
    assert "mypackage.MyModule" in html_text
    warning = "trained on different groups (C4: c4, T2: t2)"
    assert warning in done.stderr and "invreg report: warning:" in done.stderr
    assert warning in html_text and warning in (out / "report.md").read_text()
    assert "--group c4 t2" in done.stderr


def test_own_module_that_does_not_import_is_a_one_line_error(folder, capsys, monkeypatch):
    line = report_error(["--ckpt_path", "cli_c4.ckpt"], folder, capsys, monkeypatch,
                        importable=False)
    assert "names mypackage.MyModule (model), whose module 'mypackage' cannot be imported" \
        in line, line
    assert "PYTHONPATH=. in the folder that holds mypackage.py" in line, line


def test_a_group_that_cannot_act_on_the_inputs_is_a_one_line_error(folder, capsys,
                                                                  monkeypatch):
    line = report_error(["--ckpt_path", "cli_t2.ckpt", "--group", "c4", "t3"], folder, capsys,
                        monkeypatch)
    assert line.startswith("invreg: error: group: --group t3 cannot act on the inputs of "
                           "'cli_t2' "), line
    assert "input shape (1, 8, 8)" in line and "t2, t4, t8" in line, line


def test_group_and_figure_options_are_checked_before_any_work():
    with pytest.raises(ValueError, match=r"group: --group c5x: Unknown group name"):
        ReportSettings(groups=("c4", "c5x"))
    with pytest.raises(ValueError, match=r"figure_format: must be one of"):
        ReportSettings(figure_format="gif")
    with pytest.raises(ValueError, match=r"dpi: must be an integer"):
        ReportSettings(dpi=5)
    assert ReportSettings(groups=("c4", "c4", "flip")).groups == ("c4", "flip")
