"""Seeded bootstrap confidence intervals for metrics, and for paired metric differences.

Method (Efron's percentile bootstrap): draw ``resamples`` sets of ``n`` sample indices with
replacement from ``numpy.random.default_rng(seed)``, compute the metric on each resample, and
report the ``(1 - level) / 2`` and ``(1 + level) / 2`` quantiles of those values (NumPy's default
linear interpolation, Hyndman and Fan type 7, the rule ``scipy.stats.bootstrap`` uses for
``method="percentile"``). Resamples where a metric is undefined (NaN, only with
``zero_division=nan``) are left out of its quantiles.

It is vectorized: the indices are drawn once per chunk of resamples, and the confusion matrices
of all resamples in the chunk come from one ``np.bincount`` over
``resample * C * C + true * C + pred``; every count-based metric is then a formula over those
``[resamples, C]`` counts (``ConfusionCounts``). Multilabel counts come from a resample-multiplicity
matrix times the 0/1 indicators. Results are reproducible for a given seed, sample count and
number of resamples.

The paired bootstrap applies the same indices to two prediction vectors over the same samples
(backend against backend, variant against clean run, package against baseline) and reports the
interval of ``metric(b) - metric(a)``: sample-to-sample variation cancels, so the interval is much
narrower than the two separate intervals suggest, and identical predictions give exactly [0, 0].
"""
from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from mmstd.errors import MetricError
from mmstd.metrics import TaskKind
from mmstd.metrics.classification import (
    ConfusionCounts,
    OutputKind,
    _evaluate,
    _plan,
    _Planned,
    _prepare,
    _Prepared,
    _rank,
    _result,
)

#: Resamples drawn by default; 1000 is the usual floor for 95% percentile intervals.
DEFAULT_RESAMPLES = 1000
# Index draws per chunk (resamples x samples): bounds memory at ~32 MiB of int64 indices.
_CHUNK_CELLS = 1 << 22


@dataclass(frozen=True, slots=True)
class Interval:
    """A bootstrap confidence interval.

    Attributes:
        low: Lower bound, the ``(1 - level) / 2`` quantile of the resampled values.
        high: Upper bound, the ``(1 + level) / 2`` quantile.
        level: Nominal coverage, e.g. 0.95.
        resamples: Bootstrap resamples drawn.
        seed: Seed of ``numpy.random.default_rng`` that drew them.
        method: ``"percentile"``.
        estimate: The value on the full sample (for a paired interval, the difference b - a).
    """

    low: float
    high: float
    level: float
    resamples: int
    seed: int
    method: str
    estimate: float

    def contains(self, value: float) -> bool:
        """Whether ``low <= value <= high``."""
        return self.low <= value <= self.high

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _check_options(resamples: int, level: float, seed: int) -> None:
    if isinstance(level, bool) or not isinstance(level, int | float) or not 0 < level < 1:
        raise MetricError(f"level must be a number strictly between 0 and 1, got {level!r}.")
    if isinstance(resamples, bool) or not isinstance(resamples, int) or resamples < 1:
        raise MetricError(f"resamples must be a positive int, got {resamples!r}.")
    # Below this, a tail holds no resample and the bound is just the extreme value.
    if resamples * (1 - level) / 2 < 1:
        need = int(np.ceil(2 / (1 - level)))
        raise MetricError(
            f"resamples={resamples} is too few for a {level:.0%} interval; need at least {need}.",
            hint=f"use the default {DEFAULT_RESAMPLES} resamples.",
        )
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise MetricError(f"seed must be a non-negative int, got {seed!r}.")


def resample_indices(n: int, resamples: int, seed: int) -> list[np.ndarray]:
    """The bootstrap's index draws as chunks of shape ``[rows, n]``; rows sum to ``resamples``.

    Exposed so a caller (or a test) can recompute any metric on exactly the resamples behind an
    interval.
    """
    rng = np.random.default_rng(seed)
    rows = max(1, _CHUNK_CELLS // max(n, 1))
    return [rng.integers(0, n, size=(min(rows, resamples - s), n)) for s in range(0, resamples, rows)]


def _resampled_counts(prep: _Prepared, idx: np.ndarray) -> ConfusionCounts:
    """Counts of every resample (row of ``idx``) at once, with a leading resample axis."""
    rows, n = idx.shape
    if prep.task_kind == "multilabel":
        # Multiplicity of each sample in each resample, times the indicators: exact in float64.
        weights = np.bincount((idx + (np.arange(rows) * n)[:, None]).ravel(), minlength=rows * n)
        weights = weights.reshape(rows, n).astype(np.float64)
        t, p = prep.y_true, prep.y_pred
        columns = np.concatenate([t & p, p, t, (t == p).all(axis=1, keepdims=True)], axis=1).astype(np.float64)
        sums = np.rint(weights @ columns).astype(np.int64)
        c = prep.n_classes
        return ConfusionCounts(sums[:, :c], sums[:, c:2 * c], sums[:, 2 * c:3 * c], sums[:, 3 * c], n)
    cells = prep.n_classes * prep.n_classes
    code = prep.y_true * prep.n_classes + prep.y_pred
    flat = code[idx]
    flat += (np.arange(rows) * cells)[:, None]
    cm = np.bincount(flat.ravel(), minlength=rows * cells).reshape(rows, prep.n_classes, prep.n_classes)
    return ConfusionCounts.from_confusion(cm)


def _replicates(prep: _Prepared, item: _Planned, idx: np.ndarray, counts: ConfusionCounts, cache: dict[str, Any]) -> np.ndarray:
    """The metric on every resample in ``idx``: shape ``[rows]`` or ``[rows, C]``."""
    if item.counted:
        assert item.spec.from_counts is not None
        return np.asarray(item.spec.from_counts(counts, zero_division=prep.zero_division, **item.params), dtype=np.float64)
    if item.spec.name == "top_k_accuracy":
        # A per-sample mean: ranks are computed once, then hits are averaged over each resample.
        return (_rank(prep, cache)[idx] < item.params["k"]).mean(axis=1)
    # Any other metric (a plugin's) is recomputed on each resample.
    values = []
    for row in idx:
        sub = prep.take(row)
        values.append(_evaluate(sub, item, sub.counts(), {}))
    return np.asarray(values, dtype=np.float64)


def _quantiles(values: np.ndarray, level: float) -> tuple[np.ndarray, np.ndarray]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN: the interval is NaN, said in the docs
        low, high = np.nanquantile(values, [(1 - level) / 2, (1 + level) / 2], axis=0)
    return low, high


def _intervals(
    estimate: Any, values: np.ndarray, *, level: float, resamples: int, seed: int
) -> Interval | tuple[Interval, ...]:
    low, high = _quantiles(values, level)
    if values.ndim == 1:
        return Interval(float(low), float(high), level, resamples, seed, "percentile", float(estimate))
    return tuple(
        Interval(float(lo), float(hi), level, resamples, seed, "percentile", float(e))
        for lo, hi, e in zip(low, high, np.asarray(estimate), strict=True)
    )


def _run(
    preps: Sequence[_Prepared], names: Sequence[str] | None, top_k: Sequence[int] | None, resamples: int, seed: int
) -> tuple[list[_Planned], list[dict[str, Any]], list[dict[str, np.ndarray]]]:
    # Plan on predictions without scores if there are any, so a score-only metric is never planned for them.
    plan = _plan(next((p for p in preps if p.y_score is None), preps[0]), names, top_k)
    caches: list[dict[str, Any]] = [{} for _ in preps]
    estimates = []
    for prep, cache in zip(preps, caches, strict=True):
        counts = prep.counts()
        estimates.append({item.key: _evaluate(prep, item, counts, cache) for item in plan})
    values: list[dict[str, list[np.ndarray]]] = [{item.key: [] for item in plan} for _ in preps]
    for idx in resample_indices(preps[0].n, resamples, seed):
        for prep, out, cache in zip(preps, values, caches, strict=True):
            counts = _resampled_counts(prep, idx)
            for item in plan:
                out[item.key].append(_replicates(prep, item, idx, counts, cache))
    stacked = [{key: np.concatenate(chunks, axis=0) for key, chunks in out.items()} for out in values]
    return plan, estimates, stacked


def bootstrap_intervals(
    y_true: npt.ArrayLike,
    y_score_or_pred: npt.ArrayLike,
    *,
    task_kind: TaskKind,
    labels: Sequence[Any],
    names: Sequence[str] | None = None,
    output_kind: OutputKind = "probabilities",
    threshold: float | None = None,
    top_k: Sequence[int] | None = None,
    zero_division: float = 0.0,
    resamples: int = DEFAULT_RESAMPLES,
    level: float = 0.95,
    seed: int = 0,
) -> dict[str, Interval | tuple[Interval, ...]]:
    """Percentile-bootstrap confidence intervals for every metric ``compute_metrics`` reports.

    Arguments up to ``zero_division`` are those of ``compute_metrics``.

    Args:
        resamples: Bootstrap resamples; at least ``2 / (1 - level)`` so each tail holds one.
        level: Nominal coverage of each interval.
        seed: Seed of ``numpy.random.default_rng`` drawing the resample indices.

    Returns:
        ``{name: Interval}`` for scalar metrics and ``{name: (Interval, ...)}``, one per label,
        for ``*_per_class`` metrics. Each interval's ``estimate`` is the value on all samples.

    Examples:
        >>> ci = bootstrap_intervals([0, 1] * 50, [0, 1] * 45 + [1, 0] * 5, task_kind="binary",
        ...                          labels=["no", "yes"], names=["accuracy"], seed=7)["accuracy"]
        >>> ci.estimate, ci.low < 0.9 < ci.high, ci.resamples, ci.method
        (0.9, True, 1000, 'percentile')
    """
    _check_options(resamples, level, seed)
    prep = _prepare(
        y_true, y_score_or_pred, task_kind=task_kind, labels=labels, output_kind=output_kind,
        threshold=threshold, zero_division=zero_division,
    )
    plan, (estimates,), (values,) = _run([prep], names, top_k, resamples, seed)
    return {
        item.key: _intervals(estimates[item.key], values[item.key], level=level, resamples=resamples, seed=seed)
        for item in plan
    }


def paired_bootstrap_intervals(
    y_true: npt.ArrayLike,
    y_a: npt.ArrayLike,
    y_b: npt.ArrayLike,
    *,
    task_kind: TaskKind,
    labels: Sequence[Any],
    names: Sequence[str] | None = None,
    output_kind: OutputKind = "probabilities",
    threshold: float | None = None,
    top_k: Sequence[int] | None = None,
    zero_division: float = 0.0,
    resamples: int = DEFAULT_RESAMPLES,
    level: float = 0.95,
    seed: int = 0,
) -> dict[str, Interval | tuple[Interval, ...]]:
    """Paired-bootstrap intervals of ``metric(b) - metric(a)`` over the same samples.

    ``y_a`` and ``y_b`` are two models' (or backends', or variants') outputs for the same
    ``y_true``; each resample applies the same indices to both. Pass predicted labels (int) for
    either when their outputs are of different kinds (convert with ``to_predictions``). Other
    arguments as for ``bootstrap_intervals``.

    Returns:
        As ``bootstrap_intervals``; each ``estimate`` is ``metric(b) - metric(a)`` on all samples.
        Identical predictions give exactly ``low == high == 0``.

    Examples:
        >>> y = [0, 1, 2, 1] * 25
        >>> d = paired_bootstrap_intervals(y, y, y, task_kind="multiclass", labels="abc", names=["f1_macro"])
        >>> d["f1_macro"].low, d["f1_macro"].high
        (0.0, 0.0)
    """
    _check_options(resamples, level, seed)
    a, b = (
        _prepare(
            y_true, y, task_kind=task_kind, labels=labels, output_kind=output_kind,
            threshold=threshold, zero_division=zero_division,
        )
        for y in (y_a, y_b)
    )
    plan, (est_a, est_b), (val_a, val_b) = _run([a, b], names, top_k, resamples, seed)
    out: dict[str, Interval | tuple[Interval, ...]] = {}
    for item in plan:
        estimate = _result(np.asarray(est_b[item.key], dtype=np.float64) - np.asarray(est_a[item.key], dtype=np.float64))
        out[item.key] = _intervals(
            estimate, val_b[item.key] - val_a[item.key], level=level, resamples=resamples, seed=seed
        )
    return out
