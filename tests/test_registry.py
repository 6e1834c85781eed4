"""The lazy registry: resolves on first use, suggests the closest name, refuses duplicates."""
from __future__ import annotations

import sys

import pytest

from mmstd.errors import RegistryError
from mmstd.registry import Registry


def test_lazy_resolution_imports_on_first_get() -> None:
    reg: Registry[object] = Registry("thing")
    reg.register("colorsys", "colorsys:rgb_to_hsv")
    sys.modules.pop("colorsys", None)
    assert "colorsys" not in sys.modules
    fn = reg.get("colorsys")
    assert fn(1.0, 0.0, 0.0) == (0.0, 1.0, 1.0)
    assert reg.get("colorsys") is fn


def test_unknown_name_suggests_closest_and_lists_all() -> None:
    reg: Registry[object] = Registry("backend")
    for name in ("ort-cpu", "ort-cuda", "ort-trt"):
        reg.register(name, object())
    with pytest.raises(RegistryError, match=r"Unknown backend 'ort-gpu'\. Did you mean 'ort-cpu'\? Available: ort-cpu, ort-cuda, ort-trt\.") as info:
        reg.get("ort-gpu")
    assert info.value.code == "E_NOT_FOUND"


def test_duplicate_registration_refused() -> None:
    reg: Registry[object] = Registry("metric")
    reg.register("f1", "a:b")
    with pytest.raises(RegistryError, match="registered twice"):
        reg.register("f1", "c:d")


def test_entry_points_are_scanned(monkeypatch: pytest.MonkeyPatch) -> None:
    from importlib import metadata

    ep = metadata.EntryPoint(name="plugin", value="colorsys:hsv_to_rgb", group="mmstd.test")
    monkeypatch.setattr(metadata, "entry_points", lambda group: [ep] if group == "mmstd.test" else [])
    reg: Registry[object] = Registry("thing", entry_points="mmstd.test")
    reg.register("builtin", "colorsys:rgb_to_hsv")
    assert reg.names() == ["builtin", "plugin"]
    assert reg.get("plugin")(0.0, 0.0, 1.0) == (1.0, 1.0, 1.0)
