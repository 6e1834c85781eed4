"""Backends: real onnxruntime sessions on tiny sealed packages; GPU paths skip cleanly without a GPU."""
from __future__ import annotations

import json
import subprocess
import sys
import warnings
from pathlib import Path

import click
import numpy as np
import pytest
from backend_fixtures import reference_feeds, require_backend

from mmstd.backends import BACKENDS, Backend, BackendOptions, Query, Session, open_session
from mmstd.errors import EXIT_INFRA, InfraError, MmstdError, RegistryError, RunError

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def package(tiny_package_dir: Path):
    from mmstd.package import open_package

    return open_package(tiny_package_dir)


def _feeds(package, batch: int, seed: int = 0) -> dict[str, np.ndarray]:
    from mmstd.testing import random_feeds

    return random_feeds(package.card, batch, seed=seed)


def _cuda_available() -> bool:
    import onnxruntime as ort

    return "CUDAExecutionProvider" in ort.get_available_providers()


# ------------------------------------------------------------------------------- registry


def test_importing_mmstd_backends_imports_no_runtime() -> None:
    code = ("import sys, mmstd, mmstd.backends; "
            "print([m for m in ('onnxruntime', 'torch', 'tensorflow', 'numpy') if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO)
    assert out.stdout.strip() == "[]"


def test_builtin_backends_are_registered_lazily() -> None:
    assert {"ort-cpu", "ort-cuda", "ort-trt"} <= set(BACKENDS.names())
    for name in ("ort-cpu", "ort-cuda", "ort-trt"):
        backend = BACKENDS.get(name)
        assert isinstance(backend, Backend)
        assert backend.name == name


@pytest.mark.parametrize("name", ["ort_cuda", "ort-cudaa", "ortcuda"])
def test_unknown_backend_suggests_closest(name: str, package) -> None:
    with pytest.raises(RegistryError, match=rf"Unknown backend '{name}'\. Did you mean 'ort-cuda'\? Available: .*ort-cpu, ort-cuda, ort-trt"):
        open_session(name, package.model_path)


# ------------------------------------------------- meta-test: every registered backend is run


@pytest.mark.parametrize("name", sorted(BACKENDS.names()))
def test_every_backend_matches_the_package_reference(name: str, package) -> None:
    """Each registered backend runs the sealed package and reproduces reference.safetensors."""
    require_backend(name)
    feeds, expected = reference_feeds(package.root)
    batch = len(next(iter(feeds.values())))
    with open_session(name, package.model_path, batch_size=batch) as session:
        assert isinstance(session, Session)
        got = session.run(feeds)
        assert list(got) == list(session.output_names) == list(expected)
        for out, want in expected.items():
            assert got[out].dtype == want.dtype and got[out].shape == want.shape
            np.testing.assert_allclose(got[out], want, atol=1e-5, rtol=0)
        wanted = BACKENDS.get(name).provider
        assert session.providers_active[0] == wanted
        assert session.providers_requested[0] == wanted
        info = session.describe()
        json.dumps(info)                                   # JSON-ready for the RunRecord/report
        assert info["providers_active"][0] == wanted
        assert info["nodes_by_provider"].get(wanted, 0) > 0
        assert info["create_ms"] > 0


# ------------------------------------------------------------------------------- ort-cpu


def test_cpu_session_records_every_option_it_sets(package) -> None:
    import onnxruntime as ort

    with open_session("ort-cpu", package.model_path, batch_size=4) as session:
        so = session.session_options
        assert so == {
            "graph_optimization_level": "ORT_ENABLE_ALL",
            "intra_op_num_threads": 1,
            "inter_op_num_threads": 1,
            "execution_mode": "ORT_SEQUENTIAL",
            "use_deterministic_compute": True,
            "enable_cpu_mem_arena": True,
            "enable_mem_pattern": True,
            "log_severity_level": 3,
            "session.record_ep_graph_assignment_info": "1",
        }
        held = session.ort_session.get_session_options()   # what ONNX Runtime actually holds
        assert held.graph_optimization_level == ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        assert held.execution_mode == ort.ExecutionMode.ORT_SEQUENTIAL
        assert (held.intra_op_num_threads, held.inter_op_num_threads) == (1, 1)
        assert held.use_deterministic_compute is True
        assert held.optimized_model_filepath == ""         # never writes an optimized model
        assert session.providers_active == ("CPUExecutionProvider",)
        assert (session.io_binding, session.device, session.sync) == (False, "cpu", None)
        assert session.describe()["cuda_graph_reason"] is None


@pytest.mark.parametrize("batch", [1, 2, 4, 8, 32, 128])
def test_thread_rule_is_applied_per_batch_size(batch: int, package) -> None:
    from mmstd.backends.onnxruntime import MULTI_THREAD_MIN_BATCH, intra_op_threads, usable_cores

    expected = 1 if batch < MULTI_THREAD_MIN_BATCH or usable_cores() == 1 else usable_cores()
    assert intra_op_threads(batch) == expected
    with open_session("ort-cpu", package.model_path, batch_size=batch) as session:
        assert session.session_options["intra_op_num_threads"] == expected
        assert session.ort_session.get_session_options().intra_op_num_threads == expected
        assert session.thread_rule.startswith("rule:")
        out = session.run(_feeds(package, batch))
        assert out["probabilities"].shape == (batch, 10)


def test_thread_rule_table() -> None:
    from mmstd.backends.onnxruntime import MULTI_THREAD_MIN_BATCH, intra_op_threads

    assert intra_op_threads(1, cores=16) == 1
    assert intra_op_threads(MULTI_THREAD_MIN_BATCH - 1, cores=16) == 1
    assert intra_op_threads(MULTI_THREAD_MIN_BATCH, cores=16) == 16   # explicit count, never 0
    assert intra_op_threads(1024, cores=1) == 1


def test_user_threads_and_optimization_level_override_the_rule(package) -> None:
    import onnxruntime as ort

    options = BackendOptions(threads=2, graph_optimization="basic", deterministic=False)
    with open_session("ort-cpu", package.model_path, batch_size=1, options=options) as session:
        assert session.session_options["intra_op_num_threads"] == 2
        assert session.session_options["graph_optimization_level"] == "ORT_ENABLE_BASIC"
        assert session.session_options["use_deterministic_compute"] is False
        assert session.thread_rule == "user"
        held = session.ort_session.get_session_options()
        assert held.graph_optimization_level == ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
        assert held.intra_op_num_threads == 2
    with open_session("ort-cpu", package.model_path, options=BackendOptions(cuda_graph=True)) as session:
        assert (session.cuda_graph, session.cuda_graph_reason) == (False, "CUDA graphs need a GPU backend")


@pytest.mark.parametrize(("kwargs", "problem"), [
    ({"threads": 0}, "threads: expected a positive int or None, got 0"),
    ({"graph_optimization": "max"}, "graph_optimization: expected one of disable, basic, extended, all, got 'max'"),
    ({"cudnn_conv_algo_search": "fast"}, "cudnn_conv_algo_search: expected one of"),
    ({"gpu_mem_limit": -1}, "gpu_mem_limit: expected a positive number of bytes or None, got -1"),
    ({"device_id": -1}, "device_id: expected a non-negative int"),
])
def test_backend_options_are_validated(kwargs: dict, problem: str) -> None:
    with pytest.raises(MmstdError) as info:
        BackendOptions(**kwargs)
    assert info.value.code == "E_USAGE"
    assert any(problem in p for p in info.value.problems), info.value.problems


def test_batch_size_is_validated(package) -> None:
    with pytest.raises(MmstdError, match=r"batch_size: expected a positive int, got 0"):
        open_session("ort-cpu", package.model_path, batch_size=0)


# ------------------------------------------------------------------ no silent fallback


def test_cuda_on_a_cpu_build_is_an_infra_error(package) -> None:
    if _cuda_available():
        pytest.skip("this onnxruntime offers CUDAExecutionProvider")
    with pytest.raises(InfraError) as info:
        open_session("ort-cuda", package.model_path)
    err = info.value
    assert (err.exit_code, err.code) == (EXIT_INFRA, "E_BACKEND_UNAVAILABLE")
    assert err.message.startswith("Backend 'ort-cuda' requested CUDAExecutionProvider but ONNX Runtime ")
    assert "(a CPU build) offers only [" in err.message and "'CPUExecutionProvider'" in err.message
    assert "mmstd[gpu]" in err.hint and "--backend ort-cpu" in err.hint


def test_trt_on_a_cpu_build_names_both_providers(package) -> None:
    if _cuda_available():
        pytest.skip("this onnxruntime offers GPU providers")
    with pytest.raises(InfraError, match=r"Backend 'ort-trt' requested TensorrtExecutionProvider and CUDAExecutionProvider but ONNX Runtime"):
        open_session("ort-trt", package.model_path)


def test_onnxruntime_falling_back_to_cpu_is_refused(package) -> None:
    """Without the availability pre-check, ORT really drops CUDA and activates CPU; we refuse."""
    if _cuda_available():
        pytest.skip("CUDA is offered, so ONNX Runtime would not fall back here")
    from mmstd.backends.onnxruntime import OrtBackend

    class Unchecked(OrtBackend):
        def _check_available(self) -> None:   # go straight to InferenceSession, as a naive harness would
            pass

    backend = Unchecked("ort-cuda", "CUDAExecutionProvider", fallbacks=("CPUExecutionProvider",), device="cuda")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")      # ORT's own "not in available provider names" warning
        with pytest.raises(InfraError) as info:
            backend.open(package.model_path, batch_size=1, options=BackendOptions())
    assert info.value.message == "Backend 'ort-cuda' requested CUDAExecutionProvider but ONNX Runtime activated ['CPUExecutionProvider']."
    assert info.value.exit_code == EXIT_INFRA
    assert "refusing to fall back" in info.value.hint and "--backend ort-cpu" in info.value.hint


def test_onnxruntime_python_retry_on_cpu_is_disabled(package) -> None:
    """onnxruntime's wrapper retries a failed session on CPU (printing to stdout); ours must not."""
    from mmstd.backends.onnxruntime import OrtBackend

    class BadOptions(OrtBackend):
        def _providers(self, options: BackendOptions, *, cuda_graph: bool) -> list:
            return [("CPUExecutionProvider", "not a dict")]   # the wrapper raises ValueError for this

    backend = BadOptions("ort-cpu", "CPUExecutionProvider")
    with pytest.raises(ValueError, match="must be either strings or"):   # a bug: keeps its traceback
        backend.open(package.model_path, batch_size=1, options=BackendOptions())


def test_verify_active_provider_accepts_only_the_first_provider() -> None:
    from mmstd.backends.onnxruntime import verify_active_provider

    verify_active_provider("ort-cuda", "CUDAExecutionProvider", ["CUDAExecutionProvider", "CPUExecutionProvider"])
    with pytest.raises(InfraError, match=r"activated \['CPUExecutionProvider', 'CUDAExecutionProvider'\]"):
        verify_active_provider("ort-cuda", "CUDAExecutionProvider", ["CPUExecutionProvider", "CUDAExecutionProvider"])




@click.command("backend-probe")
@click.argument("backend")
@click.argument("model", type=click.Path(path_type=Path))
def _backend_probe(backend: str, model: Path) -> None:
    """Open MODEL on BACKEND: a stand-in for `mmstd evaluate` to exercise the CLI's error mapping."""
    with open_session(backend, model):
        pass


def test_infra_error_exits_4_through_the_cli(package, monkeypatch: pytest.MonkeyPatch) -> None:
    if _cuda_available():
        pytest.skip("this onnxruntime offers CUDAExecutionProvider")
    from click.testing import CliRunner

    import mmstd.cli

    monkeypatch.setitem(mmstd.cli.COMMANDS, "backend-probe", f"{__name__}:_backend_probe")
    result = CliRunner().invoke(mmstd.cli.cli, ["backend-probe", "ort-cuda", str(package.model_path)])
    assert result.exit_code == EXIT_INFRA
    assert "E_BACKEND_UNAVAILABLE: Backend 'ort-cuda' requested CUDAExecutionProvider but ONNX Runtime" in result.stderr
    assert "hint: install mmstd[gpu]" in result.stderr
    assert "Traceback" not in result.output
    ok = CliRunner().invoke(mmstd.cli.cli, ["backend-probe", "ort-cpu", str(package.model_path)])
    assert ok.exit_code == 0, ok.output


# ------------------------------------------------------------------------------- contract


@pytest.mark.parametrize(("mutate", "problem"), [
    (lambda f: {**f, "image": f["image"].astype(np.float64)},
     "input 'image': dtype float64, expected float32 (shape ['batch', 28, 28, 1])"),
    (lambda f: {**f, "text": f["text"].astype(np.int32)}, "input 'text': dtype int32, expected int64"),
    (lambda f: {**f, "image": f["image"][..., 0]}, "input 'image': rank 3 (shape [3, 28, 28]), expected 4"),
    (lambda f: {**f, "audio": np.zeros((3, 49, 13), np.float32)}, "input 'audio': dimension 1 is 49, expected 50"),
    (lambda f: {**f, "audio": np.zeros((2, 50, 13), np.float32)}, "input 'audio': axis 'batch' is 2, but input 'image' has 'batch' = 3"),
    (lambda f: {k: v for k, v in f.items() if k != "text"}, "missing input(s) 'text'"),
    (lambda f: {**f, "extra": f["text"]}, "unknown input(s) 'extra'; graph inputs: image, text, audio"),
    (lambda f: {**f, "image": f["image"].tolist()}, "input 'image': expected a numpy array, got list"),
])
def test_feeds_breaking_the_contract_are_refused_before_ort(mutate, problem: str, package) -> None:
    feeds = mutate(_feeds(package, 3))
    with open_session("ort-cpu", package.model_path, batch_size=3) as session:
        session.run(_feeds(package, 3))  # an accepted layout must not wave a different one through
        for call in (session.run, session.prepare):
            with pytest.raises(RunError) as info:
                call(feeds)
            assert info.value.code == "E_IO_CONTRACT"
            assert info.value.message.startswith("Backend 'ort-cpu': the feeds do not match the inputs of example-fusion/model.onnx")
            assert problem in info.value.problems[0], info.value.problems


def test_prepared_query_returns_what_run_returns(package) -> None:
    feeds = _feeds(package, 5, seed=3)
    with open_session("ort-cpu", package.model_path, batch_size=5) as session:
        expected = session.run(feeds)
        query = session.prepare(feeds)
        assert isinstance(query, Query)
        assert (query.batch_size, query.sync) == (5, None)
        assert query() is None
        got = query.outputs()
        assert list(got) == list(expected)
        for name in expected:
            np.testing.assert_array_equal(got[name], expected[name])   # CPU is deterministic: bitwise


def test_closed_session_refuses_to_run(package) -> None:
    with open_session("ort-cpu", package.model_path) as session:
        pass
    with pytest.raises(ValueError, match="is closed"):
        session.run(_feeds(package, 1))
    session.close()   # idempotent


# ------------------------------------------------------------------------------ ORT errors


def _model_file(path: Path, nodes, inputs, outputs, *, opset_domains=(("", 17),)) -> Path:
    import onnx
    from onnx import helper

    graph = helper.make_graph(nodes, "t", inputs, outputs)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid(d, v) for d, v in opset_domains])
    model.ir_version = 9
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, path)
    return path


def _vi(name: str, shape: list) -> object:
    from onnx import TensorProto, helper

    return helper.make_tensor_value_info(name, TensorProto.FLOAT, shape)


def test_load_errors_map_to_stable_codes_without_host_paths(tmp_path: Path) -> None:
    from onnx import helper

    with pytest.raises(RunError) as missing:
        open_session("ort-cpu", tmp_path / "pkg" / "model.onnx")
    assert missing.value.code == "E_FS_NOT_REGULAR"
    assert "pkg/model.onnx" in missing.value.message and str(tmp_path) not in missing.value.message

    garbage = tmp_path / "junk" / "model.onnx"
    garbage.parent.mkdir()
    garbage.write_bytes(b"\x08\x07not a protobuf" * 10)
    with pytest.raises(RunError) as corrupt:
        open_session("ort-cpu", garbage)
    assert corrupt.value.code == "E_FORMAT_CORRUPT"
    assert "InvalidProtobuf" in corrupt.value.message

    custom = _model_file(tmp_path / "custom" / "model.onnx", [helper.make_node("Pwn", ["x"], ["y"], domain="com.evil")],
                         [_vi("x", [1])], [_vi("y", [1])], opset_domains=(("", 17), ("com.evil", 1)))
    with pytest.raises(RunError) as unsupported:
        open_session("ort-cpu", custom)
    assert unsupported.value.code == "E_ONNX_UNSUPPORTED", unsupported.value


def test_translate_error_maps_real_onnxruntime_exceptions(package) -> None:
    import onnxruntime.capi.onnxruntime_pybind11_state as C

    from mmstd.backends.onnxruntime import translate_error

    def tr(err: BaseException, stage: str = "run") -> MmstdError | None:
        return translate_error(err, backend="ort-x", model="pkg/model.onnx", stage=stage)

    with open_session("ort-cpu", package.model_path) as session:   # a real InvalidArgument from ORT itself
        feeds = _feeds(package, 1)
        with pytest.raises(C.InvalidArgument) as raw:
            session.ort_session.run(None, {**feeds, "image": feeds["image"].astype(np.float64)})
    io = tr(raw.value)
    assert isinstance(io, RunError) and io.code == "E_IO_CONTRACT"
    assert io.message.startswith("Backend 'ort-x': ONNX Runtime could not run pkg/model.onnx: InvalidArgument: Unexpected input data type")
    assert tr(raw.value, stage="load").code == "E_ONNX_INVALID"

    for cls in (C.EPFail, C.DeviceReset, C.EngineError):
        err = tr(cls("[ONNXRuntimeError] : 11 : EP_FAIL : provider crashed"))
        assert isinstance(err, InfraError) and (err.code, err.exit_code) == ("E_DEVICE_FAILURE", EXIT_INFRA)
    cuda = tr(C.RuntimeException("[ONNXRuntimeError] : 6 : RUNTIME_EXCEPTION : CUDA failure 700: an illegal memory access"))
    assert isinstance(cuda, InfraError) and cuda.code == "E_DEVICE_FAILURE"
    cuda_load = tr(C.RuntimeException("[ONNXRuntimeError] : 6 : RUNTIME_EXCEPTION : CUDA failure 100: no CUDA-capable device"), "load")
    assert isinstance(cuda_load, InfraError) and cuda_load.code == "E_BACKEND_UNAVAILABLE"
    oom = tr(C.Fail("[ONNXRuntimeError] : 1 : FAIL : Failed to allocate memory for requested buffer of size 1 (BFCArena)"))
    assert isinstance(oom, RunError) and oom.code == "E_MEMORY_LIMIT"
    assert tr(C.Fail("[ONNXRuntimeError] : 1 : FAIL : Exiting due to terminate flag being set to true.")).code == "E_TIMEOUT"
    assert tr(C.NotImplemented("[ONNXRuntimeError] : 9 : NOT_IMPLEMENTED : no kernel")).code == "E_ONNX_UNSUPPORTED"
    assert tr(C.Fail("[ONNXRuntimeError] : 1 : FAIL : something else")).code == "E_RUNTIME_ERROR"
    assert tr(MemoryError()).code == "E_MEMORY_LIMIT"
    assert tr(ValueError("Required inputs (['text']) are missing")).code == "E_IO_CONTRACT"
    assert tr(ValueError("x"), stage="load") is None      # not ORT's: a bug keeps its traceback
    assert tr(KeyError("x")) is None


# -------------------------------------------------------------------------------- CUDA graph


def test_cuda_graph_blockers_are_found_from_the_graph(tmp_path: Path, package) -> None:
    from onnx import TensorProto, helper

    from mmstd.backends.onnxruntime import _cuda_graph_blocker

    assert _cuda_graph_blocker(str(package.model_path)) is None

    branch = helper.make_graph([helper.make_node("Identity", ["x"], ["z"])], "b", [], [_vi("z", [1])])
    flow = _model_file(
        tmp_path / "flow.onnx",
        [helper.make_node("If", ["c"], ["y"], then_branch=branch, else_branch=branch)],
        [helper.make_tensor_value_info("c", TensorProto.BOOL, []), _vi("x", [1])], [_vi("y", [1])],
    )
    assert "control-flow operators (If)" in _cuda_graph_blocker(str(flow))

    dynamic = _model_file(
        tmp_path / "nonzero.onnx", [helper.make_node("NonZero", ["x"], ["y"])],
        [_vi("x", ["batch", 4])], [helper.make_tensor_value_info("y", TensorProto.INT64, [2, "nnz"])],
    )
    assert "output 'y' has a data-dependent dimension (nnz)" in _cuda_graph_blocker(str(dynamic))


# ------------------------------------------------------------------------------------- GPU



@pytest.mark.gpu
def test_cuda_io_binding_matches_cpu(package) -> None:
    require_backend("ort-cuda")
    feeds = _feeds(package, 16, seed=7)
    with open_session("ort-cpu", package.model_path, batch_size=16) as cpu:
        expected = cpu.run(feeds)
    options = BackendOptions(gpu_mem_limit=1 << 30)
    with open_session("ort-cuda", package.model_path, batch_size=16, options=options) as gpu:
        assert gpu.providers_active[0] == "CUDAExecutionProvider"
        assert (gpu.io_binding, gpu.device) == (True, "cuda:0")
        reported = gpu.provider_options["CUDAExecutionProvider"]
        assert reported["gpu_mem_limit"] == str(1 << 30)
        assert reported["arena_extend_strategy"] == "kSameAsRequested"
        assert gpu.cuda_graph is False and gpu.cuda_graph_reason == "not requested"
        query = gpu.prepare(feeds)
        assert query.sync is not None and gpu.sync is not None
        query()
        query.sync()
        gpu.sync()
        for name, want in expected.items():
            np.testing.assert_allclose(query.outputs()[name], want, atol=1e-4, rtol=1e-3)
            np.testing.assert_allclose(gpu.run(feeds)[name], want, atol=1e-4, rtol=1e-3)


@pytest.mark.gpu
def test_cuda_graph_replays_its_own_buffers_or_says_why_not(package) -> None:
    require_backend("ort-cuda")
    a, b = _feeds(package, 8, seed=1), _feeds(package, 8, seed=2)
    with open_session("ort-cpu", package.model_path, batch_size=8) as cpu:
        want_a, want_b = cpu.run(a), cpu.run(b)
    with open_session("ort-cuda", package.model_path, batch_size=8, options=BackendOptions(cuda_graph=True)) as gpu:
        qa = gpu.prepare(a)
        qb = gpu.prepare(b)      # a second capture must not replay the first query's buffers
        for query, want in ((qa, want_a), (qb, want_b), (qa, want_a)):
            query()
            query.sync()
            np.testing.assert_allclose(query.outputs()["probabilities"], want["probabilities"], atol=1e-4, rtol=1e-3)
        np.testing.assert_allclose(gpu.run(a)["probabilities"], want_a["probabilities"], atol=1e-4, rtol=1e-3)
        info = gpu.describe()
        assert info["cuda_graph"] or info["cuda_graph_reason"], "a refused CUDA graph must say why"


@pytest.mark.gpu
def test_cuda_graph_is_refused_with_a_reason_for_control_flow(tmp_path: Path) -> None:
    require_backend("ort-cuda")
    from onnx import TensorProto, helper

    branch = helper.make_graph([helper.make_node("Identity", ["x"], ["z"])], "b", [], [_vi("z", [1])])
    flow = _model_file(
        tmp_path / "flow" / "model.onnx",
        [helper.make_node("If", ["c"], ["y"], then_branch=branch, else_branch=branch)],
        [helper.make_tensor_value_info("c", TensorProto.BOOL, []), _vi("x", [1])], [_vi("y", [1])],
    )
    with open_session("ort-cuda", flow, options=BackendOptions(cuda_graph=True)) as gpu:
        assert gpu.cuda_graph is False
        assert "control-flow" in gpu.cuda_graph_reason


def test_io_binding_path_runs_on_cpu_and_matches_run(package) -> None:
    """The IOBinding query (the GPU default) exercised for real on host memory."""
    feeds = _feeds(package, 4, seed=5)
    with open_session("ort-cpu", package.model_path, batch_size=4, options=BackendOptions(io_binding=True)) as session:
        assert session.io_binding is True and session.describe()["io_binding"] is True
        expected = session.run(feeds)
        query = session.prepare(feeds)
        assert query.sync is None and session.sync is None        # host memory: nothing to wait for
        for _ in range(3):
            query()
        got = query.outputs()
        for name in expected:
            np.testing.assert_array_equal(got[name], expected[name])
        other = session.prepare(_feeds(package, 4, seed=6))         # a second binding keeps its own buffers
        np.testing.assert_array_equal(query.outputs()["probabilities"], expected["probabilities"])
        assert not np.array_equal(other.outputs()["probabilities"], expected["probabilities"])


@pytest.mark.parametrize("io_binding", [False, True])
def test_latency_protocol_runs_over_a_prepared_query(io_binding: bool, package) -> None:
    """The backend's query plugs into the metrics' protocol loop, and its output into Timings."""
    from mmstd.metrics.latency import LatencyProtocol, run_protocol
    from mmstd.record import Timings

    protocol = LatencyProtocol(warmup_queries=2, min_duration_s=0.0, min_queries=25, max_duration_s=10.0)
    options = BackendOptions(io_binding=io_binding)
    with open_session("ort-cpu", package.model_path, batch_size=4, options=options) as session:
        query = session.prepare(_feeds(package, 4))
        run = run_protocol(query, protocol, sync=query.sync)
    assert run.stop_reason == "minimums" and run.latencies_ns.shape == (25,)
    assert run.latencies_ns.dtype == np.int64 and (run.latencies_ns > 0).all()
    stats = run.stats(batch_size=query.batch_size)
    assert stats.queries == 25 and stats.throughput_per_s > 0
    assert 0 < stats.latency_p50_ms <= stats.latency_max_ms
    timings = Timings(session_create_ms=session.create_ms, first_run_ms=0.1, latency_ns={query.batch_size: run.latencies_ns})
    np.testing.assert_array_equal(timings.latency_ns[4], run.latencies_ns)
