"""Atomic writes: permissions of the written file, strict JSON, nothing left behind on failure."""
import json
import os
import stat

import pytest

from ninshiki.io import atomic_path, write_json, write_text


def test_written_files_get_the_usual_permissions(tmp_path) -> None:
    mask = os.umask(0o022)
    try:
        write_text(tmp_path / "a.txt", "x")
    finally:
        os.umask(mask)
    assert stat.S_IMODE((tmp_path / "a.txt").stat().st_mode) == 0o644


def test_json_writes_nan_as_null_and_refuses_infinity(tmp_path) -> None:
    write_json(tmp_path / "m.json", {"map": 0.5, "ap/none": float("nan"), "nested": [float("nan"), 1.0]})
    text = (tmp_path / "m.json").read_text()
    assert "NaN" not in text
    assert json.loads(text) == {"map": 0.5, "ap/none": None, "nested": [None, 1.0]}
    with pytest.raises(ValueError):
        write_json(tmp_path / "inf.json", {"x": float("inf")})
    assert not (tmp_path / "inf.json").exists()


def test_a_failed_block_leaves_no_file(tmp_path) -> None:
    with pytest.raises(RuntimeError), atomic_path(tmp_path / "out.bin") as tmp:
        tmp.write_bytes(b"half")
        raise RuntimeError
    assert list(tmp_path.iterdir()) == []
