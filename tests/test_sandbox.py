"""The sandboxed child: limits applied before anything runs, a clean process, and every kind of end mapped to a code."""
from __future__ import annotations

import json
import os
import resource
from pathlib import Path

import pytest

from mmstd.sandbox import SandboxLimits, classify_ort_error, run_child


def test_child_gets_limits_empty_cwd_devnull_stdin_own_session_and_scrubbed_env(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "do-not-leak")
    limits = SandboxLimits(timeout_s=20, memory_bytes=1 << 30, cpu_s=30, file_bytes=8 << 20, open_files=64)
    outcome = run_child("mmstd.sandbox:probe_child", [], limits=limits, workdir=tmp_path)
    assert outcome.ok and outcome.failure_code() is None, outcome.stderr_tail
    probe = json.loads((tmp_path / "stdout.log").read_text())
    assert probe["rlimits"]["as"] == [1 << 30, 1 << 30]
    assert probe["rlimits"]["core"] == [0, 0]
    assert probe["rlimits"]["cpu"] == [30, 35]
    assert probe["rlimits"]["fsize"] == [8 << 20, 8 << 20]
    assert probe["rlimits"]["nofile"] == [64, 64]
    assert probe["cwd"] == str(tmp_path / "cwd") and probe["cwd_entries"] == []
    assert probe["stdin_is_devnull"] and probe["session_leader"] and probe["pgid_is_pid"]
    assert "AWS_SECRET_ACCESS_KEY" not in probe["env"]
    assert probe["home"] == str(tmp_path / "home")
    assert {"PYTHONHASHSEED", "OMP_NUM_THREADS", "PATH"} <= set(probe["env"])
    assert outcome.max_rss_bytes > 1 << 20


def test_a_child_that_ignores_the_deadline_is_killed_with_its_group(tmp_path: Path) -> None:
    limits = SandboxLimits(timeout_s=0.5, grace_s=0.5, memory_bytes=1 << 30)
    outcome = run_child("timeit", ["-n", "1", "while True: pass"], limits=limits, workdir=tmp_path)
    assert outcome.timed_out and outcome.failure_code() == "E_TIMEOUT"
    assert outcome.signal == "SIGKILL"
    assert 0.9 <= outcome.wall_s < 5


def test_cpu_limit_ends_the_child_with_sigxcpu(tmp_path: Path) -> None:
    limits = SandboxLimits(timeout_s=30, cpu_s=1, memory_bytes=1 << 30)
    outcome = run_child("timeit", ["-n", "1", "while True: pass"], limits=limits, workdir=tmp_path)
    assert not outcome.timed_out
    assert outcome.signal == "SIGXCPU" and outcome.failure_code() == "E_TIMEOUT"


def test_a_segfault_is_a_crash(tmp_path: Path) -> None:
    outcome = run_child("timeit", ["-n", "1", "import ctypes; ctypes.string_at(0)"], limits=SandboxLimits(timeout_s=20),
                        workdir=tmp_path)
    assert outcome.signal == "SIGSEGV" and outcome.failure_code() == "E_RUNTIME_CRASH"


def test_address_space_limit_refuses_big_allocations(tmp_path: Path) -> None:
    limits = SandboxLimits(timeout_s=20, memory_bytes=512 << 20)
    outcome = run_child("timeit", ["-n", "1", "bytearray(1 << 30)"], limits=limits, workdir=tmp_path)
    assert outcome.returncode == 1 and "MemoryError" in outcome.stderr_tail


def test_file_size_limit_stops_big_writes(tmp_path: Path) -> None:
    limits = SandboxLimits(timeout_s=20, file_bytes=1 << 20)
    stmt = "open('big', 'wb').write(bytes(4 << 20))"
    outcome = run_child("timeit", ["-n", "1", stmt], limits=limits, workdir=tmp_path)
    # Python ignores SIGXFSZ, so the write fails with EFBIG instead of killing the child
    assert outcome.returncode == 1 and "File too large" in outcome.stderr_tail
    assert os.path.getsize(tmp_path / "cwd" / "big") <= 1 << 20


def test_parent_limits_are_untouched(tmp_path: Path) -> None:
    before = resource.getrlimit(resource.RLIMIT_AS)
    run_child("mmstd.sandbox:probe_child", [], limits=SandboxLimits(timeout_s=20, memory_bytes=1 << 30), workdir=tmp_path)
    assert resource.getrlimit(resource.RLIMIT_AS) == before


class _Fake(Exception):
    pass


def _ort(name: str, msg: str) -> Exception:
    cls = type(name, (Exception,), {"__module__": "onnxruntime.capi.onnxruntime_pybind11_state"})
    return cls(msg)


@pytest.mark.parametrize(("exc", "phase", "code"), [
    (_ort("Fail", "[ONNXRuntimeError] : 1 : FAIL : Exiting due to terminate flag being set to true."), "run", "E_TIMEOUT"),
    (_ort("ModelLoadCanceled", "load canceled"), "load", "E_TIMEOUT"),
    (_ort("Fail", "BFCArena::AllocateRawInternal Failed to allocate memory for requested buffer"), "run", "E_MEMORY_LIMIT"),
    (_ort("InvalidProtobuf", "Protobuf parsing failed"), "load", "E_FORMAT_CORRUPT"),
    (_ort("InvalidArgument", "No graph was found in the protobuf."), "load", "E_ONNX_INVALID"),
    (_ort("InvalidArgument", "Got invalid dimensions for input"), "run", "E_IO_CONTRACT"),
    (_ort("InvalidGraph", "This is an invalid model."), "load", "E_ONNX_INVALID"),
    (_ort("NotImplemented", "Could not find an implementation"), "load", "E_ONNX_UNSUPPORTED"),
    (_ort("Fail", "Op (Evil) is not a registered function/op"), "load", "E_ONNX_UNSUPPORTED"),
    (_ort("Fail", "External data path validation failed"), "load", "E_FS_PATH_ESCAPE"),
    (_ort("EPFail", "CUDA failure"), "load", "E_BACKEND_UNAVAILABLE"),
    (_ort("NoSuchFile", "Load model from x failed"), "load", "E_FS_NOT_REGULAR"),
    (_ort("Fail", "something else"), "run", "E_RUNTIME_ERROR"),
    (MemoryError(), "run", "E_MEMORY_LIMIT"),
    (OSError(27, "File too large"), "outputs", "E_FS_LIMIT"),
    (ValueError("input 'x' missing"), "run", "E_IO_CONTRACT"),
    (_Fake("our own bug"), "run", "E_INTERNAL"),
])
def test_onnxruntime_errors_map_to_stable_codes(exc: BaseException, phase: str, code: str) -> None:
    assert classify_ort_error(exc, phase=phase) == code
