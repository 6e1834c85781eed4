"""Latency statistics (LoadGen nearest rank) and the measurement protocol."""
from __future__ import annotations

import bisect
import doctest
import time
from collections.abc import Callable
from fractions import Fraction
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mmstd.errors import MetricError
from mmstd.metrics import METRICS
from mmstd.metrics import latency as lat
from mmstd.metrics.latency import (
    LatencyProtocol,
    LatencyStats,
    latency_stats,
    min_queries_for_percentile,
    nearest_rank,
    run_protocol,
)


def _loadgen_rank(values: list[int], p: int) -> int:
    """The definition, in exact arithmetic: the smallest sample v with more than p% of samples <= v."""
    ordered = sorted(values)
    n = len(ordered)
    if p == 100:
        return ordered[-1]
    return next(v for v in ordered if bisect.bisect_right(ordered, v) * 100 > p * n)


# Every registered latency metric -> an independent computation of it, in ms, from integer ns.
ORACLES: dict[str, Callable[[list[int]], float]] = {
    "latency_p50_ms": lambda v: _loadgen_rank(v, 50) / 1e6,
    "latency_p90_ms": lambda v: _loadgen_rank(v, 90) / 1e6,
    "latency_p95_ms": lambda v: _loadgen_rank(v, 95) / 1e6,
    "latency_p99_ms": lambda v: _loadgen_rank(v, 99) / 1e6,
    "latency_mean_ms": lambda v: float(Fraction(sum(v), len(v)) / 10**6),
    "latency_min_ms": lambda v: min(v) / 1e6,
    "latency_max_ms": lambda v: max(v) / 1e6,
    "throughput_per_s": lambda v: float(Fraction(len(v) * 10**9, sum(v))),
}
LATENCY_NAMES = sorted(n for n in METRICS.names() if METRICS.get(n).inputs == "latencies")


def test_every_latency_metric_has_an_oracle_case() -> None:
    assert set(LATENCY_NAMES) == set(ORACLES)


def test_doctests_pass() -> None:
    result = doctest.testmod(lat)
    assert result.failed == 0 and result.attempted >= 10


@pytest.mark.parametrize("name", LATENCY_NAMES)
@settings(max_examples=60, deadline=None)
@given(values=st.lists(st.integers(1, 10**9), min_size=1, max_size=300))
def test_every_latency_metric_matches_its_oracle_and_invariants(name: str, values: list[int]) -> None:
    spec = METRICS.get(name)
    ns = np.asarray(values, dtype=np.int64)
    got = spec(ns, unit="ns")
    assert got == pytest.approx(ORACLES[name](values), rel=1e-12)
    # Order does not matter, and the unit of the input does not change the answer.
    assert spec(ns[::-1], unit="ns") == pytest.approx(got, rel=1e-12)
    assert spec(ns / 1e9, unit="s") == pytest.approx(got, rel=1e-12)
    assert spec(ns / 1e3, unit="us") == pytest.approx(got, rel=1e-12)
    # Twice as slow: every latency doubles, throughput halves.
    doubled = spec(ns * 2, unit="ns")
    assert doubled == pytest.approx(got / 2 if name == "throughput_per_s" else got * 2, rel=1e-12)
    if name.startswith("latency_p") or name in ("latency_min_ms", "latency_max_ms"):
        assert got in {v / 1e6 for v in values}  # a nearest rank is an observed latency


def test_percentiles_of_one_to_hundred_follow_loadgen() -> None:
    values = list(range(1, 101))
    # LoadGen takes sorted[floor(n * p)]: at n * p = 99 that is the 100th value, not the 99th.
    assert [nearest_rank(values, p) for p in (0, 50, 90, 95, 99, 100)] == [1, 51, 91, 96, 100, 100]
    assert [nearest_rank(list(range(1, 11)), p) for p in (50, 90, 95, 99)] == [6, 10, 10, 10]
    assert nearest_rank([5.0], 99) == 5.0
    # Floating point exactly as LoadGen's double arithmetic, which equals the exact rule here.
    for n in (1, 7, 64, 100, 662, 1000, 12345):
        v = list(range(n))
        for p in (50, 90, 95, 99):
            assert nearest_rank(v, p) == _loadgen_rank(v, p)


def test_latency_stats_fields_and_units() -> None:
    ns = np.arange(1, 101) * 1_000_000  # 1..100 ms
    stats = latency_stats(ns, unit="ns", duration_s=10.0, batch_size=4)
    assert stats == LatencyStats(
        batch_size=4, queries=100, duration_s=10.0, latency_p50_ms=51.0, latency_p90_ms=91.0, latency_p95_ms=96.0,
        latency_p99_ms=100.0, latency_mean_ms=50.5, latency_max_ms=100.0, latency_min_ms=1.0, throughput_per_s=40.0,
    )
    in_seconds = latency_stats(ns / 1e9, unit="s", duration_s=10.0, batch_size=4).to_dict()
    assert in_seconds == pytest.approx(stats.to_dict(), rel=1e-12)
    assert latency_stats(ns, unit="ns").duration_s == pytest.approx(5.05)  # no wall time: the sum of latencies
    for field, value in stats.to_dict().items():
        if field in METRICS:
            assert METRICS.get(field)(ns, unit="ns", **({"duration_s": 10.0, "batch_size": 4} if field == "throughput_per_s" else {})) == value


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: latency_stats([], unit="ns"), r"non-empty 1-D array of numbers"),
        (lambda: latency_stats([1, 2], unit="sec"), r"unit must be one of \{'ns', 'us', 'ms', 's'\}, got 'sec'"),  # type: ignore[arg-type]
        (lambda: latency_stats([1.0, np.nan], unit="s"), r"NaN or Inf"),
        (lambda: latency_stats([1, -2], unit="ns"), r"latencies must be >= 0"),
        (lambda: latency_stats([1, 2], unit="ns", batch_size=0), r"batch_size must be a positive int"),
        (lambda: latency_stats([0, 0], unit="ns"), r"duration_s must be a positive number"),
        (lambda: nearest_rank([1, 2], 101), r"percentile must be in \[0, 100\]"),
        (lambda: min_queries_for_percentile(100), r"percentile must be in \(0, 100\)"),
    ],
)
def test_bad_latency_inputs(call: Callable[[], Any], message: str) -> None:
    with pytest.raises(MetricError, match=message):
        call()


# ------------------------------------------------------------------------------- the protocol


def test_minimum_counts_are_loadgens_early_stopping_minimums() -> None:
    special = pytest.importorskip("scipy.special")
    for p, expected in ((90, 64), (95, 130), (99, 662)):
        # LoadGen: the smallest h with BetaRegularized[p, h, 2] < 0.01, then h + 1 queries.
        h = next(h for h in range(1, 10_000) if special.betainc(h, 2, p / 100) < 0.01)
        assert min_queries_for_percentile(p) == h + 1 == expected
    assert LatencyProtocol().min_queries >= min_queries_for_percentile(99)
    assert LatencyProtocol.quick().min_queries >= min_queries_for_percentile(90)


class FakeDevice:
    """A clock that advances only when a query runs, and a log of every call, in order."""

    def __init__(self, query_ns: Callable[[int], int]) -> None:
        self.now = 0
        self.calls = 0
        self.log: list[str] = []
        self.query_ns = query_ns

    def clock(self) -> int:
        self.log.append("clock")
        return self.now

    def query(self) -> None:
        self.log.append("query")
        self.now += self.query_ns(self.calls)
        self.calls += 1

    def sync(self) -> None:
        self.log.append("sync")


def test_warmup_is_untimed_and_excluded() -> None:
    dev = FakeDevice(lambda i: 10**9 if i < 3 else 1000)  # the 3 warm-up queries are very slow
    run = run_protocol(dev.query, LatencyProtocol(warmup_queries=3, min_duration_s=0, min_queries=5), clock=dev.clock)
    assert dev.calls == 8
    assert run.latencies_ns.tolist() == [1000] * 5
    assert run.duration_s == pytest.approx(5e-6)
    assert dev.log[:3] == ["query"] * 3 and dev.log[3] == "clock"  # no clock read during warm-up


def test_both_minimums_are_honoured() -> None:
    # Count first: 1 ms queries need 500 of them to reach 0.5 s, beyond min_queries=10.
    dev = FakeDevice(lambda i: 1_000_000)
    run = run_protocol(dev.query, LatencyProtocol(warmup_queries=0, min_duration_s=0.5, min_queries=10), clock=dev.clock)
    assert run.latencies_ns.size == 500 and run.minimums_met and run.stop_reason == "minimums"
    # Duration first: 0.1 s queries reach 0.5 s after 5, but min_queries=20 keeps going.
    dev = FakeDevice(lambda i: 100_000_000)
    run = run_protocol(dev.query, LatencyProtocol(warmup_queries=0, min_duration_s=0.5, min_queries=20, max_duration_s=None), clock=dev.clock)
    assert run.latencies_ns.size == 20 and run.duration_s == pytest.approx(2.0) and run.minimums_met


def test_maxima_stop_the_loop_and_are_flagged() -> None:
    dev = FakeDevice(lambda i: 1_000_000)
    run = run_protocol(dev.query, LatencyProtocol(warmup_queries=0, min_duration_s=5, min_queries=10, max_queries=100), clock=dev.clock)
    assert (run.latencies_ns.size, run.stop_reason, run.minimums_met) == (100, "max_queries", False)
    dev = FakeDevice(lambda i: 300_000_000)  # a slow model: 0.3 s per query
    protocol = LatencyProtocol(warmup_queries=1, min_duration_s=0, min_queries=662, max_duration_s=3.0)
    run = run_protocol(dev.query, protocol, clock=dev.clock)
    assert (run.latencies_ns.size, run.stop_reason, run.minimums_met) == (10, "max_duration", False)
    assert run.stats().queries == 10 and run.stats().latency_p99_ms == 300.0


def test_sync_runs_before_every_closing_clock_read() -> None:
    dev = FakeDevice(lambda i: 1000)
    run_protocol(dev.query, LatencyProtocol(warmup_queries=2, min_duration_s=0, min_queries=3), clock=dev.clock, sync=dev.sync)
    assert dev.log == ["query", "query", "sync", "clock"] + ["clock", "query", "sync", "clock"] * 3


def test_stats_use_the_wall_duration() -> None:
    ticks = iter(range(0, 10**12, 500))  # every clock read advances 0.5 us, queries take no time
    run = run_protocol(lambda: None, LatencyProtocol(warmup_queries=0, min_duration_s=0, min_queries=4), clock=lambda: next(ticks))
    assert run.latencies_ns.tolist() == [500] * 4
    # Start read, then two reads per query: the wall time includes the gaps between queries.
    assert run.duration_s == pytest.approx(8 * 500e-9)
    stats = run.stats(batch_size=2)
    assert stats.throughput_per_s == pytest.approx(8 / 4e-6) and stats.batch_size == 2


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"min_queries": 0}, r"min_queries: expected an int >= 1, got 0"),
        ({"warmup_queries": -1}, r"warmup_queries: expected an int >= 0"),
        ({"min_duration_s": -1.0}, r"min_duration_s: expected a finite number of seconds >= 0"),
        ({"min_duration_s": float("inf")}, r"min_duration_s: expected a finite number"),
        ({"max_queries": 10}, r"max_queries \(10\) is below min_queries \(662\)"),
        ({"max_duration_s": 0.5}, r"max_duration_s \(0.5\) is below min_duration_s \(1.0\)"),
        ({"min_queries": 1.5}, r"min_queries: expected an int"),
    ],
)
def test_invalid_protocols_are_refused(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(MetricError, match="Invalid latency protocol") as err:
        LatencyProtocol(**kwargs)
    assert any(__import__("re").search(message, p) for p in err.value.problems), err.value.problems


def test_loop_overhead_is_negligible() -> None:
    # Per query the loop adds two clock reads and bookkeeping; compare with a bare Python loop.
    n = 50_000
    protocol = LatencyProtocol(warmup_queries=0, min_duration_s=0, min_queries=n)

    def noop() -> None:
        return None

    overheads = []
    for _ in range(3):
        t0 = time.perf_counter_ns()
        for _ in range(n):
            noop()
        empty = time.perf_counter_ns() - t0
        t0 = time.perf_counter_ns()
        run_protocol(noop, protocol)
        overheads.append((time.perf_counter_ns() - t0 - empty) / n)
    # ~0.2-0.4 us on a laptop core; the bound leaves room for a loaded CI machine.
    assert min(overheads) < 3_000, overheads
