"""Environment capture: complete, JSON-ready, cheap, private, and never failing."""
from __future__ import annotations

import json
import os
import socket
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mmstd.env import capture_environment, cpu_model, gpus, library_versions, parse_nvidia_smi

REPO = Path(__file__).resolve().parent.parent


def test_capture_has_every_section_and_is_json() -> None:
    import numpy as np
    import onnx

    env = capture_environment()
    assert set(env) >= {"os", "python", "cpu", "memory_bytes", "memory_limit_bytes", "gpus", "libraries"}
    assert env["python"]["version"] == ".".join(map(str, sys.version_info[:3]))
    assert env["cpu"]["logical_cores"] == os.cpu_count()
    assert 1 <= env["cpu"]["usable_cores"] <= os.cpu_count()
    assert isinstance(env["memory_bytes"], int) and env["memory_bytes"] > 0
    assert isinstance(env["gpus"], list)
    libs = env["libraries"]
    assert libs["numpy"] == np.__version__ and libs["onnx"] == onnx.__version__
    assert "mmstd" in libs
    assert json.loads(json.dumps(env)) == env


@pytest.mark.skipif(not Path("/proc/cpuinfo").exists(), reason="Linux only")
def test_cpu_model_comes_from_proc_cpuinfo() -> None:
    names = [line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
             if line.startswith("model name")]
    if names:
        assert cpu_model() == names[0]


def test_no_host_or_person_identifiers() -> None:
    text = json.dumps(capture_environment())
    host = socket.gethostname()
    if len(host) >= 4:   # a very short hostname could appear inside an unrelated value
        assert host not in text
    assert str(Path.home()) not in text
    assert os.getcwd() not in text


def test_capture_imports_no_framework_and_is_cheap() -> None:
    code = ("import sys, time; from mmstd.env import capture_environment; capture_environment(); "
            "t = time.perf_counter(); env = capture_environment(); dt = time.perf_counter() - t; "
            "print(dt, [m for m in ('torch', 'tensorflow', 'onnxruntime', 'keras') if m in sys.modules], "
            "'onnxruntime' in env)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO).stdout.split()
    seconds, imported, has_ort = float(out[0]), out[1], out[2]
    assert imported == "[]"
    assert has_ort == "False"          # onnxruntime facts only when it is already loaded
    if not any(Path(p, "nvidia-smi").exists() for p in os.environ.get("PATH", "").split(os.pathsep)):
        assert seconds < 0.1


def test_onnxruntime_section_when_it_is_loaded() -> None:
    import onnxruntime as ort

    env = capture_environment()
    assert env["onnxruntime"]["version"] == ort.__version__
    assert "CPUExecutionProvider" in env["onnxruntime"]["available_providers"]


def test_library_versions_never_import() -> None:
    assert library_versions(("definitely-not-installed-xyz",)) == {}
    assert set(library_versions(("numpy", "onnx"))) == {"numpy", "onnx"}


def test_parse_nvidia_smi_output() -> None:
    text = "NVIDIA H100 80GB HBM3, 550.54.15, 81559\nTesla T4, 535.104.05, 15360\n\ngarbage line\n"
    assert parse_nvidia_smi(text) == [
        {"name": "NVIDIA H100 80GB HBM3", "driver_version": "550.54.15", "memory_total_bytes": 81559 * 1024 * 1024},
        {"name": "Tesla T4", "driver_version": "535.104.05", "memory_total_bytes": 15360 * 1024 * 1024},
    ]
    assert parse_nvidia_smi("NVIDIA A100, PCIe, 40GB, 535.1, [N/A]") == [
        {"name": "NVIDIA A100, PCIe, 40GB", "driver_version": "535.1", "memory_total_bytes": None}]


def _fake_smi(directory: Path, script: str) -> None:
    exe = directory / "nvidia-smi"
    exe.write_text("#!/bin/sh\n" + script + "\n")
    exe.chmod(exe.stat().st_mode | stat.S_IXUSR)


@pytest.mark.parametrize(("script", "expected"), [
    ('echo "NVIDIA L4, 550.1, 23034"', [{"name": "NVIDIA L4", "driver_version": "550.1", "memory_total_bytes": 23034 << 20}]),
    ('echo "NVIDIA-SMI has failed because it could not communicate with the NVIDIA driver" >&2; exit 9', []),
    ("exit 0", []),
])
def test_gpus_runs_nvidia_smi_and_never_fails(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, script: str, expected: list) -> None:
    _fake_smi(tmp_path, script)
    monkeypatch.setenv("PATH", str(tmp_path))
    assert gpus() == expected


def test_no_nvidia_smi_means_no_gpus(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    start = time.perf_counter()
    assert gpus() == []
    assert time.perf_counter() - start < 0.05
