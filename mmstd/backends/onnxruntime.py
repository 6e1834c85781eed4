"""ONNX Runtime backends: ``ort-cpu``, ``ort-cuda`` and ``ort-trt``.

Each backend opens one ``InferenceSession`` per (model, batch size) with every option set
explicitly and recorded, then checks that ONNX Runtime activated the execution provider it asked
for: onnxruntime drops an unavailable provider with a warning, and its C++ core falls back to CPU
when a provider library fails to load, so ``get_providers()`` is the only proof. The Python
wrapper's own retry-on-CPU (``enable_fallback``) is switched off.

ONNX Runtime's exceptions inherit from ``Exception`` and live in
``onnxruntime.capi.onnxruntime_pybind11_state``; ``translate_error`` maps them to mmstd's stable
codes (SECURITY.md §4.7). Custom-op libraries are never registered and no optimized model is ever
written (SECURITY.md §4.2).
"""
from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn, cast

import numpy as np

from mmstd.backends import BackendOptions, Query
from mmstd.errors import InfraError, MmstdError, RunError

__all__ = [
    "MULTI_THREAD_MIN_BATCH", "OrtBackend", "OrtSession", "cpu", "cuda", "intra_op_threads",
    "tensorrt", "translate_error", "usable_cores", "verify_active_provider",
]

#: Batch size from which intra-op threads = every usable core beats one thread. Measured with
#: ``python bench/evaluate.py --threads`` on the 2-core development VM (AMD EPYC, onnxruntime
#: 1.31.1), zoo-like fusion model (two strided convs, token embedding, audio projection, MLP head;
#: about 1 M multiply-adds per sample), µs per batch, 1 vs 2 threads, medians of 7-9 interleaved
#: rounds, two runs: batch 1: 38 vs 48 (2 threads 1.25x slower); 2: 57 vs 66; 4: 98 vs 95 (tie);
#: 8: 181 vs 113-144; 16: 346 vs 208-261; 32: 677-691 vs 516-553; 64: 1334 vs 1000;
#: 128: 2668-2728 vs 2210-2289 (2 threads 1.2-1.6x faster from batch 8). The tiny test model
#: (one 1450x10 GEMM, 14 k multiply-adds per sample) never gains: 2 threads tie up to batch 8 and
#: are 2.3x slower at 32 and 128, where thread hand-off costs more than the work; such models
#: should pass ``BackendOptions(threads=1)``.
MULTI_THREAD_MIN_BATCH = 8

GPU_HINT = (
    "install mmstd[gpu] (onnxruntime-gpu built for your CUDA/cuDNN, replacing onnxruntime; never "
    "both), check that nvidia-smi sees the GPU, or use --backend ort-cpu."
)
_ORT_ERROR_MODULE = "onnxruntime.capi.onnxruntime_pybind11_state"
_CONTROL_FLOW_OPS = frozenset({"If", "Loop", "Scan"})
_DEVICE_FAILURES = ("cuda failure", "cudnn failure", "cublas failure", "cufft failure", "curand failure",
                    "cuda error", "cudnn_status_", "cublas_status_")
_GRAPH_SKIP = "-1"          # gpu_graph_id that runs without capturing or replaying a CUDA graph
_CAPTURE_RUNS = 3           # ORT runs once uncaptured, captures on the next run, then replays
_GRAPH_OPT = {"disable": "ORT_DISABLE_ALL", "basic": "ORT_ENABLE_BASIC",
              "extended": "ORT_ENABLE_EXTENDED", "all": "ORT_ENABLE_ALL"}
_ORT_DTYPES = {
    "tensor(float)": np.float32, "tensor(double)": np.float64, "tensor(float16)": np.float16,
    "tensor(int8)": np.int8, "tensor(int16)": np.int16, "tensor(int32)": np.int32, "tensor(int64)": np.int64,
    "tensor(uint8)": np.uint8, "tensor(uint16)": np.uint16, "tensor(uint32)": np.uint32,
    "tensor(uint64)": np.uint64, "tensor(bool)": np.bool_,
}


def _ort() -> Any:
    try:
        import onnxruntime
    except ImportError as err:
        raise MmstdError(
            f"onnxruntime is not installed ({err}).", code="E_DEPENDENCY",
            hint="pip install mmstd (CPU) or mmstd[gpu] (onnxruntime-gpu).",
        ) from None
    return onnxruntime


# ----------------------------------------------------------------------------------- threads


def usable_cores() -> int:
    """Cores this process may run on: CPU affinity, capped by a cgroup v2 CPU quota."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:        # not Linux
        cores = os.cpu_count() or 1
    try:
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()[:2]
        if quota != "max":
            cores = min(cores, max(1, math.ceil(int(quota) / int(period))))
    except (OSError, ValueError):
        pass
    return max(1, cores)


def intra_op_threads(batch_size: int, *, cores: int | None = None) -> int:
    """The intra-op thread count for ``batch_size``: one thread below ``MULTI_THREAD_MIN_BATCH``.

    From that batch size on, every usable core, as an explicit count rather than ONNX Runtime's
    ``0`` ("all physical cores"): ``0`` also pins its workers to cores, which measured the same as
    an explicit 2 on a quiet machine (zoo-like model, batch 32: 600 vs 599 µs) but up to 1.6x
    slower (batch 128: 13.1 vs 8.3 ms) while another process was loading one of the two cores.

    Args:
        batch_size: The batch the session will run.
        cores: Usable cores; defaults to ``usable_cores()``.
    """
    n = usable_cores() if cores is None else cores
    if n <= 1 or batch_size < MULTI_THREAD_MIN_BATCH:
        return 1
    return n


# ------------------------------------------------------------------------------------ errors


def translate_error(
    err: BaseException, *, backend: str, model: str, stage: str, scrub: Mapping[str, str] | None = None,
) -> MmstdError | None:
    """Map an exception raised by onnxruntime to an mmstd error, or ``None`` if it is not ORT's.

    Args:
        err: What onnxruntime raised.
        backend: Backend name for the message.
        model: The model as shown to the user (package-relative, never a host path).
        stage: ``"load"`` (session creation) or ``"run"``; an ``InvalidArgument`` means a broken
            graph at load time and a feed that breaks the contract at run time.
        scrub: Host strings (the model's absolute path) to replace in ORT's text, so messages
            never show paths outside the package.

    Returns:
        A ``RunError`` (the submission's fault), an ``InfraError`` (device or provider trouble,
        exit 4), or ``None`` for exceptions that are bugs and must keep their traceback.
    """
    kind = type(err).__name__
    if isinstance(err, MemoryError):
        return RunError(f"Backend {backend!r}: out of host memory while {stage}ing {model}.", code="E_MEMORY_LIMIT")
    if type(err).__module__ != _ORT_ERROR_MODULE:
        if stage == "run" and isinstance(err, ValueError):   # the Python wrapper's feed-name check
            return RunError(f"Backend {backend!r}: the feeds do not match {model}: {err}", code="E_IO_CONTRACT")
        return None
    detail = _strip_status(str(err))
    for host, shown in sorted((scrub or {}).items(), key=lambda kv: -len(kv[0])):
        detail = detail.replace(host, shown)
    what = f"Backend {backend!r}: ONNX Runtime could not {'load' if stage == 'load' else 'run'} {model}: {kind}: {detail}"
    low = detail.lower()
    if kind in ("EPFail", "DeviceReset", "EngineError"):
        return InfraError(what, code="E_DEVICE_FAILURE", hint="a device or execution provider failed; retry on a healthy machine.")
    if any(s in low for s in ("out of memory", "bfcarena", "bad allocation", "failed to allocate")):
        return RunError(what, code="E_MEMORY_LIMIT", hint="lower the batch size or raise gpu_mem_limit / the memory limit.")
    if kind == "ModelLoadCanceled" or "terminate flag" in low:
        return RunError(what, code="E_TIMEOUT")
    if any(s in low for s in _DEVICE_FAILURES):
        code = "E_BACKEND_UNAVAILABLE" if stage == "load" else "E_DEVICE_FAILURE"
        return InfraError(what, code=code, hint=GPU_HINT if stage == "load" else "the GPU failed; retry on a healthy machine.")
    if kind == "InvalidProtobuf":
        return RunError(what, code="E_FORMAT_CORRUPT")
    if kind in ("NoSuchFile", "NoModel", "NotFound"):
        return RunError(what, code="E_FS_NOT_REGULAR")
    if kind == "NotImplemented":
        return RunError(what, code="E_ONNX_UNSUPPORTED", hint="the backend has no kernel for an operator/dtype in this graph.")
    if kind == "InvalidArgument":
        return RunError(what, code="E_IO_CONTRACT" if stage == "run" else "E_ONNX_INVALID")
    if kind == "InvalidGraph":
        return RunError(what, code="E_ONNX_INVALID")
    if kind == "Fail":
        if "external data" in low:
            return RunError(what, code="E_FS_PATH_ESCAPE")
        if "is not a registered function/op" in low or "validateopsetfordomain" in low:
            return RunError(what, code="E_ONNX_UNSUPPORTED")
    return RunError(what, code="E_RUNTIME_ERROR")


def _strip_status(message: str) -> str:
    # "[ONNXRuntimeError] : 2 : INVALID_ARGUMENT : detail" -> "detail"
    parts = message.split(" : ", 3)
    return parts[3].strip() if len(parts) == 4 and parts[0].startswith("[ONNXRuntimeError]") else message.strip()


def _reraise(err: Exception, backend: str, model: str, stage: str) -> NoReturn:
    mapped = translate_error(err, backend=backend, model=model, stage=stage)
    if mapped is None:
        raise err
    raise mapped from err


def verify_active_provider(backend: str, wanted: str, active: Sequence[str]) -> None:
    """Refuse a session whose first active provider is not ``wanted``.

    Raises:
        InfraError: ``E_BACKEND_UNAVAILABLE`` (exit 4) naming what was asked and what ran.
    """
    if not active or active[0] != wanted:
        raise InfraError(
            f"Backend {backend!r} requested {wanted} but ONNX Runtime activated {list(active)}.",
            code="E_BACKEND_UNAVAILABLE",
            hint=("refusing to fall back: latency would be measured on the wrong device; " + GPU_HINT)
            if wanted != "CPUExecutionProvider" else "refusing to fall back.",
        )


# ----------------------------------------------------------------------------------- backend


@dataclass(frozen=True, slots=True)
class _TensorInfo:
    name: str
    type: str                               # ORT's "tensor(float)"
    dtype: np.dtype | None                  # None for types numpy lacks (bfloat16, strings)
    shape: tuple[int | str | None, ...]

    def describe(self) -> str:
        return f"{self.dtype if self.dtype is not None else self.type}{list(self.shape)}"


class OrtBackend:
    """One ONNX Runtime execution provider as an mmstd backend.

    Args:
        name: Registry key (``ort-cuda``).
        provider: The execution provider that must end up first in ``get_providers()``.
        fallbacks: Providers listed after it for nodes it cannot run (never instead of it).
        device: ``"cpu"`` or ``"cuda"``: where prepared queries keep their inputs and outputs.
    """

    def __init__(self, name: str, provider: str, *, fallbacks: tuple[str, ...] = (), device: str = "cpu") -> None:
        self.name = name
        self.provider = provider
        self.fallbacks = fallbacks
        self.device = device

    def __repr__(self) -> str:
        return f"OrtBackend({self.name!r}, {self.provider!r})"

    def unavailable_reason(self, *, probe: bool = False) -> str | None:
        """Why this backend cannot run here, or ``None``.

        Args:
            probe: Also open a one-node model and verify the provider activates (catches a GPU
                build on a machine without a usable GPU, which lists the provider anyway).
        """
        try:
            self._check_available()
            if probe:
                self._probe()
        except MmstdError as err:
            return err.message
        return None

    def _check_available(self) -> None:
        ort = _ort()
        available = ort.get_available_providers()
        missing = [p for p in (self.provider, *self.fallbacks) if p not in available]
        if missing:
            build = "a CPU build" if ort.get_device() == "CPU" else f"a {ort.get_device()} build"
            raise InfraError(
                f"Backend {self.name!r} requested {' and '.join(missing)} but ONNX Runtime "
                f"{ort.__version__} ({build}) offers only {available}.",
                code="E_BACKEND_UNAVAILABLE",
                hint=GPU_HINT if self.device != "cpu" else "reinstall onnxruntime.",
            )

    def _probe(self) -> None:
        from onnx import TensorProto, helper

        graph = helper.make_graph(
            [helper.make_node("Add", ["x", "x"], ["y"])], "probe",
            [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
            [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])],
        )
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
        model.ir_version = 9
        with self._open(model.SerializeToString(), "probe", batch_size=1, options=BackendOptions()):
            pass

    def open(self, model_path: Path, *, batch_size: int, options: BackendOptions) -> OrtSession:
        """Open ``model_path`` for batches of ``batch_size``; see ``mmstd.backends.open_session``."""
        model_path = Path(model_path)
        shown = f"{model_path.parent.name}/{model_path.name}"
        return self._open(str(model_path), shown, batch_size=batch_size, options=options,
                          scrub={str(model_path): shown, str(model_path.parent): model_path.parent.name})

    def _open(self, model: str | bytes, shown: str, *, batch_size: int, options: BackendOptions,
              scrub: Mapping[str, str] | None = None) -> OrtSession:
        ort = _ort()
        self._check_available()
        gpu = self.device != "cpu"
        threads = options.threads or intra_op_threads(batch_size)
        deterministic = (not gpu) if options.deterministic is None else options.deterministic
        so = ort.SessionOptions()
        so.graph_optimization_level = getattr(ort.GraphOptimizationLevel, _GRAPH_OPT[options.graph_optimization])
        so.intra_op_num_threads = threads
        so.inter_op_num_threads = 1           # sequential execution never uses the inter-op pool
        so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        so.use_deterministic_compute = deterministic
        so.enable_cpu_mem_arena = True
        so.enable_mem_pattern = True
        so.log_severity_level = 3             # errors only: our checks say what went wrong, once
        so.add_session_config_entry("session.record_ep_graph_assignment_info", "1")
        ort.set_seed(options.seed)
        session_options = {
            "graph_optimization_level": _GRAPH_OPT[options.graph_optimization],
            "intra_op_num_threads": threads,
            "inter_op_num_threads": 1,
            "execution_mode": "ORT_SEQUENTIAL",
            "use_deterministic_compute": deterministic,
            "enable_cpu_mem_arena": True,
            "enable_mem_pattern": True,
            "log_severity_level": 3,
            "session.record_ep_graph_assignment_info": "1",
        }
        thread_rule = "user" if options.threads else (
            f"rule: 1 below batch {MULTI_THREAD_MIN_BATCH}, else usable cores ({usable_cores()})")

        graph_reason: str | None = None
        want_graph = False
        if options.cuda_graph and not gpu:
            graph_reason = "CUDA graphs need a GPU backend"
        elif options.cuda_graph:
            graph_reason = _cuda_graph_blocker(model)
            want_graph = graph_reason is None
        elif gpu:
            graph_reason = "not requested"
        providers = self._providers(options, cuda_graph=want_graph)

        def create(provs: list[Any]) -> tuple[Any, float]:
            t0 = time.perf_counter_ns()
            try:
                sess = ort.InferenceSession(model, so, providers=provs, enable_fallback=0)
            except Exception as err:
                mapped = translate_error(err, backend=self.name, model=shown, stage="load", scrub=scrub)
                if mapped is None:
                    raise
                raise mapped from err
            return sess, (time.perf_counter_ns() - t0) / 1e6

        try:
            sess, create_ms = create(providers)
        except MmstdError as err:
            # ORT refuses the whole session when a CUDA graph cannot be honoured (a node outside
            # the GPU provider, control flow); run without one and say why, never silently.
            if not (want_graph and "cuda graph" in err.message.lower()):
                raise
            graph_reason = f"ONNX Runtime refused it: {err.message.split(': ', 3)[-1]}"
            want_graph = False
            providers = self._providers(options, cuda_graph=False)
            sess, create_ms = create(providers)

        active = tuple(sess.get_providers())
        verify_active_provider(self.name, self.provider, active)
        nodes = _nodes_by_provider(sess)
        if nodes is not None and self.provider != "CPUExecutionProvider" and not nodes.get(self.provider):
            raise RunError(
                f"Backend {self.name!r}: {self.provider} was activated but runs none of the nodes of {shown} "
                f"(assignment: {nodes}).",
                code="E_ONNX_UNSUPPORTED",
                hint="the provider supports none of this graph's operators; its latency would be the CPU's.",
            )
        return OrtSession(
            backend=self.name,
            session=sess,
            shown=shown,
            providers_requested=tuple(p if isinstance(p, str) else p[0] for p in providers),
            provider_options_requested={p[0]: dict(p[1]) for p in providers if not isinstance(p, str)},
            session_options=session_options,
            thread_rule=thread_rule,
            seed=options.seed,
            device=f"cuda:{options.device_id}" if gpu else "cpu",
            io_binding=gpu if options.io_binding is None else options.io_binding,
            batch_size=batch_size,
            create_ms=create_ms,
            cuda_graph=want_graph,
            cuda_graph_reason=None if want_graph else graph_reason,
            nodes_by_provider=nodes,
        )

    def _providers(self, options: BackendOptions, *, cuda_graph: bool) -> list[Any]:
        cuda_opts: dict[str, str] = {
            "device_id": str(options.device_id),
            "arena_extend_strategy": "kSameAsRequested",   # grow by what is asked: bounded, predictable
            "cudnn_conv_algo_search": options.cudnn_conv_algo_search,
            "do_copy_in_default_stream": "1",               # separate copy streams race (ORT docs)
        }
        if options.gpu_mem_limit is not None:
            cuda_opts["gpu_mem_limit"] = str(options.gpu_mem_limit)
        if self.provider == "CUDAExecutionProvider":
            if cuda_graph:
                cuda_opts["enable_cuda_graph"] = "1"
            return [("CUDAExecutionProvider", cuda_opts), "CPUExecutionProvider"]
        if self.provider == "TensorrtExecutionProvider":
            trt_opts = {
                "device_id": str(options.device_id),
                "trt_fp16_enable": "1" if options.trt_fp16 else "0",
                # engine caches would be written next to the model, inside the submission
                "trt_engine_cache_enable": "0",
            }
            if options.trt_max_workspace_bytes is not None:
                trt_opts["trt_max_workspace_size"] = str(options.trt_max_workspace_bytes)
            if cuda_graph:
                trt_opts["trt_cuda_graph_enable"] = "1"
            return [("TensorrtExecutionProvider", trt_opts), ("CUDAExecutionProvider", cuda_opts), "CPUExecutionProvider"]
        return [self.provider, *self.fallbacks]


def _nodes_by_provider(sess: Any) -> dict[str, int] | None:
    try:
        info = sess.get_provider_graph_assignment_info()
    except (AttributeError, RuntimeError):   # older ORT, or recording unsupported
        return None
    counts: dict[str, int] = {}
    for subgraph in info:
        counts[subgraph.ep_name] = counts.get(subgraph.ep_name, 0) + len(subgraph.get_nodes())
    return dict(sorted(counts.items())) or None


def _cuda_graph_blocker(model: str | bytes) -> str | None:
    """Why a CUDA graph cannot capture this model, from the graph alone, or ``None``."""
    import onnx

    proto = onnx.load_from_string(model) if isinstance(model, bytes) else onnx.load(model, load_external_data=False)
    flow = sorted({n.op_type for n in proto.graph.node} & _CONTROL_FLOW_OPS)
    if flow:
        return f"the graph has control-flow operators ({', '.join(flow)}), which a CUDA graph cannot capture"
    axes = {d.dim_param for i in proto.graph.input for d in i.type.tensor_type.shape.dim if d.dim_param}
    for out in proto.graph.output:
        for d in out.type.tensor_type.shape.dim:
            if not d.HasField("dim_value") and d.dim_param not in axes:
                return (f"output {out.name!r} has a data-dependent dimension ({d.dim_param or '?'}); "
                        "a CUDA graph needs output shapes fixed by the input shapes")
    return None


cpu = OrtBackend("ort-cpu", "CPUExecutionProvider")
cuda = OrtBackend("ort-cuda", "CUDAExecutionProvider", fallbacks=("CPUExecutionProvider",), device="cuda")
tensorrt = OrtBackend("ort-trt", "TensorrtExecutionProvider",
                      fallbacks=("CUDAExecutionProvider", "CPUExecutionProvider"), device="cuda")


# ----------------------------------------------------------------------------------- session


class OrtSession:
    """An open ONNX Runtime session: run batches, prepare latency queries, describe itself.

    Built by ``OrtBackend.open``; use it as a context manager. ``session_options`` holds every
    option set explicitly, ``provider_options`` what the active provider reports it uses.
    """

    def __init__(
        self,
        *,
        backend: str,
        session: Any,
        shown: str,
        providers_requested: tuple[str, ...],
        provider_options_requested: Mapping[str, Mapping[str, str]],
        session_options: Mapping[str, Any],
        thread_rule: str,
        seed: int,
        device: str,
        io_binding: bool,
        batch_size: int,
        create_ms: float,
        cuda_graph: bool,
        cuda_graph_reason: str | None,
        nodes_by_provider: Mapping[str, int] | None,
    ) -> None:
        self.name = backend
        self._sess: Any = session
        self._shown = shown
        self.providers_requested = providers_requested
        self.providers_active: tuple[str, ...] = tuple(session.get_providers())
        self.provider_options_requested = {k: dict(v) for k, v in provider_options_requested.items()}
        reported = session.get_provider_options()
        self.provider_options = {p: dict(reported.get(p, {})) for p in self.providers_active}
        self.session_options = dict(session_options)
        self.thread_rule = thread_rule
        self.seed = seed
        self.device = device
        self._device_type, _, dev_id = device.partition(":")
        self._device_id = int(dev_id or 0)
        self.io_binding = io_binding
        self.batch_size = batch_size
        self.create_ms = create_ms
        self.cuda_graph = cuda_graph
        self.cuda_graph_reason = cuda_graph_reason
        self.nodes_by_provider = dict(nodes_by_provider) if nodes_by_provider is not None else None
        self._inputs = tuple(_info(a) for a in session.get_inputs())
        self._outputs = tuple(_info(a) for a in session.get_outputs())
        self.input_names = tuple(i.name for i in self._inputs)
        self.output_names = tuple(o.name for o in self._outputs)
        self._graph_ids = 0
        self._queries: list[Query] = []
        self._plain_options: Any = None
        if cuda_graph:
            # a graph-enabled session replays the captured graph on any run with the default
            # id, whatever the feeds; plain runs must opt out explicitly
            self._plain_options = _ort().RunOptions()
            self._plain_options.add_run_config_entry("gpu_graph_id", _GRAPH_SKIP)
        self.sync: Callable[[], None] | None = None if self._device_type == "cpu" else self._sync_last

    # -- lifecycle

    def __enter__(self) -> OrtSession:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._sess is None else f"{self.providers_active[0]}, batch {self.batch_size}"
        return f"<OrtSession {self.name} {self._shown} ({state})>"

    def close(self) -> None:
        """Free the session and every prepared query's device buffers. Idempotent."""
        for q in self._queries:
            q.close()
        self._queries.clear()
        self._sess = None

    @property
    def ort_session(self) -> Any:
        """The underlying ``onnxruntime.InferenceSession`` (for benchmarks against bare ORT)."""
        return self._live()

    def _live(self) -> Any:
        if self._sess is None:
            raise ValueError(f"{self!r} is closed.")
        return self._sess

    # -- running

    def run(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run one batch and return every output as a host array, by output name.

        Raises:
            RunError: ``E_IO_CONTRACT`` when a feed's name, dtype, rank or fixed dimension
                differs from the graph's inputs (checked before ONNX Runtime sees it), other
                codes per ``translate_error``.
            InfraError: The device or provider failed (exit 4).
        """
        sess = self._live()
        checked = self._check_feeds(feeds)
        try:
            values = sess.run(self.output_names, checked, self._plain_options)
        except Exception as err:
            _reraise(err, self.name, self._shown, "run")
        return dict(zip(self.output_names, values, strict=True))

    def prepare(self, feeds: Mapping[str, np.ndarray]) -> Query:
        """A zero-argument query over fixed ``feeds`` for latency measurement.

        Without ``io_binding`` (the CPU default: ONNX Runtime reads numpy feeds in place) the
        query is a plain ``run``. With it (the GPU default), the inputs are copied to the device
        once (``OrtValue``), the outputs are pre-allocated there and both are bound with IOBinding,
        so a timed query never bounces through the host; with ``cuda_graph`` the query replays a
        captured CUDA graph, after checking that the replay reproduces an uncaptured run
        (otherwise it falls back and records why).

        The query runs once here (untimed), so a bad feed fails now and not inside the clock.

        Raises:
            RunError: As ``run``.
        """
        sess = self._live()
        checked = self._check_feeds(feeds)
        lead = next(iter(checked.values()), None)
        batch = int(lead.shape[0]) if lead is not None and lead.ndim else 1
        if not self.io_binding:
            host = _host_query(sess.run, self.output_names, checked, batch, self.name, self._shown)
            host()
            return host
        first = self.run(checked)      # validates, and gives the output shapes to pre-allocate
        query = self._bind(sess, checked, first, batch)
        self._queries.append(query)
        query()
        return query

    def _bind(self, sess: Any, feeds: Mapping[str, np.ndarray], first: Mapping[str, np.ndarray], batch: int) -> Query:
        ort = _ort()
        binding = sess.io_binding()
        keep: list[Any] = []
        for name in self.input_names:
            value = ort.OrtValue.ortvalue_from_numpy(np.ascontiguousarray(feeds[name]), self._device_type, self._device_id)
            binding.bind_ortvalue_input(name, value)
            keep.append(value)
        for name in self.output_names:
            out = first[name]
            value = ort.OrtValue.ortvalue_from_shape_and_type(list(out.shape), out.dtype.type, self._device_type, self._device_id)
            binding.bind_ortvalue_output(name, value)
            keep.append(value)
        binding.synchronize_inputs()
        run_options, graph_id = self._plain_options, None
        if self.cuda_graph:
            self._graph_ids += 1
            graph_id = self._graph_ids
            run_options = ort.RunOptions()
            # one id per query: a captured graph replays its own buffers, whatever is bound later
            run_options.add_run_config_entry("gpu_graph_id", str(graph_id))
            reason = self._capture(sess, binding, run_options, first)
            if reason is not None:
                _release_graph(sess, graph_id)
                self.cuda_graph, self.cuda_graph_reason = False, reason
                run_options, graph_id = self._plain_options, None
        return _bound_query(sess, binding, run_options, graph_id, self.output_names, keep, batch, self.name, self._shown,
                           sync=self._device_type != "cpu")

    def _capture(self, sess: Any, binding: Any, run_options: Any, expected: Mapping[str, np.ndarray]) -> str | None:
        try:
            for _ in range(_CAPTURE_RUNS):
                sess.run_with_iobinding(binding, run_options)
            binding.synchronize_outputs()
            replayed = binding.copy_outputs_to_cpu()
        except Exception as err:
            mapped = translate_error(err, backend=self.name, model=self._shown, stage="run")
            if mapped is None:
                raise
            if isinstance(mapped, InfraError):   # a failing device is not a reason to go on without graphs
                raise mapped from err
            return f"capture failed: {mapped.message.split(': ', 3)[-1]}"
        for name, got in zip(self.output_names, replayed, strict=True):
            want = expected[name]
            if got.shape != want.shape or not np.allclose(got, want, rtol=1e-3, atol=1e-5, equal_nan=True):
                diff = float(np.max(np.abs(got.astype(np.float64) - want.astype(np.float64)))) if got.shape == want.shape else math.inf
                return f"the replayed graph's output {name!r} differs from an uncaptured run (max |diff| {diff:.3g})"
        return None

    def _sync_last(self) -> None:
        sync = self._queries[-1].sync if self._queries else None
        if sync is not None:
            sync()

    # -- contract

    def _check_feeds(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        # The accuracy run feeds hundreds of batches of one layout: check a layout once, then only
        # compare its (name, dtype, shape) signature, which costs ~1 us instead of ~12 us per batch.
        signature = tuple((k, v.dtype, v.shape) if isinstance(v, np.ndarray) else (k, None, None)
                          for k, v in feeds.items())
        if signature == getattr(self, "_accepted_signature", None):
            return dict(feeds)
        problems = []
        missing = [n for n in self.input_names if n not in feeds]
        unknown = sorted(set(feeds) - set(self.input_names))
        if missing:
            problems.append(f"missing input(s) {', '.join(map(repr, missing))}")
        if unknown:
            problems.append(f"unknown input(s) {', '.join(map(repr, unknown))}; graph inputs: {', '.join(self.input_names)}")
        sizes: dict[str, tuple[int, str]] = {}
        for spec in self._inputs:
            if spec.name not in feeds:
                continue
            arr = feeds[spec.name]
            where = f"input {spec.name!r}"
            if not isinstance(arr, np.ndarray):
                problems.append(f"{where}: expected a numpy array, got {type(arr).__name__}")
                continue
            if spec.dtype is not None and arr.dtype != spec.dtype:
                problems.append(f"{where}: dtype {arr.dtype}, expected {spec.dtype} (shape {list(spec.shape)})")
            if arr.ndim != len(spec.shape):
                problems.append(f"{where}: rank {arr.ndim} (shape {list(arr.shape)}), expected {len(spec.shape)} {list(spec.shape)}")
                continue
            for axis, (got, want) in enumerate(zip(arr.shape, spec.shape, strict=True)):
                if isinstance(want, int) and want >= 0 and got != want:
                    problems.append(f"{where}: dimension {axis} is {got}, expected {want} (shape {list(spec.shape)})")
                elif isinstance(want, str):
                    seen = sizes.setdefault(want, (got, spec.name))
                    if seen[0] != got:
                        problems.append(f"{where}: axis {want!r} is {got}, but input {seen[1]!r} has {want!r} = {seen[0]}")
        if problems:
            raise RunError(
                f"Backend {self.name!r}: the feeds do not match the inputs of {self._shown} "
                f"({'; '.join(f'{s.name} {s.describe()}' for s in self._inputs)}).",
                code="E_IO_CONTRACT",
                problems=problems,
                hint="the card's preprocessing must produce exactly the declared dtype and shape.",
            )
        self._accepted_signature = signature
        return dict(feeds)

    def describe(self) -> dict[str, Any]:
        """Everything a report needs to say how this session ran, JSON-ready."""
        return {
            "backend": self.name,
            "onnxruntime": _ort().__version__,
            "providers_requested": list(self.providers_requested),
            "providers_active": list(self.providers_active),
            "provider_options_requested": self.provider_options_requested,
            "provider_options": self.provider_options,
            "session_options": dict(self.session_options),
            "thread_rule": self.thread_rule,
            "seed": self.seed,
            "io_binding": self.io_binding,
            "device": self.device,
            "batch_size": self.batch_size,
            "cuda_graph": self.cuda_graph,
            "cuda_graph_reason": self.cuda_graph_reason,
            "nodes_by_provider": self.nodes_by_provider,
            "create_ms": self.create_ms,
        }


def _info(arg: Any) -> _TensorInfo:
    dtype = _ORT_DTYPES.get(arg.type)
    return _TensorInfo(arg.name, arg.type, np.dtype(dtype) if dtype is not None else None, tuple(arg.shape))


# Queries are closures carrying attributes rather than instances of a class with ``__call__``:
# CPython calls an instance through ``slot_tp_call`` (an argument tuple, a method lookup), which
# measured 0.18 µs more per query than a function (tiny model, 10.0 vs 10.2 µs at batch 1), and
# the timed loop should hold the model, not the wrapper.


def _release_graph(sess: Any, graph_id: int) -> None:
    # release_captured_graph is recent (a no-op for providers without it); failing to free a
    # graph must not hide the error or the result that led here
    release = getattr(sess, "release_captured_graph", None)
    try:
        if release is not None:
            release(graph_id)
    except Exception as err:
        if type(err).__module__ != _ORT_ERROR_MODULE:
            raise


def _query(fn: Callable[[], None], *, batch_size: int, sync: Callable[[], None] | None,
           outputs: Callable[[], dict[str, np.ndarray]], close: Callable[[], None]) -> Query:
    q: Any = fn
    q.batch_size, q.sync, q.outputs, q.close = batch_size, sync, outputs, close
    return cast(Query, q)


def _host_query(run: Callable[..., Any], names: tuple[str, ...], feeds: dict[str, np.ndarray],
                batch_size: int, backend: str, model: str) -> Query:
    """A query without IOBinding: ``InferenceSession.run`` over fixed numpy feeds."""
    out_names = list(names)

    def query() -> None:
        try:
            run(out_names, feeds)
        except Exception as err:
            _reraise(err, backend, model, "run")

    def outputs() -> dict[str, np.ndarray]:
        # runs once more rather than keeping every call's arrays alive inside the timed loop
        try:
            return dict(zip(out_names, run(out_names, feeds), strict=True))
        except Exception as err:
            _reraise(err, backend, model, "run")

    return _query(query, batch_size=batch_size, sync=None, outputs=outputs, close=lambda: None)


def _bound_query(sess: Any, binding: Any, options: Any, graph_id: int | None, names: tuple[str, ...],
                 keep: list[Any], batch_size: int, backend: str, model: str, *, sync: bool) -> Query:
    """An IOBinding query: ``run_with_iobinding`` over pre-bound tensors on the device."""
    run = sess.run_with_iobinding
    state: dict[str, Any] = {"graph_id": graph_id, "keep": keep}

    def query() -> None:
        try:
            run(binding, options)
        except Exception as err:
            _reraise(err, backend, model, "run")

    def outputs() -> dict[str, np.ndarray]:
        binding.synchronize_outputs()
        return dict(zip(names, binding.copy_outputs_to_cpu(), strict=True))

    def close() -> None:
        if state["graph_id"] is not None:
            _release_graph(sess, state["graph_id"])
            state["graph_id"] = None
        state["keep"] = []

    # host memory needs no synchronisation, and a no-op call would only add to the timings
    return _query(query, batch_size=batch_size, sync=binding.synchronize_outputs if sync else None,
                  outputs=outputs, close=close)
