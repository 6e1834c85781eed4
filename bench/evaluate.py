"""Benchmarks for the evaluate stage, each printed side by side with its peer and as a ratio.

What is measured (issue 5, deliverable 10), every pair interleaved round by round (A, B, B, A,
...) and reported as the median over rounds, because the machine this runs on is usually shared:

``overhead``  ``OrtSession.prepare()`` queries against a bare ``InferenceSession.run`` loop on the
    same session (same options), as single-stream latency (batch 1, p50 under
    ``mmstd.metrics.latency.run_protocol``) and offline throughput (batch 32, samples/s), on a
    zoo-like and a tiny model; goal >= 0.95x. ``--threads`` instead measures the intra-op thread
    rule that ``mmstd.backends.onnxruntime.intra_op_threads`` encodes.
``accuracy``  The inference part of ``run_suite``'s accuracy run (``OrtSession.run`` per batch of
    32, concatenation, ``check_outputs``) on the digits-av test split (400 samples, preprocessed
    once) against a bare ``InferenceSession.run(None, feeds)`` loop that also concatenates, on a
    second session built from the SessionOptions mmstd recorded (so identical by construction);
    samples/s, goal >= 0.95x. Preprocessing (``make_feeds``, which the bare loop does not do) is
    timed separately and labelled as such, and so is a whole ``run_suite`` accuracy run.
``loadgen``  mmstd single-stream p50/p90 (``prepare()`` + ``run_protocol`` under the suite's
    protocol: 10 warm-up, >= 662 queries, >= 1 s) against MLPerf LoadGen SingleStream /
    PerformanceOnly on the same ORT session at batch 1 (same minimums), read from LoadGen's
    ``mlperf_log_summary.txt``; goal: within 3%. LoadGen runs twice per round: issuing mmstd's
    sample (``performance_issue_same``, index 0) and its default random draw over the 400 test
    samples. Both harnesses are also timed on a heavier query (one batch-32 run per query, same
    session) and on a no-op query (their per-query floor), which together show how much of the
    gap is harness cost per query rather than a difference in what is measured.
``metrics``  accuracy, f1_macro and the confusion matrix on 1e6 predictions, mmstd vs
    scikit-learn (``bench/metrics.py`` has the full set); goal >= 50x.
``torch``  the ``early`` zoo model for digits-av (seeded, untrained) at batch 1: PyTorch eager
    (``eval()``, ``inference_mode``) against ONNX Runtime through mmstd's ``ort-cpu`` session
    (exported with ``export_zoo_model``), both under the single-stream protocol (capped at 3 s a
    run), at 1 intra-op thread each and at each library's default; goal >= 5x.

The machine's load is printed with every part: ``/proc/loadavg`` and the cores other processes
kept busy while it ran (``/proc/stat`` minus this process's own CPU time). Timings never go into
tests. Run it from the repository root (about 1.5-2 minutes; the last line is one JSON object)::

    .venv/bin/python bench/evaluate.py                      # every part
    .venv/bin/python bench/evaluate.py --parts loadgen,torch
    .venv/bin/python bench/evaluate.py --threads            # thread rule table
"""
from __future__ import annotations

import argparse
import functools
import json
import os
import re
import resource
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from mmstd.card import ModelCard, load_card  # noqa: E402
from mmstd.testing import random_feeds, seal_tiny_package  # noqa: E402

PARTS = ("overhead", "accuracy", "loadgen", "metrics", "torch")
GOALS = {"accuracy": 0.95, "loadgen": 0.03, "metrics": 50.0, "torch": 5.0, "overhead": 0.95}
SUITE = "digits-av"
ZOO_MODEL = "early"
Feeds = dict[str, np.ndarray]

EXAMPLE_CARD = REPO / "mmstd" / "templates" / "example-card.yaml"


def zoo_like_model(path: Path, *, seed: int = 0) -> Path:
    """A fusion model shaped like the zoo's, for the example card's inputs (a few hundred KB).

    Image: NHWC -> NCHW, two strided 3x3 convs (32, 64 channels), global average pool. Text:
    64x64 token embedding, mean over tokens. Audio: per-frame 13->64 projection, ReLU, mean over
    frames. Concatenate (192), dense 256 + ReLU, dense 10, softmax.
    """
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)

    def w(*shape: int) -> np.ndarray:
        return (rng.standard_normal(shape) / np.sqrt(np.prod(shape[1:]))).astype(np.float32)

    inits = {
        "c1.w": w(32, 1, 3, 3), "c1.b": np.zeros(32, np.float32), "c2.w": w(64, 32, 3, 3), "c2.b": np.zeros(64, np.float32),
        "emb": w(64, 64), "a.w": w(13, 64), "a.b": np.zeros(64, np.float32),
        "h1.w": w(192, 256), "h1.b": np.zeros(256, np.float32), "h2.w": w(256, 10), "h2.b": np.zeros(10, np.float32),
    }
    n = helper.make_node
    nodes = [
        n("Transpose", ["image"], ["nchw"], perm=[0, 3, 1, 2]),
        n("Conv", ["nchw", "c1.w", "c1.b"], ["c1"], strides=[2, 2], pads=[1, 1, 1, 1]), n("Relu", ["c1"], ["r1"]),
        n("Conv", ["r1", "c2.w", "c2.b"], ["c2"], strides=[2, 2], pads=[1, 1, 1, 1]), n("Relu", ["c2"], ["r2"]),
        n("GlobalAveragePool", ["r2"], ["gap"]), n("Flatten", ["gap"], ["img"], axis=1),
        n("Gather", ["emb", "text"], ["tok"]), n("ReduceMean", ["tok"], ["txt"], axes=[1], keepdims=0),
        n("MatMul", ["audio", "a.w"], ["am"]), n("Add", ["am", "a.b"], ["ab"]), n("Relu", ["ab"], ["ar"]),
        n("ReduceMean", ["ar"], ["aud"], axes=[1], keepdims=0),
        n("Concat", ["img", "txt", "aud"], ["fused"], axis=1),
        n("Gemm", ["fused", "h1.w", "h1.b"], ["h1"]), n("Relu", ["h1"], ["hr"]),
        n("Gemm", ["hr", "h2.w", "h2.b"], ["logits"]), n("Softmax", ["logits"], ["probabilities"], axis=-1),
    ]
    graph = helper.make_graph(
        nodes, "zoo-like",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["batch", 28, 28, 1]),
         helper.make_tensor_value_info("text", TensorProto.INT64, ["batch", 16]),
         helper.make_tensor_value_info("audio", TensorProto.FLOAT, ["batch", 50, 13])],
        [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["batch", 10])],
        initializer=[numpy_helper.from_array(v, k) for k, v in inits.items()],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 9
    onnx.checker.check_model(model)
    onnx.save(model, path)
    return path


def _rate(fn: Callable[[], Any], budget_ns: int) -> float:
    """Calls per second of ``fn`` over about ``budget_ns``."""
    calls, start = 0, time.perf_counter_ns()
    while (elapsed := time.perf_counter_ns() - start) < budget_ns:
        fn()
        calls += 1
    return calls / (elapsed / 1e9)


def measure_threads(
    model: Path, card: ModelCard, *, batch_sizes: Sequence[int] = (1, 8, 32, 128),
    threads: Sequence[int] = (1, 2), rounds: int = 7, round_ms: int = 100,
) -> dict[int, dict[int, float]]:
    """Median µs per batch for each (batch size, intra-op threads), on ort-cpu sessions."""
    from mmstd.backends import BackendOptions, open_session

    table: dict[int, dict[int, float]] = {}
    for batch in batch_sizes:
        feeds = random_feeds(card, batch, seed=batch)
        sessions = {t: open_session("ort-cpu", model, batch_size=batch, options=BackendOptions(threads=t)) for t in threads}
        queries = {t: s.prepare(feeds) for t, s in sessions.items()}
        samples: dict[int, list[float]] = {t: [] for t in threads}
        for r in range(rounds):
            order = list(threads) if r % 2 == 0 else list(reversed(threads))
            for t in order:
                for _ in range(3):
                    queries[t]()
                samples[t].append(1e6 / _rate(queries[t], round_ms * 1_000_000))
        table[batch] = {t: statistics.median(v) for t, v in samples.items()}
        for s in sessions.values():
            s.close()
    return table


def measure_overhead(
    model: Path, card: ModelCard, *, backend: str = "ort-cpu", rounds: int = 9, round_ms: int = 200,
    offline_batch: int = 32, offline_threads: int | None = None,
) -> dict[str, float]:
    """Bare ``InferenceSession.run`` loop vs ``OrtSession.prepare()`` query on the same session.

    Returns p50 single-stream latency (batch 1, µs) and offline throughput (samples/s) for both,
    and the ratios ours/bare for throughput-like figures (>= 0.95 is the goal). The offline
    session uses the thread rule unless ``offline_threads`` pins it: on a shared machine two
    threads make every round depend on the neighbour's load, one thread gives a stable ratio.
    """
    from mmstd.backends import BackendOptions, open_session
    from mmstd.backends.onnxruntime import OrtSession
    from mmstd.metrics.latency import LatencyProtocol, run_protocol

    result: dict[str, float] = {}
    # single stream: batch 1, p50 of individually timed queries
    with open_session(backend, model, batch_size=1) as session:
        assert isinstance(session, OrtSession)
        feeds = random_feeds(card, 1, seed=1)
        raw = session.ort_session
        names = list(session.output_names)

        def bare() -> None:
            raw.run(names, feeds)

        ours = session.prepare(feeds)
        bare_p50: list[float] = []
        ours_p50: list[float] = []
        # the evaluate stage's own loop times both, so the ratio isolates the query itself
        protocol = LatencyProtocol(warmup_queries=10, min_duration_s=round_ms / 1000, min_queries=64, max_duration_s=30.0)
        for r in range(rounds):
            pair: list[tuple[Callable[[], Any], Callable[[], None] | None, list[float]]] = [
                (bare, None, bare_p50), (ours, ours.sync, ours_p50)]
            for fn, sync, sink in pair if r % 2 == 0 else reversed(pair):
                sink.append(run_protocol(fn, protocol, sync=sync).stats().latency_p50_ms * 1e3)
        result["single_stream_p50_us_bare"] = statistics.median(bare_p50)
        result["single_stream_p50_us_ours"] = statistics.median(ours_p50)
        result["single_stream_ratio"] = result["single_stream_p50_us_bare"] / result["single_stream_p50_us_ours"]
    # offline: batch N, samples per second
    with open_session(backend, model, batch_size=offline_batch, options=BackendOptions(threads=offline_threads)) as session:
        result["offline_threads"] = session.session_options.get("intra_op_num_threads", 0)
        assert isinstance(session, OrtSession)
        feeds = random_feeds(card, offline_batch, seed=offline_batch)
        raw = session.ort_session
        ours = session.prepare(feeds)
        bare_rate: list[float] = []
        ours_rate: list[float] = []
        for r in range(rounds):
            rates: list[tuple[Callable[[], Any], list[float]]] = [(lambda: raw.run(None, feeds), bare_rate), (ours, ours_rate)]
            for fn, sink in rates if r % 2 == 0 else reversed(rates):
                sink.append(offline_batch * _rate(fn, round_ms * 1_000_000))
        result["offline_samples_per_s_bare"] = statistics.median(bare_rate)
        result["offline_samples_per_s_ours"] = statistics.median(ours_rate)
        result["offline_ratio"] = result["offline_samples_per_s_ours"] / result["offline_samples_per_s_bare"]
    return result


# ------------------------------------------------------------------------------ machine load


@dataclass(frozen=True, slots=True)
class CpuSnapshot:
    """Wall clock, machine-wide busy CPU seconds (``/proc/stat``) and this process's CPU seconds."""

    wall_s: float
    busy_s: float | None
    own_s: float
    loadavg: str

    @classmethod
    def take(cls) -> CpuSnapshot:
        busy: float | None = None
        loadavg = "n/a"
        try:
            fields = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:9]]
            user, nice, system, _idle, _iowait, irq, softirq, steal = fields
            busy = (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")
            loadavg = " ".join(Path("/proc/loadavg").read_text().split()[:3])
        except (OSError, ValueError, IndexError):
            pass
        usage = resource.getrusage(resource.RUSAGE_SELF)
        return cls(time.perf_counter(), busy, usage.ru_utime + usage.ru_stime, loadavg)


def load_between(a: CpuSnapshot, b: CpuSnapshot) -> dict[str, Any]:
    """Cores kept busy by this process and by everything else between two snapshots."""
    wall = max(b.wall_s - a.wall_s, 1e-9)
    own = (b.own_s - a.own_s) / wall
    others = None if a.busy_s is None or b.busy_s is None else max(0.0, (b.busy_s - a.busy_s) / wall - own)
    return {"wall_s": round(wall, 2), "own_cores": round(own, 2),
            "other_cores": None if others is None else round(others, 2), "loadavg_end": b.loadavg}


def _load_line(load: Mapping[str, Any]) -> str:
    others = "n/a" if load["other_cores"] is None else f"{load['other_cores']:.2f}"
    return (f"  load: {load['wall_s']:.1f} s; this process {load['own_cores']:.2f} cores, other processes "
            f"{others} cores on average; loadavg {load['loadavg_end']}")


def _alternate(r: int, items: Sequence[Any]) -> list[Any]:
    """``items`` in order on even rounds, reversed on odd ones (so neither side always goes first)."""
    return list(items) if r % 2 == 0 else list(reversed(items))


def _median_ratio(num: Sequence[float], den: Sequence[float]) -> float:
    return statistics.median(num) / statistics.median(den)


# --------------------------------------------------------------------- the digits-av workload


@dataclass(frozen=True, slots=True)
class Workload:
    """The zoo package exported once, the digits-av test split and its preprocessed feeds."""

    package: Any                  # mmstd.package.Package
    suite: Any                    # mmstd.suite.Suite
    data: Any                     # mmstd.suite.SplitData
    batches: list[Feeds]          # batches of 32, as run_suite's accuracy run feeds them
    samples: list[Feeds]          # one feed dict per sample (batch 1)
    export_s: float


def build_workload(tmp: Path) -> Workload:
    """Export the ``early`` zoo model (torch, seed 0, untrained) and preprocess the test split."""
    from mmstd.run import load_split, make_feeds
    from mmstd.suite import load_suite
    from mmstd.zoo import export_zoo_model

    t0 = time.perf_counter()
    package = export_zoo_model(ZOO_MODEL, tmp / ZOO_MODEL, framework="torch", contract=SUITE, seed=0)
    export_s = time.perf_counter() - t0
    suite = load_suite(SUITE)
    data = load_split(suite)
    batches = make_feeds(package, data, 32)
    whole = {k: np.concatenate([b[k] for b in batches]) for k in batches[0]}
    samples = [{k: v[i:i + 1] for k, v in whole.items()} for i in range(len(data))]
    return Workload(package, suite, data, batches, samples, export_s)


# --------------------------------------------------------- part 1: accuracy run vs bare ORT


def bare_session(model_path: Path, recorded: Mapping[str, Any]) -> Any:
    """A plain ``InferenceSession`` with exactly the SessionOptions an mmstd session recorded.

    Every recorded key must map onto SessionOptions (an attribute or a config entry), so an option
    mmstd sets but does not record, or records but this function does not apply, fails here.
    """
    import onnxruntime as ort

    enums = {"graph_optimization_level": ort.GraphOptimizationLevel, "execution_mode": ort.ExecutionMode}
    so = ort.SessionOptions()
    for key, value in recorded.items():
        if key in enums:
            setattr(so, key, getattr(enums[key], value))
        elif "." in key:
            so.add_session_config_entry(key, str(value))
        elif hasattr(so, key):
            setattr(so, key, value)
        else:
            raise KeyError(f"recorded session option {key!r} has no SessionOptions counterpart")
    return ort.InferenceSession(str(model_path), so, providers=["CPUExecutionProvider"])


def measure_accuracy_pass(
    work: Workload, *, threads: int | None, rounds: int, round_ms: int,
) -> dict[str, Any]:
    """run_suite's accuracy-run inference vs a bare ORT loop over the same batches; samples/s."""
    from mmstd.backends import BackendOptions, open_session
    from mmstd.backends.onnxruntime import OrtSession
    from mmstd.run import check_outputs

    card, batches, n = work.package.card, work.batches, len(work.data)
    # run_suite's own options: BackendOptions(threads=settings.threads, seed=settings.seed)
    with open_session("ort-cpu", work.package.model_path, batch_size=32,
                      options=BackendOptions(threads=threads, seed=0)) as sess:
        assert isinstance(sess, OrtSession)
        raw = bare_session(work.package.model_path, sess.session_options)

        def ours() -> dict[str, np.ndarray]:
            # run_suite's accuracy run, statement for statement (mmstd/run.py)
            parts = [sess.run(b) for b in batches]
            outputs = {name: np.concatenate([p[name] for p in parts]) for name in parts[0]}
            check_outputs(outputs, card, n, where="bench")
            return outputs

        def bare() -> list[np.ndarray]:
            outs = [raw.run(None, b) for b in batches]
            return [np.concatenate([o[i] for o in outs]) for i in range(len(outs[0]))]

        got, want = ours(), bare()
        np.testing.assert_allclose(got[sess.output_names[0]], want[0], rtol=0, atol=1e-6)
        rates: dict[str, list[float]] = {"bare": [], "ours": []}
        fns: dict[str, Callable[[], Any]] = {"bare": bare, "ours": ours}
        for r in range(rounds):
            for name in _alternate(r, ("bare", "ours")):
                for _ in range(2):
                    fns[name]()
                rates[name].append(n * _rate(fns[name], round_ms * 1_000_000))
        paired = [o / b for o, b in zip(rates["ours"], rates["bare"], strict=True)]
        # The Python both loops add around ONNX Runtime, measured without it: each session's
        # InferenceSession swapped for a stub that returns the outputs at once (noise-free, unlike
        # the ratio above, which moves with the neighbours' load).
        canned = [want[0][:len(next(iter(b.values())))] for b in batches]

        class _Stub:
            def __init__(self) -> None:
                self.i = 0

            def run(self, *_args: Any) -> list[np.ndarray]:
                self.i = (self.i + 1) % len(canned)
                return [canned[self.i - 1]]

        real_sess, real_raw = sess._sess, raw
        try:
            sess._sess, raw = _Stub(), _Stub()
            harness_us = {name: 1e6 / _rate(fn, 100_000_000) for name, fn in fns.items()}
        finally:
            sess._sess, raw = real_sess, real_raw
        return {
            "intra_op_threads": sess.session_options["intra_op_num_threads"],
            "samples_per_s_bare": statistics.median(rates["bare"]),
            "samples_per_s_ours": statistics.median(rates["ours"]),
            # rounds are interleaved pairs: the median of the per-round ratios
            "ratio": statistics.median(paired),
            "ratio_min": min(paired),
            "ratio_max": max(paired),
            "rounds_ours_ge_bare": sum(x >= 1 for x in paired),
            "python_us_per_pass_ours": harness_us["ours"],
            "python_us_per_pass_bare": harness_us["bare"],
            "bare_us_per_pass": n / statistics.median(rates["bare"]) * 1e6,
        }


def measure_preprocessing(work: Workload, *, rounds: int) -> dict[str, float]:
    """``make_feeds`` over the split (µs per sample), and whole ``run_suite`` accuracy runs."""
    from mmstd.run import RunSettings, make_feeds, run_suite

    n = len(work.data)
    prep: list[float] = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        make_feeds(work.package, work.data, 32)
        prep.append((time.perf_counter() - t0) / n * 1e6)
    whole: list[float] = []
    for _ in range(3):
        t0 = time.perf_counter()
        run_suite(work.package, work.suite, settings=RunSettings(latency=False), environment={})
        whole.append(time.perf_counter() - t0)
    return {"preprocess_us_per_sample": statistics.median(prep),
            "run_suite_accuracy_run_s": statistics.median(whole),
            "run_suite_samples_per_s": n / statistics.median(whole)}


# ------------------------------------------------------------- part 2: LoadGen SingleStream

_PERCENTILE = re.compile(r"^(\d+\.\d+) percentile latency \(ns\)\s*:\s*(\d+)", re.M)


def parse_loadgen_summary(text: str) -> dict[str, Any]:
    """p50/p90 (ns), validity and query count from ``mlperf_log_summary.txt``."""
    pct = {float(p): int(v) for p, v in _PERCENTILE.findall(text)}
    valid = re.search(r"^Result is : (\w+)", text, re.M)
    queries = re.search(r"Processed at least \d+ queries \((\d+)\)", text)
    if 50.0 not in pct or 90.0 not in pct:
        raise ValueError(f"LoadGen summary without 50/90 percentile lines:\n{text[:2000]}")
    return {"p50_ns": pct[50.0], "p90_ns": pct[90.0], "valid": bool(valid and valid.group(1) == "VALID"),
            "queries": int(queries.group(1)) if queries else None}


def loadgen_single_stream(
    run_one: Callable[[int], Any], n_samples: int, *, min_queries: int, min_duration_s: float,
    expected_ns: int, same_index: int | None, outdir: Path,
) -> dict[str, Any]:
    """One LoadGen SingleStream PerformanceOnly test; ``run_one(index)`` is the whole SUT."""
    import mlperf_loadgen as lg

    def issue_query(queries: list[Any]) -> None:
        for q in queries:
            run_one(q.index)
            lg.QuerySamplesComplete([lg.QuerySampleResponse(q.id, 0, 0)])

    settings = lg.TestSettings()
    settings.scenario = lg.TestScenario.SingleStream
    settings.mode = lg.TestMode.PerformanceOnly
    settings.min_query_count = min_queries
    settings.min_duration_ms = round(min_duration_s * 1000)
    # LoadGen pre-generates min_duration / expected latency queries and ends the test early
    # (INVALID) if they run out; under-stating the latency only generates spare ones.
    settings.single_stream_expected_latency_ns = max(500, expected_ns)
    if same_index is not None:
        settings.performance_issue_same = True
        settings.performance_issue_same_index = same_index
    outdir.mkdir(parents=True)
    output = lg.LogOutputSettings()
    output.outdir = str(outdir)
    output.copy_summary_to_stdout = False
    log = lg.LogSettings()
    log.log_output = output
    log.enable_trace = False
    sut = lg.ConstructSUT(issue_query, lambda: None)
    qsl = lg.ConstructQSL(n_samples, n_samples, lambda _idx: None, lambda _idx: None)
    try:
        lg.StartTestWithLogSettings(sut, qsl, settings, log)
    finally:
        lg.DestroyQSL(qsl)
        lg.DestroySUT(sut)
    return parse_loadgen_summary((outdir / "mlperf_log_summary.txt").read_text())


def measure_loadgen(work: Workload, tmp: Path, *, rounds: int) -> dict[str, Any]:
    """mmstd's single-stream p50/p90 vs LoadGen's on the same session, plus both harness floors."""
    from mmstd.backends import open_session
    from mmstd.backends.onnxruntime import OrtSession
    from mmstd.metrics.latency import LatencyProtocol, nearest_rank, run_protocol
    from mmstd.run import latency_protocol

    protocol = latency_protocol(work.suite, quick=False)
    floor_protocol = LatencyProtocol(warmup_queries=10, min_duration_s=0.25, min_queries=protocol.min_queries)
    n = len(work.samples)
    runs = 0

    def lg_run(run_one: Callable[[int], Any], proto: LatencyProtocol, expected_ns: int, same: int | None) -> dict[str, Any]:
        nonlocal runs
        runs += 1
        return loadgen_single_stream(run_one, n, min_queries=proto.min_queries, min_duration_s=proto.min_duration_s,
                                     expected_ns=expected_ns, same_index=same, outdir=tmp / f"loadgen-{runs}")

    def mm_run(fn: Callable[[], Any], proto: LatencyProtocol, sync: Callable[[], Any] | None) -> dict[str, Any]:
        run = run_protocol(fn, proto, sync=sync)
        return {"p50_ns": nearest_rank(run.latencies_ns, 50), "p90_ns": nearest_rank(run.latencies_ns, 90),
                "valid": run.minimums_met, "queries": len(run.latencies_ns)}

    # run_suite's single-stream session: batch 1, default options (1 intra-op thread by the rule)
    with open_session("ort-cpu", work.package.model_path, batch_size=1) as sess:
        assert isinstance(sess, OrtSession)
        raw, names, samples, heavy = sess.ort_session, list(sess.output_names), work.samples, work.batches[0]
        query = sess.prepare(samples[0])
        heavy_query = sess.prepare(heavy)
        expected = int(mm_run(query, LatencyProtocol.quick(), None)["p50_ns"]) // 2
        heavy_expected = int(mm_run(heavy_query, LatencyProtocol.quick(), None)["p50_ns"]) // 2

        def sut(i: int) -> Any:
            return raw.run(names, samples[i])

        def heavy_sut(_i: int) -> Any:
            return raw.run(names, heavy)

        def noop_sut(_i: int) -> None:
            return None

        def noop() -> None:
            return None

        cases: dict[str, Callable[[], dict[str, Any]]] = {
            "mmstd": lambda: mm_run(query, protocol, query.sync),
            "loadgen_same_sample": lambda: lg_run(sut, protocol, expected, 0),
            "loadgen_random_samples": lambda: lg_run(sut, protocol, expected, None),
            "mmstd_batch32": lambda: mm_run(heavy_query, protocol, heavy_query.sync),
            "loadgen_batch32": lambda: lg_run(heavy_sut, protocol, heavy_expected, 0),
            "floor_mmstd": lambda: mm_run(noop, floor_protocol, None),
            "floor_loadgen": lambda: lg_run(noop_sut, floor_protocol, 1000, 0),
        }
        got: dict[str, list[dict[str, Any]]] = {k: [] for k in cases}
        for r in range(rounds):
            for name in _alternate(r, list(cases)):
                got[name].append(cases[name]())
        query.close()
        heavy_query.close()
    out: dict[str, Any] = {"protocol": {"warmup": protocol.warmup_queries, "min_queries": protocol.min_queries,
                                        "min_duration_s": protocol.min_duration_s},
                           "intra_op_threads": 1}
    for name, results in got.items():
        out[name] = {
            "p50_us": statistics.median(x["p50_ns"] for x in results) / 1e3,
            "p90_us": statistics.median(x["p90_ns"] for x in results) / 1e3,
            "p50_us_rounds": [round(x["p50_ns"] / 1e3, 2) for x in results],
            "p90_us_rounds": [round(x["p90_ns"] / 1e3, 2) for x in results],
            "queries_median": statistics.median(x["queries"] or 0 for x in results),
            "all_valid": all(x["valid"] for x in results),
        }
    for ours, peer in (("mmstd", "loadgen_same_sample"), ("mmstd", "loadgen_random_samples"),
                       ("mmstd_batch32", "loadgen_batch32")):
        for p in ("p50", "p90"):
            # per round: mmstd / LoadGen - 1, then the median (rounds are interleaved pairs)
            diffs = [m[f"{p}_ns"] / g[f"{p}_ns"] - 1 for m, g in zip(got[ours], got[peer], strict=True)]
            out[f"{p}_rel_diff_vs_{peer}"] = statistics.median(diffs)
    return out


# ------------------------------------------------------------------- part 3: metrics vs sklearn


def measure_metrics(*, n: int = 1_000_000, classes: int = 10, rounds: int = 5) -> dict[str, dict[str, float]]:
    """accuracy, f1_macro, confusion_matrix: mmstd vs sklearn on ``n`` predictions, median ms."""
    from sklearn import metrics as skm

    from mmstd.metrics import classification as mm

    rng = np.random.default_rng(0)
    y = rng.integers(0, classes, n)
    pred = np.where(rng.random(n) < 0.8, y, rng.integers(0, classes, n))
    cases: dict[str, tuple[Callable[[], Any], Callable[[], Any]]] = {
        "accuracy": (lambda: mm.accuracy_score(y, pred), lambda: skm.accuracy_score(y, pred)),
        "f1_macro": (lambda: mm.f1_score(y, pred, average="macro"), lambda: skm.f1_score(y, pred, average="macro")),
        "confusion_matrix": (lambda: mm.confusion_matrix(y, pred), lambda: skm.confusion_matrix(y, pred)),
    }
    out: dict[str, dict[str, float]] = {}
    for name, (ours, theirs) in cases.items():
        np.testing.assert_allclose(ours(), theirs(), rtol=0, atol=1e-12)
        t_ours: list[float] = []
        t_theirs: list[float] = []
        for r in range(rounds):
            for fn, sink, reps in _alternate(r, [(theirs, t_theirs, 1), (ours, t_ours, 5)]):
                one = []
                for _ in range(reps):
                    t0 = time.perf_counter()
                    fn()
                    one.append(time.perf_counter() - t0)
                sink.append(statistics.median(one))
        out[name] = {"sklearn_ms": statistics.median(t_theirs) * 1e3, "mmstd_ms": statistics.median(t_ours) * 1e3,
                     "ratio": statistics.median(t_theirs) / statistics.median(t_ours)}
    return out


# ------------------------------------------------------------- part 4: ORT vs PyTorch eager


def measure_torch_vs_ort(work: Workload, *, rounds: int) -> dict[str, Any]:
    """The zoo model at batch 1: PyTorch eager vs mmstd's ort-cpu session, p50/p90 µs."""
    import torch

    from mmstd.backends import BackendOptions, open_session
    from mmstd.metrics.latency import LatencyProtocol, ProtocolRun, nearest_rank, run_protocol
    from mmstd.run import latency_protocol
    from mmstd.zoo import build_zoo_model, load_zoo_card

    # the suite's protocol, capped at 3 s a run: under load, a 2-thread torch run can take 10+ ms per
    # query whenever one of its threads waits for a core (a capped run is counted and reported)
    suite_protocol = latency_protocol(work.suite, quick=False)
    protocol = LatencyProtocol(warmup_queries=suite_protocol.warmup_queries, min_duration_s=suite_protocol.min_duration_s,
                               min_queries=suite_protocol.min_queries, max_duration_s=3.0)
    card = load_zoo_card(ZOO_MODEL, SUITE)
    model = build_zoo_model(ZOO_MODEL, "torch", card, seed=0).eval()   # the exported weights (same seed)
    sample = work.samples[0]
    inputs = tuple(torch.from_numpy(sample[s.name]) for s in card.inputs)
    default_threads = torch.get_num_threads()
    ort_threads = sorted({1, default_threads})
    sessions = {t: open_session("ort-cpu", work.package.model_path, batch_size=1, options=BackendOptions(threads=t))
                for t in ort_threads}
    queries = {t: s.prepare(sample) for t, s in sessions.items()}
    with torch.inference_mode():
        want = model(*inputs).numpy()
    got = queries[1].outputs()[sessions[1].output_names[0]]
    max_diff = float(np.abs(got - want).max())
    if max_diff > 1e-4:
        raise AssertionError(f"torch and ORT disagree on sample 0: max |diff| {max_diff:.3g}")

    def torch_run(threads: int) -> ProtocolRun:
        torch.set_num_threads(threads)
        try:
            with torch.inference_mode():
                return run_protocol(lambda: model(*inputs), protocol)
        finally:
            torch.set_num_threads(default_threads)

    def ort_run(threads: int) -> ProtocolRun:
        return run_protocol(queries[threads], protocol, sync=queries[threads].sync)

    cases: dict[str, Callable[[], ProtocolRun]] = {}
    for t in ort_threads:
        cases[f"torch_{t}t"] = functools.partial(torch_run, t)
        cases[f"ort_{t}t"] = functools.partial(ort_run, t)
    p50: dict[str, list[float]] = {k: [] for k in cases}
    p90: dict[str, list[float]] = {k: [] for k in cases}
    capped: dict[str, int] = {k: 0 for k in cases}
    for r in range(rounds):
        for name in _alternate(r, list(cases)):
            run = cases[name]()
            p50[name].append(nearest_rank(run.latencies_ns, 50) / 1e3)
            p90[name].append(nearest_rank(run.latencies_ns, 90) / 1e3)
            capped[name] += not run.minimums_met
    for q in queries.values():
        q.close()
    for s in sessions.values():
        s.close()
    out: dict[str, Any] = {"torch": torch.__version__, "torch_default_threads": default_threads,
                           "max_abs_diff": max_diff, "mmstd_rule_threads_batch1": 1, "capped_runs": capped}
    for name in cases:
        out[f"{name}_p50_us"] = statistics.median(p50[name])
        out[f"{name}_p90_us"] = statistics.median(p90[name])
    for t in ort_threads:
        out[f"ratio_{t}t"] = _median_ratio(p50[f"torch_{t}t"], p50[f"ort_{t}t"])
    # torch at its default threads vs mmstd's default session (the rule: 1 thread at batch 1)
    out["ratio_defaults"] = _median_ratio(p50[f"torch_{default_threads}t"], p50["ort_1t"])
    return out


# ----------------------------------------------------------------------------------- printing


def _goal_rows(results: Mapping[str, Any]) -> list[tuple[str, str, float, str, bool | None]]:
    """(what, figures, ratio, goal, met) for the summary table; ``met`` is ``None`` for context rows."""
    rows: list[tuple[str, str, float, str, bool | None]] = []
    acc = results.get("accuracy")
    if acc:
        for key in ("default_threads", "one_thread"):
            a = acc[key]
            rows.append((f"accuracy run, batch 32, {a['intra_op_threads']} thr",
                         f"{a['samples_per_s_ours']:,.0f} vs {a['samples_per_s_bare']:,.0f} samples/s",
                         a["ratio"], ">= 0.95x", a["ratio"] >= GOALS["accuracy"]))
    lg = results.get("loadgen")
    if lg:
        for ours, peer, label, judged in (("mmstd", "loadgen_same_sample", "batch 1, same sample", True),
                                          ("mmstd_batch32", "loadgen_batch32", "32 samples/query", True),
                                          ("mmstd", "loadgen_random_samples", "batch 1, random samples", False)):
            for p in ("p50", "p90"):
                d = lg[f"{p}_rel_diff_vs_{peer}"]
                rows.append((f"single-stream {p} vs LoadGen, {label}",
                             f"{lg[ours][f'{p}_us']:.1f} vs {lg[peer][f'{p}_us']:.1f} µs",
                             1 + d, "within 3%" if judged else "(info)", abs(d) <= GOALS["loadgen"] if judged else None))
    met = results.get("metrics")
    if met:
        for name, m in met.items():
            rows.append((f"{name}, 1e6 predictions", f"{m['mmstd_ms']:.2f} vs {m['sklearn_ms']:.1f} ms (sklearn)",
                         m["ratio"], ">= 50x", m["ratio"] >= GOALS["metrics"]))
    tv = results.get("torch")
    if tv:
        dt = tv["torch_default_threads"]
        for label, key, tk, ok in (("1 thread each", "ratio_1t", "torch_1t", "ort_1t"),
                                   (f"{dt} threads each", f"ratio_{dt}t", f"torch_{dt}t", f"ort_{dt}t"),
                                   (f"defaults (torch {dt}, mmstd rule 1)", "ratio_defaults", f"torch_{dt}t", "ort_1t")):
            if key in tv:
                rows.append((f"ORT vs torch eager, {label}",
                             f"{tv[f'{ok}_p50_us']:.1f} vs {tv[f'{tk}_p50_us']:.1f} µs p50",
                             tv[key], ">= 5x", tv[key] >= GOALS["torch"]))
    ov = results.get("overhead")
    if ov:
        for model, r in ov.items():
            rows.append((f"prepare() vs bare run, {model}, batch 1",
                         f"{r['single_stream_p50_us_ours']:.1f} vs {r['single_stream_p50_us_bare']:.1f} µs p50",
                         r["single_stream_ratio"], ">= 0.95x", r["single_stream_ratio"] >= GOALS["overhead"]))
    return rows


def _round(obj: Any) -> Any:
    if isinstance(obj, float):
        return float(f"{obj:.4g}")
    if isinstance(obj, dict):
        return {k: _round(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_round(v) for v in obj]
    return obj


def _print_accuracy(acc: Mapping[str, Any]) -> None:
    print("\n[accuracy] run_suite accuracy run (inference part) vs bare InferenceSession.run loop, "
          f"digits-av test ({acc['samples']} samples), batch 32, identical SessionOptions")
    print(f"  {'threads':<8}{'bare samples/s':>15}{'mmstd samples/s':>16}{'ratio':>8}{'per-round range':>17}"
          f"{'mmstd>=bare':>12}{'python µs/pass mmstd, bare (share)':>37}")
    for key in ("default_threads", "one_thread"):
        a = acc[key]
        extra = a["python_us_per_pass_ours"] - a["python_us_per_pass_bare"]
        print(f"  {a['intra_op_threads']:<8}{a['samples_per_s_bare']:>15,.0f}{a['samples_per_s_ours']:>16,.0f}"
              f"{a['ratio']:>7.3f}x{a['ratio_min']:>10.3f}-{a['ratio_max']:.3f}{a['rounds_ours_ge_bare']:>8}/{acc['rounds']}"
              f"{a['python_us_per_pass_ours']:>19.1f}, {a['python_us_per_pass_bare']:.1f} "
              f"({extra / a['bare_us_per_pass']:.1%})")
    print("  (ratio: median of the per-round mmstd/bare ratios. python µs/pass: both loops with ONNX Runtime "
          "stubbed out; mmstd's extra is OrtSession.run's feed check and dict per batch, and check_outputs)")
    p = acc["preprocessing"]
    print(f"  NOT in the ratio: mmstd preprocessing (make_feeds, card ops incl. MFCC) {p['preprocess_us_per_sample']:.0f} µs "
          f"per sample; a whole run_suite accuracy run (preprocess, session, inference, reference check) "
          f"{p['run_suite_accuracy_run_s'] * 1e3:.0f} ms = {p['run_suite_samples_per_s']:,.0f} samples/s")


def _print_loadgen(lg: Mapping[str, Any], rounds: int) -> None:
    pr = lg["protocol"]
    print(f"\n[loadgen] single-stream, batch 1, one ORT session ({lg['intra_op_threads']} intra-op thread): mmstd "
          f"run_protocol vs MLPerf LoadGen SingleStream/PerformanceOnly (>= {pr['min_queries']} queries, "
          f">= {pr['min_duration_s']:g} s; medians of {rounds} interleaved rounds)")
    print(f"  {'harness':<32}{'p50 µs':>9}{'p90 µs':>9}{'queries':>9}  valid  p50 per round")
    for name, label in (("mmstd", "mmstd (sample 0)"), ("loadgen_same_sample", "LoadGen, sample 0"),
                        ("loadgen_random_samples", "LoadGen, random of 400"),
                        ("mmstd_batch32", "mmstd, 32 samples per query"), ("loadgen_batch32", "LoadGen, 32 samples/query"),
                        ("floor_mmstd", "floor: mmstd, no-op query"), ("floor_loadgen", "floor: LoadGen, no-op SUT")):
        x = lg[name]
        print(f"  {label:<32}{x['p50_us']:>9.2f}{x['p90_us']:>9.2f}{x['queries_median']:>9.0f}  {str(x['all_valid']):<6} "
              f"{' '.join(f'{v:.1f}' for v in x['p50_us_rounds'])}")
    for peer in ("loadgen_same_sample", "loadgen_random_samples", "loadgen_batch32"):
        print(f"  mmstd vs {peer}: p50 {lg[f'p50_rel_diff_vs_{peer}']:+.1%}, p90 {lg[f'p90_rel_diff_vs_{peer}']:+.1%} "
              "(median of per-round mmstd/LoadGen - 1)")
    floor = lg["floor_loadgen"]["p50_us"] - lg["floor_mmstd"]["p50_us"]
    print(f"  LoadGen's per-query floor is {floor:.2f} µs above mmstd's (issue thread, Python callback, "
          "QuerySamplesComplete); its share of the model's p50: "
          f"{floor / lg['loadgen_same_sample']['p50_us']:.1%}")


def _print_torch(tv: Mapping[str, Any], rounds: int) -> None:
    print(f"\n[torch] zoo '{ZOO_MODEL}' ({SUITE}), batch 1, sample 0: torch {tv['torch']} eager (eval, inference_mode) "
          f"vs ORT via mmstd ort-cpu; max |diff| {tv['max_abs_diff']:.2g}; medians of {rounds} interleaved rounds")
    print(f"  {'threads':<10}{'torch p50':>11}{'torch p90':>11}{'ORT p50':>10}{'ORT p90':>10}{'torch/ORT':>11}")
    for t in sorted({1, tv["torch_default_threads"]}):
        print(f"  {t:<10}{tv[f'torch_{t}t_p50_us']:>11.1f}{tv[f'torch_{t}t_p90_us']:>11.1f}{tv[f'ort_{t}t_p50_us']:>10.1f}"
              f"{tv[f'ort_{t}t_p90_us']:>10.1f}{tv[f'ratio_{t}t']:>10.1f}x")
    print(f"  defaults (torch {tv['torch_default_threads']} threads, mmstd's batch-1 rule 1 thread): "
          f"{tv['ratio_defaults']:.1f}x")
    capped = {k: v for k, v in tv["capped_runs"].items() if v}
    if capped:
        print(f"  runs stopped at the 3 s cap before 662 queries (slow under load): {capped}")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench/evaluate.py", description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--threads", action="store_true", help="measure the intra-op thread rule")
    parser.add_argument("--backend", default="ort-cpu", help="backend for the overhead comparison")
    parser.add_argument("--parts", default=",".join(PARTS), help=f"comma-separated subset of {', '.join(PARTS)}")
    parser.add_argument("--rounds", type=int, default=9, help="rounds of the short comparisons (overhead, accuracy)")
    parser.add_argument("--long-rounds", type=int, default=5,
                        help="rounds of the comparisons that run the full protocol (loadgen, metrics, torch)")
    args = parser.parse_args(argv)
    parts = [p.strip() for p in args.parts.split(",") if p.strip()]
    unknown = sorted(set(parts) - set(PARTS))
    if unknown:
        parser.error(f"unknown part(s) {', '.join(unknown)}; choose from {', '.join(PARTS)}")

    import onnxruntime as ort

    from mmstd.backends.onnxruntime import usable_cores

    card = load_card(EXAMPLE_CARD)
    begin = CpuSnapshot.take()
    print(f"# bench/evaluate.py: onnxruntime {ort.__version__}, {usable_cores()} usable cores, "
          f"loadavg at start {begin.loadavg}")
    results: dict[str, Any] = {}
    loads: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        if args.threads or "overhead" in parts:
            models = {
                "zoo-like": zoo_like_model(Path(tmp) / "zoo-like.onnx"),
                "tiny": seal_tiny_package(card, Path(tmp) / "tiny").model_path,
            }
        if args.threads:
            for label, path in models.items():
                table = measure_threads(path, card, rounds=args.rounds)
                print(f"\nthread rule, {label} model: µs per batch (median of {args.rounds} interleaved rounds)")
                print(f"{'batch':>6} {'1 thread':>10} {'2 threads':>10} {'2/1':>6}")
                for batch, row in table.items():
                    print(f"{batch:>6} {row[1]:>10.1f} {row[2]:>10.1f} {row[2] / row[1]:>6.2f}")
            return 0
        if "overhead" in parts:
            snap = CpuSnapshot.take()
            results["overhead"] = {}
            for label, path in models.items():
                r = measure_overhead(path, card, backend=args.backend, rounds=args.rounds)
                pinned = measure_overhead(path, card, backend=args.backend, rounds=args.rounds, offline_threads=1)
                results["overhead"][label] = {**r, "offline_pinned": {k: v for k, v in pinned.items() if "offline" in k}}
                print(f"\n[overhead] {args.backend}, {label} model: prepare() query vs bare InferenceSession.run (same session)")
                print(f"  single-stream p50 (batch 1): bare {r['single_stream_p50_us_bare']:.1f} µs, "
                      f"ours {r['single_stream_p50_us_ours']:.1f} µs -> {r['single_stream_ratio']:.3f}x")
                for x in (r, pinned):
                    print(f"  offline (batch 32, {x['offline_threads']:.0f} intra-op threads): bare "
                          f"{x['offline_samples_per_s_bare']:.0f}/s, ours {x['offline_samples_per_s_ours']:.0f}/s "
                          f"-> {x['offline_ratio']:.3f}x")
            loads["overhead"] = load_between(snap, CpuSnapshot.take())
            print(_load_line(loads["overhead"]))
        work: Workload | None = None
        if set(parts) & {"accuracy", "loadgen", "torch"}:
            work = build_workload(Path(tmp))
            print(f"\n# workload: zoo '{ZOO_MODEL}' (torch, seed 0, untrained) exported in {work.export_s:.1f} s; "
                  f"{SUITE} test split, {len(work.data)} samples preprocessed once")
        if "accuracy" in parts and work is not None:
            snap = CpuSnapshot.take()
            acc: dict[str, Any] = {"samples": len(work.data), "rounds": args.rounds}
            acc["default_threads"] = measure_accuracy_pass(work, threads=None, rounds=args.rounds, round_ms=250)
            acc["one_thread"] = measure_accuracy_pass(work, threads=1, rounds=args.rounds, round_ms=250)
            acc["preprocessing"] = measure_preprocessing(work, rounds=args.rounds)
            results["accuracy"] = acc
            _print_accuracy(acc)
            loads["accuracy"] = load_between(snap, CpuSnapshot.take())
            print(_load_line(loads["accuracy"]))
        if "loadgen" in parts and work is not None:
            snap = CpuSnapshot.take()
            results["loadgen"] = measure_loadgen(work, Path(tmp), rounds=args.long_rounds)
            _print_loadgen(results["loadgen"], args.long_rounds)
            loads["loadgen"] = load_between(snap, CpuSnapshot.take())
            print(_load_line(loads["loadgen"]))
        if "metrics" in parts:
            snap = CpuSnapshot.take()
            results["metrics"] = measure_metrics(rounds=args.long_rounds)
            print(f"\n[metrics] mmstd vs scikit-learn on 1,000,000 predictions, 10 classes "
                  f"(median of {args.long_rounds} interleaved rounds; bench/metrics.py has every metric)")
            print(f"  {'metric':<18}{'sklearn ms':>12}{'mmstd ms':>10}{'ratio':>9}")
            for name, m in results["metrics"].items():
                print(f"  {name:<18}{m['sklearn_ms']:>12.2f}{m['mmstd_ms']:>10.3f}{m['ratio']:>8.1f}x")
            loads["metrics"] = load_between(snap, CpuSnapshot.take())
            print(_load_line(loads["metrics"]))
        if "torch" in parts and work is not None:
            snap = CpuSnapshot.take()
            results["torch"] = measure_torch_vs_ort(work, rounds=args.long_rounds)
            _print_torch(results["torch"], args.long_rounds)
            loads["torch"] = load_between(snap, CpuSnapshot.take())
            print(_load_line(loads["torch"]))
    loads["total"] = load_between(begin, CpuSnapshot.take())
    rows = _goal_rows(results)
    print(f"\n# summary (mmstd first, peer second); whole run {loads['total']['wall_s']:.0f} s, other processes kept "
          f"{loads['total']['other_cores']} of {usable_cores()} cores busy on average, loadavg {loads['total']['loadavg_end']}")
    print(f"{'comparison':<56}{'figures':<40}{'ratio':>8}  {'goal':<10}status")
    for what, figures, ratio, goal, ok in rows:
        print(f"{what:<56}{figures:<40}{ratio:>7.3f}x  {goal:<10}{'-' if ok is None else 'met' if ok else 'MISSED'}")
    print(json.dumps(_round({"goals": {what: {"ratio": ratio, "goal": goal, "met": ok} for what, _, ratio, goal, ok in rows},
                             "results": results, "load": loads, "onnxruntime": ort.__version__,
                             "usable_cores": usable_cores()}), default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
