"""Contained reads and atomic, no-clobber writes."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from mmstd.errors import MmstdError
from mmstd.files import atomic_write_bytes, check_relpath, hash_in_root, inventory, open_in_root, sha256_bytes


def test_atomic_write_refuses_to_clobber(tmp_path: Path) -> None:
    target = tmp_path / "a.json"
    atomic_write_bytes(target, b"one")
    with pytest.raises(MmstdError, match=r"a\.json: already exists; refusing to overwrite it") as info:
        atomic_write_bytes(target, b"two")
    assert info.value.code == "E_OUTPUT_EXISTS"
    assert target.read_bytes() == b"one"
    atomic_write_bytes(target, b"two", overwrite=True)
    assert target.read_bytes() == b"two"
    assert [p.name for p in tmp_path.iterdir()] == ["a.json"]  # no temp files left behind


@pytest.mark.parametrize("rel", ["/etc/passwd", "../x", "a/../b", "a/./b", "a//b", "a\\b", ""])
def test_relpaths_refused_lexically(rel: str) -> None:
    with pytest.raises(MmstdError) as info:
        check_relpath(rel, where="manifest.json")
    assert info.value.code == "E_FS_PATH_ESCAPE"


def test_open_in_root_refuses_symlinked_directory(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret").write_text("s")
    os.symlink(outside, root / "sub")
    with pytest.raises(MmstdError, match=r"sub/secret: goes through a symlink \('sub'\)") as info:
        with open_in_root(root, "sub/secret"):
            pass
    assert info.value.code == "E_FS_PATH_ESCAPE"


def test_open_in_root_refuses_fifo_without_blocking(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "p")
    with pytest.raises(MmstdError, match="is a FIFO") as info:
        with open_in_root(tmp_path, "p"):
            pass
    assert info.value.code == "E_FS_NOT_REGULAR"


def test_open_in_root_missing(tmp_path: Path) -> None:
    with pytest.raises(MmstdError, match="does not exist"):
        with open_in_root(tmp_path, "nope"):
            pass


def test_hash_in_root(tmp_path: Path) -> None:
    (tmp_path / "f").write_bytes(b"abc")
    assert hash_in_root(tmp_path, "f") == (sha256_bytes(b"abc"), 3)


def test_inventory_caps(tmp_path: Path) -> None:
    for i in range(5):
        (tmp_path / f"f{i}").write_text("x")
    with pytest.raises(MmstdError, match="holds more than 3 files") as info:
        inventory(tmp_path, max_files=3)
    assert info.value.code == "E_FS_LIMIT"
    deep = tmp_path / "d"
    (deep / "a" / "b" / "c").mkdir(parents=True)
    (deep / "a" / "b" / "c" / "f").write_text("x")
    with pytest.raises(MmstdError, match="nested deeper than 2 levels"):
        inventory(deep, max_depth=2)
    assert [e.rel for e in inventory(deep)] == ["a/b/c/f"]
