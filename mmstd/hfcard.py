"""A Hugging Face Hub README (model card) from an mmstd card and its evaluation reports.

The README has YAML front matter the Hub reads (license, library, tags and a ``model-index`` with
one result per report: task, dataset = the suite, metrics with their values) and the card's
sections as Markdown, with each report's scores, latency and variants under "Quantitative
analyses". It is a pure function of the card and the reports: the same inputs give the same bytes.
"""
from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from mmstd.card import ModelCard
from mmstd.errors import ReportError
from mmstd.reports._common import (
    fmt_ci,
    fmt_delta,
    fmt_diff,
    fmt_ms,
    fmt_pct,
    fmt_rate,
    fmt_score,
    interval_note,
    metric_title,
    ordered_metrics,
    source_line,
    worst_classes,
)
from mmstd.reports.markdown import code, md, table

#: License ids the Hub knows (https://huggingface.co/docs/hub/repositories-licenses); others become
#: ``license: other`` with ``license_name``.
HF_LICENSES = frozenset("""
apache-2.0 mit openrail bigscience-openrail-m creativeml-openrail-m bigscience-bloom-rail-1.0 bigcode-openrail-m
afl-3.0 artistic-2.0 bsl-1.0 bsd bsd-2-clause bsd-3-clause bsd-3-clause-clear c-uda cc cc0-1.0 cc-by-2.0 cc-by-2.5
cc-by-3.0 cc-by-4.0 cc-by-sa-3.0 cc-by-sa-4.0 cc-by-nc-2.0 cc-by-nc-3.0 cc-by-nc-4.0 cc-by-nd-4.0 cc-by-nc-nd-3.0
cc-by-nc-nd-4.0 cc-by-nc-sa-2.0 cc-by-nc-sa-3.0 cc-by-nc-sa-4.0 cdla-sharing-1.0 cdla-permissive-1.0
cdla-permissive-2.0 wtfpl ecl-2.0 epl-1.0 epl-2.0 etalab-2.0 eupl-1.1 eupl-1.2 agpl-3.0 gfdl gpl gpl-2.0 gpl-3.0
lgpl lgpl-2.1 lgpl-3.0 isc h-research intel-research lppl-1.3c ms-pl apple-ascl apple-amlr mpl-2.0 odc-by odbl
openrail++ osl-3.0 postgresql ofl-1.1 ncsa unlicense zlib pddl lgpl-lr unknown other
""".split())

_AVERAGED = re.compile(r"^(f1|precision|recall)_(macro|micro|weighted|binary|samples)$")
_TOP_K = re.compile(r"^top_([0-9]+)_accuracy$")
MAX_CLASS_ROWS = 50


def render_hf_readme(card: ModelCard, reports: Sequence[Mapping[str, Any]] = (), *, digest: str | None = None) -> str:
    """The README.md for a Hub model repository holding this package.

    Args:
        card: The package's (sealed) card.
        reports: Valid reports of this package, one per suite; each becomes a ``model-index``
            result (scores of its first backend) and a subsection of "Quantitative analyses".
        digest: The package's digest; when given every report must name it.

    Raises:
        ReportError: ``E_DIGEST_MISMATCH`` when a report describes another package (digest, name,
            version or labels differ).
    """
    for i, r in enumerate(reports):
        _check_same_package(card, r, i, digest)
    front = _front_matter(card, reports)
    body = _body(card, reports)
    return f"---\n{front}---\n\n{body}"


def _check_same_package(card: ModelCard, r: Mapping[str, Any], i: int, digest: str | None) -> None:
    p = r["package"]
    problems = []
    if digest is not None and p["digest"] != digest:
        problems.append(f"digest {p['digest'][:12]}… differs from the package's {digest[:12]}…")
    if (p["name"], p["version"]) != (card.name, card.version):
        problems.append(f"it evaluated {p['name']}@{p['version']}, not {card.ref}")
    if list(p["labels"]) != list(card.labels):
        problems.append("its labels differ from the card's")
    if problems:
        raise ReportError(
            f"report {i + 1} ({r['suite']['ref']}, run {r['run_id']}) does not describe package {card.ref!r}.",
            code="E_DIGEST_MISMATCH", problems=problems,
            hint="render with the report.json that 'mmstd evaluate' wrote for this exact package.")


# --------------------------------------------------------------------------------- front matter


def hf_metric(name: str) -> dict[str, Any]:
    """The model-index ``type``/``args`` for an mmstd metric name (``f1_macro`` -> f1, average=macro)."""
    if m := _AVERAGED.match(name):
        return {"type": m.group(1), "args": {"average": m.group(2)}}
    if m := _TOP_K.match(name):
        return {"type": "top_k_accuracy", "args": {"k": int(m.group(1))}}
    return {"type": name}


def _task(card: ModelCard) -> dict[str, str]:
    modalities = sorted({s.modality for s in card.inputs if s.modality})
    kind = {"multiclass": "", "binary": "binary ", "multilabel": "multi-label "}[card.task_kind]
    if len(modalities) == 1:
        return {"type": f"{modalities[0]}-classification",
                "name": f"{modalities[0].capitalize()} {kind}classification".replace("  ", " ")}
    return {"type": "multimodal-classification",
            "name": f"Multimodal {kind}classification ({' + '.join(modalities)})".replace("  ", " ")}


def _front_matter(card: ModelCard, reports: Sequence[Mapping[str, Any]]) -> str:
    import yaml

    details = card.sections["model_details"]
    spdx = details["license"]
    meta: dict[str, Any] = {}
    if spdx.lower() in HF_LICENSES:
        meta["license"] = spdx.lower()
    else:
        meta["license"] = "other"
        meta["license_name"] = re.sub(r"[^a-z0-9.+-]+", "-", spdx.lower()).strip("-") or "custom"
    meta["library_name"] = "onnx"
    modalities = sorted({s.modality for s in card.inputs if s.modality})
    tags = ["mmstd", "onnx", f"{card.fusion_strategy}-fusion", card.task_kind, *modalities]
    if len(modalities) > 1:
        tags.insert(2, "multimodal")
    source = card.sections.get("source")
    if source and source["framework"] != "onnx":
        tags.append(source["framework"])
    meta["tags"] = tags
    if reports:
        task = _task(card)
        results = []
        for r in reports:
            backend = r["backends"][0]
            headline = backend["scores"]["headline"]
            dataset: dict[str, Any] = {"type": r["suite"]["name"], "name": r["suite"]["ref"]}
            if r["suite"]["split"]:
                dataset["split"] = r["suite"]["split"]
            metrics = []
            for m in ordered_metrics(headline):
                entry = {**hf_metric(m), "value": headline[m]["value"],
                         "name": f"{metric_title(m)}, {backend['name']}", "verified": False}
                metrics.append({k: entry[k] for k in ("type", "value", "name", "args", "verified") if k in entry})
            results.append({"task": dict(task), "dataset": dataset, "metrics": metrics})
        meta["model-index"] = [{"name": card.name, "results": results}]
    return yaml.safe_dump(meta, sort_keys=False, allow_unicode=True, default_flow_style=False, width=1000)


# ------------------------------------------------------------------------------------------ body


def _bullets(items: Sequence[str] | None) -> list[str]:
    return [f"- {md(x)}" for x in items or ()]


def _body(card: ModelCard, reports: Sequence[Mapping[str, Any]]) -> str:
    s = card.sections
    d = s["model_details"]
    out = [f"# {md(card.name)}", ""]
    if d.get("description"):
        out += [md(d["description"]), ""]
    out += ["> Generated by `mmstd card render` from the package's card.json"
            + (f" and {len(reports)} evaluation report{'s' * (len(reports) > 1)}." if reports else ".")
            + " Edit the card, not this file.", ""]

    out += ["## Model details", ""]
    owners = ", ".join(o["name"] + (f" ({o['contact']})" if o.get("contact") else "") for o in d["owners"])
    rows = [["Version", md(d["version"])], ["Owners", md(owners)], ["License", md(d["license"])]]
    if d.get("date"):
        rows.append(["Date", md(d["date"])])
    rows.append(["Task", f"{card.task_kind}, {len(card.labels)} labels"])
    rows.append(["Fusion", f"{card.fusion_strategy}: {md(s['fusion']['description'])}"])
    if s.get("source"):
        src = s["source"]
        rows.append(["Source", md(source_line(src)) + f", ONNX IR {src['ir_version']}"])
    out += table(["", ""], rows)
    if d.get("references"):
        out += ["", "References:", ""] + _bullets(d["references"])
    if d.get("citation"):
        out += ["", "Citation:", "", "```", d["citation"].replace("```", "'''"), "```"]
    out.append("")

    iu = s["intended_use"]
    out += ["## Intended use", "", "Primary uses:", ""] + _bullets(iu["primary_uses"])
    if iu.get("primary_users"):
        out += ["", "Primary users:", ""] + _bullets(iu["primary_users"])
    if iu.get("out_of_scope"):
        out += ["", "Out of scope:", ""] + _bullets(iu["out_of_scope"])
    out.append("")

    out += _contract(card)

    if f := s.get("factors"):
        out += ["## Factors", ""]
        if f.get("relevant"):
            out += ["Relevant factors:", ""] + _bullets(f["relevant"]) + [""]
        if f.get("evaluation"):
            out += ["Evaluation factors:", ""] + _bullets(f["evaluation"]) + [""]
    if m := s.get("metrics"):
        out += ["## Metrics", ""]
        if m.get("performance_measures"):
            out += ["Performance measures: " + ", ".join(code(x) if re.fullmatch(r"[a-z0-9_]+", x) else md(x)
                                                        for x in m["performance_measures"]) + ".", ""]
        for key, label in (("decision_thresholds", "Decision thresholds"), ("variation_approaches", "Variation")):
            if m.get(key):
                out += [f"{label}: {md(m[key])}", ""]
    for key, heading in (("evaluation_data", "Evaluation data"), ("training_data", "Training data")):
        if data := s.get(key):
            out += [f"## {heading}", ""] + _data_section(data)

    out += _quantitative(card, reports)

    if s.get("ethical_considerations"):
        out += ["## Ethical considerations", ""] + _bullets(s["ethical_considerations"]) + [""]
    if s.get("caveats"):
        out += ["## Caveats and recommendations", ""] + _bullets(s["caveats"]) + [""]
    if p := s.get("parity"):
        out += ["## Export parity", "",
                f"The ONNX graph was checked against the source framework on {p.get('samples', 'fixed')} inputs: "
                f"max abs diff {fmt_diff(p['max_abs_diff'])} (atol {p['atol']:g}), max rel diff "
                f"{fmt_diff(p['max_rel_diff'])} (rtol {p['rtol']:g}), argmax agreement {fmt_pct(p['argmax_agreement'])}: "
                + ("passed." if p["passed"] else "**failed**."), ""]
    if a := s.get("artifacts"):
        files = [a["model"], a["weights"], a["reference"], *a.get("external_data", ()), *a.get("assets", ())]
        out += ["## Files", ""] + table(["File", "Bytes", "sha256"],
                                        [[md(f["path"]), str(f["bytes"]), code(f["sha256"])] for f in files], "lrl")
        out += ["", "`manifest.json` pins every file; `mmstd validate` re-checks them.", ""]
    suites = [r["suite"]["name"] for r in reports] or ["SUITE"]
    out += ["## How to evaluate", "", "```bash", "pip install mmstd", "mmstd validate .",
            *[f"mmstd evaluate . --suite {name}" for name in dict.fromkeys(suites)], "```", ""]
    return "\n".join(out)


def _contract(card: ModelCard) -> list[str]:
    def value(v: Any) -> str:
        return str(v).lower() if isinstance(v, bool) else str(v)

    def op_text(op: Mapping[str, Any]) -> str:
        params = ", ".join(f"{k}={value(v)}" for k, v in op.items() if k != "op")
        return f"{op['op']}({params})" if params else op["op"]

    def shape(dims: Sequence[int | str]) -> str:
        return md("[" + ", ".join(map(str, dims)) + "]")

    rows = [[md(spec.name), spec.modality or "", spec.dtype, shape(spec.shape),
             md(" → ".join(op_text(op) for op in spec.preprocessing)) or "–"] for spec in card.inputs]
    out = ["## Inputs and outputs", "", "The graph's contract; every input is computed from the suite's canonical "
           "form of its modality by the listed standard operations.", ""]
    out += table(["Input", "Modality", "dtype", "Shape", "Preprocessing"], rows)
    out += [""] + table(["Output", "Kind", "dtype", "Shape"],
                        [[md(o.name), o.kind or "", o.dtype, shape(o.shape)] for o in card.outputs])
    out += ["", "Labels, in output order: " + ", ".join(md(lab) for lab in card.labels) + ".", ""]
    return out


def _data_section(data: Mapping[str, Any]) -> list[str]:
    out = []
    if data.get("datasets"):
        out += table(["Dataset", "Version", "Split"], [[md(x["name"]), md(x.get("version", "")), md(x.get("split", ""))]
                                                       for x in data["datasets"]]) + [""]
    for key in ("description", "motivation", "preprocessing"):
        if data.get(key):
            out += [f"{key.capitalize()}: {md(data[key])}", ""]
    return out


def _quantitative(card: ModelCard, reports: Sequence[Mapping[str, Any]]) -> list[str]:
    qa = card.sections.get("quantitative_analyses") or {}
    if not reports and not qa.get("results") and not qa.get("unitary") and not qa.get("intersectional"):
        return []
    out = ["## Quantitative analyses", ""]
    for r in reports:
        backends = r["backends"]
        out += [f"### {code(r['suite']['ref'])}", "",
                f"{r['suite']['samples']} samples" + (f" of split {code(r['suite']['split'])}" if r["suite"]["split"] else "")
                + f"; run {code(r['run_id'])} on {r['created']} with mmstd {md(r['mmstd_version'])}"
                + (" (quick run)" if r["quick"] else "") + ".", ""]
        metrics = ordered_metrics(m for b in backends for m in b["scores"]["headline"])
        rows = []
        for m in metrics:
            cells = []
            for b in backends:
                sc = b["scores"]["headline"].get(m)
                cells.append("–" if sc is None else f"{fmt_score(sc['value'])} {fmt_ci(sc['ci_low'], sc['ci_high'])}".strip())
            rows.append([metric_title(m)] + cells)
        out += table(["Metric"] + [code(b["name"]) for b in backends], rows, "l" + "r" * len(backends))
        out += ["", interval_note(r), ""]
        first = backends[0]
        shown = worst_classes(first["scores"]["per_class"], MAX_CLASS_ROWS)
        note = "" if len(shown) == len(first["scores"]["per_class"]) else f", the {len(shown)} lowest-F1 classes"
        out += [f"Per class on {code(first['name'])}{note}:", ""]
        out += table(["Label", "Precision", "Recall", "F1", "Support"],
                     [[md(c["label"]), fmt_score(c["precision"]), fmt_score(c["recall"]),
                       f"{fmt_score(c['f1'])} {fmt_ci(c['f1_ci_low'], c['f1_ci_high'])}".strip(), str(c["support"])]
                      for c in shown], "lrrrr") + [""]
        rows = []
        for b in backends:
            ss = b["latency"]["single_stream"]
            best = max([ss, *b["latency"]["offline"]], key=lambda x: x["throughput_per_s"])
            rows.append([code(b["name"]), md(", ".join(b["providers_active"][:1])), fmt_ms(ss["latency_p50_ms"]),
                         fmt_ms(ss["latency_p99_ms"]), f"{fmt_rate(best['throughput_per_s'])} (batch {best['batch_size']})"])
        env = r["environment"]
        machine = ", ".join([env["cpu_model"], *[g["name"] for g in env["gpu"]]])
        out += [f"Latency on {md(machine)}:", ""]
        out += table(["Backend", "Provider", "p50 ms (batch 1)", "p99 ms (batch 1)", "Best samples/s"], rows, "llrrr")
        out.append("")
        if r["variants"]:
            vrows = []
            for v in r["variants"]:
                for m in ordered_metrics(v["deltas"]):
                    dd = v["deltas"][m]
                    vrows.append([code(v["name"]), code(v["backend"]), metric_title(m),
                                  fmt_score(v["scores"]["headline"][m]["value"]),
                                  f"{fmt_delta(dd['delta'])} {fmt_ci(dd['ci_low'], dd['ci_high'])}".strip()])
            if vrows:
                out += ["Robustness variants (Δ against the unperturbed run on the same backend):", ""]
                out += table(["Variant", "Backend", "Metric", "Score", "Δ"], vrows, "lllrr") + [""]
    if qa.get("results"):
        out += ["### Reported results", ""]
        out += table(["Suite", "Metric", "Value", "Backend", "Variant"],
                     [[md(x["suite"]), md(x["metric"]), fmt_score(x["value"]) + (f" {fmt_ci(x['ci_low'], x['ci_high'])}"
                       if "ci_low" in x and "ci_high" in x else ""), md(x.get("backend", "")), md(x.get("variant", ""))]
                      for x in qa["results"]], "llrll") + [""]
    for key, label in (("unitary", "Unitary results"), ("intersectional", "Intersectional results")):
        if qa.get(key):
            out += [f"{label}: {md(qa[key])}", ""]
    return out
