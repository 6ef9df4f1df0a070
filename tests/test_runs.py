"""Two runs sharing ``default_root_dir`` get two folders; the second leaves the first untouched.

Each run's ``config.yaml``, ``checkpoints/`` and callback media (PNG, CSV) land in the folder
of :func:`invreg.runs.run_directory`, with no logger, the CSV logger and W&B (offline).
"""

from pathlib import Path

import pytest
import yaml

from invreg.cli import run_cli
from invreg.runs import free_path, run_directory

ROOT = Path(__file__).resolve().parent.parent
QUICKSTART = ROOT / "configs" / "quickstart.yaml"
# the quickstart's checkpoint plus one media callback, at its cheapest: a PNG and a CSV per run
CALLBACKS = """
trainer:
  callbacks:
    - class_path: pytorch_lightning.callbacks.ModelCheckpoint
      init_args: {monitor: val/acc, mode: max, filename: best}
    - class_path: invreg.callbacks.DriftCallback
      init_args: {betas: [0.0, 0.5], num_samples: 16, orbit_size: 2}
"""
LOGGERS = {
    "none": lambda root: ["--trainer.logger", "false"],
    "csv": lambda root: ["--config", str(ROOT / "configs/loggers/csv.yaml"),
                         "--trainer.logger.init_args.save_dir", str(root / "logs")],
    "wandb": lambda root: ["--config", str(ROOT / "configs/loggers/wandb.yaml"),
                           "--trainer.logger.init_args.save_dir", str(root / "logs")],
}


def fit(root: Path, logger: str, invariance_weight: str) -> Path:
    callbacks = root / "callbacks.yaml"
    callbacks.write_text(CALLBACKS)
    cli = run_cli(["fit", "--config", str(QUICKSTART), "--config", str(callbacks),
                   *LOGGERS[logger](root), "--trainer.default_root_dir", str(root),
                   "--trainer.max_epochs", "1", "--trainer.limit_train_batches", "2",
                   "--trainer.limit_val_batches", "1",
                   "--model.init_args.invariance_weight", invariance_weight])
    if logger == "wandb":
        import wandb

        wandb.finish()  # the next WandbLogger would otherwise reuse this run
    folder = run_directory(cli.trainer)
    assert Path(cli.trainer.checkpoint_callback.dirpath) == folder / "checkpoints"
    return folder


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


@pytest.mark.parametrize("logger", list(LOGGERS))
def test_two_runs_in_one_root_keep_separate_folders(tmp_path, monkeypatch, logger):
    monkeypatch.setenv("WANDB_MODE", "offline")
    first = fit(tmp_path, logger, "1.0")
    before = snapshot(first)
    second = fit(tmp_path, logger, "0.0")
    assert first != second
    expected_parent = {"none": tmp_path, "csv": tmp_path / "logs" / "invreg",
                       "wandb": tmp_path / "logs" / "invreg"}[logger]
    assert first.parent == second.parent == expected_parent
    if logger != "wandb":  # W&B names the folder by its run id
        assert (first.name, second.name) == ("version_0", "version_1")
    else:  # each run folder links to its own W&B folder
        targets = [(folder / "wandb").resolve() for folder in (first, second)]
        assert targets[0] != targets[1]
        assert targets[0].name.endswith(first.name) and targets[1].name.endswith(second.name)
    for folder, weight in ((first, 1.0), (second, 0.0)):
        config = yaml.safe_load((folder / "config.yaml").read_text())
        assert config["model"]["init_args"]["invariance_weight"] == weight
        assert (folder / "checkpoints" / "best.ckpt").is_file()
        assert list(folder.glob("drift/val_step*.csv")) and list(folder.glob("drift/*.png"))
    assert snapshot(first) == before, "the second run changed the first run's files"
    # nothing was written outside the run folders (W&B keeps its own files under wandb/)
    assert not (tmp_path / "checkpoints").exists() and not (tmp_path / "config.yaml").exists()


def test_free_path_never_returns_an_existing_file(tmp_path):
    path = tmp_path / "config.yaml"
    assert free_path(path) == path
    path.write_text("first")
    (tmp_path / "config-v1.yaml").write_text("second")
    assert free_path(path) == tmp_path / "config-v2.yaml"
