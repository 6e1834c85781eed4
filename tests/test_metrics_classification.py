"""Classification metrics against scikit-learn (the oracle), on random and edge-case inputs."""
from __future__ import annotations

import doctest
import subprocess
import sys
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

skm = pytest.importorskip("sklearn.metrics")

import mmstd.metrics as metrics_pkg  # noqa: E402
from mmstd.errors import MetricError, RegistryError  # noqa: E402
from mmstd.metrics import METRICS, MetricSpec, register_metric  # noqa: E402
from mmstd.metrics import classification as cls  # noqa: E402
from mmstd.metrics.classification import (  # noqa: E402
    accuracy_score,
    class_counts,
    compute_metrics,
    confusion_matrix,
    f1_score,
    multilabel_confusion_matrix,
    precision_score,
    recall_score,
    to_predictions,
    top_k_accuracy_score,
)

TOL = 1e-12


def _sk(fn: Callable[..., Any], **bound: Any) -> Callable[..., Any]:
    def call(y_true: Any, y: Any, **kwargs: Any) -> Any:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # UndefinedMetricWarning etc.: zero_division is explicit
            return fn(y_true, y, **bound, **kwargs)

    return call


# Every registered classification metric -> the scikit-learn call that must give the same answer.
ORACLES: dict[str, Callable[..., Any]] = {
    "accuracy": _sk(skm.accuracy_score),
    "top_k_accuracy": _sk(skm.top_k_accuracy_score),
}
for _stem, _fn in (("precision", skm.precision_score), ("recall", skm.recall_score), ("f1", skm.f1_score)):
    for _avg in ("macro", "micro", "weighted", "binary"):
        ORACLES[f"{_stem}_{_avg}"] = _sk(_fn, average=_avg)
    ORACLES[f"{_stem}_per_class"] = _sk(_fn, average=None)

CLASSIFICATION_NAMES = sorted(n for n in METRICS.names() if METRICS.get(n).inputs != "latencies")


def assert_same(actual: Any, expected: Any) -> None:
    np.testing.assert_allclose(np.asarray(actual, dtype=float), np.asarray(expected, dtype=float), rtol=0, atol=TOL)
    assert np.shape(actual) == np.shape(expected)


# ------------------------------------------------------------------------------ meta-tests


def test_every_classification_metric_has_an_oracle_case() -> None:
    assert set(CLASSIFICATION_NAMES) == set(ORACLES)


def test_every_metric_documents_an_example() -> None:
    for name in METRICS.names():
        assert ">>>" in (METRICS.get(name).fn.__doc__ or ""), name


def test_doctests_pass() -> None:
    for module in (metrics_pkg, cls):
        result = doctest.testmod(module, optionflags=doctest.NORMALIZE_WHITESPACE)
        assert result.failed == 0 and (module is metrics_pkg or result.attempted > 10), module.__name__


def test_names_follow_the_suffix_law() -> None:
    for name in METRICS.names():
        spec = METRICS.get(name)
        assert spec.name == name
        assert spec.higher_is_better == (not name.endswith("_ms")), name
        assert spec.unit == ("ms" if name.endswith("_ms") else "per_s" if name.endswith("_per_s") else "ratio"), name
        if spec.averaging in ("macro", "micro", "weighted", "binary", "per_class"):
            assert name.endswith("_" + spec.averaging), name


def test_import_pulls_in_no_heavy_library() -> None:
    code = (
        "import sys, mmstd.metrics as m; m.METRICS.get('f1_macro'); "
        "print(sorted(k for k in ('sklearn', 'scipy', 'torch', 'tensorflow', 'onnxruntime') if k in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_spec_is_immutable_and_binds_its_options() -> None:
    spec = METRICS.get("recall_weighted")
    with pytest.raises(TypeError):
        spec.params["average"] = "macro"  # type: ignore[index]
    with pytest.raises(AttributeError):
        spec.name = "x"  # type: ignore[misc]
    y, p = [0, 1, 1, 2, 2, 2], [0, 1, 0, 2, 2, 1]
    assert spec(y, p) == pytest.approx(skm.recall_score(y, p, average="weighted"), abs=TOL)
    assert spec(y, p, average="macro") == pytest.approx(skm.recall_score(y, p, average="macro"), abs=TOL)


def test_a_malformed_spec_is_refused() -> None:
    with pytest.raises(MetricError, match="Invalid metric spec 'x'") as err:
        MetricSpec("x", accuracy_score, higher_is_better=True, unit="ratio", averaging="samples",
                   task_kinds=frozenset({"regression"}), inputs="images")  # type: ignore[arg-type]
    assert len(err.value.problems) == 3


def test_unknown_metric_suggests_the_closest() -> None:
    with pytest.raises(RegistryError, match=r"Did you mean 'f1_macro'\?"):
        METRICS.get("f1_marco")


def test_registering_a_name_twice_is_refused() -> None:
    with pytest.raises(RegistryError, match="registered twice"):
        register_metric(MetricSpec("accuracy", accuracy_score, higher_is_better=True, unit="ratio", averaging=None))


# -------------------------------------------------------------------- the property table

MULTILABEL = "multilabel"


@st.composite
def cases(draw: st.DrawFn, name: str) -> dict[str, Any]:
    """Inputs for one registered metric: its task kind, targets, predictions and options."""
    spec = METRICS.get(name)
    kind = draw(st.sampled_from(sorted(spec.task_kinds)))
    n = draw(st.integers(1, 40))
    zero_division = draw(st.sampled_from([0.0, 1.0, np.nan]))
    if spec.inputs == "scores":
        c = draw(st.integers(3, 6))
        y = np.asarray(draw(st.lists(st.integers(0, c - 1), min_size=n, max_size=n)))
        # Scores on a coarse grid so ties are common: the tie rule must match too.
        s = np.asarray(draw(st.lists(st.lists(st.integers(0, 4), min_size=c, max_size=c), min_size=n, max_size=n))) / 4
        return {"kind": kind, "y": y, "out": s, "kwargs": {"k": draw(st.integers(1, c)), "labels": list(range(c))}}
    if kind == MULTILABEL:
        c = draw(st.integers(2, 5))
        cells = st.lists(st.lists(st.integers(0, 1), min_size=c, max_size=c), min_size=n, max_size=n)
        y, p = np.asarray(draw(cells)), np.asarray(draw(cells))
        labels = draw(st.none() | st.lists(st.integers(0, c - 1), min_size=1, max_size=c, unique=True))
    else:
        c = 2 if kind == "binary" else draw(st.integers(1, 6))
        # Values up to c, not c - 1: some drawn labels are absent from the other array or from `labels`.
        values = st.integers(0, 1) if kind == "binary" else st.integers(0, c)
        y = np.asarray(draw(st.lists(values, min_size=n, max_size=n)))
        p = np.asarray(draw(st.lists(values, min_size=n, max_size=n)))
        labels = None if kind == "binary" else draw(
            st.none() | st.lists(st.integers(0, c + 1), min_size=1, max_size=c + 2, unique=True)
        )
        if labels is not None and not set(labels) & set(y.tolist()):
            labels = None  # sklearn refuses labels that miss every true label in some paths
    kwargs: dict[str, Any] = {}
    if spec.averaging is not None:
        kwargs["zero_division"] = zero_division
        if spec.averaging != "binary" and labels is not None:
            kwargs["labels"] = labels
    return {"kind": kind, "y": y, "out": p, "kwargs": kwargs}


@pytest.mark.parametrize("name", CLASSIFICATION_NAMES)
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_every_metric_matches_sklearn_and_its_invariants(name: str, data: st.DataObject) -> None:
    spec = METRICS.get(name)
    case = data.draw(cases(name))
    y, out, kwargs = case["y"], case["out"], case["kwargs"]
    value = spec(y, out, **kwargs)
    expected = ORACLES[name](y, out, **kwargs)
    np.testing.assert_allclose(np.asarray(value, float), np.asarray(expected, float), rtol=0, atol=TOL)
    assert np.shape(value) == np.shape(expected)
    # Invariants: sample order does not matter, and a ratio stays in [0, 1].
    order = np.random.default_rng(len(y)).permutation(len(y))
    np.testing.assert_allclose(np.asarray(spec(y[order], out[order], **kwargs), float), np.asarray(value, float), rtol=0, atol=TOL)
    finite = np.asarray(value, float)[~np.isnan(np.asarray(value, float))]
    assert np.all((finite >= 0) & (finite <= 1))
    if name == "accuracy":  # the trace shortcut agrees with the counting core
        counts = class_counts(y, out)
        assert value == counts.correct / counts.n


@pytest.mark.parametrize("name", [n for n in CLASSIFICATION_NAMES if METRICS.get(n).inputs == "labels"])
@settings(max_examples=25, deadline=None)
@given(data=st.data())
def test_compute_metrics_agrees_with_each_function(name: str, data: st.DataObject) -> None:
    spec = METRICS.get(name)
    kind: Any = data.draw(st.sampled_from(sorted(spec.task_kinds)))
    n = data.draw(st.integers(1, 30))
    c = 2 if kind == "binary" else data.draw(st.integers(2, 5))
    if kind == MULTILABEL:
        y = np.asarray(data.draw(st.lists(st.lists(st.integers(0, 1), min_size=c, max_size=c), min_size=n, max_size=n)))
        p = np.asarray(data.draw(st.lists(st.lists(st.integers(0, 1), min_size=c, max_size=c), min_size=n, max_size=n)))
        kwargs: dict[str, Any] = {}
    else:
        y = np.asarray(data.draw(st.lists(st.integers(0, c - 1), min_size=n, max_size=n)))
        p = np.asarray(data.draw(st.lists(st.integers(0, c - 1), min_size=n, max_size=n)))
        kwargs = {"labels": list(range(c))} if spec.averaging not in (None, "binary") else {}
    zd = data.draw(st.sampled_from([0.0, 1.0, np.nan]))
    if spec.averaging is not None:
        kwargs["zero_division"] = zd
    got = compute_metrics(y, p, task_kind=kind, labels=[f"c{i}" for i in range(c)], names=[name], zero_division=zd)
    np.testing.assert_allclose(np.asarray(got[name], float), np.asarray(spec(y, p, **kwargs), float), rtol=0, atol=TOL)


# -------------------------------------------------------------------------------- edge cases

EDGE_CASES: dict[str, tuple[Any, Any, dict[str, Any]]] = {
    "absent_true_class": ([0, 0, 1, 1], [0, 2, 1, 2], {}),
    "absent_everywhere_via_labels": ([0, 0, 1, 1], [0, 1, 1, 1], {"labels": [0, 1, 2]}),
    "labels_subset_reordered": ([0, 1, 2, 2, 1, 0], [0, 2, 2, 1, 1, 1], {"labels": [2, 0]}),
    "single_class": ([3, 3, 3], [3, 3, 3], {}),
    "never_predicted": ([0, 1, 2, 2], [0, 0, 0, 0], {}),
    "all_wrong": ([0, 1, 0, 1], [1, 0, 1, 0], {}),
    "string_labels": (["cat", "dog", "cat", "bird"], ["cat", "cat", "cat", "bird"], {}),
    "integral_floats": ([0.0, 1.0, 2.0, 1.0], [0.0, 2.0, 2.0, 1.0], {}),
    "bool_labels": ([True, False, True, True], [True, True, False, True], {}),
    "large_sparse_values": ([5, 100_000, 5, 7], [5, 5, 100_000, 7], {}),
    "negative_values": ([-1, 0, -1, 2], [-1, -1, 0, 2], {}),
}


@pytest.mark.parametrize("zero_division", [0.0, 1.0, np.nan])
@pytest.mark.parametrize("average", ["macro", "micro", "weighted", None])
@pytest.mark.parametrize("case", sorted(EDGE_CASES))
def test_edge_cases_match_sklearn(case: str, average: Any, zero_division: float) -> None:
    y, p, kw = EDGE_CASES[case]
    for ours, theirs in ((precision_score, skm.precision_score), (recall_score, skm.recall_score), (f1_score, skm.f1_score)):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            expected = theirs(y, p, average=average, zero_division=zero_division, **kw)
        assert_same(ours(y, p, average=average, zero_division=zero_division, **kw), expected)
    assert accuracy_score(y, p) == skm.accuracy_score(y, p)
    np.testing.assert_array_equal(confusion_matrix(y, p, **kw), _sk(skm.confusion_matrix)(y, p, **kw))


@pytest.mark.parametrize("zero_division", [0.0, 1.0, np.nan])
@pytest.mark.parametrize(("y", "p", "labels"), [([0, 0, 1], [0, 2, 2], [2]), ([[1, 0], [1, 0]], [[1, 1], [0, 1]], [1])])
def test_weighted_average_without_any_support_falls_back_to_the_mean(y: Any, p: Any, labels: list[int], zero_division: float) -> None:
    # Every requested label is absent from y_true: all weights are 0 and sklearn takes the plain mean.
    for ours, theirs in ((precision_score, skm.precision_score), (recall_score, skm.recall_score), (f1_score, skm.f1_score)):
        expected = _sk(theirs)(y, p, average="weighted", labels=labels, zero_division=zero_division)
        assert_same(ours(y, p, average="weighted", labels=labels, zero_division=zero_division), expected)


@pytest.mark.parametrize(
    ("y", "p", "pos_label"),
    [([0, 1, 1, 0], [0, 1, 0, 0], 1), ([0, 0, 0], [0, 0, 0], 1), ([1, 1], [1, 0], 1), (["n", "y", "y"], ["y", "y", "n"], "y"),
     ([0, 1, 1, 0], [0, 1, 0, 0], 0)],
)
def test_binary_average_matches_sklearn(y: list[Any], p: list[Any], pos_label: Any) -> None:
    for ours, theirs in ((precision_score, skm.precision_score), (recall_score, skm.recall_score), (f1_score, skm.f1_score)):
        for zd in (0.0, 1.0):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                expected = theirs(y, p, average="binary", pos_label=pos_label, zero_division=zd)
            assert_same(ours(y, p, average="binary", pos_label=pos_label, zero_division=zd), expected)


def test_multilabel_matches_sklearn_including_empty_columns() -> None:
    rng = np.random.default_rng(3)
    y = rng.integers(0, 2, size=(50, 6))
    p = rng.integers(0, 2, size=(50, 6))
    y[:, 4] = 0  # a label never true
    p[:, 5] = 0  # a label never predicted
    for average in ("macro", "micro", "weighted", None):
        for ours, theirs in ((precision_score, skm.precision_score), (recall_score, skm.recall_score), (f1_score, skm.f1_score)):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                assert_same(ours(y, p, average=average, labels=[5, 0, 4]), theirs(y, p, average=average, labels=[5, 0, 4]))
                assert_same(ours(y, p, average=average), theirs(y, p, average=average))
    assert accuracy_score(y, p) == skm.accuracy_score(y, p)
    np.testing.assert_array_equal(multilabel_confusion_matrix(y, p), skm.multilabel_confusion_matrix(y, p))


@pytest.mark.parametrize("n_classes", [10, 1500])  # 1500**2 cells: the three-bincount path
def test_random_multiclass_matches_sklearn(n_classes: int) -> None:
    rng = np.random.default_rng(n_classes)
    y = rng.integers(0, n_classes, 20_000)
    p = np.where(rng.random(20_000) < 0.7, y, rng.integers(0, n_classes, 20_000))
    for average in ("macro", "micro", "weighted", None):
        assert_same(f1_score(y, p, average=average), skm.f1_score(y, p, average=average))
        assert_same(precision_score(y, p, average=average), skm.precision_score(y, p, average=average, zero_division=0.0))
        assert_same(recall_score(y, p, average=average), skm.recall_score(y, p, average=average, zero_division=0.0))
    np.testing.assert_array_equal(confusion_matrix(y, p), skm.confusion_matrix(y, p))
    assert accuracy_score(y, p) == skm.accuracy_score(y, p)


def test_huge_universe_uses_sparse_counts() -> None:
    y = np.array([0, 3000, 3000, 5])
    p = np.array([0, 3000, 5, 5])
    assert (3001**2) > cls._DENSE_CELLS
    assert_same(f1_score(y, p, average=None), skm.f1_score(y, p, average=None))
    np.testing.assert_array_equal(confusion_matrix(y, p), skm.confusion_matrix(y, p))


@pytest.mark.parametrize("normalize", ["true", "pred", "all"])
def test_confusion_matrix_normalize(normalize: str) -> None:
    y, p = [0, 1, 1, 2, 2], [0, 0, 1, 1, 1]
    np.testing.assert_allclose(
        confusion_matrix(y, p, labels=[0, 1, 2, 3], normalize=normalize),  # type: ignore[arg-type]
        skm.confusion_matrix(y, p, labels=[0, 1, 2, 3], normalize=normalize), rtol=0, atol=TOL,
    )


def test_top_k_ties_and_labels_match_sklearn() -> None:
    y = [0, 1, 2, 2, 1]
    s = np.array([[0.2, 0.2, 0.6], [0.3, 0.3, 0.4], [0.5, 0.5, 0.0], [0.1, 0.1, 0.1], [1, 0, 0]])
    oracle = _sk(skm.top_k_accuracy_score)
    for k in (1, 2, 3):
        assert top_k_accuracy_score(y, s, k=k) == oracle(y, s, k=k)
        assert top_k_accuracy_score(y, s, k=k, labels=[0, 1, 2]) == oracle(y, s, k=k, labels=[0, 1, 2])
    y_str = ["a", "b", "c", "c", "b"]
    assert top_k_accuracy_score(y_str, s, k=2) == skm.top_k_accuracy_score(y_str, s, k=2)


def test_class_counts_are_the_confusion_counts() -> None:
    c = class_counts([0, 1, 1, 2, 2, 2], [0, 2, 1, 2, 0, 2], labels=[2, 0, 1])
    assert (c.tp.tolist(), c.fp.tolist(), c.fn.tolist(), c.support.tolist()) == ([2, 1, 1], [1, 1, 0], [1, 0, 1], [3, 1, 2])
    assert (int(c.correct), c.n) == (4, 6)


# ----------------------------------------------------------------------- errors, sklearn's words


@pytest.mark.parametrize("fn", [precision_score, recall_score, f1_score])
def test_bad_average_raises_sklearns_sentence(fn: Callable[..., Any]) -> None:
    with pytest.raises(MetricError, match=r"average must be one of \{'macro', 'micro', 'weighted', 'binary', None\}, got 'samples'\.") as err:
        fn([0, 1], [0, 1], average="samples")
    assert isinstance(err.value, ValueError) and err.value.code == "E_USAGE"


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: f1_score([0, 1], [0, 1], zero_division=2), r"zero_division must be one of \{0.0, 1.0, nan\}, got 2\."),
        (lambda: f1_score([0, 1], [0, 1], zero_division="warn"), r"zero_division must be one of"),  # type: ignore[arg-type]
        (lambda: f1_score([0, 1, 2], [0, 1]), r"inconsistent numbers of samples: \[3, 2\]"),
        (lambda: f1_score([], []), r"empty input array"),
        (lambda: f1_score([0, 1], [[0, 1], [1, 0]]), r"can't handle a mix of multiclass and multilabel-indicator targets"),
        (lambda: f1_score([0, 1], [0.2, 0.9]), r"y_pred holds non-integer values \(e.g. 0.2\)"),
        (lambda: f1_score([0, 1], ["a", "b"]), r"Mix of label input types \(string and number\)"),
        (lambda: f1_score([0, 1, 2], [0, 1, 1], average="binary"), r"Target is multiclass but average='binary'"),
        (lambda: f1_score([0, 1], [0, 1], average="binary", pos_label=2), r"pos_label=2 is not a valid label"),
        (lambda: f1_score([[0, 1]], [[1, 1]], average="binary"), r"Target is multilabel-indicator but average='binary'"),
        (lambda: f1_score([[0, 2]], [[1, 1]]), r"not a 0/1 indicator matrix"),
        (lambda: f1_score([[0, 1]], [[1, 1]], labels=[3]), r"All labels must be in \[0, n labels\)"),
        (lambda: f1_score(np.zeros((2, 2, 2)), np.zeros((2, 2, 2))), r"got shape \(2, 2, 2\)"),
        (lambda: f1_score([0, 1], [0, 1], labels=[]), r"labels must be a non-empty 1-D sequence"),
        (lambda: confusion_matrix([0, 1], [0, 1], normalize="rows"), r"normalize must be one of"),  # type: ignore[arg-type]
        (lambda: confusion_matrix([[0, 1]], [[1, 1]]), r"use multilabel_confusion_matrix"),
        (lambda: top_k_accuracy_score([0, 1], [[0.1, 0.9, 0], [0.9, 0.1, 0]]), r"Number of classes in 'y_true' \(2\) not equal"),
        (lambda: top_k_accuracy_score([0, 1], [[0.1, 0.9], [0.9, 0.1]], labels=[1, 0]), r"must be ordered"),
        (lambda: top_k_accuracy_score([0, 1], [[0.1, 0.9], [0.9, 0.1]], labels=[0, 0]), r"must be unique"),
        (lambda: top_k_accuracy_score([0, 5], [[0.1, 0.9], [0.9, 0.1]], labels=[0, 1]), r"contains labels not in"),
        (lambda: top_k_accuracy_score([0, 1], [[0.1, 0.9], [0.9, 0.1]], k=0), r"k must be a positive int"),
        (lambda: top_k_accuracy_score([0, 1], [0.1, 0.9]), r"shape \(n_samples, n_classes\)"),
    ],
)
def test_errors_say_what_was_expected(call: Callable[[], Any], message: str) -> None:
    with pytest.raises(MetricError, match=message):
        call()


def test_nan_scores_are_a_nonfinite_output() -> None:
    with pytest.raises(MetricError, match="NaN or Inf") as err:
        top_k_accuracy_score([0, 1], [[np.nan, 1.0], [0.0, 1.0]], labels=[0, 1])
    assert err.value.code == "E_NONFINITE_OUTPUT"


# ----------------------------------------------------------------------- raw outputs, the lot


def _softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def test_compute_metrics_multiclass_equals_sklearn_on_argmax() -> None:
    rng = np.random.default_rng(11)
    labels = [f"class{i}" for i in range(7)]
    y = rng.integers(0, 6, 500)  # class 6 never occurs: absent class, zero support
    logits = rng.normal(size=(500, 7)) + 2.0 * np.eye(7)[y]
    pred = logits.argmax(axis=1)
    got = compute_metrics(y, logits, task_kind="multiclass", labels=labels, output_kind="logits")
    assert got.keys() >= {"accuracy", "f1_macro", "recall_weighted", "top_2_accuracy", "top_5_accuracy", "confusion_matrix"}
    assert "f1_binary" not in got
    full = list(range(7))
    assert got["accuracy"] == skm.accuracy_score(y, pred)
    for stem, fn in (("precision", skm.precision_score), ("recall", skm.recall_score), ("f1", skm.f1_score)):
        for avg in ("macro", "micro", "weighted"):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                assert_same(got[f"{stem}_{avg}"], fn(y, pred, average=avg, labels=full, zero_division=0.0))
                assert_same(got[f"{stem}_per_class"], fn(y, pred, average=None, labels=full, zero_division=0.0))
    for k in (2, 5):
        assert got[f"top_{k}_accuracy"] == skm.top_k_accuracy_score(y, logits, k=k, labels=full)
    np.testing.assert_array_equal(got["confusion_matrix"], skm.confusion_matrix(y, pred, labels=full))
    np.testing.assert_array_equal(got["support_per_class"], np.bincount(y, minlength=7))
    # Probabilities and logits share the argmax: every headline value is identical.
    probs = compute_metrics(y, _softmax(logits), task_kind="multiclass", labels=labels)
    for key, value in got.items():
        np.testing.assert_array_equal(probs[key], value)


def test_compute_metrics_binary_thresholds() -> None:
    y = np.array([0, 1, 1, 0, 1, 0])
    p1 = np.array([0.2, 0.9, 0.5, 0.6, 0.51, 0.5])  # 0.5 is not above the threshold: negative
    expected = np.array([0, 1, 0, 1, 1, 0])
    np.testing.assert_array_equal(to_predictions(p1, task_kind="binary"), expected)
    for outputs, kind in ((p1, "probabilities"), (p1[:, None], "probabilities"),
                          (np.log(p1 / (1 - p1))[:, None], "logits"), (np.stack([1 - p1, p1], axis=1) + [[1e-9, 0]] * 6, "probabilities")):
        got = compute_metrics(y, outputs, task_kind="binary", labels=["no", "yes"], output_kind=kind)  # type: ignore[arg-type]
        assert got["f1_binary"] == skm.f1_score(y, expected)
        assert got["precision_binary"] == skm.precision_score(y, expected)
        assert got["recall_binary"] == skm.recall_score(y, expected)
        assert_same(got["f1_macro"], skm.f1_score(y, expected, average="macro"))
    got = compute_metrics(y, p1, task_kind="binary", labels=["no", "yes"], threshold=0.55)
    assert got["accuracy"] == skm.accuracy_score(y, p1 > 0.55)


def test_compute_metrics_multilabel() -> None:
    rng = np.random.default_rng(5)
    y = rng.integers(0, 2, size=(200, 4))
    logits = rng.normal(size=(200, 4)) + (2 * y - 1)
    pred = logits > 0
    got = compute_metrics(y, logits, task_kind="multilabel", labels=list("abcd"), output_kind="logits")
    probs = compute_metrics(y, 1 / (1 + np.exp(-logits)), task_kind="multilabel", labels=list("abcd"))
    assert got["accuracy"] == skm.accuracy_score(y, pred) == probs["accuracy"]
    for avg in ("macro", "micro", "weighted"):
        assert_same(got[f"f1_{avg}"], skm.f1_score(y, pred, average=avg))
    assert_same(got["recall_per_class"], skm.recall_score(y, pred, average=None))
    np.testing.assert_array_equal(got["multilabel_confusion_matrix"], skm.multilabel_confusion_matrix(y, pred))
    assert "confusion_matrix" not in got and "top_2_accuracy" not in got
    got = compute_metrics(y, pred.astype(int), task_kind="multilabel", labels=list("abcd"), names=["accuracy"])
    assert set(got) == {"accuracy", "support_per_class", "multilabel_confusion_matrix"}


def test_compute_metrics_top_k_and_names() -> None:
    y = [0, 1, 2, 2]
    s = [[0.5, 0.3, 0.2], [0.3, 0.4, 0.3], [0.4, 0.35, 0.25], [0.1, 0.2, 0.7]]
    got = compute_metrics(y, s, task_kind="multiclass", labels="abc")
    assert [k for k in got if k.startswith("top_")] == ["top_2_accuracy"]  # 5 >= 3 classes: left out
    got = compute_metrics(y, s, task_kind="multiclass", labels="abc", names=["top_k_accuracy", "accuracy"], top_k=[1, 3])
    assert got["top_1_accuracy"] == got["accuracy"] == 0.75
    assert got["top_3_accuracy"] == 1.0
    # Predicted labels carry no scores: top-k is skipped by default and refused when asked for.
    assert not any(k.startswith("top_") for k in compute_metrics(y, [0, 1, 0, 2], task_kind="multiclass", labels="abc"))
    with pytest.raises(MetricError, match="needs per-class scores"):
        compute_metrics(y, [0, 1, 0, 2], task_kind="multiclass", labels="abc", names=["top_k_accuracy"])


@pytest.mark.parametrize(
    ("kwargs", "message", "code"),
    [
        ({"y_true": [0, 3], "out": [0, 1]}, r"y_true holds class index 3 outside 0..2 \(3 labels: a, b, c\)", "E_DATASET_VALUE"),
        ({"out": [[0.1, np.nan, 0.2]] * 4}, r"NaN or Inf", "E_NONFINITE_OUTPUT"),
        ({"out": [[0.1, 0.9]] * 4}, r"Outputs have 2 columns but the task has 3 labels", "E_IO_CONTRACT"),
        ({"out": [0, 1, 1, 5]}, r"predictions holds class index 5", "E_DATASET_VALUE"),
        ({"names": ["f1_binary"]}, r"'f1_binary' is not defined for a multiclass task \(it supports: binary\)", "E_USAGE"),
        ({"names": ["latency_p99_ms"]}, r"is a latency metric", "E_USAGE"),
        ({"task_kind": "regression"}, r"task_kind must be one of", "E_USAGE"),
        ({"output_kind": "embedding"}, r"output_kind must be one of", "E_USAGE"),
        ({"threshold": 0.3}, r"threshold applies to binary and multilabel", "E_USAGE"),
        ({"top_k": [0]}, r"top_k values must be positive ints", "E_USAGE"),
        ({"task_kind": "binary"}, r"A binary task needs 2 labels", "E_USAGE"),
        ({"zero_division": 0.5}, r"zero_division must be one of", "E_USAGE"),
        ({"y_true": [], "out": np.zeros((0, 3))}, r"y_true is empty", "E_DATASET_EMPTY"),
    ],
)
def test_compute_metrics_errors(kwargs: dict[str, Any], message: str, code: str) -> None:
    args = {"y_true": [0, 1, 2, 2], "out": [[0.7, 0.2, 0.1]] * 4, "task_kind": "multiclass", "labels": "abc", **kwargs}
    with pytest.raises(MetricError, match=message) as err:
        compute_metrics(args.pop("y_true"), args.pop("out"), **args)
    assert err.value.code == code


def test_compute_metrics_unknown_name_suggests() -> None:
    with pytest.raises(RegistryError, match=r"Did you mean 'recall_macro'\?"):
        compute_metrics([0, 1], [0, 1], task_kind="binary", labels="ny", names=["recal_macro"])
