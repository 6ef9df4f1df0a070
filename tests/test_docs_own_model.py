"""README's "Bring your own model" config, run as a user runs it: ``mypackage.py`` and
``my.yaml`` copied from the README into a folder, then ``PYTHONPATH=. invreg fit``."""

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RUNS = ("DA", "IR", "WT")


def _block(language: str, first_line: str) -> str:
    blocks = re.findall(rf"```{language}\n(.*?)```", (ROOT / "README.md").read_text(), re.DOTALL)
    found = [b for b in blocks if b.startswith(first_line)]
    assert len(found) == 1, f"README: expected one ```{language} block starting {first_line!r}"
    return found[0]


def test_readme_own_model_config_trains_through_the_cli(tmp_path):
    (tmp_path / "mypackage.py").write_text(_block("python", "# mypackage.py"))
    (tmp_path / "my.yaml").write_text(_block("yaml", "# my.yaml"))
    invreg = Path(sys.executable).parent / "invreg"
    env = {**os.environ, "PYTHONPATH": ".", "WANDB_MODE": "disabled"}
    env.pop("INVREG_TRACEBACK", None)
    done = subprocess.run(
        [str(invreg), "fit", "--config", "my.yaml", "--trainer.max_epochs", "1",
         "--trainer.limit_train_batches", "2", "--trainer.limit_val_batches", "1",
         "--trainer.enable_progress_bar", "false"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert list((tmp_path / "runs" / "mynet").rglob("*.ckpt")), "a checkpoint was written"
    # the backbone is the user's class, linked by class_path
    saved = next((tmp_path / "runs" / "mynet").rglob("config.yaml")).read_text()
    assert "mypackage.MyNet" in saved


def test_readme_own_model_needs_its_module_importable(tmp_path):
    (tmp_path / "my.yaml").write_text(_block("yaml", "# my.yaml"))
    env = {**os.environ, "WANDB_MODE": "disabled", "PYTHONPATH": ""}
    env.pop("INVREG_TRACEBACK", None)
    done = subprocess.run(
        [str(Path(sys.executable).parent / "invreg"), "fit", "--config", "my.yaml"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
    )
    assert done.returncode != 0 and "mypackage" in done.stderr


def test_readme_own_model_quickstart_learns_and_keeps_one_folder_per_model(tmp_path):
    """The README's MyNet and my.yaml through ``python -m invreg.quickstart``: every model
    learns (none flagged at chance) and each run sits in ``runs/quickstart/<model>/version_0``."""
    (tmp_path / "mypackage.py").write_text(_block("python", "# mypackage.py"))
    (tmp_path / "my.yaml").write_text(_block("yaml", "# my.yaml"))
    env = {**os.environ, "PYTHONPATH": ".", "WANDB_MODE": "disabled"}
    done = subprocess.run(
        [sys.executable, "-m", "invreg.quickstart", "--config", "my.yaml"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    table = done.stdout[done.stdout.index("Test split"):]
    assert "chance level" not in table
    rows = [line.rsplit(maxsplit=4) for line in table.splitlines() if line[:2] in RUNS]
    accuracies = {label.split()[0]: float(acc) for label, acc, _, _, _ in rows}
    assert set(accuracies) == {"DA", "IR", "WT"}
    assert min(accuracies.values()) > 30.0, accuracies  # chance is 10 %
    for name in accuracies:
        assert (tmp_path / "runs" / "quickstart" / name / "version_0" / "config.yaml").is_file()
        assert not (tmp_path / "runs" / "quickstart" / name / name).exists()
