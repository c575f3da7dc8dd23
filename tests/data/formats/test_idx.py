"""read_idx / write_idx: round trips, gzip by content, and every malformed field named."""
from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
import pytest

from ninshiki.data.formats.idx import read_idx, write_idx

FASHION = Path("/usr/share/datasets/fashion-mnist")


@pytest.mark.parametrize("name", ["x-idx3-ubyte", "x-idx3-ubyte.gz"])
@pytest.mark.parametrize("dtype", [np.uint8, np.int8, np.int16, np.int32, np.float32, np.float64])
def test_round_trip(tmp_path: Path, name: str, dtype: type) -> None:
    array = (np.arange(2 * 3 * 5) - 7).astype(dtype).reshape(2, 3, 5)
    write_idx(array, tmp_path / name)
    back = read_idx(tmp_path / name)
    assert back.dtype == np.dtype(dtype) and back.dtype.isnative and back.flags.writeable
    np.testing.assert_array_equal(back, array)
    assert [p.name for p in tmp_path.iterdir()] == [name]  # no temporary file left behind


def test_known_bytes_and_gzip_detected_by_content(tmp_path: Path) -> None:
    raw = b"\x00\x00\x08\x01" + struct.pack(">I", 3) + bytes([7, 8, 9])  # MNIST-style labels file
    (tmp_path / "labels").write_bytes(gzip.compress(raw))               # gzipped, but no .gz suffix
    np.testing.assert_array_equal(read_idx(tmp_path / "labels"), [7, 8, 9])
    write_idx(np.array([7, 8, 9], dtype=np.uint8), tmp_path / "again")
    assert (tmp_path / "again").read_bytes() == raw


@pytest.mark.parametrize("data, message", [
    (b"\x00", "only 1 bytes, the header needs 4"),
    (b"\x01\x02\x08\x01" + struct.pack(">I", 1) + b"\x00", "not an IDX file (magic starts with 0102"),
    (b"\x00\x00\x07\x01" + struct.pack(">I", 1) + b"\x00", "unknown IDX type code 0x07"),
    (b"\x00\x00\x08\x00", "declares 0 dimensions"),
    (b"\x00\x00\x08\x03" + struct.pack(">I", 2), "truncated IDX header"),
    (b"\x00\x00\x08\x02" + struct.pack(">II", 2, 3) + b"\x00" * 5,
     "truncated data: dimensions 2x3 of uint8 need 6 bytes, found 5"),
    (b"\x00\x00\x0c\x01" + struct.pack(">I", 1) + b"\x00" * 6, "trailing bytes after the data"),
])
def test_malformed_files_name_the_file_and_field(tmp_path: Path, data: bytes, message: str) -> None:
    path = tmp_path / "bad-idx1-ubyte"
    path.write_bytes(data)
    with pytest.raises(ValueError) as info:
        read_idx(path)
    assert str(info.value).startswith(f"{path}: ") and message in str(info.value)


def test_corrupt_gzip_and_missing_file(tmp_path: Path) -> None:
    whole = gzip.compress(b"\x00\x00\x08\x01" + struct.pack(">I", 1000) + bytes(1000))
    (tmp_path / "cut.gz").write_bytes(whole[: len(whole) // 2])
    with pytest.raises(ValueError, match="cut.gz: corrupt or truncated gzip data"):
        read_idx(tmp_path / "cut.gz")
    with pytest.raises(FileNotFoundError, match="nope: no such file"):
        read_idx(tmp_path / "nope")


def test_unsupported_dtype(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="cannot store dtype bool"):
        write_idx(np.zeros(3, dtype=bool), tmp_path / "b")
    assert not any(tmp_path.iterdir())


@pytest.mark.skipif(not (FASHION / "t10k-labels-idx1-ubyte.gz").exists(),
                    reason="Debian's dataset-fashion-mnist is not installed (/usr/share/datasets/fashion-mnist)")
def test_reads_the_real_fashion_mnist_labels() -> None:
    labels = read_idx(FASHION / "t10k-labels-idx1-ubyte.gz")
    assert labels.shape == (10000,) and labels.dtype == np.uint8
    assert np.bincount(labels).tolist() == [1000] * 10
