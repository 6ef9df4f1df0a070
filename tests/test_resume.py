"""Resuming from a checkpoint reproduces the uninterrupted run bit for bit.

The quickstart run is trained for 3 epochs in one go, and for 1 epoch then resumed from its
``last.ckpt`` to epoch 3, both through the ``invreg`` command in a fresh process, as a user
runs it. Every random choice after the checkpoint (the shuffle order, the data module's
augmentation, the module's augmentation and transformed copies) must be the same, so the
final weights, the optimiser state and every logged validation metric are equal exactly.

A checkpoint saved in the middle of an epoch (``ModelCheckpoint(every_n_train_steps=...)``)
cannot resume exactly (Lightning restarts the epoch's data from its first batch): ``invreg
fit --ckpt_path`` refuses it in a few lines, saying which checkpoints do resume exactly, while
an epoch-end checkpoint of the same run still resumes bit for bit.
"""

import csv
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

ROOT = Path(__file__).resolve().parent.parent
QUICKSTART = ROOT / "configs" / "quickstart.yaml"


def _config(tmp_path: Path, name: str, max_epochs: int, model: dict, data: dict,
            every_n_train_steps: int | None = None) -> Path:
    """The quickstart config, small: cheap callbacks, a CSV logger, files under tmp_path;
    with ``every_n_train_steps`` every epoch's checkpoint is kept (``ckpt/epoch=E.ckpt``) and
    a second ModelCheckpoint saves every that many steps (``steps/step=S.ckpt``)."""
    config = yaml.safe_load(QUICKSTART.read_text())
    run_dir = tmp_path / name
    config["trainer"].update(
        max_epochs=max_epochs,
        default_root_dir=str(run_dir),
        logger={
            "class_path": "pytorch_lightning.loggers.CSVLogger",
            "init_args": {"save_dir": str(run_dir), "name": "csv"},
        },
        callbacks=[
            {
                "class_path": "pytorch_lightning.callbacks.ModelCheckpoint",
                "init_args": {"dirpath": str(run_dir / "ckpt"), "save_last": True},
            }
        ],
    )
    if every_n_train_steps is not None:
        config["trainer"]["callbacks"][0]["init_args"].update(save_top_k=-1, filename="{epoch}")
        config["trainer"]["callbacks"].append({
            "class_path": "pytorch_lightning.callbacks.ModelCheckpoint",
            "init_args": {"dirpath": str(run_dir / "steps"), "filename": "{step}",
                          "every_n_train_steps": every_n_train_steps, "save_top_k": -1},
        })
    config["model"]["init_args"]["backbone"]["init_args"]["hidden_widths"] = [32]
    config["model"]["init_args"].update(model)
    # ~1,400 training digits: an epoch is 6 batches
    config["data"]["init_args"].update(batch_size=256, **data)
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def _fit(*runs: tuple[Path, ...], check: bool = True) -> list[tuple[int, str, str]]:
    """``invreg fit --config <config> <args>`` per run, in parallel processes; each run's
    ``(exit status, stdout, stderr)``; with ``check`` every run must succeed."""
    env = {**os.environ, "WANDB_MODE": "disabled"}
    env.pop("INVREG_TRACEBACK", None)
    processes = [
        subprocess.Popen(
            [sys.executable, "-m", "invreg.cli", "fit", "--config", str(config), *args],
            cwd=config.parent,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        for config, *args in runs
    ]
    results = []
    for process in processes:
        output, errors = process.communicate(timeout=300)
        assert process.returncode == 0 or not check, (output + errors)[-3000:]
        results.append((process.returncode, output, errors))
    return results


def _val_metrics(run_dir: Path) -> dict[int, dict[str, str]]:
    """Per epoch, the logged ``val/*`` values as written (strings: compared exactly)."""
    metrics: dict[int, dict[str, str]] = {}
    for path in run_dir.rglob("metrics.csv"):
        with path.open() as file:
            for row in csv.DictReader(file):
                values = {k: v for k, v in row.items() if k.startswith("val/") and v}
                if values:
                    metrics.setdefault(int(row["epoch"]), {}).update(values)
    return metrics


def _assert_equal_states(expected: dict, resumed: dict, where: str) -> None:
    if isinstance(expected, torch.Tensor):
        assert torch.equal(expected, resumed), f"{where}: max difference " + str(
            (expected.double() - resumed.double()).abs().max().item()
        )
    elif isinstance(expected, dict):
        assert expected.keys() == resumed.keys(), where
        for key in expected:
            _assert_equal_states(expected[key], resumed[key], f"{where}.{key}")
    elif isinstance(expected, (list, tuple)):
        assert len(expected) == len(resumed), where
        for i, (a, b) in enumerate(zip(expected, resumed, strict=True)):
            _assert_equal_states(a, b, f"{where}[{i}]")
    else:
        assert expected == resumed, where


@pytest.mark.parametrize(
    ("model", "data"),
    [
        # both augmentations: the data module's (per sample and epoch) and the module's own
        ({"augment": True}, {"augment_group": "c4"}),
        # a continuous group: bilinear rotations, random copies in validation too
        ({"group": "so2", "orbit_size": 3, "augment": True}, {}),
    ],
    ids=["c4-both-augmentations", "continuous-rotations"],
)
def test_resume_from_last_checkpoint_is_bit_identical(tmp_path, model, data):
    full = _config(tmp_path, "full", 3, model, data)
    first = _config(tmp_path, "first", 1, model, data)
    resumed = _config(tmp_path, "resumed", 3, model, data)
    _fit((full,), (first,))
    _fit((resumed, "--ckpt_path", str(tmp_path / "first" / "ckpt" / "last.ckpt")))

    def load(name):
        path = tmp_path / name / "ckpt" / "last.ckpt"
        return torch.load(path, map_location="cpu", weights_only=False)

    expected, got = load("full"), load("resumed")
    assert expected["epoch"] == got["epoch"] == 2
    assert expected["global_step"] == got["global_step"]
    _assert_equal_states(expected["state_dict"], got["state_dict"], "state_dict")
    _assert_equal_states(expected["optimizer_states"], got["optimizer_states"], "optimizer")
    # the epochs after the checkpoint logged the same validation metrics, digit for digit
    full_metrics, resumed_metrics = _val_metrics(tmp_path / "full"), _val_metrics(
        tmp_path / "resumed"
    )
    assert sorted(resumed_metrics) == [1, 2]
    assert "val/acc" in resumed_metrics[2]
    for epoch in (1, 2):
        assert resumed_metrics[epoch] == full_metrics[epoch], f"epoch {epoch}"


def test_a_mid_epoch_checkpoint_is_refused_and_an_epoch_end_one_resumes_exactly(tmp_path):
    model, data = {"augment": True}, {"augment_group": "c4"}
    # 5 or 6 batches per epoch, a checkpoint every 4 steps: step=4 is in the middle of epoch 0
    full = _config(tmp_path, "full", 2, model, data, every_n_train_steps=4)
    _fit((full,))
    mid_epoch = tmp_path / "full" / "steps" / "step=4.ckpt"
    epoch_end = tmp_path / "full" / "ckpt" / "epoch=0.ckpt"
    assert mid_epoch.is_file() and epoch_end.is_file(), sorted(tmp_path.rglob("*.ckpt"))
    refused = _config(tmp_path, "refused", 2, model, data, every_n_train_steps=4)
    resumed = _config(tmp_path, "resumed", 2, model, data, every_n_train_steps=4)
    (code, _, errors), (resumed_code, _, resumed_errors) = _fit(
        (refused, "--ckpt_path", str(mid_epoch)), (resumed, "--ckpt_path", str(epoch_end)),
        check=False)
    assert resumed_code == 0, resumed_errors[-3000:]
    # refused in a few lines, naming the checkpoint, where it stopped and the fix
    assert code == 1, errors[-3000:]
    assert "Traceback" not in errors, errors[-3000:]
    message = errors[errors.index("invreg: error: "):].strip().splitlines()
    assert len(message) <= 3, message
    for expected in ("ckpt_path: ", "step=4.ckpt", "middle of epoch 0", "after 4 of its",
                     "every_n_epochs", "save_on_train_epoch_end"):
        assert expected in message[0], (expected, message)
    assert not (tmp_path / "refused" / "ckpt").exists(), "nothing was trained"
    # the epoch-end checkpoint of the same run resumes to the same weights, bit for bit

    def load(name):
        path = tmp_path / name / "ckpt" / "epoch=1.ckpt"
        return torch.load(path, map_location="cpu", weights_only=False)

    expected, got = load("full"), load("resumed")
    assert expected["global_step"] == got["global_step"] > 4
    _assert_equal_states(expected["state_dict"], got["state_dict"], "state_dict")
    _assert_equal_states(expected["optimizer_states"], got["optimizer_states"], "optimizer")
