"""``report.md``: the report as GitHub-flavoured Markdown, sized for a CI step summary.

Plain Markdown only (no HTML), every table cell escaped: labels, output names and versions come
from the submitted package and must render as text, never as markup or links.
"""
from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from mmstd.reports._common import (
    all_checks,
    ci_label,
    cpu_line,
    fmt_ci,
    fmt_delta,
    fmt_diff,
    fmt_ms,
    fmt_pct,
    fmt_rate,
    fmt_score,
    gpu_lines,
    interval_note,
    latency_rows,
    library_line,
    metric_title,
    ordered_metrics,
    protocol_line,
    run_mode,
    short_digest,
    source_line,
    title,
    worst_classes,
)

#: Per-class tables longer than this show only the lowest-F1 classes (per_class.csv has all).
MAX_CLASS_ROWS = 50
#: Confusion matrices are tabled only up to this many labels (report.html plots any size).
MAX_MATRIX_LABELS = 20

# Enough to stop emphasis, code, links, autolinks, HTML, entities, strike-through and cell breaks.
_MD_SPECIAL = re.compile(r"([\\`*_\[\]<>|~&])")


def md(text: object) -> str:
    """Escape ``text`` for a Markdown table cell: every markup character, and newlines."""
    s = re.sub(r"[\r\n\t]+", " ", str(text))
    return _MD_SPECIAL.sub(r"\\\1", s)


def code(text: str) -> str:
    """Inline code for identifiers the schema restricts to safe characters (names, digests)."""
    return f"`{text}`"


def table(header: Sequence[str], rows: Sequence[Sequence[str]], align: str = "") -> list[str]:
    """A GFM table; ``align`` holds one of 'l', 'r' per column (default left)."""
    marks = [("---:" if a == "r" else "---") for a in align.ljust(len(header), "l")]
    return ["| " + " | ".join(header) + " |", "| " + " | ".join(marks) + " |"] + [
        "| " + " | ".join(r) + " |" for r in rows
    ]


class MarkdownReporter:
    """Headline scores with intervals, checks, per-class scores, latency, parity and variants."""

    name = "md"
    filename = "report.md"

    def render(self, report: Mapping[str, Any]) -> str:
        out: list[str] = []
        for section in (_header, _checks, _scores, _per_class, _confusion, _latency, _backends, _parity, _variants):
            lines = section(report)
            if lines:
                out += lines + [""]
        out.append(f"_Rendered by mmstd from report.json (mmstd {md(report['mmstd_version'])}, "
                   f"schema {report['schema_version']})._")
        return "\n".join(out) + "\n"


def _header(r: Mapping[str, Any]) -> list[str]:
    p, s, env = r["package"], r["suite"], r["environment"]
    split = f"split {code(s['split'])}, " if s["split"] else ""
    rows = [
        ["Run", f"{code(r['run_id'])}, {r['created']}, seed {r['seed']}, {run_mode(r)}"],
        ["Package", f"{code(p['path'])}, digest {code(short_digest(p['digest']))}"],
        ["Model", f"{p['task_kind']}, {len(p['labels'])} labels, {p['fusion_strategy']} fusion; {md(source_line(p['source']))}"],
        ["Suite", f"{code(s['ref'])}, {split}{s['samples']} samples, data {code(short_digest(s['data_sha256']))}, "
                  f"fingerprint {code(short_digest(s['fingerprint']))}"],
        ["Machine", md(f"{env['os']}, Python {env['python']}, {cpu_line(env)}")],
    ]
    rows += [["GPU", md(g)] for g in gpu_lines(env)]
    rows += [["Libraries", md(library_line(env))],
             ["Record", f"{code(r['record']['path'])}, sha256 {code(short_digest(r['record']['sha256']))}"]]
    return [f"# mmstd evaluation: {md(title(r))}", ""] + table(["", ""], rows)


def _checks(r: Mapping[str, Any]) -> list[str]:
    checks = all_checks(r)
    failed = [c for c in checks if not c.passed]
    verdict = (f"**All {len(checks)} checks passed.**" if not failed
               else f"**{len(failed)} of {len(checks)} checks failed.**")
    rows = [[code(c.backend), ("✅ " if c.passed else "❌ ") + md(c.title), md(c.detail)] for c in checks]
    return ["## Checks", "", verdict, ""] + table(["Backend", "Check", "Detail"], rows)


def _scores(r: Mapping[str, Any]) -> list[str]:
    backends = r["backends"]
    metrics = ordered_metrics(m for b in backends for m in b["scores"]["headline"])
    rows = []
    for m in metrics:
        cells = []
        for b in backends:
            s = b["scores"]["headline"].get(m)
            cells.append("–" if s is None else f"{fmt_score(s['value'])} {fmt_ci(s['ci_low'], s['ci_high'])}".strip())
        hib = next(b["scores"]["headline"][m]["higher_is_better"] for b in backends if m in b["scores"]["headline"])
        rows.append([f"{metric_title(m)} {'↑' if hib else '↓'}"] + cells)
    header = ["Metric"] + [f"{code(b['name'])} [{ci_label(r)}]" for b in backends]
    return ["## Scores", ""] + table(header, rows, "l" + "r" * len(backends)) + ["", interval_note(r)]


def _per_class(r: Mapping[str, Any]) -> list[str]:
    out = ["## Per-class scores"]
    for b in r["backends"]:
        rows_in = b["scores"]["per_class"]
        shown = worst_classes(rows_in, MAX_CLASS_ROWS)
        rows = [[md(c["label"]), fmt_score(c["precision"]), fmt_score(c["recall"]),
                 f"{fmt_score(c['f1'])} {fmt_ci(c['f1_ci_low'], c['f1_ci_high'])}".strip(), str(c["support"])]
                for c in shown]
        out += ["", f"### {code(b['name'])}", ""]
        if len(shown) < len(rows_in):
            out += [f"The {len(shown)} classes with the lowest F1 of {len(rows_in)}; per_class.csv lists all.", ""]
        out += table(["Label", "Precision", "Recall", f"F1 [{ci_label(r)}]", "Support"], rows, "lrrrr")
    return out


def _confusion(r: Mapping[str, Any]) -> list[str]:
    labels = r["package"]["labels"]
    if all(b["scores"].get("confusion_matrix") is None for b in r["backends"]):
        return []     # multilabel tasks have per-class counts, not one matrix
    if len(labels) > MAX_MATRIX_LABELS:
        return ["## Confusion matrices", "", f"{len(labels)} labels: see report.html for the heat maps."]
    out = ["## Confusion matrices", "", "Rows are true labels, columns predicted labels."]
    for b in r["backends"]:
        cm = b["scores"].get("confusion_matrix")
        if cm is None:
            continue
        rows = [[f"**{md(lab)}**"] + [str(v) for v in row] for lab, row in zip(labels, cm, strict=True)]
        out += ["", f"### {code(b['name'])}", ""]
        out += table(["true \\ predicted"] + [md(lab) for lab in labels], rows, "l" + "r" * len(labels))
    return out


def _latency(r: Mapping[str, Any]) -> list[str]:
    rows = []
    for b in r["backends"]:
        for mode, s in latency_rows(b):
            rows.append([code(b["name"]), mode, str(s["batch_size"]), str(s["queries"])]
                        + [fmt_ms(s[f"latency_{k}_ms"]) for k in ("p50", "p90", "p95", "p99", "mean", "max")]
                        + [fmt_rate(s["throughput_per_s"])])
    header = ["Backend", "Mode", "Batch", "Queries", "p50 ms", "p90 ms", "p95 ms", "p99 ms", "Mean ms", "Max ms",
              "Samples/s"]
    protocols = {protocol_line(b["latency"]["protocol"]) for b in r["backends"]}
    notes = [f"Protocol: {p}" for p in sorted(protocols)]
    return ["## Latency", ""] + table(header, rows, "llrrrrrrrrr") + [""] + notes


def _backends(r: Mapping[str, Any]) -> list[str]:
    rows = []
    for b in r["backends"]:
        so = b["session_options"]
        rows.append([code(b["name"]), code(b["device"]), md(", ".join(b["providers_active"])),
                     so["graph_optimization_level"].removeprefix("ORT_").lower().replace("_", " "),
                     f"{so['intra_op_num_threads']} / {so['inter_op_num_threads']}",
                     so["execution_mode"].removeprefix("ORT_").lower(), "yes" if b["io_binding"] else "no",
                     fmt_ms(b["session_create_ms"]), fmt_ms(b["first_run_ms"])])
    header = ["Backend", "Device", "Providers active", "Graph optimization", "Threads intra / inter", "Execution",
              "IO binding", "Session create ms", "First run ms"]
    return ["## Backends", ""] + table(header, rows, "lllllllrr")


def _parity(r: Mapping[str, Any]) -> list[str]:
    parity = r["parity"]
    out = ["## Parity", "", "### Against the source framework", ""]
    rows = []
    for ref in parity["reference"]:
        for o in ref["per_output"]:
            rows.append([code(ref["backend"]), md(o["output"]), fmt_diff(o["max_abs_diff"]), fmt_diff(o["max_rel_diff"]),
                         fmt_pct(o["argmax_agreement"]), f"{ref['atol']:g} / {ref['rtol']:g}",
                         "✅ passed" if o["passed"] else "❌ failed"])
    out += table(["Backend", "Output", "Max abs diff", "Max rel diff", "Argmax agreement", "atol / rtol", "Result"],
                 rows, "llrrrrl")
    out += ["", f"On the {parity['reference'][0]['samples']} fixed inputs stored in "
                f"{code(parity['reference'][0]['against'])}."]
    pairs = parity.get("cross_backend", [])
    if not pairs:
        return out
    out += ["", "### Across backends", ""]
    rows = [[f"{code(p['a'])} vs {code(p['b'])}", md(o["output"]), fmt_diff(o["max_abs_diff"]),
             fmt_diff(o["max_rel_diff"]), fmt_pct(o["argmax_agreement"])] for p in pairs for o in p["per_output"]]
    out += table(["Backends", "Output", "Max abs diff", "Max rel diff", "Argmax agreement"], rows, "llrrr")
    for p in pairs:
        out += ["", f"{code(p['a'])} vs {code(p['b'])} on {r['suite']['samples']} suite samples: predicted labels agree "
                    f"on {fmt_pct(p['argmax_agreement'])} ({p['label_flips']} flipped)."]
        if p["metric_deltas"]:
            rows = [[metric_title(m), fmt_delta(d["delta"]), fmt_ci(d["ci_low"], d["ci_high"])]
                    for m, d in ((m, p["metric_deltas"][m]) for m in ordered_metrics(p["metric_deltas"]))]
            out += [""] + table(["Metric", f"{p['b']} − {p['a']}", ci_label(r)], rows, "lrr")
    return out


def _variants(r: Mapping[str, Any]) -> list[str]:
    if not r["variants"]:
        return []
    # One row per variant run; columns are the metrics with a delta (else every headline metric).
    metrics = ordered_metrics(m for v in r["variants"] for m in v["deltas"]) or ordered_metrics(
        m for v in r["variants"] for m in v["scores"]["headline"])
    rows = []
    for v in r["variants"]:
        cells = []
        for m in metrics:
            s, d = v["scores"]["headline"].get(m), v["deltas"].get(m)
            score = "–" if s is None else fmt_score(s["value"])
            cells.append(score if d is None else f"{score}, Δ {fmt_delta(d['delta'])} {fmt_ci(d['ci_low'], d['ci_high'])}".strip())
        rows.append([code(v["name"]), code(v["kind"]), code(v["backend"])] + cells)
    header = ["Variant", "Kind", "Backend"] + [metric_title(m) for m in metrics]
    notes = [f"Δ is the variant minus the unperturbed run on the same backend, with its {ci_label(r)}."]
    notes += [""] + [f"- {code(v['name'])}: {md(v['description'])}"
              for v in {v["name"]: v for v in r["variants"] if v.get("description")}.values()]
    notes = notes if notes[-1] else notes[:-1]
    return ["## Variants", ""] + table(header, rows, "lll" + "r" * len(metrics)) + [""] + notes
