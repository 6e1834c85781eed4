"""Classification metrics over one confusion-count core.

Every metric here is a formula over ``ConfusionCounts``: per class, the true positives ``tp``, the
predicted positives ``pred = tp + fp`` and the support ``true = tp + fn``, plus the number of samples
whose whole prediction is right. The counts come from one ``np.bincount`` over
``true_label * C + predicted_label`` (a C x C confusion matrix), or from column sums of 0/1
indicator matrices for multilabel tasks. The public functions take scikit-learn's arguments and give
its answers (sklearn is the oracle in the tests); ``compute_metrics`` scores raw model outputs once
for every registered name.

Names without a unit suffix are higher-is-better ratios: ``accuracy``, ``precision_macro``,
``recall_weighted``, ``f1_micro``, ``top_k_accuracy``, ``f1_per_class`` and so on.
"""
from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from mmstd.errors import MetricError
from mmstd.metrics import METRICS, TASK_KINDS, MetricSpec, TaskKind, register_metric

Average = Literal["macro", "micro", "weighted", "binary"] | None
OutputKind = Literal["probabilities", "logits"]

_AVERAGES: tuple[Average, ...] = ("macro", "micro", "weighted", "binary", None)
_ZERO_DIVISIONS = "{0.0, 1.0, nan}"
# Largest dense confusion matrix (cells) built with one bincount; beyond it counts use three bincounts.
_DENSE_CELLS = 1 << 22
#: k values ``compute_metrics`` reports top-k accuracy for when not told (those below the class count).
DEFAULT_TOP_K = (2, 5)


# ------------------------------------------------------------------------------------- the core


@dataclass(frozen=True, slots=True, eq=False)
class ConfusionCounts:
    """Per-class confusion counts: the single core every classification metric is computed from.

    Arrays may carry leading batch axes (one row per bootstrap resample); the class axis is last.

    Attributes:
        tp: Samples of the class that were predicted as the class.
        pred: Samples predicted as the class, ``tp + fp``.
        true: Samples of the class (the support), ``tp + fn``.
        correct: Samples whose whole prediction is right (multilabel: every label right).
        n: Samples counted.
    """

    tp: np.ndarray
    pred: np.ndarray
    true: np.ndarray
    correct: np.ndarray
    n: int

    @property
    def fp(self) -> np.ndarray:
        return self.pred - self.tp

    @property
    def fn(self) -> np.ndarray:
        return self.true - self.tp

    @property
    def support(self) -> np.ndarray:
        return self.true

    @classmethod
    def from_confusion(cls, cm: np.ndarray, *, select: np.ndarray | None = None) -> ConfusionCounts:
        """Counts from confusion matrices ``cm[..., true, pred]``; ``select`` keeps some classes.

        ``correct`` (the trace) and ``n`` always cover every class in ``cm``.
        """
        diag = np.diagonal(cm, axis1=-2, axis2=-1)
        pred, true = cm.sum(axis=-2), cm.sum(axis=-1)
        correct = diag.sum(axis=-1)
        n = int(true.reshape(-1, true.shape[-1])[0].sum()) if true.size else 0
        if select is not None:
            diag, pred, true = diag[..., select], pred[..., select], true[..., select]
        return cls(tp=diag.copy(), pred=pred, true=true, correct=correct, n=n)

    @classmethod
    def from_indicators(cls, y_true: np.ndarray, y_pred: np.ndarray) -> ConfusionCounts:
        """Counts from 0/1 indicator matrices ``[n, C]`` (multilabel: each column is a class)."""
        t, p = y_true.astype(bool, copy=False), y_pred.astype(bool, copy=False)
        return cls(
            tp=np.count_nonzero(t & p, axis=0),
            pred=np.count_nonzero(p, axis=0),
            true=np.count_nonzero(t, axis=0),
            correct=np.asarray(np.count_nonzero((t == p).all(axis=1))),
            n=t.shape[0],
        )


def _pair_counts(t: np.ndarray, p: np.ndarray, k: int) -> np.ndarray:
    """``cm[i, j]``: samples with code ``i`` in ``t`` and ``j`` in ``p``; codes in ``[0, k)``."""
    code = t * k
    code += p
    return np.bincount(code, minlength=k * k).reshape(k, k)


def _universe_counts(t: np.ndarray, p: np.ndarray, k: int) -> tuple[ConfusionCounts, np.ndarray | None]:
    """Counts for every code in ``[0, k)``, and the dense confusion matrix when it is small enough."""
    if k * k <= _DENSE_CELLS:
        cm = _pair_counts(t, p, k)
        return ConfusionCounts.from_confusion(cm), cm
    hit = t == p
    tp = np.bincount(t[hit], minlength=k)
    counts = ConfusionCounts(
        tp=tp, pred=np.bincount(p, minlength=k), true=np.bincount(t, minlength=k),
        correct=np.asarray(np.count_nonzero(hit)), n=t.shape[0],
    )
    return counts, None


# ------------------------------------------------------------------------- argument checking


def _check_average(average: object) -> None:
    if average not in _AVERAGES or (average is not None and not isinstance(average, str)):
        raise MetricError(
            f"average must be one of {{'macro', 'micro', 'weighted', 'binary', None}}, got {average!r}.",
            hint="use 'macro' for the unweighted class mean, or None for one value per class.",
        )


def _check_zero_division(zero_division: object) -> float:
    if isinstance(zero_division, bool) or not isinstance(zero_division, int | float):
        ok = False
    else:
        ok = zero_division in (0, 1) or math.isnan(zero_division)
    if not ok:
        raise MetricError(f"zero_division must be one of {_ZERO_DIVISIONS}, got {zero_division!r}.")
    return float(zero_division)  # type: ignore[arg-type]


def _column(y: npt.ArrayLike, name: str) -> np.ndarray:
    a = np.asarray(y)
    if a.ndim == 2 and a.shape[1] == 1:
        a = a[:, 0]  # a column vector is 1-D labels, as in sklearn's column_or_1d
    if a.ndim not in (1, 2):
        raise MetricError(
            f"{name} must be 1-D labels or a 2-D 0/1 indicator matrix (multilabel), got shape {a.shape}."
        )
    return a


def _integral(a: np.ndarray, name: str) -> np.ndarray:
    """Integer-valued labels as an integer array; strings and objects pass through."""
    if a.dtype.kind == "b":
        return a.astype(np.intp)
    if a.dtype.kind == "u":
        return a.astype(np.int64)
    if a.dtype.kind == "f":
        if not np.all(np.isfinite(a)) or not np.array_equal(a, np.floor(a)):
            bad = a[~(np.isfinite(a) & (a == np.floor(a)))][0]
            raise MetricError(
                f"{name} holds non-integer values (e.g. {bad.item()!r}); classification metrics take class labels.",
                hint="pass raw scores to compute_metrics (it applies argmax or the threshold), "
                "or convert them with to_predictions first.",
            )
        return a.astype(np.int64)
    return a


def _check_targets(y_true: npt.ArrayLike, y_pred: npt.ArrayLike) -> tuple[str, np.ndarray, np.ndarray]:
    """Return ``(kind, t, p)``: ``"multiclass"`` with 1-D labels or ``"multilabel"`` with 2-D bools."""
    t, p = _column(y_true, "y_true"), _column(y_pred, "y_pred")
    if t.shape[0] != p.shape[0]:
        raise MetricError(f"Found input variables with inconsistent numbers of samples: [{t.shape[0]}, {p.shape[0]}].")
    if t.shape[0] == 0:
        raise MetricError("Found empty input array (y_true, y_pred) while a minimum of 1 sample is required.")
    if t.ndim != p.ndim:
        kinds = ["multilabel-indicator" if a.ndim == 2 else "multiclass" for a in (t, p)]
        raise MetricError(f"Classification metrics can't handle a mix of {kinds[0]} and {kinds[1]} targets.")
    if t.ndim == 2:
        if t.shape != p.shape:
            raise MetricError(f"y_true and y_pred must have the same shape, got {t.shape} and {p.shape}.")
        for name, a in (("y_true", t), ("y_pred", p)):
            if a.dtype.kind != "b" and not np.all((a == 0) | (a == 1)):
                raise MetricError(f"{name} is 2-D but not a 0/1 indicator matrix; multilabel targets are 0/1.")
        return "multilabel", t.astype(bool, copy=False), p.astype(bool, copy=False)
    t, p = _integral(t, "y_true"), _integral(p, "y_pred")
    if (t.dtype.kind in "iu") != (p.dtype.kind in "iu"):
        raise MetricError("Mix of label input types (string and number) in y_true and y_pred.")
    return "multiclass", t, p


@dataclass(frozen=True, slots=True, eq=False)
class _Encoded:
    """1-D targets counted over a universe of label values (present labels plus requested ones)."""

    counts: ConfusionCounts  # over the whole universe
    cm: np.ndarray | None  # dense [U, U] when small enough
    values: np.ndarray  # label value of each universe index, sorted
    present: np.ndarray  # bool [U]: seen in y_true or y_pred
    codes: tuple[np.ndarray, np.ndarray] | None  # universe codes of y_true, y_pred when cm is None


def _encode(t: np.ndarray, p: np.ndarray, labels: np.ndarray | None) -> _Encoded:
    extra = labels if labels is not None else np.empty(0, dtype=t.dtype)
    if extra.size and (extra.dtype.kind in "iu") != (t.dtype.kind in "iu"):
        raise MetricError("Mix of label input types (string and number) in labels and y_true.")
    high = _max_if_nonnegative(t, p, extra) if t.dtype.kind in "iu" else None
    # Small non-negative integer labels are their own codes: no sort, no searchsorted.
    if high is not None and (high + 1) ** 2 <= _DENSE_CELLS:
        k = high + 1
        cm = _pair_counts(t.astype(np.intp, copy=False), p.astype(np.intp, copy=False), k)
        counts = ConfusionCounts.from_confusion(cm)
        present = (counts.true + counts.pred) > 0
        keep = present.copy()
        keep[extra] = True
        if keep.all():
            return _Encoded(counts, cm, np.arange(k), present, None)
        # Drop codes neither seen nor requested (labels 0 and 5 only: 1..4 are not classes).
        idx = np.flatnonzero(keep)
        cm = cm[np.ix_(idx, idx)]
        return _Encoded(ConfusionCounts.from_confusion(cm), cm, idx, present[idx], None)
    try:
        present_values = np.unique(np.concatenate([t, p]))
        values = np.union1d(present_values, extra) if extra.size else present_values
    except TypeError as err:  # e.g. None among strings
        raise MetricError(f"Labels must be all numbers or all strings: {err}.") from None
    tc, pc = np.searchsorted(values, t), np.searchsorted(values, p)
    counts, dense = _universe_counts(tc, pc, values.size)
    return _Encoded(counts, dense, values, np.isin(values, present_values), None if dense is not None else (tc, pc))


def _max_if_nonnegative(*arrays: np.ndarray) -> int | None:
    """The largest value in integer arrays, or None if any value is negative; one pass each."""
    high = 0
    for a in arrays:
        if a.size == 0:
            continue
        if a.dtype.kind == "u":
            high = max(high, int(a.max()))
            continue
        # Viewed as unsigned, a negative value has its top bit set and becomes the maximum.
        top = int(a.view(np.dtype(f"u{a.dtype.itemsize}")).max())
        if top >> (8 * a.dtype.itemsize - 1):
            return None
        high = max(high, top)
    return high


def _take(counts: ConfusionCounts, idx: np.ndarray) -> ConfusionCounts:
    return ConfusionCounts(counts.tp[idx], counts.pred[idx], counts.true[idx], counts.correct, counts.n)


def _positions(values: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Universe indices of ``labels``; every label is in the (sorted) universe by construction."""
    return np.searchsorted(values, labels)


def _label_array(labels: npt.ArrayLike | None) -> np.ndarray | None:
    if labels is None:
        return None
    a = np.asarray(labels)
    if a.ndim != 1 or a.size == 0:
        raise MetricError(f"labels must be a non-empty 1-D sequence, got {labels!r}.")
    return _integral(a, "labels")


def _set_wise_counts(
    y_true: npt.ArrayLike,
    y_pred: npt.ArrayLike,
    *,
    average: Average,
    labels: npt.ArrayLike | None,
    pos_label: Any,
) -> ConfusionCounts:
    """The counts a precision/recall/F1 call needs, for the labels it reports on (sklearn's rules)."""
    _check_average(average)
    kind, t, p = _check_targets(y_true, y_pred)
    wanted = _label_array(labels)
    if kind == "multilabel":
        if average == "binary":
            raise MetricError(
                "Target is multilabel-indicator but average='binary'. Please choose another average "
                "setting, one of [None, 'micro', 'macro', 'weighted']."
            )
        counts = ConfusionCounts.from_indicators(t, p)
        if wanted is None:
            return counts
        n_labels = t.shape[1]
        if wanted.dtype.kind not in "iu" or wanted.min() < 0 or wanted.max() >= n_labels:
            raise MetricError(
                f"All labels must be in [0, n labels) for multilabel targets; got {wanted.tolist()} "
                f"with {n_labels} labels."
            )
        return _take(counts, wanted)
    if average == "binary":
        enc = _encode(t, p, None)
        present = enc.values[enc.present]
        if present.size > 2:
            raise MetricError(
                "Target is multiclass but average='binary'. Please choose another average setting, "
                "one of [None, 'micro', 'macro', 'weighted']."
            )
        if pos_label not in present.tolist():
            if present.size == 2:
                raise MetricError(
                    f"pos_label={pos_label!r} is not a valid label. It should be one of {present.tolist()}."
                )
            # One class seen: the positive class is absent and counts zero, as in sklearn.
            enc = _encode(t, p, _integral(np.asarray([pos_label]), "pos_label"))
        return _take(enc.counts, np.searchsorted(enc.values, [pos_label]))
    enc = _encode(t, p, wanted)
    if wanted is None:
        return _take(enc.counts, np.flatnonzero(enc.present))
    return _take(enc.counts, _positions(enc.values, wanted))


# ------------------------------------------------------------------------------- the formulas


def _divide(num: np.ndarray, den: np.ndarray, zero_division: float) -> np.ndarray:
    num, den = np.asarray(num, dtype=np.float64), np.asarray(den, dtype=np.float64)
    zero = den == 0
    out = num / np.where(zero, 1.0, den)
    return np.where(zero, zero_division, out) if zero.any() else out


def _nanmean(v: np.ndarray) -> np.ndarray:
    nan = np.isnan(v)
    if not nan.any():
        return v.mean(axis=-1)
    kept = (~nan).sum(axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(kept > 0, np.where(nan, 0.0, v).sum(axis=-1) / kept, np.nan)


def _weighted(v: np.ndarray, weights: np.ndarray) -> np.ndarray:
    # sklearn's _nanaverage: undefined (NaN) classes drop out; all-zero weights fall back to the plain mean.
    nan = np.isnan(v)
    w = np.where(nan, 0.0, weights.astype(np.float64))
    total = w.sum(axis=-1)
    mean = (np.where(nan, 0.0, v) * w).sum(axis=-1) / np.where(total == 0, 1.0, total)
    return np.where(total == 0, _nanmean(v), mean)


def _reduce(num: np.ndarray, den: np.ndarray, counts: ConfusionCounts, average: Average, zero_division: float) -> np.ndarray:
    if average == "micro":
        return _divide(num.sum(axis=-1), den.sum(axis=-1), zero_division)
    per_class = _divide(num, den, zero_division)
    if average is None:
        return per_class
    if average == "binary":
        # The positive class is the last one: the only one a binary call counts, and index 1 of
        # the full [negative, positive] counts compute_metrics passes.
        return per_class[..., -1]
    if average == "macro":
        return _nanmean(per_class)
    return _weighted(per_class, counts.true)


def _accuracy_from_counts(counts: ConfusionCounts, **_: Any) -> np.ndarray:
    return np.asarray(counts.correct, dtype=np.float64) / counts.n


def _precision_from_counts(counts: ConfusionCounts, *, average: Average, zero_division: float = 0.0) -> np.ndarray:
    return _reduce(counts.tp, counts.pred, counts, average, zero_division)


def _recall_from_counts(counts: ConfusionCounts, *, average: Average, zero_division: float = 0.0) -> np.ndarray:
    return _reduce(counts.tp, counts.true, counts, average, zero_division)


def _f1_from_counts(counts: ConfusionCounts, *, average: Average, zero_division: float = 0.0) -> np.ndarray:
    # 2TP / (2TP + FP + FN) = 2TP / (pred + true): sklearn's form, defined even where P + R = 0.
    return _reduce(2 * counts.tp, counts.pred + counts.true, counts, average, zero_division)


def _result(value: np.ndarray) -> float | np.ndarray:
    return float(value) if np.ndim(value) == 0 else value


# ---------------------------------------------------------------------------- public metrics


def class_counts(y_true: npt.ArrayLike, y_pred: npt.ArrayLike, *, labels: npt.ArrayLike | None = None) -> ConfusionCounts:
    """Per-class confusion counts, the core of every metric in this module.

    Classes are ``labels`` in the given order, or else the sorted labels present in either array
    (multilabel: the indicator columns).

    Examples:
        >>> c = class_counts([0, 1, 1, 2], [0, 1, 0, 0])
        >>> c.tp.tolist(), c.fp.tolist(), c.fn.tolist(), c.support.tolist()
        ([1, 1, 0], [2, 0, 0], [0, 1, 1], [1, 2, 1])
    """
    return _set_wise_counts(y_true, y_pred, average=None, labels=labels, pos_label=1)


def accuracy_score(y_true: npt.ArrayLike, y_pred: npt.ArrayLike) -> float:
    """Accuracy, (samples predicted exactly right) / n: the trace of the confusion matrix over n.

    Multilabel: subset accuracy, a sample counts only if every label is right.

    Examples:
        >>> accuracy_score([0, 1, 2, 2], [0, 2, 2, 2])
        0.75
        >>> accuracy_score([[0, 1], [1, 1]], [[0, 1], [1, 0]])
        0.5
    """
    kind, t, p = _check_targets(y_true, y_pred)
    # The trace alone: comparing the two arrays is 10x cheaper than building the whole matrix.
    correct = np.count_nonzero((t == p).all(axis=1)) if kind == "multilabel" else np.count_nonzero(t == p)
    return float(correct / t.shape[0])


def precision_score(
    y_true: npt.ArrayLike,
    y_pred: npt.ArrayLike,
    *,
    average: Average = "macro",
    labels: npt.ArrayLike | None = None,
    zero_division: float = 0.0,
    pos_label: Any = 1,
) -> float | np.ndarray:
    """Precision, TP / (TP + FP), per class and then averaged.

    ``average``: ``"macro"`` (unweighted mean over classes), ``"micro"`` (sum TP / sum (TP + FP)
    over classes), ``"weighted"`` (mean weighted by support), ``"binary"`` (the ``pos_label``
    class only) or ``None`` (one value per class). A class never predicted scores
    ``zero_division`` (0.0, 1.0 or NaN; NaN classes are left out of averages).

    Examples:
        >>> precision_score([0, 1, 1, 2], [0, 1, 0, 2])
        0.8333333333333334
        >>> precision_score([0, 1, 1, 2], [0, 1, 0, 2], average=None)
        array([0.5, 1. , 1. ])
    """
    zd = _check_zero_division(zero_division)
    counts = _set_wise_counts(y_true, y_pred, average=average, labels=labels, pos_label=pos_label)
    return _result(_precision_from_counts(counts, average=average, zero_division=zd))


def recall_score(
    y_true: npt.ArrayLike,
    y_pred: npt.ArrayLike,
    *,
    average: Average = "macro",
    labels: npt.ArrayLike | None = None,
    zero_division: float = 0.0,
    pos_label: Any = 1,
) -> float | np.ndarray:
    """Recall, TP / (TP + FN), per class and then averaged.

    ``average`` as for ``precision_score``; macro recall is balanced accuracy. A class with no
    true samples scores ``zero_division``.

    Examples:
        >>> recall_score([0, 1, 1], [0, 1, 0])
        0.75
        >>> recall_score([0, 1, 1], [0, 1, 0], average="micro")
        0.6666666666666666
    """
    zd = _check_zero_division(zero_division)
    counts = _set_wise_counts(y_true, y_pred, average=average, labels=labels, pos_label=pos_label)
    return _result(_recall_from_counts(counts, average=average, zero_division=zd))


def f1_score(
    y_true: npt.ArrayLike,
    y_pred: npt.ArrayLike,
    *,
    average: Average = "macro",
    labels: npt.ArrayLike | None = None,
    zero_division: float = 0.0,
    pos_label: Any = 1,
) -> float | np.ndarray:
    """F1, the harmonic mean of precision and recall: 2 TP / (2 TP + FP + FN), per class, averaged.

    ``average`` as for ``precision_score``; micro F1 is 2 sum TP / (2 sum TP + sum FP + sum FN).
    A class that is neither present nor predicted scores ``zero_division``.

    Examples:
        >>> f1_score([0, 1, 1, 2], [0, 1, 0, 2])
        0.7777777777777777
        >>> f1_score([0, 1, 1, 0], [0, 1, 0, 0], average="binary")
        0.6666666666666666
    """
    zd = _check_zero_division(zero_division)
    counts = _set_wise_counts(y_true, y_pred, average=average, labels=labels, pos_label=pos_label)
    return _result(_f1_from_counts(counts, average=average, zero_division=zd))


def confusion_matrix(
    y_true: npt.ArrayLike,
    y_pred: npt.ArrayLike,
    *,
    labels: npt.ArrayLike | None = None,
    normalize: Literal["true", "pred", "all"] | None = None,
) -> np.ndarray:
    """Counts ``cm[i, j]`` of samples whose true label is ``labels[i]`` and predicted ``labels[j]``.

    Samples with a label outside ``labels`` are left out. ``normalize`` divides by row sums
    (``"true"``), column sums (``"pred"``) or the total (``"all"``); empty rows stay 0.

    Examples:
        >>> confusion_matrix([0, 1, 1, 2], [0, 1, 0, 2])
        array([[1, 0, 0],
               [1, 1, 0],
               [0, 0, 1]])
    """
    if normalize not in ("true", "pred", "all", None):
        raise MetricError(f"normalize must be one of {{'true', 'pred', 'all', None}}, got {normalize!r}.")
    kind, t, p = _check_targets(y_true, y_pred)
    if kind == "multilabel":
        raise MetricError(
            "confusion_matrix takes 1-D labels; for multilabel indicators use multilabel_confusion_matrix."
        )
    wanted = _label_array(labels)
    enc = _encode(t, p, wanted)
    idx = np.flatnonzero(enc.present) if wanted is None else _positions(enc.values, wanted)
    if enc.cm is not None:
        # Keeping the rows and columns of `labels` drops exactly the samples with other labels.
        cm = enc.cm if idx.size == enc.values.size and wanted is None else enc.cm[np.ix_(idx, idx)]
    else:
        assert enc.codes is not None
        lut = np.full(enc.values.size, -1, dtype=np.intp)
        lut[idx] = np.arange(idx.size)
        a, b = lut[enc.codes[0]], lut[enc.codes[1]]
        keep = (a >= 0) & (b >= 0)
        cm = _pair_counts(a[keep], b[keep], idx.size)
    cm = cm.astype(np.int64, copy=False)
    if normalize is None:
        return cm
    with np.errstate(invalid="ignore", divide="ignore"):
        if normalize == "true":
            out = cm / cm.sum(axis=1, keepdims=True)
        elif normalize == "pred":
            out = cm / cm.sum(axis=0, keepdims=True)
        else:
            out = cm / cm.sum()
    return np.nan_to_num(out)


def multilabel_confusion_matrix(
    y_true: npt.ArrayLike, y_pred: npt.ArrayLike, *, labels: npt.ArrayLike | None = None
) -> np.ndarray:
    """One-vs-rest 2 x 2 matrices per class, ``[[tn, fp], [fn, tp]]``, shape ``[C, 2, 2]``.

    Examples:
        >>> multilabel_confusion_matrix([[1, 0], [0, 1]], [[1, 1], [0, 1]]).tolist()
        [[[1, 0], [0, 1]], [[0, 1], [0, 1]]]
    """
    c = _set_wise_counts(y_true, y_pred, average=None, labels=labels, pos_label=1)
    tn = c.n - c.pred - c.true + c.tp
    return np.stack([tn, c.fp, c.fn, c.tp], axis=-1).reshape(-1, 2, 2).astype(np.int64)


def _count_per_row(mask: np.ndarray) -> np.ndarray:
    # A float32 matrix-vector product counts 3x faster than sum(axis=1) over a short axis; exact
    # while a row holds fewer than 2**24 classes.
    return (mask.astype(np.float32) @ np.ones(mask.shape[1], dtype=np.float32)).astype(np.int64)


def _true_class_rank(positions: np.ndarray, y_score: np.ndarray) -> np.ndarray:
    """Per sample, how many classes rank above the true one (0 = top-1 hit).

    Ties rank the higher class index first, as sklearn's reversed stable argsort does. Ranks are
    counted, not sorted: O(n C), and computed once for every k.
    """
    own = np.take_along_axis(y_score, positions[:, None], axis=1)
    rank = _count_per_row(y_score > own)
    tied = np.flatnonzero(_count_per_row(y_score == own) > 1)  # the true class always equals itself
    if tied.size:
        after = np.arange(y_score.shape[1]) > positions[tied, None]
        rank[tied] += np.count_nonzero((y_score[tied] == own[tied]) & after, axis=1)
    return rank


def _check_scores(y_score: npt.ArrayLike, n: int | None = None) -> np.ndarray:
    s = np.asarray(y_score)
    if s.ndim != 2 or s.dtype.kind not in "fiu":
        raise MetricError(f"y_score must be numeric scores of shape (n_samples, n_classes), got shape {s.shape}.")
    if n is not None and s.shape[0] != n:
        raise MetricError(f"Found input variables with inconsistent numbers of samples: [{n}, {s.shape[0]}].")
    if not np.all(np.isfinite(s)):
        raise MetricError("y_score holds NaN or Inf.", code="E_NONFINITE_OUTPUT")
    return s


def top_k_accuracy_score(
    y_true: npt.ArrayLike, y_score: npt.ArrayLike, *, k: int = 2, labels: npt.ArrayLike | None = None
) -> float:
    """Top-k accuracy: the share of samples whose true class is among the k highest scores.

    ``y_score[:, j]`` scores ``labels[j]`` (default: the sorted labels of ``y_true``, which must
    then cover every column). Ties rank the higher column first, as in scikit-learn.

    Examples:
        >>> top_k_accuracy_score([0, 1, 2, 2], [[.5, .2, .2], [.3, .4, .2], [.2, .4, .3], [.7, .2, .1]], k=2)
        0.75
    """
    if isinstance(k, bool) or not isinstance(k, int | np.integer) or k < 1:
        raise MetricError(f"k must be a positive int, got {k!r}.")
    t = _integral(_column(y_true, "y_true"), "y_true")
    if t.ndim != 1:
        raise MetricError(f"y_true must be 1-D labels for top-k accuracy, got shape {t.shape}.")
    if t.shape[0] == 0:
        raise MetricError("Found empty input array (y_true) while a minimum of 1 sample is required.")
    s = _check_scores(y_score, t.shape[0])
    wanted = _label_array(labels)
    if wanted is None:
        classes = np.unique(t)
        if classes.size != s.shape[1]:
            raise MetricError(
                f"Number of classes in 'y_true' ({classes.size}) not equal to the number of classes in "
                f"'y_score' ({s.shape[1]}). You can provide a list of all known classes by assigning it to "
                "the `labels` parameter."
            )
    else:
        classes = wanted
        if np.unique(classes).size != classes.size:
            raise MetricError("Parameter 'labels' must be unique.")
        if np.any(classes[1:] < classes[:-1]):
            raise MetricError("Parameter 'labels' must be ordered.")
        if classes.size != s.shape[1]:
            raise MetricError(
                f"Number of given labels ({classes.size}) not equal to the number of classes in 'y_score' ({s.shape[1]})."
            )
    pos = np.minimum(np.searchsorted(classes, t), classes.size - 1)
    if not np.array_equal(classes[pos], t):
        raise MetricError("'y_true' contains labels not in parameter 'labels'.")
    return float(np.count_nonzero(_true_class_rank(pos, s) < k) / t.shape[0])


# ------------------------------------------------------------------- raw outputs and the lot


def to_predictions(
    outputs: npt.ArrayLike,
    *,
    task_kind: TaskKind,
    output_kind: OutputKind = "probabilities",
    threshold: float | None = None,
) -> np.ndarray:
    """Turn a model's raw outputs into predicted labels (indices) or 0/1 indicators.

    Integer or boolean arrays are already predictions and pass through. Float arrays are scores:

    - multiclass ``[n, C]``: the argmax (probabilities and logits share it; the first maximum wins).
    - binary ``[n, 2]``: the argmax; ``[n]`` or ``[n, 1]``: the positive class's score, positive
      when ``score > threshold``.
    - multilabel ``[n, C]``: label ``j`` is on when ``score[:, j] > threshold``.

    ``threshold`` defaults to 0.5 for probabilities and 0.0 for logits; a logit is above 0 exactly
    when its sigmoid is above 0.5, so logits are never squashed (no overflow, no rounding at the
    boundary).

    Examples:
        >>> to_predictions([[0.1, 0.7, 0.2], [0.5, 0.3, 0.2]], task_kind="multiclass").tolist()
        [1, 0]
        >>> to_predictions([[-1.2], [0.3]], task_kind="binary", output_kind="logits").tolist()
        [0, 1]
    """
    if task_kind not in TASK_KINDS:
        raise MetricError(f"task_kind must be one of {{'multiclass', 'binary', 'multilabel'}}, got {task_kind!r}.")
    if output_kind not in ("probabilities", "logits"):
        raise MetricError(f"output_kind must be one of {{'probabilities', 'logits'}}, got {output_kind!r}.")
    a = np.asarray(outputs)
    if a.dtype.kind in "biu":
        return a.astype(np.int64) if a.dtype.kind != "b" else a
    if a.dtype.kind != "f":
        raise MetricError(f"Model outputs must be numbers, got dtype {a.dtype}.")
    if not np.all(np.isfinite(a)):
        raise MetricError("Model outputs hold NaN or Inf; they cannot be scored.", code="E_NONFINITE_OUTPUT")
    cut = threshold if threshold is not None else (0.5 if output_kind == "probabilities" else 0.0)
    if task_kind == "multiclass":
        if threshold is not None:
            raise MetricError("threshold applies to binary and multilabel outputs; multiclass takes the argmax.")
        if a.ndim != 2:
            raise MetricError(f"Multiclass outputs must have shape (n, n_classes), got {a.shape}.")
        return a.argmax(axis=1)
    if task_kind == "binary":
        if a.ndim == 2 and a.shape[1] == 2:
            return a.argmax(axis=1)
        if a.ndim == 1 or (a.ndim == 2 and a.shape[1] == 1):
            return (a.reshape(-1) > cut).astype(np.int64)
        raise MetricError(f"Binary outputs must have shape (n,), (n, 1) or (n, 2), got {a.shape}.")
    if a.ndim != 2:
        raise MetricError(f"Multilabel outputs must have shape (n, n_labels), got {a.shape}.")
    return a > cut


@dataclass(frozen=True, slots=True, eq=False)
class _Prepared:
    """Validated targets for one task: label codes in ``[0, C)`` (or bool indicators) and scores."""

    task_kind: str
    n_classes: int
    y_true: np.ndarray
    y_pred: np.ndarray
    y_score: np.ndarray | None  # multiclass/binary [n, C] scores, for top-k
    zero_division: float

    @property
    def n(self) -> int:
        return int(self.y_true.shape[0])

    def confusion(self) -> np.ndarray:
        """``[C, C]`` counts, rows true, columns predicted (multiclass and binary)."""
        return _pair_counts(self.y_true, self.y_pred, self.n_classes).astype(np.int64, copy=False)

    def counts(self, cm: np.ndarray | None = None) -> ConfusionCounts:
        if self.task_kind == "multilabel":
            return ConfusionCounts.from_indicators(self.y_true, self.y_pred)
        return ConfusionCounts.from_confusion(self.confusion() if cm is None else cm)

    def take(self, idx: np.ndarray) -> _Prepared:
        score = self.y_score[idx] if self.y_score is not None else None
        return _Prepared(self.task_kind, self.n_classes, self.y_true[idx], self.y_pred[idx], score, self.zero_division)


def _check_codes(a: np.ndarray, name: str, n_classes: int, labels: Sequence[Any], task_kind: str) -> np.ndarray:
    if task_kind == "multilabel":
        if a.ndim != 2 or a.shape[1] != n_classes:
            raise MetricError(f"{name} must be a 0/1 matrix of shape (n, {n_classes}) for {n_classes} labels, got {a.shape}.")
        if a.dtype.kind != "b" and not np.all((a == 0) | (a == 1)):
            raise MetricError(f"{name} must hold 0/1 indicators for a multilabel task.", code="E_DATASET_VALUE")
        return a.astype(bool, copy=False)
    if a.ndim == 2 and a.shape[1] == 1:
        a = a[:, 0]
    if a.ndim != 1:
        raise MetricError(f"{name} must be 1-D class indices for a {task_kind} task, got shape {a.shape}.")
    a = _integral(a, name)
    if a.dtype.kind not in "iu":
        raise MetricError(f"{name} must hold class indices 0..{n_classes - 1}, got {a.dtype} values.")
    if a.size and (a.min() < 0 or a.max() >= n_classes):
        bad = a[(a < 0) | (a >= n_classes)][0]
        raise MetricError(
            f"{name} holds class index {int(bad)} outside 0..{n_classes - 1} ({n_classes} labels: "
            f"{', '.join(map(str, labels))}).",
            code="E_DATASET_VALUE",
        )
    return a.astype(np.intp, copy=False)


def _prepare(
    y_true: npt.ArrayLike,
    y_score_or_pred: npt.ArrayLike,
    *,
    task_kind: TaskKind,
    labels: Sequence[Any],
    output_kind: OutputKind,
    threshold: float | None,
    zero_division: float,
) -> _Prepared:
    if task_kind not in TASK_KINDS:
        raise MetricError(f"task_kind must be one of {{'multiclass', 'binary', 'multilabel'}}, got {task_kind!r}.")
    labels = list(labels)
    n_classes = len(labels)
    if n_classes == 0 or (task_kind == "binary" and n_classes != 2):
        raise MetricError(f"A {task_kind} task needs {'2' if task_kind == 'binary' else 'at least 1'} labels, got {labels!r}.")
    zd = _check_zero_division(zero_division)
    raw = np.asarray(y_score_or_pred)
    t = _check_codes(np.asarray(y_true), "y_true", n_classes, labels, task_kind)
    if t.shape[0] == 0:
        raise MetricError("y_true is empty; metrics need at least one sample.", code="E_DATASET_EMPTY")
    if raw.shape[:1] != t.shape[:1]:
        raise MetricError(f"Found input variables with inconsistent numbers of samples: [{t.shape[0]}, {raw.shape[:1]}].")
    score = None
    if raw.dtype.kind == "f" and task_kind != "multilabel" and raw.ndim == 2 and raw.shape[1] > 1:
        if raw.shape[1] != n_classes:
            raise MetricError(
                f"Outputs have {raw.shape[1]} columns but the task has {n_classes} labels.", code="E_IO_CONTRACT"
            )
        score = raw
    pred = to_predictions(raw, task_kind=task_kind, output_kind=output_kind, threshold=threshold)
    p = _check_codes(pred, "predictions", n_classes, labels, task_kind)
    return _Prepared(task_kind, n_classes, t, p, score, zd)


@dataclass(frozen=True, slots=True)
class _Planned:
    """One value to compute: an output key, its spec and the options bound for it."""

    key: str
    spec: MetricSpec
    params: Mapping[str, Any]

    @property
    def per_class(self) -> bool:
        return self.spec.averaging == "per_class"

    @property
    def counted(self) -> bool:
        return self.spec.from_counts is not None and self.spec.inputs == "labels"


def _plan(prep: _Prepared, names: Iterable[str] | None, top_k: Sequence[int] | None) -> list[_Planned]:
    explicit = names is not None
    specs: list[MetricSpec] = []
    for name in (names if names is not None else METRICS.names()):
        spec = METRICS.get(name)
        if spec.inputs == "latencies":
            if explicit:
                raise MetricError(f"{name!r} is a latency metric; compute it with latency_stats, not compute_metrics.")
            continue
        if prep.task_kind not in spec.task_kinds:
            if explicit:
                raise MetricError(
                    f"Metric {name!r} is not defined for a {prep.task_kind} task "
                    f"(it supports: {', '.join(sorted(spec.task_kinds))})."
                )
            continue
        if spec.inputs == "scores" and prep.y_score is None:
            if explicit:
                raise MetricError(f"Metric {name!r} needs per-class scores, but the outputs are predicted labels.")
            continue
        specs.append(spec)
    plan: list[_Planned] = []
    for spec in specs:
        if spec.name == "top_k_accuracy":
            # Reports key top-k by its k (top_2_accuracy, top_5_accuracy): one value per k.
            ks = [k for k in DEFAULT_TOP_K if k < prep.n_classes] if top_k is None else list(top_k)
            for k in ks:
                if isinstance(k, bool) or not isinstance(k, int) or k < 1:
                    raise MetricError(f"top_k values must be positive ints, got {k!r}.")
                plan.append(_Planned(f"top_{k}_accuracy", spec, {**spec.params, "k": k}))
        else:
            plan.append(_Planned(spec.name, spec, dict(spec.params)))
    return plan


def _rank(prep: _Prepared, cache: dict[str, Any]) -> np.ndarray:
    if "rank" not in cache:
        assert prep.y_score is not None
        cache["rank"] = _true_class_rank(prep.y_true, prep.y_score)
    return cache["rank"]


def _evaluate(prep: _Prepared, item: _Planned, counts: ConfusionCounts, cache: dict[str, Any]) -> Any:
    """One planned value on ``prep``; ``counts`` must be ``prep.counts()``, ``cache`` per ``prep``."""
    spec = item.spec
    if item.counted:
        assert spec.from_counts is not None
        return _result(spec.from_counts(counts, zero_division=prep.zero_division, **item.params))
    if spec.name == "top_k_accuracy":
        return float(np.count_nonzero(_rank(prep, cache) < item.params["k"]) / prep.n)
    if spec.inputs == "scores":
        return spec.fn(prep.y_true, prep.y_score, labels=np.arange(prep.n_classes), **item.params)
    return spec.fn(prep.y_true, prep.y_pred, **item.params)


def compute_metrics(
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
) -> dict[str, Any]:
    """Score a model's raw outputs once for every registered classification metric.

    Args:
        y_true: Class indices ``[n]`` into ``labels`` (multiclass, binary) or a 0/1 matrix
            ``[n, C]`` (multilabel).
        y_score_or_pred: Raw outputs (float: probabilities or logits, see ``to_predictions``
            for shapes and thresholds) or predictions (int/bool: indices or 0/1 indicators).
        task_kind: The card's task kind.
        labels: The card's ordered label names; ``C = len(labels)`` (2 for binary, where
            ``labels[1]`` is the positive class).
        names: Registered metric names to compute; default every one defined for ``task_kind``
            (``top_k_accuracy`` only when scores are given).
        output_kind: What float outputs are: ``"probabilities"`` or ``"logits"``.
        threshold: Decision threshold for binary ``[n]``/``[n, 1]`` and multilabel outputs;
            default 0.5 for probabilities, 0.0 for logits.
        top_k: k values for top-k accuracy, each reported as ``top_{k}_accuracy``; default
            ``DEFAULT_TOP_K`` restricted to k < C.
        zero_division: Value of an undefined per-class ratio: 0.0, 1.0 or NaN (left out of
            averages).

    Returns:
        ``{name: float}`` for scalar metrics, ``{name: ndarray[C]}`` for ``*_per_class`` in
        ``labels`` order, plus ``support_per_class`` (true samples per class) and
        ``confusion_matrix`` (``[C, C]``, rows true, columns predicted; multiclass and binary)
        or ``multilabel_confusion_matrix`` (``[C, 2, 2]``, ``[[tn, fp], [fn, tp]]``).

    Raises:
        MetricError: Bad shapes, labels outside ``0..C-1`` (``E_DATASET_VALUE``), NaN/Inf outputs
            (``E_NONFINITE_OUTPUT``), or a metric the task does not define.
        RegistryError: An unknown metric name (with the closest match).

    Examples:
        >>> m = compute_metrics([0, 1, 2, 2], [[.8, .1, .1], [.2, .7, .1], [.1, .5, .4], [.1, .2, .7]],
        ...                     task_kind="multiclass", labels=["cat", "dog", "bird"])
        >>> m["accuracy"], m["f1_macro"], m["top_2_accuracy"]
        (0.75, 0.7777777777777777, 1.0)
        >>> m["confusion_matrix"].tolist()
        [[1, 0, 0], [0, 1, 0], [0, 1, 1]]
    """
    prep = _prepare(
        y_true, y_score_or_pred, task_kind=task_kind, labels=labels, output_kind=output_kind,
        threshold=threshold, zero_division=zero_division,
    )
    plan = _plan(prep, names, top_k)
    cm = prep.confusion() if prep.task_kind != "multilabel" else None
    counts = prep.counts(cm)
    cache: dict[str, Any] = {}
    out: dict[str, Any] = {item.key: _evaluate(prep, item, counts, cache) for item in plan}
    out["support_per_class"] = np.asarray(counts.true, dtype=np.int64)
    if cm is None:
        tn = counts.n - counts.pred - counts.true + counts.tp
        out["multilabel_confusion_matrix"] = np.stack([tn, counts.fp, counts.fn, counts.tp], axis=-1).reshape(-1, 2, 2)
    else:
        out["confusion_matrix"] = cm
    return out


# ------------------------------------------------------------------------------ registration

_STEMS = (
    ("precision", precision_score, _precision_from_counts),
    ("recall", recall_score, _recall_from_counts),
    ("f1", f1_score, _f1_from_counts),
)

register_metric(MetricSpec(
    "accuracy", accuracy_score, higher_is_better=True, unit="ratio", averaging=None, from_counts=_accuracy_from_counts,
))
for _stem, _fn, _from_counts in _STEMS:
    for _average in ("macro", "micro", "weighted"):
        register_metric(MetricSpec(
            f"{_stem}_{_average}", _fn, higher_is_better=True, unit="ratio", averaging=_average,
            params={"average": _average}, from_counts=_from_counts,
        ))
    register_metric(MetricSpec(
        f"{_stem}_binary", _fn, higher_is_better=True, unit="ratio", averaging="binary",
        task_kinds=frozenset({"binary"}), params={"average": "binary"}, from_counts=_from_counts,
    ))
    register_metric(MetricSpec(
        f"{_stem}_per_class", _fn, higher_is_better=True, unit="ratio", averaging="per_class",
        params={"average": None}, from_counts=_from_counts,
    ))
register_metric(MetricSpec(
    "top_k_accuracy", top_k_accuracy_score, higher_is_better=True, unit="ratio", averaging=None,
    task_kinds=frozenset({"multiclass"}), inputs="scores", params={"k": 5},
))
del _stem, _fn, _from_counts, _average

__all__ = [
    "DEFAULT_TOP_K",
    "ConfusionCounts",
    "accuracy_score",
    "class_counts",
    "compute_metrics",
    "confusion_matrix",
    "f1_score",
    "multilabel_confusion_matrix",
    "precision_score",
    "recall_score",
    "to_predictions",
    "top_k_accuracy_score",
]
