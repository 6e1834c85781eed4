"""Build ``report.json`` from RunRecords: scores with CIs, latency, parity, variants.

``make_report`` is the one place where judgement meets raw results: it scores every record with
``mmstd.metrics`` (bootstrap CIs for every headline metric), turns latency arrays into LoadGen-style
statistics, compares backends with each other and variants with the clean run (paired bootstrap
over the same samples) and records the environment. It reads only records and the package's card
and digest, so the same records always give the same report.
"""
from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import numpy as np

from mmstd import __version__
from mmstd.record import RunRecord

HEADLINE = ("accuracy", "f1_macro", "f1_micro", "f1_weighted", "precision_macro", "recall_macro", "recall_weighted")
DELTA_METRICS = ("accuracy", "f1_macro", "recall_macro")


def make_report(
    records: Sequence[RunRecord],
    *,
    package: Mapping[str, Any],
    suite: Mapping[str, Any],
    protocol: Any,
    quick: bool,
    limit: int | None,
    record_file: Mapping[str, Any],
    resamples: int = 1000,
    variant_kinds: Mapping[str, Mapping[str, Any]] | None = None,
) -> dict[str, Any]:
    """Assemble a schema-valid report.

    Args:
        records: One clean record per backend (first = the baseline for cross-backend deltas), plus
            variant records.
        package: ``{name, version, digest, path, labels, task_kind, fusion_strategy, source, parity}``
            from the card.
        suite: ``{name, version, ref, data_sha256, fingerprint, split, samples}``.
        protocol: The ``LatencyProtocol`` used.
        quick: Whether the run was a smoke run.
        limit: The sample limit, if any.
        record_file: ``{path, sha256, bytes}`` of the saved records.
        resamples: Bootstrap resamples per interval.
        variant_kinds: Variant name -> ``{kind, description, params}`` from the suite.
    """
    clean = [r for r in records if r.variant is None]
    labels = list(package["labels"])
    seed = clean[0].seed
    backends = [_backend(r, labels, protocol, resamples) for r in clean]
    by_backend = {r.backend: r for r in clean}
    parity: dict[str, Any] = {"reference": [{"backend": r.backend, **r.backend_details["reference"]} for r in clean]}
    if len(clean) > 1:
        parity["cross_backend"] = [_cross(a, b, labels, resamples) for a, b in itertools.combinations(clean, 2)]
    variants = []
    for r in records:
        if r.variant is None:
            continue
        base = by_backend[r.backend]
        scores = {"headline": _headline(r, labels, resamples)}
        base_values = {m: s["value"] for m, s in _headline(base, labels, 0).items()}
        info = (variant_kinds or {}).get(r.variant, {})
        variants.append({
            "name": r.variant, "kind": info.get("kind", "perturbation"),
            **({"description": info["description"]} if info.get("description") else {}),
            **({"params": info["params"]} if info.get("params") else {}),
            "backend": r.backend, "scores": scores,
            "deltas": _deltas(base, r, labels, resamples,
                              {m: scores["headline"][m]["value"] - base_values[m] for m in DELTA_METRICS}),
        })
    created = datetime.now(UTC).replace(microsecond=0)
    return {
        "schema_version": "1.0",
        "mmstd_version": __version__,
        "created": created.isoformat().replace("+00:00", "Z"),
        "run_id": f"{created.strftime('%Y%m%dT%H%M%SZ')}-{package['digest'][:8]}-{suite['fingerprint'][:8]}",
        "seed": seed,
        "quick": quick,
        "limit": limit,
        "package": {k: package[k] for k in ("name", "version", "digest", "path", "task_kind", "labels", "fusion_strategy", "source")},
        "suite": dict(suite),
        "environment": report_environment(clean[0].environment),
        "backends": backends,
        "parity": parity,
        "variants": variants,
        "record": dict(record_file),
    }


def report_environment(env: Mapping[str, Any]) -> dict[str, Any]:
    """``capture_environment()`` in the report's shape (no host name, user or path)."""
    os_ = env.get("os", {})
    cpu = env.get("cpu", {})
    return {
        "os": "-".join(str(os_.get(k)) for k in ("system", "release", "machine") if os_.get(k)) or "unknown",
        "python": env.get("python", {}).get("version", "0.0.0"),
        "cpu_model": cpu.get("model") or "unknown",
        "cpu_cores": int(cpu.get("usable_cores") or cpu.get("logical_cores") or 1),
        "memory_bytes": env.get("memory_bytes"),
        "gpu": [{k: g[k] for k in ("name", "driver", "memory_bytes", "cuda", "compute_capability") if g.get(k) is not None}
                for g in env.get("gpus", [])],
        "libraries": dict(env.get("libraries", {})),
    }


# ---------------------------------------------------------------------------------------- scores


def _scores_input(r: RunRecord) -> tuple[np.ndarray, np.ndarray, str]:
    name = r.score_output
    return r.labels, r.outputs[name], r.output_kinds.get(name, "probabilities")


def _top_k(labels: Sequence[str], task_kind: str) -> list[int]:
    return [2] if task_kind == "multiclass" and len(labels) > 2 else []


def _headline(r: RunRecord, labels: Sequence[str], resamples: int) -> dict[str, Any]:
    from mmstd.metrics import bootstrap_intervals, compute_metrics

    y, scores, kind = _scores_input(r)
    names = [m for m in HEADLINE if r.task_kind != "multilabel" or m != "accuracy"]
    top_k = _top_k(labels, r.task_kind)
    asked = [*names, "top_k_accuracy"] if top_k else names
    values = compute_metrics(y, scores, task_kind=r.task_kind, labels=labels, names=asked, output_kind=kind, top_k=top_k)
    cis = bootstrap_intervals(y, scores, task_kind=r.task_kind, labels=labels, names=asked, output_kind=kind,
                              top_k=top_k, resamples=resamples, seed=r.seed) if resamples else {}
    out = {}
    for m in [*names, *(f"top_{k}_accuracy" for k in top_k)]:
        ci = cis.get(m)
        out[m] = {"value": float(values[m]), "ci_low": ci.low if ci else None, "ci_high": ci.high if ci else None,
                  "ci_level": ci.level if ci else None, "resamples": resamples if ci else 0, "higher_is_better": True}
    return out


def _backend(r: RunRecord, labels: Sequence[str], protocol: Any, resamples: int) -> dict[str, Any]:
    from mmstd.metrics import bootstrap_intervals, compute_metrics

    y, scores, kind = _scores_input(r)
    top_k = _top_k(labels, r.task_kind)
    per = ["precision_per_class", "recall_per_class", "f1_per_class"]
    values = compute_metrics(y, scores, task_kind=r.task_kind, labels=labels, names=per, output_kind=kind, top_k=top_k)
    f1_ci = bootstrap_intervals(y, scores, task_kind=r.task_kind, labels=labels, names=["f1_per_class"],
                                output_kind=kind, resamples=resamples, seed=r.seed)["f1_per_class"]
    support = values["support_per_class"]
    block: dict[str, Any] = {
        "headline": _headline(r, labels, resamples),
        "per_class": [
            {"label": lab, "precision": float(values["precision_per_class"][i]), "recall": float(values["recall_per_class"][i]),
             "f1": float(values["f1_per_class"][i]), "support": int(support[i]),
             "f1_ci_low": f1_ci[i].low, "f1_ci_high": f1_ci[i].high}  # type: ignore[index]
            for i, lab in enumerate(labels)
        ],
    }
    if "confusion_matrix" in values:
        block["confusion_matrix"] = np.asarray(values["confusion_matrix"]).astype(int).tolist()
    details = r.backend_details
    audit = details.get("audit", {})
    return {
        "name": r.backend,
        "providers_requested": list(details.get("providers_requested", r.providers_active)),
        "providers_active": list(r.providers_active),
        "session_options": _session_options(r.session_options),
        "io_binding": bool(details.get("io_binding", False)),
        "device": str(details.get("device", "cpu")),
        "session_create_ms": r.timings.session_create_ms,
        "first_run_ms": r.timings.first_run_ms,
        "scores": block,
        "latency": _latency(r, protocol),
        "audit": {
            "latency_outputs_match_accuracy_run": bool(audit.get("latency_outputs_match_accuracy_run", False)),
            "repeat_run_identical": bool(audit.get("repeat_run_identical", False)),
            "max_abs_diff": max(float(audit.get("latency_max_abs_diff", 0.0)), float(audit.get("repeat_max_abs_diff", 0.0))),
        },
    }


_SESSION_KEYS = ("graph_optimization_level", "intra_op_num_threads", "inter_op_num_threads", "execution_mode",
                 "enable_cpu_mem_arena", "enable_mem_pattern", "enable_mem_reuse", "use_deterministic_compute",
                 "provider_options")


def _session_options(options: Mapping[str, Any]) -> dict[str, Any]:
    return {k: options[k] for k in _SESSION_KEYS if k in options}


def _latency(r: RunRecord, protocol: Any) -> dict[str, Any]:
    from mmstd.metrics.latency import latency_stats
    from mmstd.reports import cdf_points

    blocks = {}
    for batch, arr in r.timings.latency_ns.items():
        stats = latency_stats(arr, unit="ns", batch_size=batch)
        block = {k: (float(v) if isinstance(v, float) else v) for k, v in stats.to_dict().items()}
        if batch == 1:
            block["cdf"] = cdf_points((arr / 1e6).tolist())
        blocks[batch] = block
    return {
        "single_stream": blocks[1],
        "offline": [blocks[b] for b in sorted(blocks) if b != 1],
        "protocol": {"warmup_queries": protocol.warmup_queries, "min_duration_s": protocol.min_duration_s,
                     "min_queries": protocol.min_queries, "max_duration_s": protocol.max_duration_s},
    }


# ---------------------------------------------------------------------------------------- deltas


def _deltas(a: RunRecord, b: RunRecord, labels: Sequence[str], resamples: int,
            values: Mapping[str, float] | None = None) -> dict[str, Any]:
    """``metric(b) - metric(a)`` with paired-bootstrap CIs over the same samples."""
    from mmstd.metrics import compute_metrics, paired_bootstrap_intervals, to_predictions

    if a.sample_hashes != b.sample_hashes and a.variant == b.variant:
        raise ValueError(f"records {a.key} and {b.key} cover different samples; deltas need the same data.")
    y, sa, kind_a = _scores_input(a)
    _, sb, kind_b = _scores_input(b)
    if kind_a != kind_b:  # compare decisions when the two outputs are not on the same scale
        sa = to_predictions(sa, task_kind=a.task_kind, output_kind=kind_a)
        sb = to_predictions(sb, task_kind=b.task_kind, output_kind=kind_b)
    names = list(DELTA_METRICS)
    cis = paired_bootstrap_intervals(y, sa, sb, task_kind=a.task_kind, labels=labels, names=names,
                                     output_kind=kind_a, resamples=resamples, seed=a.seed)
    if values is None:
        va = compute_metrics(y, sa, task_kind=a.task_kind, labels=labels, names=names, output_kind=kind_a)
        vb = compute_metrics(y, sb, task_kind=b.task_kind, labels=labels, names=names, output_kind=kind_a)
        values = {m: float(vb[m]) - float(va[m]) for m in names}
    return {m: {"delta": values[m], "ci_low": cis[m].low, "ci_high": cis[m].high,  # type: ignore[union-attr]
                "ci_level": cis[m].level, "resamples": resamples} for m in names}  # type: ignore[union-attr]


def _cross(a: RunRecord, b: RunRecord, labels: Sequence[str], resamples: int) -> dict[str, Any]:
    per_output = []
    for name, x in a.outputs.items():
        y = b.outputs[name].astype(np.float64)
        diff = np.abs(x.astype(np.float64) - y)
        agree = float((x.argmax(-1) == y.argmax(-1)).mean()) if x.ndim >= 2 and x.shape[-1] > 1 else None
        per_output.append({"output": name, "max_abs_diff": float(diff.max(initial=0.0)),
                           "max_rel_diff": float((diff / np.maximum(np.abs(x.astype(np.float64)), 1e-12)).max(initial=0.0)),
                           "argmax_agreement": agree})
    pa, pb = a.predictions(), b.predictions()
    flips = int((pa != pb).any(axis=tuple(range(1, pa.ndim))).sum()) if pa.ndim > 1 else int((pa != pb).sum())
    return {"a": a.backend, "b": b.backend, "per_output": per_output, "argmax_agreement": 1 - flips / max(len(pa), 1),
            "label_flips": flips, "metric_deltas": _deltas(a, b, labels, resamples)}
