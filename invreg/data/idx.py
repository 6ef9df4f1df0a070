"""Read and write IDX files, the format of MNIST, FashionMNIST, KMNIST and EMNIST.

An IDX file is a 4-byte magic number ``0x00 0x00 <type> <ndim>``, then ``ndim`` big-endian
uint32 sizes, then the values in C order, big-endian. Type codes: ``0x08`` uint8, ``0x09`` int8,
``0x0B`` int16, ``0x0C`` int32, ``0x0D`` float32, ``0x0E`` float64. Files may be gzip-compressed
(recognised by content, whatever the file name).

>>> import numpy as np
>>> parse_idx(bytes([0, 0, 8, 1, 0, 0, 0, 3, 7, 8, 9]))
array([7, 8, 9], dtype=uint8)
"""

from __future__ import annotations

import gzip
import math
import struct
import zlib
from pathlib import Path

import numpy as np

#: IDX type code -> big-endian numpy dtype
IDX_DTYPES: dict[int, np.dtype] = {
    0x08: np.dtype("u1"),
    0x09: np.dtype("i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
_GZIP_MAGIC = b"\x1f\x8b"


def _parse_header(data: bytes, ndim: int | None, source: str) -> tuple[np.dtype, tuple, int]:
    """``(dtype, shape, header length)`` from the start of an IDX file; checks the magic number."""
    magic = data[:4]
    valid = (
        len(magic) == 4
        and magic[:2] == b"\0\0"
        and magic[2] in IDX_DTYPES
        and magic[3] > 0
        and (ndim is None or magic[3] == ndim)
    )
    if not valid:
        dims = "DD dimensions" if ndim is None else f"DD = {ndim:02x} dimensions"
        raise ValueError(
            f"{source}: not an IDX file, or a corrupt one: magic number 0x{magic.hex()}, "
            f"expected 0x0000TTDD with type TT in {{{', '.join(f'{c:02x}' for c in IDX_DTYPES)}}} "
            f"and {dims}"
        )
    header = 4 + 4 * magic[3]
    if len(data) < header:
        raise ValueError(f"{source}: truncated IDX header ({len(data)} bytes)")
    shape = struct.unpack(f">{magic[3]}I", data[4:header])
    return IDX_DTYPES[magic[2]], shape, header


def parse_idx(data: bytes, ndim: int | None = None, source: str = "<bytes>") -> np.ndarray:
    """Decode the bytes of an (uncompressed) IDX file into a read-only array.

    Args:
        data: the file's bytes.
        ndim: the number of dimensions expected, or ``None`` to accept any.
        source: a name for error messages (the file's path).

    Raises:
        ValueError: naming ``source``, if the magic number is not an IDX one (or has the wrong
            number of dimensions) or the size of the data does not match the header.
    """
    dtype, shape, header = _parse_header(data, ndim, source)
    expected = header + math.prod(shape) * dtype.itemsize
    if len(data) != expected:
        raise ValueError(
            f"{source}: the IDX header declares shape {shape} ({expected} bytes), but the file "
            f"holds {len(data)} bytes: truncated or corrupt"
        )
    array = np.frombuffer(data, dtype=dtype, offset=header).reshape(shape)
    if dtype.byteorder == ">":
        array = array.astype(dtype.newbyteorder("="))
        array.flags.writeable = False
    return array


def _read_bytes(path: Path) -> bytes:
    raw = path.read_bytes()
    if raw[:2] != _GZIP_MAGIC:
        return raw
    try:
        return gzip.decompress(raw)
    except (OSError, EOFError, zlib.error) as err:
        raise ValueError(f"{path}: corrupt gzip data ({err})") from err


def read_idx(path: str | Path, ndim: int | None = None) -> np.ndarray:
    """Read an IDX file (gzip-compressed or not) into a read-only array. See :func:`parse_idx`."""
    path = Path(path)
    return parse_idx(_read_bytes(path), ndim=ndim, source=str(path))


def read_idx_shape(path: str | Path, ndim: int | None = None) -> tuple[int, ...]:
    """The array shape an IDX file declares, reading only its header."""
    path = Path(path)
    with open(path, "rb") as f:
        compressed = f.read(2) == _GZIP_MAGIC
    opener = gzip.open if compressed else open
    try:
        with opener(path, "rb") as f:
            head = f.read(4)
            dims = head[3] if len(head) == 4 else 0
            head += f.read(4 * dims)
    except (OSError, EOFError, zlib.error) as err:
        raise ValueError(f"{path}: corrupt gzip data ({err})") from err
    return _parse_header(head, ndim, str(path))[1]


def write_idx(path: str | Path, array: np.ndarray) -> Path:
    """Write ``array`` as an IDX file, gzip-compressed if ``path`` ends in ``.gz``.

    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as folder:
    ...     path = write_idx(Path(folder) / "labels-idx1-ubyte.gz", np.array([3, 1, 4], "u1"))
    ...     read_idx(path, ndim=1)
    array([3, 1, 4], dtype=uint8)
    """
    array = np.asarray(array)
    codes = {dtype.newbyteorder("="): code for code, dtype in IDX_DTYPES.items()}
    native = array.dtype.newbyteorder("=")
    if native not in codes:
        raise ValueError(
            f"write_idx: dtype {array.dtype} has no IDX type; use one of "
            f"{sorted(str(d) for d in codes)}"
        )
    code = codes[native]
    header = bytes([0, 0, code, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    data = header + np.ascontiguousarray(array, dtype=IDX_DTYPES[code]).tobytes()
    path = Path(path)
    path.write_bytes(gzip.compress(data) if path.suffix == ".gz" else data)
    return path
