"""Benchmarks for the evaluate stage, printed as ratios against bare onnxruntime.

Part 1 (backends): the overhead of ``OrtSession.prepare()`` queries against a bare
``InferenceSession.run`` loop on the same session (same options), as single-stream latency
(batch 1, p50 under ``mmstd.metrics.latency.run_protocol``) and offline throughput (batch 32,
samples/s); the goal is >= 0.95x. ``--threads`` measures the intra-op thread rule that
``mmstd.backends.onnxruntime.intra_op_threads`` encodes.

Rounds are interleaved (bare, ours, bare, ours, ...) and medians reported, because the machine
this runs on is usually shared. Run it from the repository root::

    .venv/bin/python bench/evaluate.py             # overhead ratios
    .venv/bin/python bench/evaluate.py --threads   # thread rule table
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from mmstd.card import ModelCard, load_card  # noqa: E402
from mmstd.testing import random_feeds, seal_tiny_package  # noqa: E402

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


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench/evaluate.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", action="store_true", help="measure the intra-op thread rule")
    parser.add_argument("--backend", default="ort-cpu", help="backend for the overhead comparison")
    parser.add_argument("--rounds", type=int, default=9)
    args = parser.parse_args(argv)

    import onnxruntime as ort

    from mmstd.backends.onnxruntime import usable_cores

    card = load_card(EXAMPLE_CARD)
    with tempfile.TemporaryDirectory() as tmp:
        models = {
            "zoo-like": zoo_like_model(Path(tmp) / "zoo-like.onnx"),
            "tiny": seal_tiny_package(card, Path(tmp) / "tiny").model_path,
        }
        print(f"onnxruntime {ort.__version__}, {usable_cores()} usable cores", file=sys.stderr)
        if args.threads:
            for label, path in models.items():
                table = measure_threads(path, card, rounds=args.rounds)
                print(f"\nthread rule, {label} model: µs per batch (median of {args.rounds} interleaved rounds)")
                print(f"{'batch':>6} {'1 thread':>10} {'2 threads':>10} {'2/1':>6}")
                for batch, row in table.items():
                    print(f"{batch:>6} {row[1]:>10.1f} {row[2]:>10.1f} {row[2] / row[1]:>6.2f}")
            return 0
        for label, path in models.items():
            r = measure_overhead(path, card, backend=args.backend, rounds=args.rounds)
            pinned = measure_overhead(path, card, backend=args.backend, rounds=args.rounds, offline_threads=1)
            print(f"\n{args.backend}, {label} model: prepare() query vs bare InferenceSession.run (same session)")
            print(f"  single-stream p50 (batch 1): bare {r['single_stream_p50_us_bare']:.1f} µs, "
                  f"ours {r['single_stream_p50_us_ours']:.1f} µs -> {r['single_stream_ratio']:.3f}x")
            for x in (r, pinned):
                print(f"  offline (batch 32, {x['offline_threads']:.0f} intra-op threads): bare "
                      f"{x['offline_samples_per_s_bare']:.0f}/s, ours {x['offline_samples_per_s_ours']:.0f}/s "
                      f"-> {x['offline_ratio']:.3f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
