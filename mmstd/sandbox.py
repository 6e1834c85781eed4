"""Run untrusted models in a killable child process with resource limits, and map how it ended to a code.

The parent (``run_child``) starts ``python -m mmstd.sandbox LIMITS TARGET ARGS...`` in a new
session (so the whole process group can be killed), with stdin from /dev/null, stdout/stderr to
size-limited files, a scrubbed environment (``HOME`` and ``TMPDIR`` private, fixed thread counts,
``PYTHONHASHSEED=0``) and an empty working directory. The child applies its rlimits first thing,
before anything heavy is imported: ``RLIMIT_AS`` (CPU runs only: CUDA reserves address space),
``RLIMIT_CPU``, ``RLIMIT_FSIZE``, ``RLIMIT_NOFILE`` and ``RLIMIT_CORE=0``. The child's own watchdog
stops onnxruntime cooperatively (``RunOptions.terminate``, the load cancellation flag) at the
timeout; the parent kills the process group with SIGKILL after a grace period.

``reference_child`` is the child side of the gate's evaluation step: it runs the package's
``reference.safetensors`` inputs through onnxruntime CPU and writes the observed outputs. It
imports onnxruntime only inside the child; this module imports nothing heavy.
"""
from __future__ import annotations

import errno
import importlib
import json
import os
import re
import resource
import runpy
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import mmstd

#: Exit signals (by number) and what they mean for a model run; anything else is a crash.
SIGNAL_CODES: dict[int, str] = {
    signal.SIGXCPU: "E_TIMEOUT",
    signal.SIGXFSZ: "E_FS_LIMIT",
    signal.SIGKILL: "E_MEMORY_LIMIT",  # not sent by us: the kernel's OOM killer
}
_ALLOC_FAILURES = ("bad_alloc", "bad allocation", "BFCArena", "Failed to allocate", "Cannot allocate memory",
                   "MemoryError", "out of memory")
_LIVE: set[int] = set()
_LIVE_LOCK = threading.Lock()


@dataclass(frozen=True, slots=True)
class SandboxLimits:
    """Per-child limits; every field is a policy field (``limits``).

    ``memory_bytes`` becomes ``RLIMIT_AS`` and must be None for CUDA runs (use a cgroup there).
    ``cpu_s`` defaults to twice the timeout plus 10 s.
    """

    timeout_s: float = 300.0
    memory_bytes: int | None = 4 << 30
    cpu_s: int | None = None
    file_bytes: int = 256 << 20
    open_files: int = 256
    grace_s: float = 2.0


@dataclass(frozen=True, slots=True)
class ChildOutcome:
    """How a child ended. ``timed_out`` is true only when the parent had to kill it."""

    returncode: int
    signal: str | None
    timed_out: bool
    wall_s: float
    max_rss_bytes: int
    stderr_tail: str

    @property
    def ok(self) -> bool:
        return self.returncode == 0 and not self.timed_out

    def failure_code(self) -> str | None:
        """The stable code for an abnormal end, or None for a clean exit."""
        if self.timed_out:
            return "E_TIMEOUT"
        if self.returncode < 0:
            sig = -self.returncode
            if sig == signal.SIGABRT and any(s in self.stderr_tail for s in _ALLOC_FAILURES):
                return "E_MEMORY_LIMIT"
            return SIGNAL_CODES.get(sig, "E_RUNTIME_CRASH")
        return None if self.returncode == 0 else "E_INTERNAL"


# ------------------------------------------------------------------------------------ parent side


def run_child(target: str, args: Sequence[str], *, limits: SandboxLimits, workdir: Path) -> ChildOutcome:
    """Run ``target`` (``"module"`` or ``"module:function"``) in a limited child process and wait for it.

    Args:
        target: What the child runs after applying its limits: a module run as ``__main__``, or a
            function called with ``args`` whose return value is the exit status.
        args: Its arguments (paths inside ``workdir`` or the staging directory, never shell text).
        limits: Time, memory, CPU, file-size and descriptor limits.
        workdir: A gate-owned directory; the child gets ``cwd/`` (empty), ``home/``, and writes
            ``stdout.log`` / ``stderr.log`` here.

    Returns:
        The outcome, with the peak RSS from ``wait4``.
    """
    cwd, home = workdir / "cwd", workdir / "home"
    for d in (cwd, home):
        d.mkdir(mode=0o700, exist_ok=True)
    child_limits = {
        "memory_bytes": limits.memory_bytes,
        "cpu_s": limits.cpu_s or int(2 * limits.timeout_s + 10),
        "file_bytes": limits.file_bytes,
        "open_files": limits.open_files,
    }
    argv = [sys.executable, "-s", "-P", "-m", "mmstd.sandbox", json.dumps(child_limits), target, *args]
    start = time.monotonic()
    with open(workdir / "stdout.log", "wb") as out, open(workdir / "stderr.log", "wb") as err:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=err, cwd=cwd,
                                env=_scrubbed_env(home), start_new_session=True, close_fds=True)
    with _LIVE_LOCK:
        _LIVE.add(proc.pid)
    try:
        status, rusage, timed_out = _wait(proc.pid, start + limits.timeout_s + limits.grace_s)
    finally:
        with _LIVE_LOCK:
            _LIVE.discard(proc.pid)
    proc.returncode = os.waitstatus_to_exitcode(status)  # reaped by wait4; keep Popen from waiting again
    code = proc.returncode
    return ChildOutcome(
        returncode=code,
        signal=_signal_name(-code) if code < 0 else None,
        timed_out=timed_out,
        wall_s=time.monotonic() - start,
        max_rss_bytes=rusage.ru_maxrss * 1024,
        stderr_tail=_tail(workdir / "stderr.log"),
    )


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def _wait(pid: int, deadline: float) -> tuple[int, Any, bool]:
    timed_out = False
    delay = 0.005
    while True:
        # WNOWAIT leaves the zombie in place, so the process group id cannot be reused before we
        # kill the group's stragglers below.
        info = os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
        if info is not None:
            break
        if time.monotonic() > deadline:
            timed_out = True
            _killpg(pid)
            break
        time.sleep(delay)
        delay = min(delay * 2, 0.05)
    _killpg(pid)
    _, status, rusage = os.wait4(pid, 0)
    return status, rusage, timed_out


def _killpg(pid: int) -> None:
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def kill_all() -> None:
    """SIGKILL every live child's process group (on interrupt or a gate bug)."""
    with _LIVE_LOCK:
        pids = sorted(_LIVE)
    for pid in pids:
        _killpg(pid)


def _scrubbed_env(home: Path) -> dict[str, str]:
    env = {
        "PATH": "/usr/bin:/bin",
        "HOME": str(home),
        "TMPDIR": str(home),
        "LANG": "C.UTF-8",
        "LC_ALL": "C.UTF-8",
        "PYTHONHASHSEED": "0",
        "PYTHONDONTWRITEBYTECODE": "1",
        "PYTHONNOUSERSITE": "1",
        "OMP_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
        "OPENBLAS_NUM_THREADS": "1",
        # One malloc arena per thread reserves 64 MiB of address space each; keep RLIMIT_AS predictable.
        "MALLOC_ARENA_MAX": "2",
    }
    if (path := _pythonpath()) is not None:
        env["PYTHONPATH"] = path
    return env


def _pythonpath() -> str | None:
    """mmstd's parent directory when the child could not otherwise import mmstd (e.g. found via cwd)."""
    parent = str(Path(mmstd.__file__).resolve().parent.parent)
    cwd = os.getcwd()
    found_via_site = any(p and p != cwd and Path(p).resolve() == Path(parent) for p in sys.path if p)
    return None if found_via_site else parent


def _tail(path: Path, n: int = 4000) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(max(os.fstat(f.fileno()).st_size - n, 0))
            return f.read().decode("utf-8", "replace")
    except OSError:
        return ""


# ------------------------------------------------------------------------------------- child side


def _apply_limits(limits: dict[str, Any]) -> None:
    def cap(which: int, value: int, slack: int = 0) -> None:
        _, hard = resource.getrlimit(which)
        top = value + slack if hard == resource.RLIM_INFINITY else min(value + slack, hard)
        resource.setrlimit(which, (min(value, top), top))

    cap(resource.RLIMIT_CORE, 0)
    if limits.get("memory_bytes"):
        cap(resource.RLIMIT_AS, int(limits["memory_bytes"]))
    if limits.get("cpu_s"):
        # soft < hard: the soft limit sends SIGXCPU (mapped to E_TIMEOUT); equal limits would SIGKILL
        cap(resource.RLIMIT_CPU, int(limits["cpu_s"]), slack=5)
    cap(resource.RLIMIT_FSIZE, int(limits["file_bytes"]))
    cap(resource.RLIMIT_NOFILE, int(limits["open_files"]))


def _child_main(argv: list[str]) -> None:
    limits, target, args = json.loads(argv[0]), argv[1], argv[2:]
    _apply_limits(limits)
    module, _, func = target.partition(":")
    if func:
        fn = getattr(importlib.import_module(module), func)
        sys.exit(fn(args))
    sys.argv = [module, *args]
    runpy.run_module(module, run_name="__main__", alter_sys=True)


def classify_ort_error(exc: BaseException, *, phase: str) -> str:
    """Map an exception raised while loading (``phase="load"``) or running a model to a stable code.

    Follows SECURITY.md 4.7: onnxruntime's exception classes live in
    ``onnxruntime.capi.onnxruntime_pybind11_state`` and derive from Exception directly, so they
    are recognised by module and name, with a few message checks as the fallback.
    """
    name, msg = type(exc).__name__, str(exc)
    if isinstance(exc, MemoryError) or any(s in msg for s in _ALLOC_FAILURES):
        return "E_MEMORY_LIMIT"
    if "terminate flag" in msg or name == "ModelLoadCanceled":
        return "E_TIMEOUT"
    if type(exc).__module__.startswith("onnxruntime"):
        by_name = {
            "InvalidProtobuf": "E_FORMAT_CORRUPT", "NoSuchFile": "E_FS_NOT_REGULAR", "NoModel": "E_FS_NOT_REGULAR",
            "NotFound": "E_FS_NOT_REGULAR", "NotImplemented": "E_ONNX_UNSUPPORTED", "InvalidGraph": "E_ONNX_INVALID",
            "EPFail": "E_BACKEND_UNAVAILABLE", "DeviceReset": "E_BACKEND_UNAVAILABLE", "EngineError": "E_BACKEND_UNAVAILABLE",
        }
        if name in by_name:
            return by_name[name]
        if name == "InvalidArgument":
            return "E_ONNX_INVALID" if phase == "load" else "E_IO_CONTRACT"
        if "External data path" in msg:
            return "E_FS_PATH_ESCAPE"
        if "is not a registered function/op" in msg or "ValidateOpsetForDomain" in msg:
            return "E_ONNX_UNSUPPORTED"
        return "E_RUNTIME_ERROR"
    if (isinstance(exc, OSError) and exc.errno == errno.EFBIG) or "File too large" in msg:
        return "E_FS_LIMIT"  # RLIMIT_FSIZE: Python ignores SIGXFSZ, so the write fails with EFBIG
    if isinstance(exc, ValueError) and phase == "run":
        return "E_IO_CONTRACT"
    if isinstance(exc, RuntimeError):
        return "E_RUNTIME_ERROR"
    return "E_INTERNAL"


def _ort_message(exc: BaseException, pkg: Path) -> str:
    msg = str(exc).strip()
    if "Status Message: " in msg:
        msg = msg.split("Status Message: ", 1)[1]
    elif msg.startswith("[ONNXRuntimeError]"):
        msg = msg.split(" : ", 3)[-1]
    msg = msg.replace(f"{pkg}/", "").replace(str(pkg), ".")
    # drop onnxruntime's source location and C++ signature ("bfc_arena.cc:360 void* f(size_t) ")
    msg = re.sub(r"\S+\.(?:cc|cpp|h):\d+ [^()]*\([^()]*\)\s*", "", msg)
    msg = " ".join(msg.split())
    return msg if len(msg) <= 400 else msg[:397] + "..."


def reference_child(argv: list[str]) -> int:
    """Child side of the reference evaluation: run reference inputs through onnxruntime CPU.

    Args (argv): the staged package directory, the output directory, the timeout in seconds and
    the largest total output size in bytes. Writes ``result.json`` (status, code, message,
    providers, timings) and, on success, ``outputs.safetensors`` (tensors ``output.<name>``).

    Returns:
        0 whenever result.json was written; the parent reads the verdict from it.
    """
    pkg, out, timeout_s, max_output = Path(argv[0]), Path(argv[1]), float(argv[2]), int(argv[3])
    state: dict[str, Any] = {"phase": "import", "timed_out": False}

    def on_timeout() -> None:
        # Cooperative stop first: the parent SIGKILLs the group only if this does not end the run.
        state["timed_out"] = True
        if "run_options" in state:
            state["run_options"].terminate = True
        if "session_options" in state:
            state["session_options"].set_load_cancellation_flag(True)

    watchdog = threading.Timer(timeout_s, on_timeout)
    watchdog.daemon = True
    watchdog.start()
    result: dict[str, Any]
    try:
        result = _run_reference(pkg, out, max_output, state)
    except MemoryError:
        result = {"status": "error", "code": "E_MEMORY_LIMIT", "phase": state["phase"],
                  "message": "the run exhausted its memory limit (MemoryError)"}
    except ImportError as e:
        result = {"status": "error", "code": "E_DEPENDENCY", "phase": state["phase"], "message": f"cannot import {e.name}"}
    except Exception as e:  # every model failure is classified; unknown ones become E_INTERNAL
        code = classify_ort_error(e, phase=state["phase"])
        if state["timed_out"] and code in ("E_RUNTIME_ERROR", "E_INTERNAL"):
            code = "E_TIMEOUT"
        result = {"status": "error", "code": code, "phase": state["phase"], "message": _ort_message(e, pkg),
                  "exception": type(e).__name__}
    watchdog.cancel()
    result["max_rss_bytes"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    tmp = out / "result.json.tmp"
    tmp.write_text(json.dumps(result), "utf-8")
    os.replace(tmp, out / "result.json")
    return 0


def _run_reference(pkg: Path, out: Path, max_output: int, state: dict[str, Any]) -> dict[str, Any]:
    import numpy as np
    import onnxruntime as ort
    from safetensors.numpy import load_file, save_file

    state["phase"] = "reference"
    ref = load_file(str(pkg / "reference.safetensors"))
    feeds = {k[len("input."):]: v for k, v in ref.items() if k.startswith("input.")}
    del ref
    state["phase"] = "load"
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.use_deterministic_compute = True
    so.log_severity_level = 3
    state["session_options"] = so
    t0 = time.perf_counter()
    sess = ort.InferenceSession(str(pkg / "model.onnx"), so, providers=["CPUExecutionProvider"])
    create_ms = (time.perf_counter() - t0) * 1000
    providers = sess.get_providers()
    if providers[0] != "CPUExecutionProvider":
        return {"status": "error", "code": "E_BACKEND_UNAVAILABLE", "phase": "load",
                "message": f"requested CPUExecutionProvider but onnxruntime activated {providers}"}
    state["phase"] = "run"
    run_options = ort.RunOptions()
    state["run_options"] = run_options
    if state["timed_out"]:
        run_options.terminate = True
    t0 = time.perf_counter()
    values = sess.run(None, feeds, run_options)
    run_ms = (time.perf_counter() - t0) * 1000
    state["phase"] = "repeat"
    # the same inputs again must give the same bits on CPU (SECURITY.md 4.5: run twice and diff)
    again = sess.run(None, feeds, run_options)
    names = [o.name for o in sess.get_outputs()]
    for name, a, b in zip(names, values, again, strict=True):
        if not (isinstance(a, np.ndarray) and isinstance(b, np.ndarray)):
            continue  # non-tensor outputs are refused below
        if a.shape != b.shape or not np.array_equal(a, b, equal_nan=a.dtype.kind in "fc"):
            return {"status": "error", "code": "E_NONDETERMINISTIC", "phase": "repeat",
                    "message": f"output {name!r} differs between two runs on the same inputs (expected identical bits)"}
    state["phase"] = "outputs"
    arrays: dict[str, Any] = {}
    total = 0
    for name, value in zip(names, values, strict=True):
        if not isinstance(value, np.ndarray) or value.dtype.kind not in "biuf":
            return {"status": "error", "code": "E_IO_CONTRACT", "phase": "outputs",
                    "message": f"output {name!r} is a {type(value).__name__} of {getattr(value, 'dtype', '?')}, "
                               "not a numeric tensor"}
        total += value.nbytes
        if total > max_output:
            return {"status": "error", "code": "E_TENSOR_LIMIT", "phase": "outputs",
                    "message": f"outputs hold more than {max_output} bytes (limit {max_output})"}
        arrays[f"output.{name}"] = np.ascontiguousarray(value)
    save_file(arrays, str(out / "outputs.safetensors"))
    return {"status": "ok", "providers": providers, "session_create_ms": create_ms, "run_ms": run_ms, "outputs": names,
            "onnxruntime": ort.__version__}


def evaluate_child(argv: list[str]) -> int:
    """Child side of the full evaluation: ``mmstd evaluate`` on one suite, report.json only.

    Args (argv): the staged package directory, the suite reference, the output directory and a
    JSON object of options (backends, variants, split, quick, limit, seed). Writes
    ``report/report.json`` and ``result.json`` (status, code, message, whether it is an
    infrastructure error).

    Returns:
        0 whenever result.json was written; the parent reads the verdict from it.
    """
    from mmstd.errors import InfraError, MmstdError

    pkg, suite, out, opts = Path(argv[0]), argv[1], Path(argv[2]), json.loads(argv[3])
    result: dict[str, Any]
    try:
        from mmstd.evaluate import evaluate
        from mmstd.run import RunSettings

        settings = RunSettings(limit=opts.get("limit"), quick=bool(opts.get("quick")), seed=int(opts.get("seed", 0)))
        evaluate(pkg, suite, out_dir=out / "report", backends=opts["backends"], variants=opts["variants"],
                 settings=settings, formats=["json"], resamples=200 if settings.quick else 1000)
        result = {"status": "ok"}
    except MemoryError:
        result = {"status": "error", "code": "E_MEMORY_LIMIT", "message": "the evaluation exhausted its memory limit"}
    except MmstdError as e:
        result = {"status": "error", "code": e.code, "message": e.message, "infra": isinstance(e, InfraError)}
    except Exception as e:  # onnxruntime failures surfacing outside the backend's own mapping
        result = {"status": "error", "code": classify_ort_error(e, phase="run"), "message": _ort_message(e, pkg),
                  "exception": type(e).__name__}
    result["max_rss_bytes"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    tmp = out / "result.json.tmp"
    tmp.write_text(json.dumps(result), "utf-8")
    os.replace(tmp, out / "result.json")
    return 0


def probe_child(argv: list[str]) -> int:
    """A self-test target: print (as JSON) the limits, directory, stdin, session and environment the child got."""
    import stat as stat_mod

    names = {"as": resource.RLIMIT_AS, "core": resource.RLIMIT_CORE, "cpu": resource.RLIMIT_CPU,
             "fsize": resource.RLIMIT_FSIZE, "nofile": resource.RLIMIT_NOFILE}
    st = os.fstat(0)
    print(json.dumps({
        "rlimits": {k: list(resource.getrlimit(v)) for k, v in names.items()},
        "cwd": os.getcwd(),
        "cwd_entries": sorted(os.listdir(".")),
        "stdin_is_devnull": stat_mod.S_ISCHR(st.st_mode) and os.major(st.st_rdev) == 1 and os.minor(st.st_rdev) == 3,
        "session_leader": os.getsid(0) == os.getpid(),
        "pgid_is_pid": os.getpgid(0) == os.getpid(),
        "env": sorted(os.environ),
        "home": os.environ.get("HOME"),
    }))
    return 0


def limits_dict(limits: SandboxLimits) -> dict[str, Any]:
    """The limits as recorded in a verdict."""
    return asdict(limits)


if __name__ == "__main__":
    _child_main(sys.argv[1:])
