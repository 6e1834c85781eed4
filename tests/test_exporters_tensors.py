"""Reproducible safetensors files (mmstd.exporters.tensors): same tensors, same bytes, any reader."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from mmstd.exporters.tensors import from_numpy, write_numpy, write_safetensors
from mmstd.package import check_safetensors

ARRAYS = {
    "b.weight": np.arange(6, dtype=np.float32).reshape(2, 3),
    "a.ids": np.array([[1, 2], [3, 4]], dtype=np.int64),
    "c.mask": np.array([True, False]),
    "d.empty": np.zeros((0, 4), dtype=np.float16),
}
META = {"framework": "numpy", "zeta": "last", "alpha": "first"}


def test_same_tensors_and_metadata_give_the_same_bytes_whatever_the_order(tmp_path: Path) -> None:
    one = write_numpy(tmp_path / "one.safetensors", ARRAYS, META).read_bytes()
    two = write_numpy(tmp_path / "two.safetensors", dict(reversed(ARRAYS.items())), dict(reversed(META.items())))
    assert one == two.read_bytes()
    head_len = int.from_bytes(one[:8], "little")
    assert head_len % 8 == 0 and one[8:8 + head_len].startswith(b'{"__metadata__":{"alpha":"first","framework"')


def test_the_safetensors_library_and_the_package_checker_read_it(tmp_path: Path) -> None:
    from safetensors import safe_open

    path = write_numpy(tmp_path / "t.safetensors", ARRAYS, META)
    with safe_open(str(path), "np") as f:
        assert f.metadata() == META
        for name, array in ARRAYS.items():
            np.testing.assert_array_equal(f.get_tensor(name), array)
    assert check_safetensors(tmp_path, "t.safetensors") == {
        "a.ids": ("I64", (2, 2)), "b.weight": ("F32", (2, 3)), "c.mask": ("BOOL", (2,)), "d.empty": ("F16", (0, 4))}


def test_dtypes_safetensors_cannot_hold_are_refused() -> None:
    with pytest.raises(TypeError, match="safetensors cannot store dtype complex64"):
        from_numpy(np.zeros(2, dtype=np.complex64))


def test_torch_tensors_keep_bfloat16_exactly(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    from safetensors.torch import load_file

    from mmstd.exporters.tensors import from_torch

    t = torch.linspace(-2, 2, 12, dtype=torch.bfloat16).reshape(3, 4)[:, ::2]  # non-contiguous on purpose
    path = write_safetensors(tmp_path / "t.safetensors", {"w": from_torch(t), "n": from_torch(torch.arange(3))})
    loaded = load_file(str(path))
    assert loaded["w"].dtype == torch.bfloat16 and torch.equal(loaded["w"], t)
    assert torch.equal(loaded["n"], torch.arange(3))
