"""Latency and throughput: pure functions over per-query latencies, and the loop that measures them.

Percentiles follow MLPerf LoadGen exactly (``loadgen/results.cc``,
``PerformanceSummary::ProcessLatencies``): sort the ``n`` latencies and take the element at
0-based index ``floor(n * p / 100)``, computed in double precision as LoadGen does. That is the
smallest sample ``v`` such that more than ``p``% of the samples are <= ``v`` (so at least ``p``%
are). It is a nearest-rank rule, always an observed latency, never an interpolation; it differs
from the textbook nearest rank (the ``ceil(n * p / 100)``-th smallest) only when ``n * p / 100``
is a whole number: for the latencies 1..100, LoadGen's p50/p90/p95/p99 are 51/91/96/100.

Latency names end in ``_ms`` and are lower-is-better; ``throughput_per_s`` counts samples (not
queries) per second and is higher-is-better.

``run_protocol`` is the measurement loop every backend uses: an untimed warm-up, then timed queries
until both a minimum duration and a minimum count are reached (or a maximum), with device work
synchronized before the clock is read.
"""
from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from mmstd.errors import MetricError
from mmstd.metrics import MetricSpec, register_metric

TimeUnit = Literal["ns", "us", "ms", "s"]
StopReason = Literal["minimums", "max_queries", "max_duration"]

_PER_MS: dict[str, float] = {"ns": 1e6, "us": 1e3, "ms": 1.0}
#: Headline percentiles, as in MLPerf's summaries.
PERCENTILES = (50, 90, 95, 99)


def min_queries_for_percentile(percentile: float, *, confidence: float = 0.99) -> int:
    """Fewest queries for which LoadGen's early-stopping test can pass at ``percentile``.

    LoadGen's single-stream early stopping (``loadgen/early_stopping.cc``, ``MinPassingQueriesFinder``
    with one over-latency query, tolerance 0, confidence 0.99) needs ``h + 1`` queries, where ``h``
    is the smallest count with ``I_q(h, 2) < 1 - confidence`` for ``q = percentile / 100``; for
    integer arguments ``I_q(h, 2) = q^(h+1) + (h+1) (1-q) q^h``.

    Examples:
        >>> min_queries_for_percentile(90), min_queries_for_percentile(95), min_queries_for_percentile(99)
        (64, 130, 662)
    """
    q = percentile / 100
    if not 0 < q < 1 or not 0 < confidence < 1:
        raise MetricError(f"percentile must be in (0, 100) and confidence in (0, 1), got {percentile!r}, {confidence!r}.")
    h = 1
    while q ** (h + 1) + (h + 1) * (1 - q) * q**h >= 1 - confidence:
        h += 1
    return h + 1


# ------------------------------------------------------------------------------ statistics


def _latencies(latencies: npt.ArrayLike, unit: str) -> np.ndarray:
    if unit not in ("ns", "us", "ms", "s"):
        raise MetricError(f"unit must be one of {{'ns', 'us', 'ms', 's'}}, got {unit!r}.")
    a = np.asarray(latencies)
    if a.ndim != 1 or a.size == 0 or a.dtype.kind not in "iuf":
        raise MetricError(f"latencies must be a non-empty 1-D array of numbers, got shape {a.shape} ({a.dtype}).")
    if a.dtype.kind == "f" and not np.all(np.isfinite(a)):
        raise MetricError("latencies hold NaN or Inf.")
    if a.min() < 0:
        raise MetricError(f"latencies must be >= 0, got {a.min()!r}.")
    return a


def _to_ms(value: Any, unit: str) -> float:
    # Seconds multiply by 1e3 (exact); ns and us divide (1e-6 itself is inexact).
    return float(value) * 1e3 if unit == "s" else float(value) / _PER_MS[unit]


def _rank_index(n: int, p: float) -> int:
    if not 0 <= p <= 100:
        raise MetricError(f"percentile must be in [0, 100], got {p!r}.")
    # LoadGen indexes sorted[size_t(n * percentile)] with a double percentile; p = 100 is the maximum.
    return min(int(n * (p / 100)), n - 1)


def nearest_rank(values: npt.ArrayLike, p: float) -> float:
    """The ``p``-th percentile by LoadGen's nearest rank: ``sorted(values)[floor(n * p / 100)]``.

    Examples:
        >>> [nearest_rank(range(1, 101), p) for p in (50, 90, 95, 99, 100)]
        [51.0, 91.0, 96.0, 100.0, 100.0]
        >>> nearest_rank([7, 1, 3], 50)
        3.0
    """
    a = np.asarray(values).ravel()
    if a.size == 0:
        raise MetricError("nearest_rank needs at least one value.")
    i = _rank_index(a.size, p)
    return float(np.partition(a, i)[i])


def latency_percentile_ms(latencies: npt.ArrayLike, *, p: float, unit: TimeUnit) -> float:
    """Latency percentile ``p`` in milliseconds, by LoadGen's nearest rank (see ``nearest_rank``).

    Examples:
        >>> latency_percentile_ms([2_000_000, 1_000_000, 4_000_000, 3_000_000], p=50, unit="ns")
        3.0
    """
    a = _latencies(latencies, unit)
    return _to_ms(nearest_rank(a, p), unit)


def latency_mean_ms(latencies: npt.ArrayLike, *, unit: TimeUnit) -> float:
    """Mean latency in milliseconds, sum / n.

    Examples:
        >>> latency_mean_ms([0.001, 0.002, 0.003], unit="s")
        2.0
    """
    a = _latencies(latencies, unit)
    return _to_ms(a.mean(dtype=np.float64), unit)


def latency_min_ms(latencies: npt.ArrayLike, *, unit: TimeUnit) -> float:
    """Smallest latency in milliseconds.

    Examples:
        >>> latency_min_ms([1500, 500, 2500], unit="us")
        0.5
    """
    return _to_ms(_latencies(latencies, unit).min(), unit)


def latency_max_ms(latencies: npt.ArrayLike, *, unit: TimeUnit) -> float:
    """Largest latency in milliseconds.

    Examples:
        >>> latency_max_ms([1500, 500, 2500], unit="us")
        2.5
    """
    return _to_ms(_latencies(latencies, unit).max(), unit)


def throughput_per_s(
    latencies: npt.ArrayLike, *, unit: TimeUnit, duration_s: float | None = None, batch_size: int = 1
) -> float:
    """Samples per second: ``queries * batch_size / duration_s``.

    ``duration_s`` is the wall time of the timed loop; without it, the sum of the latencies
    (LoadGen's "QPS w/o loadgen overhead"), which leaves out time spent between queries.

    Examples:
        >>> throughput_per_s([0.5, 0.5], unit="s", batch_size=8)
        16.0
        >>> throughput_per_s([0.5, 0.5], unit="s", duration_s=2.0)
        1.0
    """
    a = _latencies(latencies, unit)
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise MetricError(f"batch_size must be a positive int, got {batch_size!r}.")
    seconds = duration_s if duration_s is not None else _to_ms(a.sum(dtype=np.float64), unit) / 1e3
    if not seconds > 0 or not math.isfinite(seconds):
        raise MetricError(f"duration_s must be a positive number of seconds, got {seconds!r}.")
    return a.size * batch_size / seconds


@dataclass(frozen=True, slots=True)
class LatencyStats:
    """The latency summary of one timed loop, with units in every name.

    Percentiles are LoadGen nearest ranks of the per-query latencies; ``throughput_per_s``
    counts samples, ``queries * batch_size / duration_s``.
    """

    batch_size: int
    queries: int
    duration_s: float
    latency_p50_ms: float
    latency_p90_ms: float
    latency_p95_ms: float
    latency_p99_ms: float
    latency_mean_ms: float
    latency_max_ms: float
    latency_min_ms: float
    throughput_per_s: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def latency_stats(
    latencies: npt.ArrayLike, *, unit: TimeUnit, duration_s: float | None = None, batch_size: int = 1
) -> LatencyStats:
    """Summarize per-query latencies (each query runs ``batch_size`` samples).

    ``duration_s`` is the wall time of the timed loop (``ProtocolRun.duration_s``); without it,
    the sum of the latencies.

    Examples:
        >>> s = latency_stats(np.arange(1, 101) * 1_000_000, unit="ns", duration_s=5.05)
        >>> s.latency_p50_ms, s.latency_p99_ms, s.latency_mean_ms, s.throughput_per_s
        (51.0, 100.0, 50.5, 19.801980198019802)
    """
    a = _latencies(latencies, unit)
    ordered = np.sort(a)
    n = ordered.size
    pct = {p: _to_ms(ordered[_rank_index(n, p)], unit) for p in PERCENTILES}
    seconds = duration_s if duration_s is not None else _to_ms(a.sum(dtype=np.float64), unit) / 1e3
    return LatencyStats(
        batch_size=batch_size,
        queries=n,
        duration_s=float(seconds),
        latency_p50_ms=pct[50],
        latency_p90_ms=pct[90],
        latency_p95_ms=pct[95],
        latency_p99_ms=pct[99],
        latency_mean_ms=_to_ms(a.mean(dtype=np.float64), unit),
        latency_max_ms=_to_ms(ordered[-1], unit),
        latency_min_ms=_to_ms(ordered[0], unit),
        throughput_per_s=throughput_per_s(a, unit=unit, duration_s=seconds, batch_size=batch_size),
    )


# --------------------------------------------------------------------------- the protocol


@dataclass(frozen=True, slots=True)
class LatencyProtocol:
    """When a latency loop may stop: after ``min_queries`` AND ``min_duration_s``, or at a maximum.

    The defaults suit a CI evaluation of a small model, in the spirit of MLPerf single-stream
    (whose submission runs last 600 s): 10 untimed warm-up queries; at least 662 timed queries,
    the fewest with which LoadGen's early-stopping test can pass at p99 (64 suffice for p90,
    see ``min_queries_for_percentile``); at least 1 s, so clock and frequency effects average out;
    and a 60 s cap for slow models (a capped run is flagged, see ``ProtocolRun.minimums_met``).

    Attributes:
        warmup_queries: Untimed queries first (lazy allocation, kernel selection, caches).
        min_duration_s: Timed wall time to reach.
        min_queries: Timed queries to reach.
        max_queries: Stop after this many timed queries even if ``min_duration_s`` is not reached;
            ``None``: no cap.
        max_duration_s: Stop after this much timed wall time even if ``min_queries`` is not
            reached; ``None``: no cap.
    """

    warmup_queries: int = 10
    min_duration_s: float = 1.0
    min_queries: int = 662
    max_queries: int | None = None
    max_duration_s: float | None = 60.0

    def __post_init__(self) -> None:
        problems = []
        for name in ("warmup_queries", "min_queries", "max_queries"):
            value = getattr(self, name)
            if value is None and name == "max_queries":
                continue
            if isinstance(value, bool) or not isinstance(value, int) or value < (0 if name == "warmup_queries" else 1):
                problems.append(f"{name}: expected an int >= {0 if name == 'warmup_queries' else 1}, got {value!r}")
        for name in ("min_duration_s", "max_duration_s"):
            value = getattr(self, name)
            if value is None and name == "max_duration_s":
                continue
            if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value < 0:
                problems.append(f"{name}: expected a finite number of seconds >= 0, got {value!r}")
        if not problems:
            if self.max_queries is not None and self.max_queries < self.min_queries:
                problems.append(f"max_queries ({self.max_queries}) is below min_queries ({self.min_queries})")
            if self.max_duration_s is not None and self.max_duration_s < self.min_duration_s:
                problems.append(f"max_duration_s ({self.max_duration_s}) is below min_duration_s ({self.min_duration_s})")
        if problems:
            raise MetricError("Invalid latency protocol.", problems=problems)

    @classmethod
    def quick(cls) -> LatencyProtocol:
        """A smoke-run preset: 2 warm-up queries, 64 timed (LoadGen's p90 minimum), no minimum
        duration, at most 10 s. Its p99 is close to the maximum of 64 samples; do not gate on it.

        Examples:
            >>> LatencyProtocol.quick().min_queries
            64
        """
        return cls(warmup_queries=2, min_duration_s=0.0, min_queries=64, max_queries=None, max_duration_s=10.0)


@dataclass(frozen=True, slots=True, eq=False)
class ProtocolRun:
    """What ``run_protocol`` measured.

    Attributes:
        latencies_ns: Per timed query, nanoseconds from just before the call to just after it
            returned (and ``sync()`` returned, when given). Warm-up queries are not included.
        duration_s: Wall time of the timed loop, first query start to last query end, including
            the loop's own bookkeeping between queries.
        protocol: The protocol that ran.
        stop_reason: ``"minimums"`` (both minimums reached), ``"max_queries"`` or ``"max_duration"``.
    """

    latencies_ns: np.ndarray
    duration_s: float
    protocol: LatencyProtocol
    stop_reason: StopReason

    @property
    def minimums_met(self) -> bool:
        """Whether both ``min_queries`` and ``min_duration_s`` were reached."""
        return self.stop_reason == "minimums"

    def stats(self, *, batch_size: int = 1) -> LatencyStats:
        """``latency_stats`` of this run, with its wall duration."""
        return latency_stats(self.latencies_ns, unit="ns", duration_s=self.duration_s, batch_size=batch_size)


def run_protocol(
    fn: Callable[[], Any],
    protocol: LatencyProtocol,
    *,
    clock: Callable[[], int] = time.perf_counter_ns,
    sync: Callable[[], Any] | None = None,
) -> ProtocolRun:
    """Run ``fn`` under ``protocol`` and return its per-query latencies.

    Calls ``fn()`` ``protocol.warmup_queries`` times untimed, then ``sync()`` once (so queued
    warm-up work is not billed to the first timed query), then times queries one after another:
    read ``clock``, call ``fn()``, call ``sync()`` if given (device work is asynchronous: without
    it the clock would stop when the work is queued, not done), read ``clock``. It stops as soon as
    both ``min_queries`` and ``min_duration_s`` are reached, or at ``max_queries`` or
    ``max_duration_s``. Per query the loop adds two clock reads, a list append and three integer
    comparisons (about 0.1-0.3 us in CPython; ``bench/metrics.py`` measures it).

    Args:
        fn: One query, e.g. a backend's prepared ``Query``.
        protocol: When to stop.
        clock: A monotonic clock in integer nanoseconds.
        sync: Waits for the device to finish queued work; ``None`` on CPU.

    Examples:
        >>> ticks = iter(range(0, 10**9, 1000))                      # a fake clock: +1 us per read
        >>> run = run_protocol(lambda: None, LatencyProtocol(warmup_queries=1, min_duration_s=0,
        ...                    min_queries=3), clock=lambda: next(ticks))
        >>> run.latencies_ns.tolist(), run.stop_reason
        ([1000, 1000, 1000], 'minimums')
    """
    for _ in range(protocol.warmup_queries):
        fn()
    if sync is not None:
        sync()
    min_q, min_ns = protocol.min_queries, round(protocol.min_duration_s * 1e9)
    max_q = protocol.max_queries if protocol.max_queries is not None else sys.maxsize
    max_ns = round(protocol.max_duration_s * 1e9) if protocol.max_duration_s is not None else sys.maxsize
    latencies: list[int] = []
    append = latencies.append
    n = 0
    start = clock()
    # Two copies of the loop, so the timed region holds fn() (and sync()) and not an `if sync`.
    if sync is None:
        while True:
            t0 = clock()
            fn()
            t1 = clock()
            append(t1 - t0)
            n += 1
            if (n >= min_q and t1 - start >= min_ns) or n >= max_q or t1 - start >= max_ns:
                break
    else:
        while True:
            t0 = clock()
            fn()
            sync()
            t1 = clock()
            append(t1 - t0)
            n += 1
            if (n >= min_q and t1 - start >= min_ns) or n >= max_q or t1 - start >= max_ns:
                break
    elapsed = t1 - start
    reason: StopReason = (
        "minimums" if n >= min_q and elapsed >= min_ns else "max_queries" if n >= max_q else "max_duration"
    )
    return ProtocolRun(np.asarray(latencies, dtype=np.int64), elapsed / 1e9, protocol, reason)


# ------------------------------------------------------------------------------ registration

_LATENCY = frozenset({"multiclass", "binary", "multilabel"})
for _p in PERCENTILES:
    register_metric(MetricSpec(
        f"latency_p{_p}_ms", latency_percentile_ms, higher_is_better=False, unit="ms", averaging=None,
        task_kinds=_LATENCY, inputs="latencies", params={"p": _p},
    ))
for _name, _fn in (("latency_mean_ms", latency_mean_ms), ("latency_min_ms", latency_min_ms), ("latency_max_ms", latency_max_ms)):
    register_metric(MetricSpec(
        _name, _fn, higher_is_better=False, unit="ms", averaging=None, task_kinds=_LATENCY, inputs="latencies",
    ))
register_metric(MetricSpec(
    "throughput_per_s", throughput_per_s, higher_is_better=True, unit="per_s", averaging=None,
    task_kinds=_LATENCY, inputs="latencies",
))
del _p, _name, _fn
