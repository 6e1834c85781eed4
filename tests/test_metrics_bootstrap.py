"""Bootstrap intervals: coverage on data with a known answer, exactness of the vectorized counts."""
from __future__ import annotations

import doctest
import math
from typing import Any

import numpy as np
import pytest

from mmstd.errors import MetricError
from mmstd.metrics import METRICS
from mmstd.metrics import bootstrap as boot
from mmstd.metrics.bootstrap import Interval, bootstrap_intervals, paired_bootstrap_intervals, resample_indices
from mmstd.metrics.classification import accuracy_score, compute_metrics, f1_score, precision_score, recall_score

LABELS3 = ["a", "b", "c"]


def _noisy(rng: np.random.Generator, y: np.ndarray, p_correct: float, n_classes: int) -> np.ndarray:
    """Predictions right with probability ``p_correct``, otherwise another class at random."""
    wrong = (y + rng.integers(1, n_classes, y.size)) % n_classes
    return np.where(rng.random(y.size) < p_correct, y, wrong)


def test_doctests_pass() -> None:
    result = doctest.testmod(boot)
    assert result.failed == 0 and result.attempted >= 4


def test_accuracy_interval_covers_the_truth_at_its_nominal_rate() -> None:
    # Accuracy with p = 0.8 on n = 2000 samples: the 95% interval should contain 0.8 in about 95 of
    # 100 independent repetitions, and be about 2 * 1.96 * sqrt(p (1 - p) / n) = 0.0351 wide.
    p, n, reps = 0.8, 2000, 100
    covered, widths = 0, []
    for rep in range(reps):
        rng = np.random.default_rng(1000 + rep)
        y = rng.integers(0, 3, n)
        ci = bootstrap_intervals(y, _noisy(rng, y, p, 3), task_kind="multiclass", labels=LABELS3,
                                 names=["accuracy"], seed=rep)["accuracy"]
        assert isinstance(ci, Interval)
        covered += ci.contains(p)
        widths.append(ci.high - ci.low)
    expected_width = 2 * 1.96 * math.sqrt(p * (1 - p) / n)
    assert covered >= 90, covered
    assert abs(np.mean(widths) / expected_width - 1) < 0.08, (np.mean(widths), expected_width)


def test_intervals_are_seeded_and_carry_their_provenance() -> None:
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 300)
    pred = _noisy(rng, y, 0.7, 3)
    a = bootstrap_intervals(y, pred, task_kind="multiclass", labels=LABELS3, seed=5)
    b = bootstrap_intervals(y, pred, task_kind="multiclass", labels=LABELS3, seed=5)
    c = bootstrap_intervals(y, pred, task_kind="multiclass", labels=LABELS3, seed=6)
    assert a == b and a != c
    point = compute_metrics(y, pred, task_kind="multiclass", labels=LABELS3)
    for name, ci in a.items():
        if isinstance(ci, tuple):  # per class: one interval per label
            assert len(ci) == 3 and name.endswith("_per_class")
            np.testing.assert_array_equal([i.estimate for i in ci], point[name])
            ci = ci[0]
        else:
            assert ci.estimate == point[name]
            assert ci.low <= ci.estimate <= ci.high, name
        assert (ci.level, ci.resamples, ci.seed, ci.method) == (0.95, 1000, 5, "percentile")
    assert set(a) == {k for k in point if k not in ("support_per_class", "confusion_matrix")}


@pytest.mark.parametrize("task_kind", ["multiclass", "binary", "multilabel"])
def test_vectorized_counts_equal_a_loop_over_the_same_resamples(task_kind: Any) -> None:
    rng = np.random.default_rng(1)
    n, c = 120, (2 if task_kind == "binary" else 4)
    if task_kind == "multilabel":
        y = rng.integers(0, 2, (n, c))
        pred = np.where(rng.random((n, c)) < 0.8, y, 1 - y)
    else:
        y = rng.integers(0, c - 1, n)  # the last class never occurs: zero-support rows in every resample
        pred = _noisy(rng, y, 0.6, c)
    labels = [f"l{i}" for i in range(c)]
    resamples, level, seed = 1000, 0.9, 3
    got = bootstrap_intervals(y, pred, task_kind=task_kind, labels=labels, resamples=resamples, level=level, seed=seed)
    idx = np.concatenate(resample_indices(n, resamples, seed))
    assert idx.shape == (resamples, n)
    loop_labels = None if task_kind == "multilabel" else list(range(c))
    oracles = {
        "accuracy": lambda t, p: accuracy_score(t, p),
        "f1_macro": lambda t, p: f1_score(t, p, labels=loop_labels),
        "precision_weighted": lambda t, p: precision_score(t, p, average="weighted", labels=loop_labels),
        "recall_micro": lambda t, p: recall_score(t, p, average="micro", labels=loop_labels),
        "f1_per_class": lambda t, p: f1_score(t, p, average=None, labels=loop_labels),
    }
    for name, fn in oracles.items():
        values = np.asarray([fn(y[i], pred[i]) for i in idx])
        low, high = np.quantile(values, [(1 - level) / 2, (1 + level) / 2], axis=0)
        ci = got[name]
        if isinstance(ci, tuple):
            np.testing.assert_allclose([i.low for i in ci], low, rtol=0, atol=1e-12)
            np.testing.assert_allclose([i.high for i in ci], high, rtol=0, atol=1e-12)
        else:
            assert (ci.low, ci.high) == pytest.approx((low, high), abs=1e-12), name


def test_paired_identical_predictions_give_exactly_zero() -> None:
    rng = np.random.default_rng(2)
    y = rng.integers(0, 3, 500)
    scores = rng.random((500, 3))
    deltas = paired_bootstrap_intervals(y, scores, scores.copy(), task_kind="multiclass", labels=LABELS3)
    assert "top_2_accuracy" in deltas
    for name, d in deltas.items():
        for ci in d if isinstance(d, tuple) else (d,):
            assert (ci.low, ci.high, ci.estimate) == (0.0, 0.0, 0.0), name


def test_paired_delta_of_a_strictly_better_model_is_positive_and_antisymmetric() -> None:
    rng = np.random.default_rng(4)
    y = rng.integers(0, 3, 1000)
    a = _noisy(rng, y, 0.75, 3)
    b = a.copy()
    fixed = np.flatnonzero(a != y)[:60]  # b corrects 60 of a's mistakes and changes nothing else
    b[fixed] = y[fixed]
    ab = paired_bootstrap_intervals(y, a, b, task_kind="multiclass", labels=LABELS3, names=["accuracy", "f1_macro"], seed=9)
    ba = paired_bootstrap_intervals(y, b, a, task_kind="multiclass", labels=LABELS3, names=["accuracy", "f1_macro"], seed=9)
    acc = ab["accuracy"]
    assert isinstance(acc, Interval)
    assert acc.estimate == pytest.approx(0.06, abs=1e-12)
    assert 0 < acc.low < 0.06 < acc.high
    # Pairing cancels sample-to-sample noise: far narrower than either model's own interval.
    own = bootstrap_intervals(y, a, task_kind="multiclass", labels=LABELS3, names=["accuracy"], seed=9)["accuracy"]
    assert isinstance(own, Interval) and (acc.high - acc.low) < 0.6 * (own.high - own.low)
    for name in ("accuracy", "f1_macro"):
        x, r = ab[name], ba[name]
        assert isinstance(x, Interval) and isinstance(r, Interval)
        assert (r.low, r.high, r.estimate) == pytest.approx((-x.high, -x.low, -x.estimate), abs=1e-12)


def test_paired_accepts_labels_for_one_side_and_scores_for_the_other() -> None:
    y = np.array([0, 1, 2, 1, 0, 2] * 20)
    scores = np.eye(3)[y] * 0.9 + 0.05
    d = paired_bootstrap_intervals(y, scores, y, task_kind="multiclass", labels=LABELS3)
    assert "top_2_accuracy" not in d  # one side has no scores
    acc = d["accuracy"]
    assert isinstance(acc, Interval) and (acc.low, acc.high) == (0.0, 0.0)


def test_top_k_and_plugin_metrics_are_resampled_too() -> None:
    rng = np.random.default_rng(8)
    y = rng.integers(0, 5, 400)
    scores = rng.random((400, 5)) + 0.5 * np.eye(5)[y]
    cis = bootstrap_intervals(y, scores, task_kind="multiclass", labels=list("abcde"), names=["top_k_accuracy"], top_k=[2])
    ci = cis["top_2_accuracy"]
    assert isinstance(ci, Interval) and ci.low < ci.estimate < ci.high
    idx = np.concatenate(resample_indices(400, 1000, 0))
    hits = (np.argsort(-scores, axis=1, kind="stable")[:, :2] == y[:, None]).any(axis=1)
    assert (ci.low, ci.high) == pytest.approx(tuple(np.quantile(hits[idx].mean(axis=1), [0.025, 0.975])), abs=1e-12)


def test_undefined_resamples_are_left_out_with_nan_zero_division() -> None:
    y = np.array([0] * 99 + [1])  # class 1 is missing from most resamples
    pred = np.array([0] * 98 + [1, 1])
    ci = bootstrap_intervals(y, pred, task_kind="binary", labels="ny", names=["recall_binary"], zero_division=np.nan)["recall_binary"]
    assert isinstance(ci, Interval) and ci.low == 1.0 and ci.high == 1.0 and ci.estimate == 1.0


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"level": 1.0}, r"level must be a number strictly between 0 and 1, got 1.0"),
        ({"resamples": 0}, r"resamples must be a positive int"),
        ({"resamples": 20}, r"resamples=20 is too few for a 95% interval; need at least 40"),
        ({"seed": -1}, r"seed must be a non-negative int"),
        ({"names": ["latency_p50_ms"]}, r"is a latency metric"),
    ],
)
def test_bad_options_are_refused(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(MetricError, match=message):
        bootstrap_intervals([0, 1, 1], [0, 1, 0], task_kind="binary", labels="ny", **kwargs)  # type: ignore[arg-type]


def test_paired_inputs_must_cover_the_same_samples() -> None:
    with pytest.raises(MetricError, match="inconsistent numbers of samples"):
        paired_bootstrap_intervals([0, 1, 1], [0, 1, 0], [0, 1], task_kind="binary", labels="ny")


def test_every_counted_metric_can_be_bootstrapped() -> None:
    names = [n for n in METRICS.names() if METRICS.get(n).from_counts is not None and "binary" in METRICS.get(n).task_kinds]
    y = np.array([0, 1, 1, 0, 1, 0, 0, 1] * 10)
    cis = bootstrap_intervals(y, np.roll(y, 1), task_kind="binary", labels="ny", names=names)
    assert set(cis) == set(names)
