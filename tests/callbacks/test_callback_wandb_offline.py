"""One real offline W&B run: the logged keys and media are in the run's local files."""

import json
import struct
import time
from pathlib import Path

from callback_helpers import fast_callbacks, make_trainer, tiny_module


def logged_keys(run_dir: Path, expected: set[str], timeout: float = 30.0) -> set[str]:
    """Keys of the run's summary, from ``files/wandb-summary.json`` and the summary records of
    the offline ``run-<id>.wandb`` file together.

    W&B's service process writes both files; on a loaded machine it can still be flushing them
    when ``wandb.finish()`` returns (the summary file has been seen holding ``{}``), so read
    again until the expected keys are there or ``timeout`` seconds have passed."""
    deadline = time.monotonic() + timeout
    while True:
        keys = _summary_file_keys(run_dir) | _run_file_keys(run_dir)
        if expected <= keys or time.monotonic() > deadline:
            return keys
        time.sleep(0.5)


def _summary_file_keys(run_dir: Path) -> set[str]:
    summary = run_dir / "files" / "wandb-summary.json"
    try:
        return set(json.loads(summary.read_text()))
    except (FileNotFoundError, json.JSONDecodeError):  # not written yet, or half written
        return set()


def _run_file_keys(run_dir: Path) -> set[str]:
    """Summary keys in the offline ``run-<id>.wandb`` file (a LevelDB-style log of protobufs)."""
    from wandb.proto import wandb_internal_pb2

    if not list(run_dir.glob("run-*.wandb")):
        return set()

    data = next(run_dir.glob("run-*.wandb")).read_bytes()
    assert data[:4] == b":W&B"
    block, position, pending, keys = 32768, 7, b"", set()
    while position + 7 <= len(data):
        room = block - position % block
        if room < 7:  # the rest of a block too small for a header is padding
            position += room
            continue
        _, length, kind = struct.unpack("<IHB", data[position : position + 7])
        chunk = data[position + 7 : position + 7 + length]
        position += 7 + length
        if kind in (1, 2):  # full, first
            pending = chunk
        elif kind in (3, 4):  # middle, last
            pending += chunk
        if kind not in (1, 4):
            continue
        if len(chunk) < length:  # the last record is still being written
            break
        record = wandb_internal_pb2.Record()
        record.ParseFromString(pending)
        if record.WhichOneof("record_type") == "summary":
            keys |= {item.key or "/".join(item.nested_key) for item in record.summary.update}
    return keys


def test_offline_run_has_the_keys_and_media(tmp_path, data, monkeypatch):
    import wandb
    from pytorch_lightning.loggers import WandbLogger

    wandb.finish()  # WandbLogger would reuse a run left open by another test
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    logger = WandbLogger(save_dir=str(tmp_path), project="invreg-test", mode="offline")
    module = tiny_module()
    trainer = make_trainer(tmp_path, fast_callbacks(), logger=logger)
    try:
        trainer.fit(module, data)
        run_dir = Path(logger.experiment.dir).parent
    finally:
        wandb.finish()
    expected = {
        "orbit/val/DI", "orbit/val/LI", "orbit/val/SI", "orbit/val/consistency",
        "orbit/val/orbit_accuracy", "spectral/val/jacobian_sigma_max",
        "spectral/first_layer_sigma_max", "drift/val/DI/beta_0.50",
        "drift/val/accuracy_ratio/beta_0.50", "trainer/global_step",
    }
    keys = logged_keys(run_dir, expected)
    assert expected <= keys, expected - keys
    prefixes = {k.rsplit("/", 1)[0] for k in keys}
    for media in ("saliency/val/grid", "spectral/val/jacobian_sigma_max_hist",
                  "drift/val/table", "drift/val/curve_table", "spectral/val/over_training_table"):
        assert media in prefixes, media
    files = run_dir / "files" / "media"
    assert list((files / "images" / "saliency" / "val").glob("grid_*.png"))
    assert list((files / "table" / "drift" / "val").glob("table_*.table.json"))
    # the same information is also in the run directory without W&B
    assert list((tmp_path / "invreg-test").glob("*/saliency/val_step*.png"))
