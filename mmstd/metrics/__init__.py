"""Metrics: one ``MetricSpec`` per registered name, in one ``METRICS`` registry.

A registered name carries its averaging and unit (``f1_macro``, ``recall_weighted``,
``latency_p99_ms``); names without a unit suffix are higher-is-better ratios in [0, 1], ``*_ms`` are
lower-is-better, ``throughput_per_s`` is higher-is-better. Each spec binds a plain, sklearn-shaped
function to the keyword options that make it that metric (``f1_score`` with ``average="macro"``), so
the function is the documentation and ``spec(y_true, y_pred)`` computes the value.

Third parties add metrics through the ``mmstd.metrics`` entry-point group; the entry points at a
``MetricSpec``::

    [project.entry-points."mmstd.metrics"]
    hamming_loss = "my_package.metrics:HAMMING_LOSS"

Everything here is pure NumPy: importing ``mmstd.metrics`` imports neither scikit-learn (the oracle
in tests) nor a deep-learning framework.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Literal

from mmstd.registry import Registry

TaskKind = Literal["multiclass", "binary", "multilabel"]
TASK_KINDS: tuple[TaskKind, ...] = ("multiclass", "binary", "multilabel")
ALL_TASKS: frozenset[str] = frozenset(TASK_KINDS)
_AVERAGINGS = ("macro", "micro", "weighted", "binary", "per_class", None)


@dataclass(frozen=True, slots=True)
class MetricSpec:
    """Everything the evaluator, reports and gate need to know about one metric name.

    Args:
        name: The registered name, e.g. ``"f1_macro"``.
        fn: A plain function. Classification metrics take ``(y_true, y_pred, **options)`` (or
            ``y_score`` when ``inputs == "scores"``); latency metrics take ``(latencies, **options)``.
        higher_is_better: The direction a gate compares in.
        unit: ``"ratio"`` (a fraction in [0, 1]), ``"ms"`` or ``"per_s"``.
        averaging: ``"macro"``, ``"micro"``, ``"weighted"``, ``"binary"``, ``"per_class"`` (the
            value is an array, one entry per label) or ``None`` (no class averaging involved).
        task_kinds: The card task kinds the metric is defined for.
        inputs: What ``fn`` takes besides ``y_true``: ``"labels"`` (predicted labels),
            ``"scores"`` (per-class scores) or ``"latencies"`` (per-query latencies, no ``y_true``).
        params: The keyword options bound to ``fn`` under this name, e.g. ``{"average": "macro"}``.
        from_counts: Optional fast path, ``from_counts(counts, zero_division=z, **params)``, that
            computes the value from ``ConfusionCounts`` over the task's full, ordered label set;
            leading batch axes (bootstrap resamples) broadcast. ``compute_metrics`` and the
            bootstrap use it to score many metrics, or many resamples, from one counting pass.
    """

    name: str
    fn: Callable[..., Any]
    higher_is_better: bool
    unit: str
    averaging: str | None
    task_kinds: frozenset[str] = ALL_TASKS
    inputs: Literal["labels", "scores", "latencies"] = "labels"
    params: Mapping[str, Any] = field(default_factory=dict, hash=False)
    from_counts: Callable[..., Any] | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        # A spec is shared by every caller: a mutable params dict would let one caller change another's metric.
        object.__setattr__(self, "params", MappingProxyType(dict(self.params)))
        object.__setattr__(self, "task_kinds", frozenset(self.task_kinds))
        problems = []
        if not callable(self.fn):
            problems.append(f"fn: expected a callable, got {self.fn!r}")
        if self.inputs not in ("labels", "scores", "latencies"):
            problems.append(f"inputs: expected one of 'labels', 'scores', 'latencies', got {self.inputs!r}")
        if self.averaging not in _AVERAGINGS:
            problems.append(f"averaging: expected one of {sorted(map(str, _AVERAGINGS))}, got {self.averaging!r}")
        if not self.task_kinds or not self.task_kinds <= ALL_TASKS:
            problems.append(f"task_kinds: expected a non-empty subset of {sorted(ALL_TASKS)}, got {sorted(self.task_kinds)}")
        if problems:
            from mmstd.errors import MetricError

            raise MetricError(f"Invalid metric spec {self.name!r}.", problems=problems)

    def __call__(self, *args: Any, **options: Any) -> Any:
        """Compute the metric; ``options`` override the bound ``params``."""
        return self.fn(*args, **{**self.params, **options})


#: Every metric by name. Built-ins are registered when ``mmstd.metrics`` is imported (pure NumPy,
#: a few milliseconds); third-party entry points are resolved on first use.
METRICS: Registry[MetricSpec] = Registry("metric", entry_points="mmstd.metrics")


def register_metric(spec: MetricSpec) -> MetricSpec:
    """Add ``spec`` to ``METRICS`` under ``spec.name`` and return it.

    Raises:
        RegistryError: The name is taken.
    """
    METRICS.register(spec.name, spec)
    return spec


# The built-in modules register their specs on import. They import the names above, so this import
# must come after them.
from mmstd.metrics.bootstrap import Interval, bootstrap_intervals, paired_bootstrap_intervals  # noqa: E402
from mmstd.metrics.classification import (  # noqa: E402
    ConfusionCounts,
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
from mmstd.metrics.latency import (  # noqa: E402
    LatencyProtocol,
    LatencyStats,
    ProtocolRun,
    latency_stats,
    nearest_rank,
    run_protocol,
)

__all__ = [
    "ALL_TASKS",
    "METRICS",
    "TASK_KINDS",
    "ConfusionCounts",
    "Interval",
    "LatencyProtocol",
    "LatencyStats",
    "MetricSpec",
    "ProtocolRun",
    "TaskKind",
    "accuracy_score",
    "bootstrap_intervals",
    "class_counts",
    "compute_metrics",
    "confusion_matrix",
    "f1_score",
    "latency_stats",
    "multilabel_confusion_matrix",
    "nearest_rank",
    "paired_bootstrap_intervals",
    "precision_score",
    "recall_score",
    "register_metric",
    "run_protocol",
    "to_predictions",
    "top_k_accuracy_score",
]
