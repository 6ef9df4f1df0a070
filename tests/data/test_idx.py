import gzip
import struct

import numpy as np
import pytest

from invreg.data.idx import parse_idx, read_idx, read_idx_shape, write_idx


def test_parse_hand_written_bytes():
    # magic 0x00000803: uint8, 3 dims; shape 2 x 1 x 3; then 6 pixel values
    data = bytes([0, 0, 8, 3]) + struct.pack(">3I", 2, 1, 3) + bytes([0, 1, 2, 253, 254, 255])
    array = parse_idx(data, ndim=3)
    assert array.dtype == np.uint8
    np.testing.assert_array_equal(array, [[[0, 1, 2]], [[253, 254, 255]]])


def test_parse_big_endian_int32():
    data = bytes([0, 0, 0x0C, 1]) + struct.pack(">I", 2) + struct.pack(">2i", -7, 70000)
    np.testing.assert_array_equal(parse_idx(data), [-7, 70000])


@pytest.mark.parametrize("dtype", ["u1", "i1", "i2", "i4", "f4", "f8"])
@pytest.mark.parametrize("name", ["plain-idx", "compressed-idx.gz"])
def test_write_read_roundtrip(tmp_path, dtype, name):
    array = (np.arange(24).reshape(2, 3, 4) - 5).astype(dtype)
    path = write_idx(tmp_path / name, array)
    assert (path.read_bytes()[:2] == b"\x1f\x8b") == name.endswith(".gz")
    back = read_idx(path, ndim=3)
    assert back.dtype == np.dtype(dtype) and back.dtype.isnative
    np.testing.assert_array_equal(back, array)
    assert read_idx_shape(path, ndim=3) == (2, 3, 4)


def test_gzip_recognised_by_content_not_name(tmp_path):
    array = np.array([5, 6], dtype=np.uint8)
    path = tmp_path / "labels"  # no .gz suffix, gzip content
    path.write_bytes(gzip.compress(write_idx(tmp_path / "tmp", array).read_bytes()))
    np.testing.assert_array_equal(read_idx(path), array)


def test_corrupt_magic_number_raises(tmp_path):
    path = write_idx(tmp_path / "images", np.zeros((2, 3, 3), np.uint8))
    raw = bytearray(path.read_bytes())
    raw[0] = 0x42
    path.write_bytes(bytes(raw))
    with pytest.raises(ValueError, match=r"images: not an IDX file.*0x42000803"):
        read_idx(path)
    with pytest.raises(ValueError, match="not an IDX file"):
        read_idx_shape(path)


def test_unknown_type_code_and_wrong_ndim_raise(tmp_path):
    with pytest.raises(ValueError, match="not an IDX file"):
        parse_idx(bytes([0, 0, 0x07, 1, 0, 0, 0, 0]))
    labels = write_idx(tmp_path / "labels", np.zeros(4, np.uint8))
    with pytest.raises(ValueError, match="DD = 03 dimensions"):
        read_idx(labels, ndim=3)


def test_truncated_and_oversized_data_raise(tmp_path):
    path = write_idx(tmp_path / "images", np.zeros((2, 3, 3), np.uint8))
    raw = path.read_bytes()
    path.write_bytes(raw[:-1])
    with pytest.raises(ValueError, match=r"declares shape \(2, 3, 3\).*truncated or corrupt"):
        read_idx(path)
    path.write_bytes(raw + b"\0")
    with pytest.raises(ValueError, match="truncated or corrupt"):
        read_idx(path)
    with pytest.raises(ValueError, match="truncated IDX header"):
        parse_idx(bytes([0, 0, 8, 3, 0, 0]))


def test_corrupt_gzip_raises(tmp_path):
    path = tmp_path / "images.gz"
    path.write_bytes(gzip.compress(b"\0" * 100)[:-10])
    with pytest.raises(ValueError, match="corrupt gzip"):
        read_idx(path)


def test_write_rejects_dtypes_without_idx_code(tmp_path):
    with pytest.raises(ValueError, match="no IDX type"):
        write_idx(tmp_path / "x", np.zeros(3, np.int64))
