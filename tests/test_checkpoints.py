"""Checkpoint files are checked whole: every way a file can be damaged is a short ValueError."""

from __future__ import annotations

import io
import os
import struct
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import torch

from invreg.checkpoints import (
    CheckpointError,
    CheckpointNotFoundError,
    verify_checkpoint,
    verify_ckpt_path,
)

RESAVE = "re-save or re-download the checkpoint"


def saved(path: Path) -> Path:
    torch.save({"state_dict": {"w": torch.arange(256, dtype=torch.float32)}, "epoch": 3}, path)
    return path


def flip_member_bytes(path: Path, suffix: str = "data/0", count: int = 4) -> None:
    """XOR ``count`` bytes in the middle of the data of the archive member ending in
    ``suffix`` (the weights), leaving the zip structure intact."""
    raw = bytearray(path.read_bytes())
    with zipfile.ZipFile(path) as archive:
        info = next(i for i in archive.infolist() if i.filename.endswith(suffix))
    # local file header: 30 bytes, then the name and the extra field, then the data
    name_length, extra_length = struct.unpack("<HH", raw[info.header_offset + 26:
                                                         info.header_offset + 30])
    start = info.header_offset + 30 + name_length + extra_length + info.file_size // 2
    for i in range(count):
        raw[start + i] ^= 0x5A
    path.write_bytes(bytes(raw))


def test_an_intact_checkpoint_passes(tmp_path):
    path = saved(tmp_path / "ok.ckpt")
    assert verify_checkpoint(path) == path
    assert verify_checkpoint(str(path)) == path


def test_flipped_weight_bytes_fail_the_crc_check_that_torch_load_skips(tmp_path):
    path = saved(tmp_path / "flipped.ckpt")
    with zipfile.ZipFile(path) as archive:  # torch stores its members uncompressed
        assert {i.compress_type for i in archive.infolist()} == {zipfile.ZIP_STORED}
    flip_member_bytes(path)
    # the failure this check exists for: torch loads the damaged weights without a word
    loaded = torch.load(path, weights_only=True)["state_dict"]["w"]
    assert not torch.equal(loaded, torch.arange(256, dtype=torch.float32))
    with pytest.raises(CheckpointError, match=r"ckpt_path: .*flipped.ckpt' is corrupted: its "
                                              r"member '.*data/0' fails its CRC-32 check") as info:
        verify_checkpoint(path)
    assert RESAVE in str(info.value) and "\n" not in str(info.value)


@pytest.mark.parametrize(("content", "expected"), [
    (b"", "is empty (0 bytes), not a checkpoint; " + RESAVE),
    (os.urandom(4000), "is not a PyTorch checkpoint (not the zip archive torch.save writes)"),
    (b"version https://git-lfs.github.com/spec/v1\n", "is not a PyTorch checkpoint"),
])
def test_empty_and_foreign_files(tmp_path, content, expected):
    path = tmp_path / "bad.ckpt"
    path.write_bytes(content)
    with pytest.raises(CheckpointError, match=r"^model_ckpt: '.*bad.ckpt' ") as info:
        verify_checkpoint(path, "model_ckpt")
    assert expected in str(info.value) and "weights_only" not in str(info.value)
    assert isinstance(info.value, ValueError)


@pytest.mark.parametrize("keep", [0.3, 0.9, 0.999])
def test_truncated_files(tmp_path, keep):
    path = saved(tmp_path / "cut.ckpt")
    raw = path.read_bytes()
    path.write_bytes(raw[: int(len(raw) * keep)])
    with pytest.raises(CheckpointError, match="is truncated or damaged .*" + RESAVE):
        verify_checkpoint(path)


def test_a_zip_that_is_not_a_checkpoint(tmp_path):
    path = tmp_path / "other.ckpt"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("readme.txt", "hello")
    with pytest.raises(CheckpointError, match=r"is a zip archive but not a PyTorch checkpoint"):
        verify_checkpoint(path)


def test_missing_file_and_folder(tmp_path):
    with pytest.raises(CheckpointNotFoundError, match="ckpt_path: no such checkpoint file") as info:
        verify_checkpoint(tmp_path / "none.ckpt")
    assert isinstance(info.value, FileNotFoundError) and isinstance(info.value, ValueError)
    with pytest.raises(CheckpointError, match="is a folder, not a checkpoint file"):
        verify_checkpoint(tmp_path)


def test_the_legacy_format_is_let_through(tmp_path):
    path = tmp_path / "legacy.pt"
    torch.save({"w": torch.ones(2)}, path, _use_new_zipfile_serialization=False)
    assert verify_checkpoint(path) == path


def test_ckpt_path_values_lightning_resolves_itself_are_skipped(tmp_path):
    for value in (None, "best", "last", "hpc", "registry", "registry:model:v1",
                  "s3://bucket/x.ckpt", str(tmp_path), io.BytesIO(b"")):
        verify_ckpt_path(value)
    empty = tmp_path / "empty.ckpt"
    empty.touch()
    with pytest.raises(CheckpointError, match="is empty"):
        verify_ckpt_path(str(empty))


def test_a_damaged_ckpt_path_stops_invreg_validate_before_anything_is_built(tmp_path):
    """``invreg validate --ckpt_path`` of a damaged file: one line and exit 1, before
    LightningCLI's own ``torch.load`` of the file (which raised EOFError or IndexError)."""
    path = tmp_path / "empty.ckpt"
    path.touch()
    env = {**os.environ, "WANDB_MODE": "disabled", "OMP_NUM_THREADS": "1"}
    env.pop("INVREG_TRACEBACK", None)
    done = subprocess.run(
        [sys.executable, "-m", "invreg.cli", "validate", "--config",
         str(Path(__file__).parent.parent / "configs" / "quickstart.yaml"),
         "--trainer.logger", "false", "--ckpt_path", str(path)],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 1, done.stderr[-2000:]
    lines = done.stderr.strip().splitlines()
    assert lines[0].startswith("invreg: error: ckpt_path: ") and "is empty (0 bytes)" in lines[0]
    assert len(lines) <= 2 and "Traceback" not in done.stderr, done.stderr
