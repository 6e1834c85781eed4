"""The environment a run happened in: OS, Python, CPU, memory, GPUs and library versions.

``capture_environment`` is cheap (no torch or TensorFlow import, no network) and never fails: a
fact it cannot read is ``None`` or an empty list. It records nothing that identifies a person or
a host (no hostname, user name, paths or environment variables).
"""
from __future__ import annotations

import os
import platform
import shutil
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

__all__ = ["LIBRARIES", "capture_environment", "cpu_model", "gpus", "library_versions", "parse_nvidia_smi"]

#: Distributions whose versions a report states, when installed. Versions come from the installed
#: metadata, so none of them is imported.
LIBRARIES = ("onnxruntime", "onnxruntime-gpu", "onnx", "numpy", "safetensors", "torch", "tensorflow",
             "keras", "tf2onnx", "onnxscript", "scikit-learn")
_NVIDIA_SMI_TIMEOUT_S = 10


def capture_environment() -> dict[str, Any]:
    """Facts about this machine and its software, JSON-ready.

    Returns:
        ``os``, ``python``, ``cpu`` (model, ISA flags that matter to kernels, logical and usable
        cores), ``memory_bytes`` (and a cgroup limit), ``gpus`` (from ``nvidia-smi``; empty
        without one), ``libraries`` (installed versions), and ``onnxruntime`` (build and
        providers, only when onnxruntime is already imported, so capture stays cheap).
    """
    from mmstd import __version__

    logical = os.cpu_count()
    try:
        usable: int | None = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = logical
    env: dict[str, Any] = {
        "os": {"system": platform.system(), "release": platform.release(), "machine": platform.machine()},
        "python": {"version": platform.python_version(), "implementation": platform.python_implementation()},
        "cpu": {"model": cpu_model(), "flags": _cpu_flags(), "logical_cores": logical, "usable_cores": usable},
        "memory_bytes": _memory_bytes(),
        "memory_limit_bytes": _cgroup_memory_limit(),
        "gpus": gpus(),
        "libraries": {"mmstd": __version__, **library_versions()},
    }
    ort = sys.modules.get("onnxruntime")
    if ort is not None:
        try:
            env["onnxruntime"] = {"version": ort.__version__, "device": ort.get_device(),
                                  "available_providers": list(ort.get_available_providers())}
        except Exception:  # a half-imported or broken onnxruntime must not break a report
            env["onnxruntime"] = None
    return env


def cpu_model() -> str | None:
    """The CPU's marketing name from ``/proc/cpuinfo`` (``platform.processor()`` elsewhere)."""
    info = _cpuinfo()
    for key in ("model name", "Hardware", "Processor", "cpu model"):
        if key in info:
            return info[key]
    return platform.processor() or None


def _cpu_flags() -> list[str]:
    # only the ISA extensions ORT/MLAS dispatches on: they explain latency across machines
    wanted = ("avx", "avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile", "sse4_2", "asimd", "sve")
    info = _cpuinfo()
    present = set(info.get("flags", info.get("Features", "")).split())
    return [f for f in wanted if f in present]


def _cpuinfo() -> dict[str, str]:
    try:
        text = Path("/proc/cpuinfo").read_text(errors="replace")
    except OSError:
        return {}
    out: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip() not in out:
            out[key.strip()] = value.strip()
    return out


def _memory_bytes() -> int | None:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None


def _cgroup_memory_limit() -> int | None:
    try:
        value = Path("/sys/fs/cgroup/memory.max").read_text().strip()
    except OSError:
        return None
    return int(value) if value.isdigit() else None


def gpus() -> list[dict[str, Any]]:
    """GPUs as ``nvidia-smi`` reports them (name, driver, memory); empty when there is none."""
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return []
    try:
        proc = subprocess.run(
            [exe, "--query-gpu=name,driver_version,memory.total", "--format=csv,noheader,nounits"],
            capture_output=True, text=True, timeout=_NVIDIA_SMI_TIMEOUT_S, check=False, stdin=subprocess.DEVNULL,
        )
    except (OSError, subprocess.SubprocessError):
        return []
    if proc.returncode != 0:
        return []
    return parse_nvidia_smi(proc.stdout)


def parse_nvidia_smi(text: str) -> list[dict[str, Any]]:
    """Parse ``nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader,nounits``."""
    found = []
    for line in text.splitlines():
        parts = [p.strip() for p in line.rsplit(",", 2)]   # a GPU name may contain commas; the rest cannot
        if len(parts) != 3 or not parts[0]:
            continue
        name, driver, mem = parts
        found.append({"name": name, "driver_version": driver,
                      "memory_total_bytes": int(mem) * 1024 * 1024 if mem.isdigit() else None})
    return found


def library_versions(names: tuple[str, ...] = LIBRARIES) -> dict[str, str]:
    """Installed versions of ``names`` from package metadata, without importing any of them."""
    out = {}
    for name in names:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return out
