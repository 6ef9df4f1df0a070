"""The installed console scripts ``invreg`` and ``invreg-experiment``, run as a user runs them."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
QUICKSTART = ROOT / "configs" / "quickstart.yaml"
TINY = ["--trainer.max_epochs", "1", "--trainer.limit_train_batches", "2",
        "--trainer.limit_val_batches", "1"]


def script(name: str) -> str:
    path = Path(sys.executable).parent / name
    found = str(path) if path.exists() else shutil.which(name)
    assert found, f"{name} is not installed: `pip install -e .` installs the console scripts"
    return found


def run(command: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "WANDB_MODE": "offline"}
    env.pop("INVREG_TRACEBACK", None)
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=300)


def test_invreg_fit_exits_0_and_prints_no_object_repr(tmp_path):
    done = run([script("invreg"), "fit", "--config", str(QUICKSTART), *TINY,
                "--trainer.logger", "false", "--trainer.callbacks", "[]",
                "--trainer.default_root_dir", str(tmp_path)], cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "object at 0x" not in done.stdout + done.stderr
    assert list(tmp_path.glob("version_0/checkpoints/*.ckpt"))


def test_invreg_bad_config_exits_1_with_a_short_error(tmp_path):
    done = run([script("invreg"), "fit", "--config", str(QUICKSTART), *TINY,
                "--trainer.logger", "false", "--trainer.default_root_dir", str(tmp_path),
                "--model.init_args.group", "c5x"], cwd=tmp_path)
    assert done.returncode == 1
    assert "invreg: error: model (invreg.modules.invariance.InvarianceModule): Unknown group " \
           "name 'c5x'" in done.stderr
    assert "Traceback" not in done.stderr and len(done.stderr.splitlines()) <= 5, done.stderr


def test_diverging_run_exits_1_naming_the_step_and_the_loss_terms(tmp_path):
    # lr 1e30: the first Adam step overflows the logits, the next loss is not finite
    done = run([script("invreg"), "fit", "--config", str(QUICKSTART), *TINY,
                "--trainer.logger", "false", "--trainer.callbacks", "[]",
                "--trainer.default_root_dir", str(tmp_path),
                "--model.init_args.lr", "1e30"], cwd=tmp_path)
    assert done.returncode == 1, done.stderr[-3000:]
    assert "Traceback" not in done.stderr, done.stderr
    error, hint = done.stderr.strip().splitlines()[-2:]  # after Lightning's own start-up lines
    assert error.startswith("invreg: error: model (invreg.modules.invariance.InvarianceModule): "
                            "non-finite loss at epoch 0, global step 1, train batch 1: "
                            "task_loss=nan, invariance_loss=nan, loss=nan."), error
    assert "lower the learning rate" in error and "INVREG_TRACEBACK=1" in hint


def test_wandb_logger_without_wandb_is_one_line(tmp_path):
    """The quickstart config logs to W&B; here ``import wandb`` fails, as without the package."""
    blocked = (
        "import sys; sys.modules['wandb'] = None; "  # `import wandb` now raises ImportError
        "from invreg.cli import main; sys.argv[0] = 'invreg'; sys.exit(main())"
    )
    done = run([sys.executable, "-c", blocked, "fit", "--config", str(QUICKSTART), *TINY,
                "--trainer.default_root_dir", str(tmp_path),
                "--trainer.logger.init_args.save_dir", str(tmp_path)], cwd=tmp_path)
    assert done.returncode == 1
    message = ("invreg: error: the W&B logger (WandbLogger) needs the wandb package: "
               "pip install wandb, or log elsewhere with --config configs/loggers/csv.yaml")
    assert done.stderr.strip().splitlines()[-1] == message, done.stderr
    assert done.stderr.count("error") == 1, done.stderr
    assert "Traceback" not in done.stderr
    assert not list(tmp_path.rglob("*.ckpt")), "it stops before training"


def test_invreg_experiment_exits_0_and_prints_the_table_not_the_repr(tmp_path):
    # the quickest experiment at smoke scale; every one shares this entry point
    out = tmp_path / "out"
    done = run([script("invreg-experiment"), "genuine-table1", "--smoke", "--groups", "T3",
                "--out", str(out)], cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Results(rows=" not in done.stdout + done.stderr
    assert done.stdout.count("| model |") == 1 and (out / "results.md").exists()

