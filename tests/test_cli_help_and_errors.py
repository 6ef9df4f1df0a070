"""The ``invreg`` console script as a user runs it: short, useful help (every subcommand, one
line each; invreg's classes, not torch.nn's hundreds), a short error for a class_path that does
not import, and an evaluation without a logger that leaves nothing behind."""

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
QUICKSTART = ROOT / "configs" / "quickstart.yaml"
SUBCOMMANDS = {
    "fit": "train a model; each run gets its own run folder",
    "validate": "evaluate a checkpoint on the validation split",
    "test": "evaluate a checkpoint on the test split",
    "predict": "the predictions of a checkpoint on the predict split",
    "report": "invariance report (markdown + HTML) of checkpoints",
}
MY_NET = textwrap.dedent("""
    import torch

    class MyNet(torch.nn.Module):
        def __init__(self, num_classes: int = 10):
            super().__init__()
            self.linear = torch.nn.Linear(64, num_classes)

        def forward(self, x):
            return self.linear(x.flatten(1))
""")


def invreg(args: list[str], cwd: Path, pythonpath: Path | None = None):
    script = Path(sys.executable).parent / "invreg"
    env = {**os.environ, "WANDB_MODE": "disabled", "OMP_NUM_THREADS": "1"}
    env.pop("INVREG_TRACEBACK", None)
    if pythonpath is not None:
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(pythonpath),
                                                          env.get("PYTHONPATH")]))
    return subprocess.run([str(script), *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=300)


def test_help_lists_every_subcommand_report_included_in_one_line_each(tmp_path):
    done = invreg(["--help"], cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == "usage: invreg [-c CONFIG] {fit,validate,test,predict,report} ...", lines[0]
    for name, text in SUBCOMMANDS.items():
        assert f"    {name:<20}{text}" in lines, (name, done.stdout)
    assert len(lines) <= 40, len(lines)


def test_fit_help_is_short_and_names_invreg_classes(tmp_path):
    done = invreg(["fit", "--help"], cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "invreg fit: train a model" in out
    usage = out.split("\n\n")[0]
    assert len(usage.splitlines()) <= 3 and "--trainer.OPTION VALUE" in usage, usage
    assert "invreg.callbacks.OrbitConsistencyCallback" in out  # invreg's own callbacks listed
    assert "checkpoint file to resume training from" in out
    assert len(out.splitlines()) <= 320, len(out.splitlines())


def test_backbone_help_lists_invreg_backbones_and_accepts_any_class_path(tmp_path):
    done = invreg(["fit", "--model.help", "invreg.modules.InvarianceModule"], cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "torch.nn.Identity" not in out and "torch.ao." not in out
    backbone = out[out.index("--model.backbone BACKBONE"):out.index("--model.group.help")]
    for name in ("invreg.models.MLP", "invreg.models.TiedMLP", "invreg.models.E2CNN"):
        assert name in backbone
    assert "invreg.metrics" not in backbone and "your own" in backbone, backbone
    assert len(out.splitlines()) <= 150, len(out.splitlines())
    # the list is a hint: a class of one's own is still accepted
    (tmp_path / "mypkg.py").write_text(MY_NET)
    done = invreg(["fit", "--config", str(QUICKSTART), "--model.backbone.class_path",
                   "mypkg.MyNet", "--print_config"], cwd=tmp_path, pythonpath=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "class_path: mypkg.MyNet" in done.stdout


@pytest.mark.parametrize("class_path, on_path, expected", [
    ("mypkg.MyNte", True, "model.init_args.backbone: class_path 'mypkg.MyNte': module 'mypkg' "
                          "has no class 'MyNte'; did you mean mypkg.MyNet? Fix the class_path."),
    ("mypkg_typo.MyNet", True, "model.init_args.backbone: class_path 'mypkg_typo.MyNet': no "
                               "module named 'mypkg_typo' (did you mean mypkg?); fix the "
                               "class_path, or make the module importable"),
    ("mypkg.MyNet", False, "no module named 'mypkg' on the Python path, though ./mypkg is in "
                           "the current folder; run with PYTHONPATH=."),
], ids=["no-such-class", "no-such-module", "not-on-the-path"])
def test_a_class_path_that_does_not_import_is_a_short_error(tmp_path, class_path, on_path,
                                                            expected):
    (tmp_path / "mypkg.py").write_text(MY_NET)
    done = invreg(["fit", "--config", str(QUICKSTART), "--model.backbone.class_path", class_path,
                   "--print_config"], cwd=tmp_path, pythonpath=tmp_path if on_path else None)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) <= 3, done.stderr
    assert lines[0].startswith("invreg: error: ") and expected in lines[0], done.stderr


def test_test_without_logger_writes_nothing_and_claims_no_best_checkpoint(tmp_path):
    (tmp_path / "checkpoint.yaml").write_text(textwrap.dedent("""
        trainer:
          callbacks:
            - class_path: pytorch_lightning.callbacks.ModelCheckpoint
              init_args: {monitor: val/acc, mode: max, filename: best}
    """))
    common = ["--config", str(QUICKSTART), "--config", str(tmp_path / "checkpoint.yaml"),
              "--trainer.logger", "false", "--trainer.default_root_dir", "null"]
    (tmp_path / "fit").mkdir()
    fit = invreg(["fit", *common, "--trainer.max_epochs", "1", "--trainer.limit_train_batches",
                  "2", "--trainer.limit_val_batches", "1"], cwd=tmp_path / "fit")
    assert fit.returncode == 0, fit.stderr[-3000:]
    best = tmp_path / "fit" / "version_0" / "checkpoints" / "best.ckpt"
    assert f"checkpoint (best): {best}" in fit.stdout, fit.stdout  # a fit lists its own
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    test = invreg(["test", *common, "--trainer.limit_test_batches", "1", "--ckpt_path",
                   str(best)], cwd=elsewhere)
    assert test.returncode == 0, test.stderr[-3000:]
    assert list(elsewhere.iterdir()) == [], "nothing is written into the current folder"
    assert "checkpoint (best)" not in test.stdout, test.stdout
    assert f"checkpoint (loaded): {best}" in test.stdout
    assert "no files kept (no logger, no --trainer.default_root_dir)" in test.stdout
    assert "test/acc" in test.stdout
