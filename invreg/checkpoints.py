"""Checkpoint files are checked whole before anything is loaded from them or measured on them.

``torch.save`` (and so Lightning's ``Trainer.save_checkpoint``) writes a zip archive whose
members are stored uncompressed, each with its CRC-32. ``torch.load`` does not check those
CRCs: a checkpoint whose weight bytes changed on disk (a failing disk, a bad copy) loads
without a word, and every number measured on it is wrong. :func:`verify_checkpoint` reads the
whole file once and checks, in order, that it

1. exists and is a file (not a folder),
2. is not empty (0 bytes: an interrupted save or copy),
3. is a zip archive (torch's format; the pre-1.6 pickle format is let through, it carries no
   checksums), or else is reported as *not a PyTorch checkpoint*,
4. can be read to its end (a truncated file has lost the archive's directory),
5. holds a ``data.pkl`` (a zip of other files is not a checkpoint), and
6. every member matches its CRC-32 (:meth:`zipfile.ZipFile.testzip`).

Each failure is a :class:`CheckpointError` (a ``ValueError``; a missing file is also a
``FileNotFoundError``) whose one-line message names the argument, the file, what is wrong and
the fix. :func:`verify_ckpt_path` applies it to a Trainer's ``ckpt_path``, skipping what
Lightning resolves itself (``"best"``, ``"last"``, URLs, sharded folders).
"""

from __future__ import annotations

import os
import pickle
import zipfile
import zlib
from pathlib import Path

__all__ = ["CheckpointError", "CheckpointNotFoundError", "verify_checkpoint",
           "verify_ckpt_path"]

#: the fix for a file whose bytes are damaged
RESAVE = ("re-save or re-download the checkpoint; it may be truncated or damaged by an "
          "interrupted save or copy")
#: what a file that is not a checkpoint at all should be instead
EXPECTED = "pass a .ckpt file written by `invreg fit` (or Trainer.save_checkpoint / torch.save)"
#: the first bytes of a zip archive's first member (a local file header)
ZIP_MAGIC = b"PK\x03\x04"
#: the first bytes of torch's legacy (pre-1.6, non-zip) format: its pickled magic number
LEGACY_MAGIC = pickle.dumps(0x1950A86A20F9469CFC6C, protocol=2)[:-1]
#: ``ckpt_path`` values Lightning resolves itself, not file paths
LIGHTNING_NAMES = ("best", "last", "hpc", "registry")


class CheckpointError(ValueError):
    """A checkpoint file that cannot be used: empty, not a checkpoint, truncated, corrupted."""


class CheckpointNotFoundError(CheckpointError, FileNotFoundError):
    """No checkpoint file at the given path."""


def verify_checkpoint(path: str | os.PathLike, argument: str = "ckpt_path") -> Path:
    """Check the checkpoint file at ``path`` whole (module docstring) and return its ``Path``.

    Args:
        path: the checkpoint file.
        argument: the name the user gave it (``ckpt_path``, ``upstream_checkpoint``, ...), the
            first word of every message.

    Raises:
        CheckpointNotFoundError: no file at ``path``.
        CheckpointError: a folder, an empty file, not a PyTorch checkpoint, a truncated or
            damaged archive, or a member whose bytes fail their CRC-32.

    The whole file is read once (CRC-32 runs at about a GB/s).

    >>> import tempfile, torch
    >>> with tempfile.TemporaryDirectory() as folder:
    ...     path = Path(folder) / "weights.ckpt"
    ...     torch.save({"w": torch.ones(3)}, path)
    ...     ok = verify_checkpoint(path) == path
    ...     _ = path.write_bytes(b"")
    ...     try:
    ...         verify_checkpoint(path)
    ...     except CheckpointError as error:
    ...         message = str(error)
    >>> ok, "is empty (0 bytes)" in message
    (True, True)
    """
    path = Path(path)
    name = f"{argument}: {str(path)!r}"
    if not path.exists():
        raise CheckpointNotFoundError(
            f"{argument}: no such checkpoint file {str(path)!r}; check the path (a run's "
            f"summary.json lists its checkpoints)")
    if path.is_dir():
        raise CheckpointError(f"{name} is a folder, not a checkpoint file; pass the .ckpt "
                              f"file inside it (e.g. <run>/checkpoints/last.ckpt)")
    try:
        with path.open("rb") as file:
            head = file.read(len(LEGACY_MAGIC))
            if not head:
                raise CheckpointError(f"{name} is empty (0 bytes), not a checkpoint; {RESAVE}")
            if head.startswith(LEGACY_MAGIC):
                return path  # torch's legacy format: no checksums to verify
            if not head.startswith(ZIP_MAGIC):
                raise CheckpointError(f"{name} is not a PyTorch checkpoint (not the zip "
                                      f"archive torch.save writes); {EXPECTED}")
            _check_archive(file, name)
    except OSError as error:
        raise CheckpointError(f"{name} cannot be read ({error.strerror or error}); check the "
                              f"file's permissions and the disk") from None
    return path


def _check_archive(file, name: str) -> None:
    try:
        with zipfile.ZipFile(file) as archive:
            members = archive.namelist()
            if not any(m == "data.pkl" or m.endswith("/data.pkl") for m in members):
                raise CheckpointError(f"{name} is a zip archive but not a PyTorch checkpoint "
                                      f"(no data.pkl inside); {EXPECTED}")
            bad = archive.testzip()
    except (zipfile.BadZipFile, EOFError, zlib.error, NotImplementedError, ValueError) as error:
        if isinstance(error, CheckpointError):
            raise
        raise CheckpointError(f"{name} is truncated or damaged (the zip archive cannot be read:"
                              f" {first_line(error)}); {RESAVE}") from None
    if bad is not None:
        raise CheckpointError(f"{name} is corrupted: its member {bad!r} fails its CRC-32 check "
                              f"(its bytes changed after it was saved); {RESAVE}")


def verify_ckpt_path(ckpt_path: object, argument: str = "ckpt_path") -> None:
    """:func:`verify_checkpoint` for a Trainer's ``ckpt_path`` when it names a local file;
    ``None``, Lightning's names (``"best"``, ``"last"``, ``"hpc"``, ``"registry..."``), URLs
    (``s3://...``) and folders (sharded checkpoints of FSDP / DeepSpeed) are left to Lightning.
    """
    if not isinstance(ckpt_path, str | os.PathLike):
        return
    text = os.fspath(ckpt_path)
    if text in LIGHTNING_NAMES or text.startswith("registry:") or "://" in text:
        return
    if Path(text).is_dir():
        return
    verify_checkpoint(text, argument)


def first_line(error: BaseException) -> str:
    """The first non-empty line of ``error``'s message, else its type's name."""
    lines = [line for line in str(error).splitlines() if line.strip()]
    return lines[0].strip() if lines else type(error).__name__
