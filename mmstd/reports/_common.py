"""What every human-readable rendering shares: ordering, number formats, the list of checks.

Renderers must agree with each other (the Markdown summary and the JUnit file list the same
checks with the same verdicts), so the checks and the formatting rules live here once.
"""
from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

# Headline metrics in reading order; anything else follows alphabetically.
_METRIC_ORDER = (
    "accuracy", "balanced_accuracy", "top_2_accuracy", "top_3_accuracy", "top_5_accuracy",
    "f1_macro", "f1_micro", "f1_weighted", "precision_macro", "precision_micro", "precision_weighted",
    "recall_macro", "recall_micro", "recall_weighted",
)
_AVERAGED = re.compile(r"^(f1|precision|recall)_(macro|micro|weighted|binary|samples)$")
_TOP_K = re.compile(r"^top_([0-9]+)_accuracy$")


def ordered_metrics(names: Iterable[str]) -> list[str]:
    """Headline metric names in reading order (accuracy first, then F1, precision, recall)."""
    rank = {n: i for i, n in enumerate(_METRIC_ORDER)}
    return sorted(set(names), key=lambda n: (rank.get(n, len(rank)), n))


def metric_title(name: str) -> str:
    """``f1_macro`` -> ``F1 (macro)``; ``top_2_accuracy`` -> ``Top-2 accuracy``."""
    if m := _AVERAGED.match(name):
        base = {"f1": "F1", "precision": "Precision", "recall": "Recall"}[m.group(1)]
        return f"{base} ({m.group(2)})"
    if m := _TOP_K.match(name):
        return f"Top-{m.group(1)} accuracy"
    return name.replace("_", " ").capitalize()


def fmt_score(x: float | None) -> str:
    return "–" if x is None else f"{x:.4f}"


def fmt_ci(low: float | None, high: float | None) -> str:
    return "" if low is None or high is None else f"[{low:.4f}, {high:.4f}]"


def fmt_delta(x: float) -> str:
    return f"{x:+.4f}"


def fmt_ms(x: float) -> str:
    """Milliseconds with about four significant digits."""
    if x < 10:
        return f"{x:.3f}"
    if x < 100:
        return f"{x:.2f}"
    if x < 1000:
        return f"{x:.1f}"
    return f"{x:.0f}"


def fmt_rate(x: float) -> str:
    return f"{x:.1f}" if x < 10_000 else f"{x:.0f}"


def fmt_diff(x: float) -> str:
    """A numeric difference, e.g. ``1.19e-07``; exact zero stays ``0``."""
    return "0" if x == 0 else f"{x:.2e}"


def fmt_pct(x: float | None) -> str:
    return "–" if x is None else f"{100 * x:.2f}%"


def fmt_bytes(n: int | None) -> str:
    if n is None:
        return "unknown memory"
    return f"{n / 2**30:.1f} GiB"


def short_digest(sha: str) -> str:
    return sha[:12]


def interval_note(report: Mapping[str, Any]) -> str:
    """One sentence on how the intervals were computed, from the first headline score."""
    first = report["backends"][0]["scores"]["headline"]
    s = first[ordered_metrics(first)[0]]
    if not s["resamples"]:
        return "No confidence intervals (no bootstrap resamples)."
    return f"Intervals: {round(100 * s['ci_level'], 2):g}% bootstrap, {s['resamples']} resamples."


def ci_label(report: Mapping[str, Any]) -> str:
    first = report["backends"][0]["scores"]["headline"]
    s = first[ordered_metrics(first)[0]]
    return f"{round(100 * s['ci_level'], 2):g}% CI" if s["resamples"] else "CI"


def title(report: Mapping[str, Any]) -> str:
    p = report["package"]
    return f"{p['name']}@{p['version']} on {report['suite']['ref']}"


def run_mode(report: Mapping[str, Any]) -> str:
    parts = ["quick run" if report["quick"] else "full run"]
    if report["limit"] is not None:
        parts.append(f"limited to the first {report['limit']} samples")
    return ", ".join(parts)


def source_line(src: Mapping[str, Any]) -> str:
    """``torch 2.13.0 → ONNX via torch.onnx 2.13.0 (dynamo), opset 18`` from a card or report ``source``."""
    fw = " ".join(x for x in (src["framework"], src.get("framework_version")) if x)
    exporter = " ".join(x for x in (src["exporter"], src.get("exporter_version")) if x)
    path = f" ({src['exporter_path']})" if src.get("exporter_path") not in (None, "none") else ""
    return f"{fw} → ONNX via {exporter}{path}, opset {src['opset']}"


def cpu_line(env: Mapping[str, Any]) -> str:
    return f"{env['cpu_model']} ({env['cpu_cores']} cores, {fmt_bytes(env['memory_bytes'])})"


def gpu_lines(env: Mapping[str, Any]) -> list[str]:
    return [f"{g['name']} (driver {g['driver']}, {fmt_bytes(g['memory_bytes'])}"
            + (f", CUDA {g['cuda']}" if g.get("cuda") else "") + ")" for g in env["gpu"]]


def library_line(env: Mapping[str, Any]) -> str:
    return ", ".join(f"{k} {v}" for k, v in sorted(env["libraries"].items()))


def latency_rows(backend: Mapping[str, Any]) -> list[tuple[str, Mapping[str, Any]]]:
    """(mode, stats) for single-stream then each offline batch size, ascending."""
    lat = backend["latency"]
    rows: list[tuple[str, Mapping[str, Any]]] = [("single-stream", lat["single_stream"])]
    rows += [("offline", o) for o in sorted(lat["offline"], key=lambda o: o["batch_size"])]
    return rows


def protocol_line(protocol: Mapping[str, Any]) -> str:
    text = (f"{protocol['warmup_queries']} untimed warm-up queries, then queries until at least "
            f"{protocol['min_duration_s']:g} s and {protocol['min_queries']} queries")
    if protocol.get("max_duration_s"):
        text += f" (at most {protocol['max_duration_s']:g} s)"
    return text + "; percentiles by nearest rank."


def worst_classes(per_class: Sequence[Mapping[str, Any]], limit: int) -> list[Mapping[str, Any]]:
    """All rows when there are at most ``limit``; else the ``limit`` lowest-F1 rows, in label order."""
    if len(per_class) <= limit:
        return list(per_class)
    keep = sorted(range(len(per_class)), key=lambda i: (per_class[i]["f1"], i))[:limit]
    return [per_class[i] for i in sorted(keep)]


# ---------------------------------------------------------------------------------------- checks


@dataclass(frozen=True, slots=True)
class Check:
    """One pass/fail fact the report records about a backend (not a policy rule: the gate adds those).

    ``id`` is stable (JUnit test names, CI filters); ``title`` is for people.
    """

    backend: str
    id: str
    title: str
    passed: bool
    detail: str


def backend_checks(report: Mapping[str, Any], backend: Mapping[str, Any]) -> list[Check]:
    """The checks for one backend, in a fixed order: providers, reference parity, audits."""
    name = backend["name"]
    wanted, active = backend["providers_requested"][0], backend["providers_active"]
    checks = [Check(name, "providers", "Requested provider active", active[0] == wanted,
                    f"requested {wanted}; session.get_providers() = {', '.join(active)}")]
    for ref in report["parity"]["reference"]:
        if ref["backend"] != name:
            continue
        for o in ref["per_output"]:
            agree = "" if o["argmax_agreement"] is None else f", argmax agreement {fmt_pct(o['argmax_agreement'])}"
            checks.append(Check(
                name, f"parity.reference.{o['output']}", f"Matches {ref['against']} ({o['output']})", o["passed"],
                f"max abs diff {fmt_diff(o['max_abs_diff'])} (atol {ref['atol']:g}), max rel diff "
                f"{fmt_diff(o['max_rel_diff'])} (rtol {ref['rtol']:g}){agree}, {ref['samples']} samples"))
    audit = backend["audit"]
    checks.append(Check(name, "audit.latency_outputs_match_accuracy_run", "Timed outputs equal scored outputs",
                        audit["latency_outputs_match_accuracy_run"], f"max abs diff {fmt_diff(audit['max_abs_diff'])}"))
    checks.append(Check(name, "audit.repeat_run_identical", "Repeat run identical", audit["repeat_run_identical"],
                        f"max abs diff {fmt_diff(audit['max_abs_diff'])}"))
    return checks


def all_checks(report: Mapping[str, Any]) -> list[Check]:
    return [c for b in report["backends"] for c in backend_checks(report, b)]
