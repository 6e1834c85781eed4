"""Backends: onnxruntime execution providers that open a model and run it, nothing more.

A backend produces outputs and timings and never judges them (metrics, tolerances and verdicts
happen later, on the saved RunRecord). Built-ins are lazy ``"module:attr"`` entries, so importing
this package imports neither onnxruntime nor numpy; third parties add entries through the
``mmstd.backends`` entry-point group with an object that satisfies ``Backend``.

The law every backend keeps: no silent fallback. A session whose requested execution provider is
not the one ONNX Runtime activated is an ``InfraError`` (exit 4), because a GPU latency measured
on the CPU is worse than none.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from mmstd.registry import Registry

if TYPE_CHECKING:
    import numpy as np

__all__ = [
    "BACKENDS", "Backend", "BackendOptions", "Query", "Session", "open_session",
]

GRAPH_OPTIMIZATION_LEVELS = ("disable", "basic", "extended", "all")
CUDNN_CONV_ALGO_SEARCH = ("EXHAUSTIVE", "HEURISTIC", "DEFAULT")


@dataclass(frozen=True, slots=True)
class BackendOptions:
    """What a user may choose about a session; everything chosen is recorded by the session.

    Attributes:
        threads: Intra-op threads. ``None`` applies the measured per-batch-size rule
            (see ``mmstd.backends.onnxruntime.intra_op_threads``).
        graph_optimization: ONNX Runtime graph optimization level, one of
            ``GRAPH_OPTIMIZATION_LEVELS``.
        deterministic: ``use_deterministic_compute``; ``None`` means on for CPU, off for GPU
            (deterministic cuDNN kernels cost latency, and GPU parity is judged with a tolerance).
        seed: Passed to ``onnxruntime.set_seed`` for models with random operators.
        device_id: The GPU, for GPU backends.
        gpu_mem_limit: Bytes the CUDA arena may hold; ``None`` leaves ONNX Runtime's default
            (no limit). The gate sets it, together with a cgroup, to bound a submission.
        cudnn_conv_algo_search: One of ``CUDNN_CONV_ALGO_SEARCH``.
        io_binding: Prepared queries bind device-resident inputs and pre-allocated outputs
            with IOBinding. ``None`` means on for GPU backends (so a timed query never bounces
            through the host) and off for CPU, where ONNX Runtime reads numpy feeds in place.
        cuda_graph: Capture the prepared latency query in a CUDA graph when the model allows
            it; when it does not, the session records why and runs without one.
        trt_fp16: Let TensorRT build FP16 engines (off: conformance compares against FP32).
        trt_max_workspace_bytes: TensorRT builder workspace; ``None`` leaves the default.
    """

    threads: int | None = None
    graph_optimization: str = "all"
    deterministic: bool | None = None
    seed: int = 0
    device_id: int = 0
    gpu_mem_limit: int | None = None
    cudnn_conv_algo_search: str = "EXHAUSTIVE"
    io_binding: bool | None = None
    cuda_graph: bool = False
    trt_fp16: bool = False
    trt_max_workspace_bytes: int | None = None

    def __post_init__(self) -> None:
        from mmstd.errors import MmstdError

        problems = []
        if self.threads is not None and (not isinstance(self.threads, int) or self.threads < 1):
            problems.append(f"threads: expected a positive int or None, got {self.threads!r}")
        if self.graph_optimization not in GRAPH_OPTIMIZATION_LEVELS:
            problems.append(f"graph_optimization: expected one of {', '.join(GRAPH_OPTIMIZATION_LEVELS)}, "
                            f"got {self.graph_optimization!r}")
        if self.cudnn_conv_algo_search not in CUDNN_CONV_ALGO_SEARCH:
            problems.append(f"cudnn_conv_algo_search: expected one of {', '.join(CUDNN_CONV_ALGO_SEARCH)}, "
                            f"got {self.cudnn_conv_algo_search!r}")
        if not isinstance(self.device_id, int) or self.device_id < 0:
            problems.append(f"device_id: expected a non-negative int, got {self.device_id!r}")
        for name in ("gpu_mem_limit", "trt_max_workspace_bytes"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or value <= 0):
                problems.append(f"{name}: expected a positive number of bytes or None, got {value!r}")
        if not isinstance(self.seed, int) or self.seed < 0:
            problems.append(f"seed: expected a non-negative int, got {self.seed!r}")
        if problems:
            raise MmstdError("Invalid backend options.", code="E_USAGE", problems=problems)


@runtime_checkable
class Query(Protocol):
    """A zero-argument latency query whose feeds are already where the device wants them.

    Calling it runs the model once and returns nothing, so the timed loop measures the model and
    not the host. ``sync`` (``None`` on CPU) waits for device work; a latency loop calls it
    before reading the clock. ``outputs()`` returns the query's outputs on the host, and
    ``close()`` releases what the query holds on the device (a captured CUDA graph). Backends may
    return a plain function carrying these attributes: it is the cheapest thing to call.
    """

    batch_size: int
    sync: Callable[[], None] | None

    def __call__(self) -> None: ...

    def outputs(self) -> dict[str, np.ndarray]: ...

    def close(self) -> None: ...


@runtime_checkable
class Session(Protocol):
    """An open model on one backend. Use it as a context manager; ``close`` frees the device."""

    name: str
    providers_requested: tuple[str, ...]
    providers_active: tuple[str, ...]
    session_options: Mapping[str, Any]
    provider_options: Mapping[str, Mapping[str, str]]
    io_binding: bool
    device: str
    batch_size: int
    create_ms: float
    input_names: tuple[str, ...]
    output_names: tuple[str, ...]
    sync: Callable[[], None] | None

    def run(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]: ...

    def prepare(self, feeds: Mapping[str, np.ndarray]) -> Query: ...

    def describe(self) -> dict[str, Any]: ...

    def close(self) -> None: ...

    def __enter__(self) -> Session: ...

    def __exit__(self, *exc: object) -> None: ...


@runtime_checkable
class Backend(Protocol):
    """A registry entry: a name, an availability check, and ``open``."""

    name: str

    def unavailable_reason(self) -> str | None:
        """Why this backend cannot run here (``None`` when it can), without opening a model."""
        ...

    def open(self, model_path: Path, *, batch_size: int, options: BackendOptions) -> Session: ...


BACKENDS: Registry[Backend] = Registry("backend", entry_points="mmstd.backends")
BACKENDS.register("ort-cpu", "mmstd.backends.onnxruntime:cpu")
BACKENDS.register("ort-cuda", "mmstd.backends.onnxruntime:cuda")
BACKENDS.register("ort-trt", "mmstd.backends.onnxruntime:tensorrt")


def open_session(
    backend: str,
    model_path: Path,
    *,
    batch_size: int = 1,
    options: BackendOptions | None = None,
) -> Session:
    """Open ``model_path`` on the backend registered as ``backend``.

    Args:
        backend: Registry key such as ``"ort-cpu"`` or ``"ort-cuda"``.
        model_path: An ONNX file, normally ``Package.model_path`` of a verified package.
        batch_size: The batch size the session will be fed; it picks the thread count.
        options: Everything else; defaults to ``BackendOptions()``.

    Returns:
        An open session; use it in a ``with`` block.

    Raises:
        RegistryError: Unknown backend; the message suggests the closest name.
        InfraError: The backend's execution provider is absent or was not activated (exit 4).
        RunError: ONNX Runtime refused the model (codes per SECURITY.md §4.7).
    """
    if not isinstance(batch_size, int) or batch_size < 1:
        from mmstd.errors import MmstdError

        raise MmstdError(f"batch_size: expected a positive int, got {batch_size!r}.", code="E_USAGE")
    return BACKENDS.get(backend).open(Path(model_path), batch_size=batch_size, options=options or BackendOptions())
