"""Run a package on one suite split with one backend: raw outputs, timings and audits, no metrics.

``run_suite`` preprocesses the suite's canonical data with the card's standard operations, runs
every sample through an onnxruntime session (the accuracy run), validates what came out against the
card (shape, dtype, finiteness), then measures latency with the LoadGen-style protocol on fresh
sessions (single-stream at batch 1, offline at the suite's larger batch sizes) and audits the run:
the latency run's outputs must equal the accuracy run's for the same samples (MLPerf TEST01), a
repeated run must reproduce the first, and the package's ``reference.safetensors`` inputs must give
its reference outputs. Judgement (metrics, tolerances as policy) happens later, on the RunRecord.
"""
from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from mmstd.card import ModelCard
from mmstd.errors import RunError
from mmstd.package import Package
from mmstd.record import RunRecord, Timings
from mmstd.suite import EVAL_SPLIT, SplitData, Suite, apply_variant

#: LoadGen's early-stopping minimum for a p99 estimate; p90 needs 64 (``--quick`` stops there).
P99_MIN_QUERIES = 662
REFERENCE_ATOL = 1e-4
REFERENCE_RTOL = 1e-3
AUDIT_ATOL = 1e-5


@dataclass(frozen=True, slots=True)
class RunSettings:
    """How to run: batch size of the accuracy run, sample limit, latency protocol, seed.

    Attributes:
        batch_size: Samples per query in the accuracy run.
        limit: Only the first ``limit`` samples of the split (smoke runs).
        quick: LoadGen's p90 minimum (64 queries, no minimum duration) instead of the p99 one,
            and no offline throughput.
        seed: Recorded, and used for onnxruntime's random operators.
        latency: Measure latency at all (variants are scored only).
        threads: Intra-op threads; ``None`` applies the backend's per-batch-size rule.
    """

    batch_size: int = 32
    limit: int | None = None
    quick: bool = False
    seed: int = 0
    latency: bool = True
    threads: int | None = None


DEFAULT_SETTINGS = RunSettings()


def latency_protocol(suite: Suite, *, quick: bool) -> Any:
    """The measurement protocol for ``suite``: its own settings, never below LoadGen's p99 minimum."""
    from mmstd.metrics.latency import LatencyProtocol

    if quick:
        return LatencyProtocol.quick()
    return LatencyProtocol(
        warmup_queries=suite.latency.warmup,
        min_duration_s=suite.latency.min_duration_s,
        min_queries=max(suite.latency.min_queries, P99_MIN_QUERIES),
    )


def load_split(suite: Suite, *, split: str = EVAL_SPLIT, variant: str | None = None, limit: int | None = None) -> SplitData:
    """The canonical data a run feeds: the split's first ``limit`` samples, perturbed by ``variant``."""
    data = suite.split(split, limit=limit)
    return apply_variant(data, suite.variant(variant)) if variant else data


def make_feeds(package: Package, data: SplitData, batch_size: int) -> list[dict[str, np.ndarray]]:
    """The card's preprocessing applied to ``data``, one feed dict per batch of ``batch_size``."""
    from mmstd.preprocess import preprocess_batch

    return [preprocess_batch(package.card, b, assets_root=package.root) for b in data.batches(batch_size)]


def run_suite(
    package: Package,
    suite: Suite,
    *,
    backend: str = "ort-cpu",
    split: str = EVAL_SPLIT,
    variant: str | None = None,
    settings: RunSettings = DEFAULT_SETTINGS,
    environment: Mapping[str, Any] | None = None,
) -> RunRecord:
    """Run every sample of ``suite``'s ``split`` through ``package`` on one backend.

    Args:
        package: A verified package from ``open_package``.
        suite: A verified suite from ``load_suite``.
        backend: Registry key, e.g. ``"ort-cuda"``.
        split: The split to run; evaluation uses ``"test"``.
        variant: A suite variant name (perturbed data), or ``None`` for the clean split.
        settings: Batch size, limit, latency protocol, seed.
        environment: ``capture_environment()`` once per evaluation; captured here when omitted.

    Returns:
        A RunRecord with raw outputs, labels, sample hashes, timings and the audits in
        ``backend_details``.

    Raises:
        InfraError: The backend cannot run here (exit 4).
        RunError: Outputs contradict the card (``E_IO_CONTRACT``) or are NaN/Inf (``E_NONFINITE_OUTPUT``).
    """
    from mmstd.backends import BackendOptions, open_session
    from mmstd.env import capture_environment

    data = load_split(suite, split=split, variant=variant, limit=settings.limit)
    batches = make_feeds(package, data, settings.batch_size)
    card = package.card
    options = BackendOptions(threads=settings.threads, seed=settings.seed)
    with open_session(backend, package.model_path, batch_size=settings.batch_size, options=options) as sess:
        start = time.perf_counter()
        parts = [sess.run(batches[0])]
        first_ms = (time.perf_counter() - start) * 1e3
        parts += [sess.run(b) for b in batches[1:]]
        outputs = {name: np.concatenate([p[name] for p in parts]) for name in parts[0]}
        check_outputs(outputs, card, len(data), where=f"{card.ref} on {backend}")
        repeat = sess.run(batches[0])
        details: dict[str, Any] = dict(sess.describe())
        details["reference"] = check_reference(sess, package)
        create_ms = sess.create_ms
    audit = {"repeat_run_identical": all(np.array_equal(repeat[k], parts[0][k]) for k in repeat),
             "repeat_max_abs_diff": _max_abs(repeat, parts[0])}
    latency_ns: dict[int, np.ndarray] = {}
    if settings.latency and variant is None:
        latency_ns, match = _measure_latency(package, suite, backend, batches, outputs, settings, options)
        audit.update(match)
    details["audit"] = audit
    return RunRecord(
        package=card.ref,
        package_digest=package.digest,
        suite=suite.ref,
        suite_fingerprint=suite.fingerprint,
        split=split,
        backend=backend,
        providers_active=tuple(details.get("providers_active", ())),
        session_options=details.get("session_options", {}),
        outputs=outputs,
        labels=data.labels,
        sample_hashes=data.sample_hashes,
        timings=Timings(session_create_ms=create_ms, first_run_ms=first_ms, latency_ns=latency_ns),
        environment=environment if environment is not None else capture_environment(),
        seed=settings.seed,
        variant=variant,
        task_kind=card.task_kind,
        output_kinds={s.name: s.kind or "logits" for s in card.outputs},
        backend_details={k: v for k, v in details.items() if k not in ("providers_active", "session_options")},
    )


def _measure_latency(
    package: Package,
    suite: Suite,
    backend: str,
    batches: Sequence[Mapping[str, np.ndarray]],
    outputs: Mapping[str, np.ndarray],
    settings: RunSettings,
    options: Any,
) -> tuple[dict[int, np.ndarray], dict[str, Any]]:
    """Single-stream (batch 1) and offline latencies, each on a session tuned for its batch size."""
    from mmstd.backends import open_session
    from mmstd.metrics.latency import run_protocol

    protocol = latency_protocol(suite, quick=settings.quick)
    sizes = [1] if settings.quick else sorted({1, *suite.latency.batch_sizes})
    feeds_all = {k: np.concatenate([b[k] for b in batches]) for k in batches[0]}
    n = len(next(iter(feeds_all.values())))
    latency_ns: dict[int, np.ndarray] = {}
    worst = 0.0
    for size in sizes:
        # Fewer samples than the batch: repeat them (the cost of a query does not depend on values).
        idx = np.arange(size) % n
        feeds = {k: v[idx] for k, v in feeds_all.items()}
        with open_session(backend, package.model_path, batch_size=size, options=options) as sess:
            query = sess.prepare(feeds)
            try:
                run = run_protocol(query, protocol, sync=query.sync)
                got = query.outputs()
            finally:
                query.close()
        latency_ns[size] = np.asarray(run.latencies_ns, dtype=np.int64)
        # TEST01: what the latency run computed must be what the accuracy run scored.
        worst = max(worst, _max_abs(got, {k: v[idx] for k, v in outputs.items()}))
    return latency_ns, {"latency_outputs_match_accuracy_run": worst <= AUDIT_ATOL, "latency_max_abs_diff": worst}


def check_outputs(outputs: Mapping[str, np.ndarray], card: ModelCard, n: int, *, where: str) -> None:
    """Validate observed outputs against the card: names, dtype, shape, finiteness.

    onnxruntime returns whatever the graph computes, even when it contradicts the graph's own
    declared shape, and NaN/Inf without complaint; so the card is checked against what came out.

    Raises:
        RunError: ``E_IO_CONTRACT`` or ``E_NONFINITE_OUTPUT`` naming the output.
    """
    problems = []
    for spec in card.outputs:
        if spec.name not in outputs:
            problems.append(f"output {spec.name!r} is missing; got {sorted(outputs)}")
            continue
        arr = outputs[spec.name]
        want = spec.concrete_shape({a: n for a in spec.axes.values()})
        if str(arr.dtype) != spec.dtype:
            problems.append(f"output {spec.name!r}: dtype {arr.dtype}, card says {spec.dtype}")
        if arr.shape != want:
            problems.append(f"output {spec.name!r}: shape {list(arr.shape)}, card says {list(spec.shape)} = {list(want)}")
    if problems:
        raise RunError(f"{where}: outputs contradict the card.", code="E_IO_CONTRACT", problems=problems)
    for spec in card.outputs:
        arr = outputs[spec.name]
        if np.issubdtype(arr.dtype, np.floating) and not np.isfinite(arr).all():
            bad = int((~np.isfinite(arr)).any(axis=tuple(range(1, arr.ndim))).sum()) if arr.ndim > 1 else int((~np.isfinite(arr)).sum())
            raise RunError(f"{where}: output {spec.name!r} has NaN or Inf for {bad} of {n} samples.",
                           code="E_NONFINITE_OUTPUT", hint="the exported graph is numerically broken on this data.")


def check_reference(session: Any, package: Package) -> dict[str, Any]:
    """Run the package's reference inputs and compare with the source framework's outputs.

    Tolerances are the card's parity tolerances (``parity.atol``/``rtol``).
    """
    from safetensors.numpy import load_file

    ref = load_file(str(package.reference_path))
    feeds = {k.removeprefix("input."): v for k, v in ref.items() if k.startswith("input.")}
    parity = package.card.sections.get("parity", {})
    atol = float(parity.get("atol", REFERENCE_ATOL))
    rtol = float(parity.get("rtol", REFERENCE_RTOL))
    got = session.run(feeds)
    rows = []
    for key, want in sorted(ref.items()):
        if not key.startswith("output."):
            continue
        name = key.removeprefix("output.")
        have = got[name].astype(np.float64)
        diff = np.abs(have - want.astype(np.float64))
        rel = diff / np.maximum(np.abs(want.astype(np.float64)), 1e-12)
        agree = None
        if want.ndim >= 2 and want.shape[-1] > 1:
            agree = float((have.argmax(-1) == want.argmax(-1)).mean())
        rows.append({"output": name, "max_abs_diff": float(diff.max(initial=0.0)), "max_rel_diff": float(rel.max(initial=0.0)),
                     "argmax_agreement": agree,
                     "passed": bool(np.all(diff <= atol + rtol * np.abs(want.astype(np.float64))))})
    samples = len(next(iter(feeds.values()))) if feeds else 0
    return {"against": "reference.safetensors", "atol": atol, "rtol": rtol, "samples": samples, "per_output": rows,
            "passed": all(r["passed"] for r in rows)}


def _max_abs(a: Mapping[str, np.ndarray], b: Mapping[str, np.ndarray]) -> float:
    worst = 0.0
    for k in a:
        if k in b and a[k].shape == b[k].shape and np.issubdtype(a[k].dtype, np.number):
            worst = max(worst, float(np.abs(a[k].astype(np.float64) - b[k].astype(np.float64)).max(initial=0.0)))
        elif k in b:
            raise RunError(f"output {k!r}: shape {list(a[k].shape)} in one run, {list(b[k].shape)} in the other "
                           "for the same samples.", code="E_NONDETERMINISTIC")
    return worst
