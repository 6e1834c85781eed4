"""Benchmark mmstd.metrics against scikit-learn; the last line printed is one JSON object.

    .venv/bin/python bench/metrics.py [--n 1000000] [--classes 10]

Times each metric on ``n`` predictions (best of several runs, the two libraries interleaved so
machine load hits both alike), checks the answers agree to 1e-12, and prints the speed-up ratios
(goal: >= 50x). Also times the bootstrap (1000 resamples of 10k samples, every count-based
metric) and the per-query overhead of ``run_protocol`` against an empty Python loop.
"""
from __future__ import annotations

import argparse
import json
import platform
import time
from collections.abc import Callable
from typing import Any

import numpy as np
from sklearn import metrics as skm

from mmstd.metrics import LatencyProtocol, bootstrap_intervals, compute_metrics, run_protocol
from mmstd.metrics import classification as mm

GOAL = 50.0


def _best(fn: Callable[[], Any], repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def _race(ours: Callable[[], Any], theirs: Callable[[], Any], rounds: int = 5) -> tuple[float, float]:
    """Best times of both, interleaved round by round."""
    a = b = float("inf")
    for _ in range(rounds):
        b = min(b, _best(theirs, 1))
        a = min(a, _best(ours, 5))
    return a, b


def _loop_overhead_ns(queries: int = 200_000) -> tuple[float, float]:
    """Per-query cost of run_protocol's loop minus a bare ``for`` loop calling the same no-op."""

    def noop() -> None:
        return None

    protocol = LatencyProtocol(warmup_queries=0, min_duration_s=0.0, min_queries=queries)
    empty = loop = float("inf")
    for _ in range(5):
        t0 = time.perf_counter_ns()
        for _ in range(queries):
            noop()
        empty = min(empty, (time.perf_counter_ns() - t0) / queries)
        t0 = time.perf_counter_ns()
        run_protocol(noop, protocol)
        loop = min(loop, (time.perf_counter_ns() - t0) / queries)
    return loop - empty, empty


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--classes", type=int, default=10)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    n, c = args.n, args.classes
    y = rng.integers(0, c, n)
    pred = np.where(rng.random(n) < 0.8, y, rng.integers(0, c, n))

    cases: dict[str, tuple[Callable[[], Any], Callable[[], Any]]] = {
        "accuracy": (lambda: mm.accuracy_score(y, pred), lambda: skm.accuracy_score(y, pred)),
        "f1_macro": (lambda: mm.f1_score(y, pred, average="macro"), lambda: skm.f1_score(y, pred, average="macro")),
        "precision_macro": (
            lambda: mm.precision_score(y, pred, average="macro"),
            lambda: skm.precision_score(y, pred, average="macro"),
        ),
        "recall_macro": (lambda: mm.recall_score(y, pred, average="macro"), lambda: skm.recall_score(y, pred, average="macro")),
        "confusion_matrix": (lambda: mm.confusion_matrix(y, pred), lambda: skm.confusion_matrix(y, pred)),
    }
    labels = [str(i) for i in range(c)]

    def sklearn_all() -> None:
        # What compute_metrics returns, one sklearn call per value.
        skm.accuracy_score(y, pred)
        for fn in (skm.precision_score, skm.recall_score, skm.f1_score):
            for avg in ("macro", "micro", "weighted", None):
                fn(y, pred, average=avg, labels=range(c), zero_division=0.0)
        skm.confusion_matrix(y, pred, labels=range(c))

    cases["compute_metrics (all 13)"] = (
        lambda: compute_metrics(y, pred, task_kind="multiclass", labels=labels),
        sklearn_all,
    )

    ratios: dict[str, float] = {}
    print(f"# mmstd.metrics vs scikit-learn on {n:,} predictions, {c} classes ({platform.processor() or platform.machine()})")
    print(f"{'metric':<26}{'sklearn ms':>12}{'mmstd ms':>10}{'ratio':>9}")
    for name, (ours, theirs) in cases.items():
        if name != "compute_metrics (all 13)":
            np.testing.assert_allclose(ours(), theirs(), rtol=0, atol=1e-12)
        a, b = _race(ours, theirs, rounds=3 if name.startswith("compute") else 5)
        ratios[name] = b / a
        print(f"{name:<26}{b * 1e3:>12.2f}{a * 1e3:>10.3f}{b / a:>8.1f}x")

    n_boot = 10_000
    yb = y[:n_boot]
    pb = pred[:n_boot]
    boot_all = _best(lambda: bootstrap_intervals(yb, pb, task_kind="multiclass", labels=labels, resamples=1000), 3)
    boot_acc = _best(
        lambda: bootstrap_intervals(yb, pb, task_kind="multiclass", labels=labels, names=["accuracy"], resamples=1000), 3
    )
    metrics_count = len(bootstrap_intervals(yb, pb, task_kind="multiclass", labels=labels, resamples=1000))
    print(f"bootstrap 1000 x {n_boot:,} samples: {boot_all:.3f} s for all {metrics_count} metrics, {boot_acc:.3f} s accuracy only")

    overhead, empty = _loop_overhead_ns()
    print(f"run_protocol overhead: {overhead:.0f} ns per query (an empty loop calling a no-op: {empty:.0f} ns per call)")
    worst = min(ratios.values())
    print(f"worst ratio {worst:.1f}x, goal {GOAL:.0f}x: {'met' if worst >= GOAL else 'NOT met'}")
    print(json.dumps({
        "n": n,
        "classes": c,
        "ratios": {k: round(v, 1) for k, v in ratios.items()},
        "goal": GOAL,
        "goal_met": worst >= GOAL,
        "bootstrap_1000x10k_s": round(boot_all, 4),
        "bootstrap_1000x10k_accuracy_s": round(boot_acc, 4),
        "run_protocol_overhead_ns": round(overhead, 1),
    }))


if __name__ == "__main__":
    main()
