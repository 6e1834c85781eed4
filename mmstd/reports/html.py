"""``report.html``: one self-contained page with the report's tables and plots.

No script, no external resource: CSS is inline, plots are SVG made with matplotlib and embedded as
``data:`` images, and a Content-Security-Policy forbids anything else, so a label crafted by a
submitter can neither run code nor call home even if escaping were wrong. Text comes through
``html.escape``; matplotlib draws labels with math parsing off. Rendering is deterministic: the
SVGs carry no date, a fixed id salt, and glyphs as paths (no dependence on the viewer's fonts).
"""
from __future__ import annotations

import base64
import html
import io
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

#: Per-class tables and bar charts beyond these sizes keep the lowest-F1 classes.
MAX_CLASS_ROWS = 500
MAX_CLASS_BARS = 40
#: Confusion heat maps annotate counts and name every tick only up to these sizes.
MAX_ANNOTATED = 15
MAX_TICKS = 40
MAX_FOREST_ROWS = 60

_PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f")
_RC: dict[str, Any] = {
    "svg.hashsalt": "mmstd-report",
    "svg.fonttype": "path",
    "text.parse_math": False,
    "font.family": "DejaVu Sans",
    "font.size": 9,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.titlesize": 10,
    "figure.dpi": 100,
}

_CSS = """
:root { --ok: #1a7f37; --bad: #cf222e; --muted: #57606a; --line: #d0d7de; --bg: #f6f8fa; }
* { box-sizing: border-box; }
body { font: 14px/1.5 -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; color: #1f2328;
       max-width: 1180px; margin: 0 auto; padding: 24px; }
h1 { font-size: 26px; margin: 0 0 4px; }
h2 { font-size: 20px; border-bottom: 1px solid var(--line); padding-bottom: 4px; margin-top: 36px; }
h3 { font-size: 15px; margin: 20px 0 8px; }
.subtitle { color: var(--muted); margin: 0 0 12px; font-size: 16px; }
nav a { margin-right: 14px; color: #0969da; text-decoration: none; }
table { border-collapse: collapse; margin: 8px 0 12px; font-size: 13px; }
th, td { border: 1px solid var(--line); padding: 4px 10px; text-align: left; vertical-align: top;
         max-width: 480px; overflow-wrap: anywhere; }
th { background: var(--bg); font-weight: 600; }
tbody tr:nth-child(even) td { background: #fbfcfd; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
table.kv th { width: 130px; }
code { font: 12px ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; background: var(--bg);
       padding: 1px 4px; border-radius: 4px; white-space: nowrap; }
.ci { color: var(--muted); font-size: 12px; }
.pass { color: var(--ok); font-weight: 600; }
.fail { color: var(--bad); font-weight: 600; }
.verdict { display: inline-block; padding: 4px 12px; border-radius: 14px; font-weight: 600; }
.verdict.pass { background: #dafbe1; }
.verdict.fail { background: #ffebe9; }
.note { color: var(--muted); font-size: 13px; }
figure { margin: 12px 0 20px; }
figure img { max-width: 100%; height: auto; border: 1px solid var(--line); border-radius: 6px; background: #fff; }
figcaption { color: var(--muted); font-size: 13px; }
.figs { display: flex; flex-wrap: wrap; gap: 16px; }
footer { margin-top: 40px; color: var(--muted); font-size: 12px; }
"""

_CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"


def esc(text: object) -> str:
    return html.escape(str(text), quote=True)


def code(text: object) -> str:
    return f"<code>{esc(text)}</code>"


def _short(label: str, n: int = 24) -> str:
    return label if len(label) <= n else label[: n - 1] + "…"


def _table(header: Sequence[str], rows: Sequence[Sequence[str]], numeric: Sequence[int] = (),
           cls: str = "") -> str:
    """An HTML table; header and cells are already HTML. ``numeric`` columns are right-aligned."""
    num = set(numeric)
    head = "".join(f'<th{" class=num" if i in num else ""}>{h}</th>' for i, h in enumerate(header))
    body = "\n".join(
        "<tr>" + "".join(f'<td{" class=num" if i in num else ""}>{c}</td>' for i, c in enumerate(row)) + "</tr>"
        for row in rows)
    attr = f' class="{cls}"' if cls else ""
    return f"<table{attr}>\n<thead><tr>{head}</tr></thead>\n<tbody>\n{body}\n</tbody>\n</table>"


def _value_ci(value: float | None, low: float | None, high: float | None) -> str:
    ci = fmt_ci(low, high)
    return fmt_score(value) + (f' <span class="ci">{ci}</span>' if ci else "")


def _figure(uri: str, alt: str, caption: str) -> str:
    return (f'<figure><img src="{uri}" alt="{esc(alt)}"><figcaption>{esc(caption)}</figcaption></figure>')


class HtmlReporter:
    """Tables for every section plus confusion heat maps, latency CDFs, per-class F1 and variant deltas."""

    name = "html"
    filename = "report.html"

    def render(self, report: Mapping[str, Any]) -> str:
        import matplotlib

        with matplotlib.rc_context(_RC):  # type: ignore[arg-type]  # keys are rcParams names
            sections = [_summary(report), _checks(report), _scores(report), _per_class(report),
                        _confusion(report), _latency(report), _backends(report), _parity(report),
                        _variants(report)]
        sections = [s for s in sections if s[0]]
        nav = " ".join(f'<a href="#{sid}">{esc(name)}</a>' for sid, name, _ in sections)
        checks = all_checks(report)
        failed = sum(not c.passed for c in checks)
        verdict = (f'<span class="verdict pass">All {len(checks)} checks passed</span>' if not failed else
                   f'<span class="verdict fail">{failed} of {len(checks)} checks failed</span>')
        body = "\n".join(f'<section id="{sid}">\n<h2>{esc(name)}</h2>\n{content}\n</section>'
                         for sid, name, content in sections)
        page_title = f"mmstd evaluation: {title(report)}"
        return (
            "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
            f'<meta http-equiv="Content-Security-Policy" content="{_CSP}">\n'
            '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
            f"<title>{esc(page_title)}</title>\n<style>{_CSS}</style>\n</head>\n<body>\n"
            f"<header>\n<h1>mmstd evaluation</h1>\n<p class=\"subtitle\">{esc(title(report))}</p>\n"
            f"<p>{verdict}</p>\n<nav>{nav}</nav>\n</header>\n{body}\n"
            f"<footer>Rendered by mmstd from report.json (mmstd {esc(report['mmstd_version'])}, "
            f"schema {esc(report['schema_version'])}, run {esc(report['run_id'])}).</footer>\n"
            "</body>\n</html>\n"
        )


# -------------------------------------------------------------------------------------- sections

Section = tuple[str, str, str]


def _summary(r: Mapping[str, Any]) -> Section:
    p, s, env = r["package"], r["suite"], r["environment"]
    split = f"split {code(s['split'])}, " if s["split"] else ""
    rows = [
        ("Run", f"{code(r['run_id'])}, {esc(r['created'])}, seed {r['seed']}, {esc(run_mode(r))}"),
        ("Package", f"{code(p['path'])}, digest {code(short_digest(p['digest']))}"),
        ("Model", esc(f"{p['task_kind']}, {len(p['labels'])} labels, {p['fusion_strategy']} fusion; {source_line(p['source'])}")),
        ("Suite", f"{code(s['ref'])}, {split}{s['samples']} samples, data {code(short_digest(s['data_sha256']))}, "
                  f"fingerprint {code(short_digest(s['fingerprint']))}"),
        ("Machine", esc(f"{env['os']}, Python {env['python']}, {cpu_line(env)}")),
    ]
    rows += [("GPU", esc(g)) for g in gpu_lines(env)]
    rows += [("Libraries", esc(library_line(env))),
             ("Record", f"{code(r['record']['path'])}, sha256 {code(short_digest(r['record']['sha256']))}")]
    body = "\n".join(f"<tr><th>{k}</th><td>{v}</td></tr>" for k, v in rows)
    return "summary", "Summary", f'<table class="kv">\n<tbody>\n{body}\n</tbody>\n</table>'


def _checks(r: Mapping[str, Any]) -> Section:
    rows = [[code(c.backend), f'<span class="{"pass" if c.passed else "fail"}">{"✔ passed" if c.passed else "✘ failed"}</span>',
             esc(c.title), esc(c.detail)] for c in all_checks(r)]
    return "checks", "Checks", _table(["Backend", "Result", "Check", "Detail"], rows)


def _scores(r: Mapping[str, Any]) -> Section:
    backends = r["backends"]
    metrics = ordered_metrics(m for b in backends for m in b["scores"]["headline"])
    rows = []
    for m in metrics:
        cells = []
        for b in backends:
            s = b["scores"]["headline"].get(m)
            cells.append("–" if s is None else _value_ci(s["value"], s["ci_low"], s["ci_high"]))
        hib = next(b["scores"]["headline"][m]["higher_is_better"] for b in backends if m in b["scores"]["headline"])
        rows.append([f"{esc(metric_title(m))} {'↑' if hib else '↓'}"] + cells)
    header = ["Metric"] + [f"{code(b['name'])} <span class=ci>[{esc(ci_label(r))}]</span>" for b in backends]
    table = _table(header, rows, numeric=range(1, len(backends) + 1))
    shown = worst_classes(backends[0]["scores"]["per_class"], MAX_CLASS_BARS)
    caption = f"Per-class F1 with its {ci_label(r)}"
    if len(shown) < len(r["package"]["labels"]):
        caption += f" ({len(shown)} lowest-F1 classes of {len(r['package']['labels'])} on {backends[0]['name']})"
    fig = _figure(_per_class_plot(r, [c["label"] for c in shown]), "per-class F1 bar chart", caption + ".")
    return "scores", "Scores", f'{table}\n<p class="note">{esc(interval_note(r))}</p>\n{fig}'


def _per_class(r: Mapping[str, Any]) -> Section:
    parts = []
    for b in r["backends"]:
        rows_in = b["scores"]["per_class"]
        shown = worst_classes(rows_in, MAX_CLASS_ROWS)
        rows = [[esc(c["label"]), fmt_score(c["precision"]), fmt_score(c["recall"]),
                 _value_ci(c["f1"], c["f1_ci_low"], c["f1_ci_high"]), str(c["support"])] for c in shown]
        parts.append(f"<h3>{code(b['name'])}</h3>")
        if len(shown) < len(rows_in):
            parts.append(f'<p class="note">The {len(shown)} classes with the lowest F1 of {len(rows_in)}; '
                         "per_class.csv lists all.</p>")
        parts.append(_table(["Label", "Precision", "Recall", f"F1 <span class=ci>[{esc(ci_label(r))}]</span>",
                             "Support"], rows, numeric=(1, 2, 3, 4)))
    return "per-class", "Per-class scores", "\n".join(parts)


def _confusion(r: Mapping[str, Any]) -> Section:
    labels = r["package"]["labels"]
    figs = [_figure(_confusion_plot(labels, b["scores"]["confusion_matrix"], b["name"]),
                    f"confusion matrix heat map for {b['name']}",
                    f"{b['name']}: rows are true labels, columns predicted; colour is the share of the true class.")
            for b in r["backends"] if b["scores"].get("confusion_matrix") is not None]
    if not figs:
        return "", "", ""
    return "confusion", "Confusion matrices", f'<div class="figs">{"".join(figs)}</div>'


def _latency(r: Mapping[str, Any]) -> Section:
    rows = []
    for b in r["backends"]:
        for mode, s in latency_rows(b):
            rows.append([code(b["name"]), mode, str(s["batch_size"]), str(s["queries"])]
                        + [fmt_ms(s[f"latency_{k}_ms"]) for k in ("p50", "p90", "p95", "p99", "mean", "max")]
                        + [fmt_rate(s["throughput_per_s"])])
    header = ["Backend", "Mode", "Batch", "Queries", "p50 ms", "p90 ms", "p95 ms", "p99 ms", "Mean ms", "Max ms",
              "Samples/s"]
    notes = "".join(f'<p class="note">Protocol: {esc(p)}</p>'
                    for p in sorted({protocol_line(b["latency"]["protocol"]) for b in r["backends"]}))
    figs = [_figure(_cdf_plot(r), "single-stream latency CDF", "Single-stream (batch 1) latency distribution.")]
    if any(b["latency"]["offline"] for b in r["backends"]):
        figs.append(_figure(_throughput_plot(r), "throughput by batch size", "Throughput by batch size."))
    return "latency", "Latency", (_table(header, rows, numeric=range(2, 11)) + notes
                                  + f'<div class="figs">{"".join(figs)}</div>')


def _backends(r: Mapping[str, Any]) -> Section:
    rows = []
    for b in r["backends"]:
        so = b["session_options"]
        extra = {k: v for k, v in so.items() if k not in (
            "graph_optimization_level", "intra_op_num_threads", "inter_op_num_threads", "execution_mode")}
        rows.append([code(b["name"]), code(b["device"]), esc(", ".join(b["providers_active"])),
                     esc(so["graph_optimization_level"]), f"{so['intra_op_num_threads']} / {so['inter_op_num_threads']}",
                     esc(so["execution_mode"]), "yes" if b["io_binding"] else "no",
                     fmt_ms(b["session_create_ms"]), fmt_ms(b["first_run_ms"]),
                     esc(", ".join(f"{k}={_plain(v)}" for k, v in sorted(extra.items()))) or "–"])
    header = ["Backend", "Device", "Providers active", "Graph optimization", "Threads intra / inter", "Execution",
              "IO binding", "Session create ms", "First run ms", "Other options"]
    return "backends", "Backends", _table(header, rows, numeric=(7, 8))


def _plain(value: Any) -> str:
    if isinstance(value, Mapping):
        return "{" + ", ".join(f"{k}: {_plain(v)}" for k, v in sorted(value.items())) + "}"
    return str(value)


def _parity(r: Mapping[str, Any]) -> Section:
    parity = r["parity"]
    rows = [[code(ref["backend"]), esc(o["output"]), fmt_diff(o["max_abs_diff"]), fmt_diff(o["max_rel_diff"]),
             fmt_pct(o["argmax_agreement"]), f"{ref['atol']:g} / {ref['rtol']:g}", str(ref["samples"]),
             f'<span class="{"pass" if o["passed"] else "fail"}">{"✔ passed" if o["passed"] else "✘ failed"}</span>']
            for ref in parity["reference"] for o in ref["per_output"]]
    parts = ["<h3>Against the source framework (reference.safetensors)</h3>",
             _table(["Backend", "Output", "Max abs diff", "Max rel diff", "Argmax agreement", "atol / rtol", "Samples",
                     "Result"], rows, numeric=(2, 3, 4, 5, 6))]
    for p in parity.get("cross_backend", []):
        parts.append(f"<h3>{code(p['a'])} vs {code(p['b'])}</h3>")
        parts.append(f"<p>On {r['suite']['samples']} suite samples, predicted labels agree on "
                     f"{fmt_pct(p['argmax_agreement'])} ({p['label_flips']} flipped).</p>")
        rows = [[esc(o["output"]), fmt_diff(o["max_abs_diff"]), fmt_diff(o["max_rel_diff"]),
                 fmt_pct(o["argmax_agreement"])] for o in p["per_output"]]
        parts.append(_table(["Output", "Max abs diff", "Max rel diff", "Argmax agreement"], rows, numeric=(1, 2, 3)))
        if p["metric_deltas"]:
            rows = [[esc(metric_title(m)), fmt_delta(p["metric_deltas"][m]["delta"]),
                     fmt_ci(p["metric_deltas"][m]["ci_low"], p["metric_deltas"][m]["ci_high"]) or "–"]
                    for m in ordered_metrics(p["metric_deltas"])]
            parts.append(_table(["Metric", esc(f"{p['b']} − {p['a']}"), esc(ci_label(r))], rows, numeric=(1, 2)))
    return "parity", "Parity", "\n".join(parts)


def _variants(r: Mapping[str, Any]) -> Section:
    if not r["variants"]:
        return "", "", ""
    # One row per variant run; columns are the metrics with a delta (else every headline metric).
    metrics = ordered_metrics(m for v in r["variants"] for m in v["deltas"]) or ordered_metrics(
        m for v in r["variants"] for m in v["scores"]["headline"])
    rows = []
    for v in r["variants"]:
        cells = []
        for m in metrics:
            s, d = v["scores"]["headline"].get(m), v["deltas"].get(m)
            cell = "–" if s is None else _value_ci(s["value"], s["ci_low"], s["ci_high"])
            if d is not None:
                ci = fmt_ci(d["ci_low"], d["ci_high"])
                cell += f'<br>Δ {fmt_delta(d["delta"])}' + (f' <span class="ci">{ci}</span>' if ci else "")
            cells.append(cell)
        rows.append([code(v["name"]), code(v["kind"]), code(v["backend"])] + cells)
    header = ["Variant", "Kind", "Backend"] + [esc(metric_title(m)) for m in metrics]
    described = {v["name"]: v for v in r["variants"] if v.get("description") or v.get("params")}
    notes = "".join(
        f"<li>{code(v['name'])}: {esc(v.get('description', ''))}"
        + (f' <span class="ci">({esc(", ".join(f"{k}={x}" for k, x in sorted(v["params"].items())))})</span>'
           if v.get("params") else "") + "</li>"
        for v in described.values())
    parts = [f"<ul>{notes}</ul>" if notes else "", _table(header, rows, numeric=range(3, 3 + len(metrics))),
             f'<p class="note">Δ: the variant minus the unperturbed run on the same backend, with its '
             f"{esc(ci_label(r))}.</p>"]
    if any(v["deltas"] for v in r["variants"]):
        parts.append(_figure(_forest_plot(r), "variant deltas with confidence intervals",
                             f"Variant minus unperturbed run on the same backend, with {ci_label(r)}s."))
    return "variants", "Variants", "\n".join(p for p in parts if p)


# ----------------------------------------------------------------------------------------- plots


def _svg_uri(fig: Any) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="svg", bbox_inches="tight", metadata={"Date": None, "Creator": "mmstd"})
    return "data:image/svg+xml;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _new_figure(width: float, height: float) -> Any:
    # A bare Figure: no pyplot state, no GUI backend, nothing left behind between renders.
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), layout="constrained")


def _per_class_plot(r: Mapping[str, Any], labels: Sequence[str]) -> str:
    backends = r["backends"]
    nb = len(backends)
    fig = _new_figure(7.0, max(2.2, 0.28 * len(labels) * nb + 0.9))
    ax = fig.add_subplot()
    height = 0.8 / nb
    for k, b in enumerate(backends):
        by_label = {c["label"]: c for c in b["scores"]["per_class"]}
        rows = [by_label[lab] for lab in labels]
        ys = [i + (k - (nb - 1) / 2) * height for i in range(len(labels))]
        f1 = [c["f1"] for c in rows]
        err = [[c["f1"] - c["f1_ci_low"] if c["f1_ci_low"] is not None else 0 for c in rows],
               [c["f1_ci_high"] - c["f1"] if c["f1_ci_high"] is not None else 0 for c in rows]]
        ax.barh(ys, f1, height=height * 0.9, color=_PALETTE[k % len(_PALETTE)], label=b["name"],
                xerr=err, error_kw={"ecolor": "#333333", "capsize": 2, "elinewidth": 0.8})
    ax.set_yticks(range(len(labels)), [_short(lab) for lab in labels])
    ax.set_ylim(len(labels) - 0.5, -0.5)     # first label on top, no autoscale padding
    ax.set_xlim(0, 1.0)
    ax.set_xlabel("F1")
    ax.grid(axis="x", color="#dddddd", linewidth=0.6)
    ax.set_axisbelow(True)
    fig.legend(loc="outside upper center", ncols=min(nb, 4), frameon=False, fontsize=8)
    return _svg_uri(fig)


def _confusion_plot(labels: Sequence[str], cm: Sequence[Sequence[int]], backend: str) -> str:
    n = len(labels)
    side = max(3.2, min(0.42 * n + 1.8, 11.0))
    fig = _new_figure(side + 0.8, side)
    ax = fig.add_subplot()
    shares = [[v / max(sum(row), 1) for v in row] for row in cm]
    image = ax.imshow(shares, cmap="Blues", vmin=0.0, vmax=1.0, interpolation="nearest")
    fig.colorbar(image, ax=ax, shrink=0.8, label="share of true class")
    if n <= MAX_ANNOTATED:
        for i in range(n):
            for j in range(n):
                ax.text(j, i, str(cm[i][j]), ha="center", va="center", fontsize=8,
                        color="white" if shares[i][j] > 0.55 else "#1f2328")
    if n <= MAX_TICKS:
        ticks = [_short(lab, 14) for lab in labels]
        ax.set_xticks(range(n), ticks, rotation=45 if max(map(len, ticks)) > 3 else 0, ha="right")
        ax.set_yticks(range(n), ticks)
    else:
        ax.set_xticks([])
        ax.set_yticks([])
    ax.spines[:].set_visible(False)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(backend)
    return _svg_uri(fig)


def _cdf_plot(r: Mapping[str, Any]) -> str:
    fig = _new_figure(6.4, 3.4)
    ax = fig.add_subplot()
    lows, highs = [], []
    for k, b in enumerate(r["backends"]):
        s = b["latency"]["single_stream"]
        cdf = s["cdf"]
        ms, q = [cdf["ms"][0], *cdf["ms"]], [0.0, *cdf["q"]]
        color = _PALETTE[k % len(_PALETTE)]
        ax.plot(ms, q, drawstyle="steps-post", color=color, linewidth=1.4,
                label=f"{b['name']}  p50 {fmt_ms(s['latency_p50_ms'])} ms, p99 {fmt_ms(s['latency_p99_ms'])} ms")
        ax.axvline(s["latency_p99_ms"], color=color, linestyle=":", linewidth=0.9)
        lows.append(max(s["latency_min_ms"], 1e-6))
        highs.append(max(s["latency_max_ms"], 1e-6))
    if max(highs) / min(lows) > 20:
        ax.set_xscale("log")
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("latency (ms); dotted: p99")
    ax.set_ylabel("share of queries")
    ax.grid(color="#dddddd", linewidth=0.6)
    fig.legend(loc="outside upper center", ncols=min(len(r["backends"]), 3), frameon=False, fontsize=8)
    return _svg_uri(fig)


def _throughput_plot(r: Mapping[str, Any]) -> str:
    backends = r["backends"]
    sizes = sorted({1} | {o["batch_size"] for b in backends for o in b["latency"]["offline"]})
    fig = _new_figure(6.0, 3.2)
    ax = fig.add_subplot()
    width = 0.8 / len(backends)
    for k, b in enumerate(backends):
        by_size = {s["batch_size"]: s["throughput_per_s"] for _, s in latency_rows(b)}
        xs = [i + (k - (len(backends) - 1) / 2) * width for i, size in enumerate(sizes) if size in by_size]
        ys = [by_size[size] for size in sizes if size in by_size]
        ax.bar(xs, ys, width=width * 0.9, color=_PALETTE[k % len(_PALETTE)], label=b["name"])
    ax.set_xticks(range(len(sizes)), [str(s) for s in sizes])
    ax.set_xlabel("batch size (1 = single-stream)")
    ax.set_ylabel("samples / s")
    ax.grid(axis="y", color="#dddddd", linewidth=0.6)
    ax.set_axisbelow(True)
    fig.legend(loc="outside upper center", ncols=min(len(backends), 4), frameon=False, fontsize=8)
    return _svg_uri(fig)


def _forest_plot(r: Mapping[str, Any]) -> str:
    metrics = ordered_metrics(m for v in r["variants"] for m in v["deltas"])
    groups = [v for v in r["variants"] if v["deltas"]][:MAX_FOREST_ROWS]
    fig = _new_figure(6.8, max(2.0, 0.22 * len(groups) * len(metrics) + 1.0))
    ax = fig.add_subplot()
    step = 0.8 / len(metrics)
    for k, m in enumerate(metrics):
        pts = [(i + (k - (len(metrics) - 1) / 2) * step, v["deltas"][m]) for i, v in enumerate(groups)
               if m in v["deltas"]]
        if not pts:
            continue
        err = [[d["delta"] - d["ci_low"] if d["ci_low"] is not None else 0 for _, d in pts],
               [d["ci_high"] - d["delta"] if d["ci_high"] is not None else 0 for _, d in pts]]
        ax.errorbar([d["delta"] for _, d in pts], [y for y, _ in pts], xerr=err, fmt="o", markersize=4, capsize=2,
                    elinewidth=1, color=_PALETTE[k % len(_PALETTE)], label=metric_title(m))
    ax.axvline(0, color="#555555", linewidth=0.8)
    ax.set_yticks(range(len(groups)), [f"{_short(v['name'])} · {v['backend']}" for v in groups])
    ax.set_ylim(len(groups) - 0.5, -0.5)
    ax.set_xlabel("Δ vs unperturbed run")
    ax.grid(axis="x", color="#dddddd", linewidth=0.6)
    fig.legend(loc="outside upper center", ncols=min(len(metrics), 4), frameon=False, fontsize=8)
    return _svg_uri(fig)
