"""The end of an ``invreg`` run: one table of the final metrics on stdout and ``summary.json``
in the run's own folder, whatever the logger; ``--ckpt_path best`` in a fresh process."""

import json
import os
import subprocess
import sys
from pathlib import Path

from invreg.cli import main, run_cli
from invreg.runs import SUMMARY_FILENAME, run_directory, write_summary

ROOT = Path(__file__).resolve().parent.parent
QUICKSTART = ROOT / "configs" / "quickstart.yaml"
TINY = ["--trainer.max_epochs", "1", "--trainer.limit_train_batches", "2",
        "--trainer.limit_val_batches", "1", "--trainer.limit_test_batches", "1"]
ORBIT_ONLY = ["--trainer.callbacks+", "invreg.callbacks.OrbitConsistencyCallback",
              "--trainer.callbacks.num_samples", "32"]
INVARIANCE_KEYS = ("DI", "LI", "SI", "consistency")


def invreg(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    """The console script as a user runs it (W&B offline, the quickstart's logger)."""
    env = {**os.environ, "WANDB_MODE": "offline", "OMP_NUM_THREADS": "1"}
    env.pop("INVREG_TRACEBACK", None)
    command = [str(Path(sys.executable).parent / "invreg"), *args]
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=300)


def summary_path(stdout: str) -> Path:
    lines = [line for line in stdout.splitlines() if line.strip().startswith("summary: ")]
    assert len(lines) == 1, stdout
    return Path(lines[0].split("summary: ", 1)[1])


def test_quickstart_fit_then_test_print_the_invariance_metrics_and_write_summaries(tmp_path):
    common = ["--config", str(QUICKSTART), *TINY, "--trainer.default_root_dir", str(tmp_path),
              "--trainer.logger.init_args.save_dir", str(tmp_path)]
    fit = invreg(["fit", *common], cwd=tmp_path)
    assert fit.returncode == 0, fit.stderr[-3000:]
    headers = [line for line in fit.stdout.splitlines() if line.split()[:2] == ["metric", "value"]]
    assert len(headers) == 1, fit.stdout  # one table
    for key in INVARIANCE_KEYS:
        assert f"orbit/val/{key} " in fit.stdout, fit.stdout
    fit_summary = summary_path(fit.stdout)
    assert fit_summary.name == SUMMARY_FILENAME
    run_folder = fit_summary.parent  # the W&B run's folder, next to its config.yaml
    assert (run_folder / "config.yaml").exists()
    saved = json.loads(fit_summary.read_text())
    assert saved["stage"] == "fit" and saved["run_directory"] == str(run_folder)
    assert 0.0 <= saved["metrics"]["orbit/val/consistency"] <= 1.0
    assert saved["metrics"]["orbit/val/DI"] >= 0.0 and "val/acc" in saved["metrics"]
    best = Path(saved["checkpoints"]["best"])
    assert best == run_folder / "checkpoints" / "best.ckpt" and best.exists()
    # the W&B files are reached from the run folder too: wandb/ links to W&B's own folder
    link = run_folder / "wandb"
    assert link.is_symlink() and link.resolve() == Path(saved["wandb_directory"]).resolve()
    assert list(link.glob("run-*.wandb")) and run_folder.name in link.resolve().name
    fit_text = fit_summary.read_text()

    # the README's command, with the checkpoint's path: the test metrics, orbit/test included
    test = invreg(["test", *common, "--ckpt_path", str(best)], cwd=tmp_path)
    assert test.returncode == 0, test.stderr[-3000:]
    for key in INVARIANCE_KEYS:
        assert f"orbit/test/{key} " in test.stdout, test.stdout
    assert "test/acc " in test.stdout
    test_summary = summary_path(test.stdout)
    assert test_summary.parent != run_folder  # a run of its own
    tested = json.loads(test_summary.read_text())
    assert tested["stage"] == "test" and tested["checkpoints"]["loaded"] == str(best)
    assert fit_summary.read_text() == fit_text  # the fit's summary is untouched


def test_ckpt_path_best_in_a_fresh_process_is_a_one_line_error(tmp_path):
    done = invreg(["test", "--config", str(QUICKSTART), *TINY, "--trainer.logger", "false",
                   "--trainer.default_root_dir", str(tmp_path), "--ckpt_path", "best"],
                  cwd=tmp_path)
    assert done.returncode == 1
    error = [line for line in done.stderr.splitlines() if line.startswith("invreg: error:")]
    assert error == ["invreg: error: ckpt_path='best' only works after fit in the same process; "
                     "pass the checkpoint file, e.g. --ckpt_path <run folder>/checkpoints/"
                     "best.ckpt (the run's summary.json lists its checkpoints)"], done.stderr
    assert "Traceback" not in done.stderr
    assert not list(tmp_path.rglob("*.json"))  # failed before anything ran


def test_without_a_logger_the_summary_is_in_the_runs_version_folder(tmp_path, capsys):
    args = ["validate", "--config", str(QUICKSTART), *TINY, "--trainer.logger", "false",
            "--trainer.callbacks", "[]", *ORBIT_ONLY, "--trainer.default_root_dir",
            str(tmp_path)]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "orbit/val/SI " in out and "val/acc " in out
    saved = json.loads((tmp_path / "version_0" / SUMMARY_FILENAME).read_text())
    assert saved["run_directory"] == str(tmp_path / "version_0")
    assert saved["checkpoints"] == {}
    assert set(INVARIANCE_KEYS) <= {name.split("/")[-1] for name in saved["metrics"]}

    # a second run in the same root gets its own folder, the first summary stays as it was
    first = (tmp_path / "version_0" / SUMMARY_FILENAME).read_text()
    assert main(args) == 0
    assert (tmp_path / "version_1" / SUMMARY_FILENAME).exists()
    assert (tmp_path / "version_0" / SUMMARY_FILENAME).read_text() == first


def test_a_second_summary_in_the_same_folder_never_overwrites_the_first(tmp_path):
    cli = run_cli(["validate", "--config", str(QUICKSTART), *TINY, "--trainer.logger",
                   "pytorch_lightning.loggers.CSVLogger", "--trainer.logger.save_dir",
                   str(tmp_path), "--trainer.callbacks", "[]",
                   "--trainer.default_root_dir", str(tmp_path)])
    folder = run_directory(cli.trainer)
    first = (folder / SUMMARY_FILENAME).read_text()
    second = write_summary(cli.trainer, "test")
    assert second == folder / "summary-v1.json"
    assert (folder / SUMMARY_FILENAME).read_text() == first
    assert json.loads(second.read_text())["stage"] == "test"
