"""Reading, checking and writing ``report.json`` and its renderings.

A report is a plain dict valid against ``schemas/report.schema.json`` plus the rules a schema
cannot state (labels and confusion matrices agree, percentiles are ordered, every backend a
section names exists). ``load_report`` and ``write_report`` enforce both, so a renderer or the gate
never sees a report that contradicts itself.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

from mmstd.errors import ReportError
from mmstd.files import atomic_write_bytes
from mmstd.schema import parse_document, validate

SCHEMA_VERSION = "1.0"
DEFAULT_FORMATS = ("json", "md", "html", "junit", "csv")
CDF_POINTS = 200
MAX_PROBLEMS = 50
# Tolerance for numbers the evaluator derives from others (sums, differences of scores).
_EPS = 1e-6


class Reporter(Protocol):
    """One report format. ``render`` must be pure: same dict in, same bytes out."""

    name: str
    filename: str

    def render(self, report: Mapping[str, Any]) -> str | bytes:
        """Render ``report`` (already valid) as this format."""
        ...


ReporterFactory = Callable[[], Reporter]


# ------------------------------------------------------------------------------------- checking


def report_problems(report: Any, *, source: str = "report") -> list[str]:
    """Every schema problem of ``report``, or, when it has none, every inconsistency.

    Returns:
        Messages shaped ``"<source>: <json path>: <what is wrong>"``; empty when the report is valid.
    """
    problems = _nonfinite(report, source, "$") + validate(report, "report", source=source)
    if problems:
        return problems
    return _semantic_problems(report, source)


def _nonfinite(value: Any, source: str, path: str) -> list[str]:
    # JSON Schema's "number" admits NaN and Infinity, which JSON cannot carry.
    if isinstance(value, float) and not math.isfinite(value):
        return [f"{source}: {path}: expected a finite number, got {value!r}."]
    if isinstance(value, Mapping):
        return [p for k, v in value.items() for p in _nonfinite(v, source, f"{path}.{k}")]
    if isinstance(value, list):
        return [p for i, v in enumerate(value) for p in _nonfinite(v, source, f"{path}[{i}]")]
    return []


def check_report(report: Any, *, source: str = "report") -> None:
    """Raise unless ``report`` is a valid, self-consistent report.

    Raises:
        ReportError: ``E_DOCUMENT_SCHEMA`` listing every problem with its JSON path.
    """
    problems = report_problems(report, source=source)
    if not problems:
        return
    shown = problems[:MAX_PROBLEMS]
    if len(problems) > MAX_PROBLEMS:
        shown.append(f"... and {len(problems) - MAX_PROBLEMS} more")
    version = report.get("schema_version") if isinstance(report, Mapping) else None
    hint = "see schemas/report.schema.json for every field."
    if isinstance(version, str) and version != SCHEMA_VERSION:
        hint = f"this mmstd reads report schema {SCHEMA_VERSION}; re-run 'mmstd evaluate' with it."
    raise ReportError(
        f"{source}: is not a valid report ({len(problems)} problem{'s' * (len(problems) > 1)}).",
        code="E_DOCUMENT_SCHEMA",
        problems=shown,
        hint=hint,
    )


def _semantic_problems(r: Mapping[str, Any], source: str) -> list[str]:
    out: list[str] = []

    def bad(path: str, msg: str) -> None:
        out.append(f"{source}: {path}: {msg}")

    labels = r["package"]["labels"]
    suite = r["suite"]
    if suite["ref"] != f"{suite['name']}@{suite['version']}":
        bad("$.suite.ref", f"expected {suite['name']}@{suite['version']!s}, got {suite['ref']!r}.")
    names = [b["name"] for b in r["backends"]]
    for i, name in enumerate(names):
        if name in names[:i]:
            bad(f"$.backends[{i}].name", f"backend {name!r} appears twice; expected one entry per backend.")
    headlines = {b["name"]: b["scores"]["headline"] for b in r["backends"]}
    for i, b in enumerate(r["backends"]):
        where = f"$.backends[{i}]"
        _check_scores(b["scores"], labels, r["package"]["task_kind"], suite["samples"], f"{where}.scores", bad)
        _check_latency(b["latency"], f"{where}.latency", bad)

    parity = r["parity"]
    for i, ref in enumerate(parity["reference"]):
        if ref["backend"] not in names:
            bad(f"$.parity.reference[{i}].backend", f"{ref['backend']!r} is not a backend of this report ({', '.join(names)}).")
        if ref["passed"] != all(o["passed"] for o in ref["per_output"]):
            bad(f"$.parity.reference[{i}].passed", "expected true exactly when every output passed.")
    pairs: set[tuple[str, str]] = set()
    for i, pair in enumerate(parity.get("cross_backend", [])):
        where = f"$.parity.cross_backend[{i}]"
        for side in ("a", "b"):
            if pair[side] not in names:
                bad(f"{where}.{side}", f"{pair[side]!r} is not a backend of this report ({', '.join(names)}).")
        if pair["a"] == pair["b"]:
            bad(f"{where}.b", f"compares {pair['a']!r} with itself.")
        key = (pair["a"], pair["b"])
        if key in pairs or key[::-1] in pairs:
            bad(where, f"the pair {pair['a']!r}/{pair['b']!r} appears twice.")
        pairs.add(key)
        if pair["label_flips"] > suite["samples"]:
            bad(f"{where}.label_flips", f"{pair['label_flips']} flips among {suite['samples']} samples.")
        if pair["a"] in headlines and pair["b"] in headlines:
            _check_deltas(pair["metric_deltas"], headlines[pair["b"]], headlines[pair["a"]], f"{where}.metric_deltas", bad)
    if len(names) > 1 and "cross_backend" not in parity:
        bad("$.parity", f"{len(names)} backends but no cross_backend comparison.")

    seen: set[tuple[str, str]] = set()
    for i, v in enumerate(r["variants"]):
        where = f"$.variants[{i}]"
        if (v["name"], v["backend"]) in seen:
            bad(f"{where}.name", f"variant {v['name']!r} on {v['backend']!r} appears twice.")
        seen.add((v["name"], v["backend"]))
        if v["backend"] not in names:
            bad(f"{where}.backend", f"{v['backend']!r} is not a backend of this report ({', '.join(names)}).")
            continue
        _check_scores(v["scores"], labels, r["package"]["task_kind"], suite["samples"], f"{where}.scores", bad)
        _check_deltas(v["deltas"], v["scores"]["headline"], headlines[v["backend"]], f"{where}.deltas", bad)
    return out


def _check_scores(scores: Mapping[str, Any], labels: Sequence[str], task_kind: str, samples: int, where: str,
                  bad: Callable[[str, str], None]) -> None:
    for metric, s in scores["headline"].items():
        if s["ci_low"] is not None and s["ci_high"] is not None and s["ci_low"] > s["ci_high"]:
            bad(f"{where}.headline.{metric}", f"ci_low {s['ci_low']} > ci_high {s['ci_high']}.")
    per_class = scores.get("per_class")
    if per_class is not None:
        got = [row["label"] for row in per_class]
        if got != list(labels):
            bad(f"{where}.per_class", f"labels {_brief(got)} differ from package.labels {_brief(labels)}; "
                "expected one row per label in the same order.")
        for j, row in enumerate(per_class):
            lo, hi = row["f1_ci_low"], row["f1_ci_high"]
            if (lo is None) != (hi is None) or (lo is not None and lo > hi):
                bad(f"{where}.per_class[{j}]", f"f1 interval [{lo}, {hi}] is not an interval.")
    cm = scores.get("confusion_matrix")
    if cm is None:
        if task_kind != "multilabel" and per_class is not None:
            bad(where, "missing required field 'confusion_matrix' (multiclass and binary tasks).")
        return
    n = len(labels)
    if len(cm) != n or any(len(row) != n for row in cm):
        bad(f"{where}.confusion_matrix", f"expected {n}x{n} (one row and column per label), "
            f"got {len(cm)}x{max((len(row) for row in cm), default=0)}.")
        return
    total = sum(map(sum, cm))
    if total != samples:
        bad(f"{where}.confusion_matrix", f"counts sum to {total}; expected suite.samples = {samples}.")
    if per_class is not None and len(per_class) == n:
        for j, row in enumerate(per_class):
            if row["support"] != sum(cm[j]):
                bad(f"{where}.per_class[{j}].support", f"{row['support']} differs from confusion row sum {sum(cm[j])}.")


def _check_latency(lat: Mapping[str, Any], where: str, bad: Callable[[str, str], None]) -> None:
    blocks = [("single_stream", lat["single_stream"])] + [(f"offline[{i}]", o) for i, o in enumerate(lat["offline"])]
    for name, s in blocks:
        chain = ["latency_min_ms", "latency_p50_ms", "latency_p90_ms", "latency_p95_ms", "latency_p99_ms",
                 "latency_max_ms"]
        for lo, hi in zip(chain, chain[1:], strict=False):
            if s[lo] > s[hi] + _EPS:
                bad(f"{where}.{name}.{hi}", f"{s[hi]} is below {lo} = {s[lo]}; expected ordered percentiles.")
        if not s["latency_min_ms"] - _EPS <= s["latency_mean_ms"] <= s["latency_max_ms"] + _EPS:
            bad(f"{where}.{name}.latency_mean_ms", "expected a mean between latency_min_ms and latency_max_ms.")
        cdf = s.get("cdf")
        if cdf is not None:
            q, ms = cdf["q"], cdf["ms"]
            if len(q) != len(ms):
                bad(f"{where}.{name}.cdf", f"q has {len(q)} points but ms has {len(ms)}.")
            elif any(b < a for a, b in zip(q, q[1:], strict=False)) or any(b < a for a, b in zip(ms, ms[1:], strict=False)):
                bad(f"{where}.{name}.cdf", "expected q and ms both ascending.")
            elif q[-1] != 1 or not math.isclose(ms[-1], s["latency_max_ms"], rel_tol=_EPS, abs_tol=_EPS):
                bad(f"{where}.{name}.cdf", "expected the last point to be q = 1 at latency_max_ms.")
    sizes = [o["batch_size"] for o in lat["offline"]]
    if len(set(sizes)) != len(sizes):
        bad(f"{where}.offline", f"batch sizes {sizes} repeat; expected one entry per batch size.")


def _check_deltas(deltas: Mapping[str, Any], now: Mapping[str, Any], base: Mapping[str, Any], where: str,
                  bad: Callable[[str, str], None]) -> None:
    for metric, d in deltas.items():
        if metric not in now or metric not in base:
            bad(f"{where}.{metric}", "is not a headline metric on both sides of the comparison.")
            continue
        expected = now[metric]["value"] - base[metric]["value"]
        if not math.isclose(d["delta"], expected, abs_tol=_EPS):
            bad(f"{where}.{metric}.delta", f"{d['delta']} differs from the scores' difference {expected:.6g}.")
        if d["ci_low"] is not None and d["ci_high"] is not None and d["ci_low"] > d["ci_high"]:
            bad(f"{where}.{metric}", f"ci_low {d['ci_low']} > ci_high {d['ci_high']}.")


def _brief(items: Sequence[str]) -> str:
    shown = ", ".join(map(repr, items[:5]))
    return f"[{shown}{', ...' if len(items) > 5 else ''}]"


# ------------------------------------------------------------------------------ reading, writing


def load_report(path: Path) -> dict[str, Any]:
    """Read ``report.json`` strictly and check it.

    Raises:
        MmstdError: ``E_NOT_FOUND``, ``E_FS_NOT_REGULAR`` or ``E_FORMAT_CORRUPT`` (not strict JSON:
            duplicate keys, NaN, BOM, nesting, huge numbers).
        ReportError: ``E_DOCUMENT_SCHEMA`` listing every problem with its JSON path.
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise ReportError(f"{path}: no such file.", code="E_NOT_FOUND") from None
    except IsADirectoryError:
        raise ReportError(f"{path}: is a directory; expected a report.json file.", code="E_FS_NOT_REGULAR") from None
    doc = parse_document(data, source=path.name, fmt="json", code="E_FORMAT_CORRUPT")
    check_report(doc, source=path.name)
    return doc


def render_report(report: Mapping[str, Any], fmt: str) -> str | bytes:
    """Render ``report`` as ``fmt`` (a ``REPORTERS`` key) without checking it first.

    Raises:
        RegistryError: Unknown format; the message suggests the closest.
    """
    from mmstd.reports import REPORTERS

    return REPORTERS.get(fmt)().render(report)


def write_report(
    report: Mapping[str, Any],
    out_dir: Path,
    formats: Sequence[str] = DEFAULT_FORMATS,
    *,
    overwrite: bool = False,
) -> dict[str, Path]:
    """Check ``report``, render every format, then write each file atomically into ``out_dir``.

    Nothing is written unless every format rendered and, without ``overwrite``, no target exists:
    a directory never ends up holding renderings of two different runs.

    Args:
        report: A report dict, e.g. from ``make_report``.
        out_dir: Created if missing.
        formats: ``REPORTERS`` keys; default every built-in format.
        overwrite: Replace existing files.

    Returns:
        Format -> the path written (report.json, report.md, report.html, junit.xml, per_class.csv).

    Raises:
        ReportError: ``E_DOCUMENT_SCHEMA`` for an invalid report; ``E_OUTPUT_EXISTS`` naming every
            file already there; ``E_USAGE`` when two formats share a file name.
        RegistryError: An unknown format.
    """
    from mmstd.reports import REPORTERS

    check_report(report, source="report")
    out_dir = Path(out_dir)
    reporters = {fmt: REPORTERS.get(fmt)() for fmt in dict.fromkeys(formats)}
    targets = {fmt: out_dir / rep.filename for fmt, rep in reporters.items()}
    clash = sorted({p.name for p in targets.values() if list(targets.values()).count(p) > 1})
    if clash:
        raise ReportError(f"formats {', '.join(reporters)} would write {', '.join(clash)} twice.", code="E_USAGE")
    rendered = {}
    for fmt, rep in reporters.items():
        body = rep.render(report)
        rendered[fmt] = body.encode("utf-8") if isinstance(body, str) else body
    existing = [p for p in targets.values() if p.exists() or p.is_symlink()]
    if existing and not overwrite:
        raise ReportError(
            f"{out_dir}: already holds {', '.join(p.name for p in existing)}; refusing to overwrite.",
            code="E_OUTPUT_EXISTS",
            hint="choose another output directory, or pass --force to replace them.",
        )
    for fmt, path in targets.items():
        atomic_write_bytes(path, rendered[fmt], overwrite=overwrite)
    return targets


# --------------------------------------------------------------------------------------- helpers


def cdf_points(latencies_ms: Sequence[float], *, points: int = CDF_POINTS) -> dict[str, list[float]]:
    """The ``cdf`` block of a latency entry: nearest-rank quantiles for plotting.

    With ``n <= points`` latencies every sorted latency is a point (q = rank / n); otherwise
    ``points`` evenly spaced quantiles q = i / points, i = 1..points, each the nearest-rank value
    (the ceil(q * n)-th smallest). The last point is always q = 1, the maximum.

    Examples:
        >>> cdf_points([3.0, 1.0, 2.0, 4.0])
        {'q': [0.25, 0.5, 0.75, 1.0], 'ms': [1.0, 2.0, 3.0, 4.0]}

    Raises:
        ValueError: No latencies, or a negative or non-finite one.
    """
    values = sorted(float(x) for x in latencies_ms)
    if not values or not all(math.isfinite(x) and x >= 0 for x in values):
        raise ValueError("cdf_points needs at least one finite, non-negative latency.")
    n = len(values)
    if n <= points:
        return {"q": [(i + 1) / n for i in range(n)], "ms": values}
    # Integer ranks: ceil(i * n / points) in floats can land one rank high (5.000000000000001).
    ranks = [-(-i * n // points) for i in range(1, points + 1)]
    return {"q": [i / points for i in range(1, points + 1)], "ms": [values[r - 1] for r in ranks]}
