"""report.json's schema and consistency rules, the reporters, write_report and load_report.

Golden files live in tests/golden/; after an intended change run
``.venv/bin/python -m pytest tests/test_reports.py tests/test_reports_html.py tests/test_reports_hfcard.py --update-golden``
and review the diff.
"""
from __future__ import annotations

import copy
import json
import math
import os
import random
import re
import subprocess
import sys
import xml.etree.ElementTree as ET
from collections.abc import Callable
from fractions import Fraction
from io import StringIO
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from report_fixtures import LABELS, fixture_report

from mmstd.errors import MmstdError, RegistryError, ReportError
from mmstd.reports import (
    DEFAULT_FORMATS,
    REPORTERS,
    cdf_points,
    check_report,
    load_report,
    render_report,
    report_problems,
    write_report,
)
from mmstd.reports.csv import safe_cell
from mmstd.reports.junit import JunitCase, junit_xml, report_suites
from mmstd.reports.markdown import md

TEXT_FORMATS = ("json", "md", "junit", "csv")
FILENAMES = {"json": "report.json", "md": "report.md", "html": "report.html", "junit": "junit.xml",
             "csv": "per_class.csv"}


@pytest.fixture
def report() -> dict[str, Any]:
    return fixture_report()


# ------------------------------------------------------------------------------------ the schema


def test_fixture_report_is_valid(report: dict[str, Any]) -> None:
    assert report_problems(report) == []
    check_report(report)


def _set(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    """A mutation that sets ``path`` (dots and [i]) to ``value``; ``...`` deletes it."""
    def apply(doc: dict[str, Any]) -> None:
        parts = path.replace("[", ".").replace("]", "").split(".")
        target: Any = doc
        for p in parts[:-1]:
            target = target[int(p)] if p.isdigit() else target[p]
        last: Any = int(parts[-1]) if parts[-1].isdigit() else parts[-1]
        if value is ...:
            del target[last]
        else:
            target[last] = value
    return apply


SCHEMA_CASES = [
    ("environment.hostname", "build-7", "$.environment: unknown field 'hostname'"),
    ("backends[0].latency.single_stream.latency_p50_ms", "1.1",
     "$.backends[0].latency.single_stream.latency_p50_ms: expected a number, got \"1.1\""),
    ("created", "2026-11-25T13:00:00+01:00", "$.created: expected a UTC date-time"),
    ("package.path", "/home/me/pkgs/fusion", "$.package.path: expected the package directory's base name"),
    ("package.digest", "ABC", "$.package.digest: expected 64 lowercase hex digits"),
    ("record", ..., "$: missing required field 'record'"),
    ("record.path", "../record.npz", "$.record.path: expected a relative path without '..'"),
    ("backends[0].latency.single_stream.batch_size", 2, "$.backends[0].latency.single_stream.batch_size: expected 1"),
    ("backends[0].scores.headline.accuracy.resamples", 0,
     "$.backends[0].scores.headline.accuracy.ci_low: expected null"),
    ("backends[0].scores.headline.accuracy.ci_low", None,
     "$.backends[0].scores.headline.accuracy.ci_low: expected a number"),
    ("backends[0].scores.headline.F1", {"value": 1}, "$.backends[0].scores.headline"),
    ("backends[0].session_options.graph_optimization_level", "all",
     "$.backends[0].session_options.graph_optimization_level: expected one of 'ORT_DISABLE_ALL'"),
    ("backends[0].scores.per_class", ..., "$.backends[0].scores: missing required field 'per_class'"),
    ("backends[1].scores.per_class[0].recall", 1.5, "$.backends[1].scores.per_class[0].recall: expected a number <= 1"),
    ("backends", [], "$.backends: [] should be non-empty"),
    ("environment.libraries.onnxruntime", ..., "$.environment.libraries: missing required field 'onnxruntime'"),
    ("parity.reference[0].against", "weights.safetensors",
     "$.parity.reference[0].against: expected 'reference.safetensors'"),
    ("limit", 0, "$.limit: expected a number >= 1"),
    ("quick", "yes", "$.quick: expected true or false"),
    ("schema_version", "2.0", "$.schema_version: expected '1.0'"),
]


@pytest.mark.parametrize(("path", "value", "expected"), SCHEMA_CASES, ids=[c[0] for c in SCHEMA_CASES])
def test_schema_names_the_json_path(report: dict[str, Any], path: str, value: Any, expected: str) -> None:
    _set(path, value)(report)
    problems = report_problems(report, source="report.json")
    assert any(p.startswith(f"report.json: {expected}") for p in problems), problems


def test_cdf_is_bounded(report: dict[str, Any]) -> None:
    ss = report["backends"][0]["latency"]["single_stream"]
    ss["cdf"] = {"q": [i / 201 for i in range(1, 202)], "ms": [1.0] * 201}
    assert any("cdf.q: " in p and "too long" in p for p in report_problems(report))


def test_nan_is_refused_by_path(report: dict[str, Any]) -> None:
    report["backends"][1]["latency"]["offline"][0]["latency_p99_ms"] = float("nan")
    with pytest.raises(ReportError) as e:
        check_report(report, source="r.json")
    assert "r.json: $.backends[1].latency.offline[0].latency_p99_ms: expected a finite number, got nan." in e.value.problems


def test_wrong_schema_version_hints_at_rerunning(report: dict[str, Any]) -> None:
    report["schema_version"] = "2.0"
    with pytest.raises(ReportError, match="E_DOCUMENT_SCHEMA") as e:
        check_report(report)
    assert "re-run 'mmstd evaluate'" in (e.value.hint or "")


def _swap_labels(doc: dict[str, Any]) -> None:
    rows = doc["backends"][0]["scores"]["per_class"]
    rows[0], rows[1] = rows[1], rows[0]


def _unordered_percentiles(doc: dict[str, Any]) -> None:
    doc["backends"][0]["latency"]["single_stream"]["latency_p99_ms"] = 0.5


def _cdf_past_max(doc: dict[str, Any]) -> None:
    doc["backends"][1]["latency"]["single_stream"]["cdf"]["ms"][-1] = 99.0


SEMANTIC_CASES = [
    ("labels out of order", _swap_labels, "$.backends[0].scores.per_class: labels ['dog', 'cat', 'bird'] differ"),
    ("matrix sum", _set("backends[0].scores.confusion_matrix[0][0]", 31),
     "$.backends[0].scores.confusion_matrix: counts sum to 118; expected suite.samples = 117"),
    ("matrix shape", _set("backends[1].scores.confusion_matrix", [[1, 2], [3, 4]]),
     "$.backends[1].scores.confusion_matrix: expected 3x3"),
    ("support", _set("backends[0].scores.per_class[2].support", 44),
     "$.backends[0].scores.per_class[2].support: 44 differs from confusion row sum 43"),
    ("percentiles", _unordered_percentiles, "$.backends[0].latency.single_stream.latency_p99_ms: 0.5 is below"),
    ("suite ref", _set("suite.ref", "digits-av@2"), "$.suite.ref: expected digits-av@1"),
    ("duplicate backend", _set("backends[1].name", "ort-cpu"), "$.backends[1].name: backend 'ort-cpu' appears twice"),
    ("unknown pair side", _set("parity.cross_backend[0].b", "ort-trt"), "$.parity.cross_backend[0].b: 'ort-trt' is not"),
    ("missing pairs", _set("parity.cross_backend", ...), "$.parity: 2 backends but no cross_backend comparison"),
    ("reference verdict", _set("parity.reference[0].per_output[0].passed", False),
     "$.parity.reference[0].passed: expected true exactly when every output passed"),
    ("variant backend", _set("variants[0].backend", "ort-trt"), "$.variants[0].backend: 'ort-trt' is not a backend"),
    ("variant delta", _set("variants[2].deltas.accuracy.delta", -0.5),
     "$.variants[2].deltas.accuracy.delta: -0.5 differs from the scores' difference -0.034188"),
    ("delta metric", _set("variants[0].deltas.balanced_accuracy", {"delta": 0.0, "ci_low": None, "ci_high": None}),
     "$.variants[0].deltas.balanced_accuracy: is not a headline metric on both sides"),
    ("cdf end", _cdf_past_max, "$.backends[1].latency.single_stream.cdf: expected the last point to be q = 1 at latency_max_ms"),
    ("flips", _set("parity.cross_backend[0].label_flips", 500), "$.parity.cross_backend[0].label_flips: 500 flips"),
]


@pytest.mark.parametrize(("name", "mutate", "expected"), SEMANTIC_CASES, ids=[c[0] for c in SEMANTIC_CASES])
def test_inconsistencies_are_named(report: dict[str, Any], name: str, mutate: Callable[[dict[str, Any]], None],
                                   expected: str) -> None:
    mutate(report)
    problems = report_problems(report, source="report.json")
    assert any(p.startswith(f"report.json: {expected}") for p in problems), problems


def _single_backend_quick(doc: dict[str, Any]) -> None:
    doc["backends"] = doc["backends"][:1]
    doc["parity"] = {"reference": doc["parity"]["reference"][:1]}
    doc["variants"] = []
    doc["environment"]["gpu"] = []
    doc["environment"]["memory_bytes"] = None
    doc["quick"], doc["limit"], doc["suite"]["split"] = True, 117, None
    doc["backends"][0]["latency"]["offline"] = []
    for s in doc["backends"][0]["scores"]["headline"].values():
        s.update(ci_low=None, ci_high=None, resamples=0)
    for c in doc["backends"][0]["scores"]["per_class"]:
        c.update(f1_ci_low=None, f1_ci_high=None)


def test_optional_blocks_may_be_absent_and_every_format_renders(report: dict[str, Any]) -> None:
    _single_backend_quick(report)
    assert report_problems(report) == []
    md_text = render_report(report, "md")
    assert "## Variants" not in md_text and "Across backends" not in md_text and "| GPU |" not in md_text
    assert "No confidence intervals" in md_text and "quick run, limited to the first 117 samples" in md_text
    for fmt in DEFAULT_FORMATS:
        assert render_report(report, fmt)
    rows = render_report(report, "csv").splitlines()
    assert rows[1] == "ort-cpu,cat,0.857143,0.857143,0.857143,35,,"


def test_multilabel_reports_need_no_confusion_matrix(report: dict[str, Any]) -> None:
    for b in report["backends"]:
        del b["scores"]["confusion_matrix"]
    assert report_problems(report, source="r") == [
        "r: $.backends[0].scores: missing required field 'confusion_matrix' (multiclass and binary tasks).",
        "r: $.backends[1].scores: missing required field 'confusion_matrix' (multiclass and binary tasks)."]
    report["package"]["task_kind"] = "multilabel"
    assert report_problems(report) == []
    assert "Confusion" not in render_report(report, "md") and "Confusion" not in render_report(report, "html")


# ----------------------------------------------------------------------------- renderers: golden


@pytest.mark.parametrize("fmt", TEXT_FORMATS)
def test_renderings_match_golden(report: dict[str, Any], golden: Any, fmt: str) -> None:
    golden.check(f"reports/{FILENAMES[fmt]}", render_report(report, fmt))


def test_renderings_are_deterministic_across_processes(report: dict[str, Any], tmp_path: Path) -> None:
    """Same dict, fresh interpreter, another hash seed: byte-identical output in every format."""
    (tmp_path / "in.json").write_text(json.dumps(report))
    script = (
        "import json, sys; from mmstd.reports import render_report\n"
        "r = json.load(open(sys.argv[1]))\n"
        "for fmt in ('json', 'md', 'html', 'junit', 'csv'):\n"
        "    open(sys.argv[2] + '.' + fmt, 'w', encoding='utf-8').write(render_report(r, fmt))\n"
    )
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    subprocess.run([sys.executable, "-c", script, str(tmp_path / "in.json"), str(tmp_path / "out")], check=True, env=env)
    for fmt in DEFAULT_FORMATS:
        assert (tmp_path / f"out.{fmt}").read_text("utf-8") == render_report(report, fmt), fmt


def _shuffled(value: Any, rng: random.Random) -> Any:
    if isinstance(value, dict):
        keys = list(value)
        rng.shuffle(keys)
        return {k: _shuffled(value[k], rng) for k in keys}
    if isinstance(value, list):
        return [_shuffled(v, rng) for v in value]
    return value


def test_json_is_canonical_whatever_the_key_order(report: dict[str, Any]) -> None:
    text = render_report(report, "json")
    assert render_report(_shuffled(report, random.Random(7)), "json") == text
    assert json.loads(text) == report
    assert text.endswith("}\n") and list(json.loads(text)) == list(report)   # schema order: schema_version first
    assert '"confusion_matrix": [\n' in text and "[30, 3, 2]" in text      # rows of numbers stay on one line


# ---------------------------------------------------------------------------- renderers: content


def test_registry_has_every_format_and_suggests() -> None:
    assert REPORTERS.names() == ["csv", "html", "json", "junit", "md"]
    for name in REPORTERS.names():
        rep = REPORTERS.get(name)()
        assert rep.name == name and rep.filename == FILENAMES[name]
    with pytest.raises(RegistryError, match=r"Unknown report format 'junitxml'\. Did you mean 'junit'\?"):
        REPORTERS.get("junitxml")


def test_markdown_tables_are_well_formed(report: dict[str, Any]) -> None:
    text = render_report(report, "md")
    lines = text.splitlines()
    # every row of a table has as many unescaped cell separators as its header
    for i, line in enumerate(lines):
        if line.startswith("| ") and (i == 0 or not lines[i - 1].startswith("|")):
            width = _cells(line)
            j = i
            while j < len(lines) and lines[j].startswith("|"):
                assert _cells(lines[j]) == width, lines[j]
                j += 1
    assert "| Accuracy ↑ | 0.8974 [0.8674, 0.9274] | 0.8889 [0.8589, 0.9189] |" in lines
    assert "**All 8 checks passed.**" in lines
    assert [line for line in lines if line.startswith("## ")] == [
        "## Checks", "## Scores", "## Per-class scores", "## Confusion matrices", "## Latency", "## Backends",
        "## Parity", "## Variants"]


def _cells(line: str) -> int:
    n, escaped = 0, False
    for ch in line:
        if ch == "|" and not escaped:
            n += 1
        escaped = ch == "\\" and not escaped
    return n


def test_failed_audit_shows_everywhere(report: dict[str, Any]) -> None:
    audit = report["backends"][1]["audit"]
    audit.update(repeat_run_identical=False, max_abs_diff=3.1e-05)
    report["backends"][1]["providers_active"] = ["CPUExecutionProvider"]
    text = render_report(report, "md")
    assert "**2 of 8 checks failed.**" in text
    assert "| `ort-cuda` | ❌ Repeat run identical | max abs diff 3.10e-05 |" in text
    root = ET.fromstring(render_report(report, "junit"))
    assert (root.get("tests"), root.get("failures")) == ("9", "2")
    cuda = root.find("testsuite[@name='ort-cuda']")
    assert cuda is not None and cuda.get("failures") == "2"
    failure = cuda.find("testcase[@name='providers']/failure")
    assert failure is not None and failure.get("type") == "E_BACKEND_UNAVAILABLE"
    assert "requested CUDAExecutionProvider; session.get_providers() = CPUExecutionProvider" in failure.get("message", "")
    repeat = cuda.find("testcase[@name='audit.repeat_run_identical']/failure")
    assert repeat is not None and repeat.get("type") == "E_NONDETERMINISTIC"


def test_junit_helper_lets_the_gate_append_rule_cases(report: dict[str, Any]) -> None:
    suites = report_suites(report, prefix="sub-1/")
    assert [s.name for s in suites] == ["sub-1/ort-cpu", "sub-1/ort-cuda", "sub-1/cross-backend"]
    rule = JunitCase("rule.min_accuracy", "sub-1/ort-cpu", failure="accuracy = 0.8974 < min 0.95",
                     failure_type="E_POLICY_RULE")
    skip = JunitCase("rule.max_latency_p99_ms.ort-trt", "sub-1/ort-cpu", skipped="backend not evaluated")
    suites[0] = suites[0].with_cases(rule, skip)
    root = ET.fromstring(junit_xml(suites, name="mmstd gate"))
    first = root.find("testsuite")
    assert first is not None
    assert (first.get("tests"), first.get("failures"), first.get("skipped")) == ("6", "1", "1")
    assert (root.get("tests"), root.get("failures"), root.get("skipped")) == ("11", "1", "1")
    props = {p.get("name"): p.get("value") for p in first.iter("property")}
    assert props["score.accuracy"] == "0.897436" and props["suite"] == "digits-av@1"


def test_junit_survives_control_characters() -> None:
    case = JunitCase("out\x00put\x1b", "c", failure="bad \x07 value", output="line\x0bbreak")
    root = ET.fromstring(junit_xml([report_suites(fixture_report())[0].with_cases(case)], name="n\x01"))
    names = [c.get("name") for c in root.iter("testcase")]
    assert "out\ufffdput\ufffd" in names


def test_csv_round_trips_through_pandas(report: dict[str, Any]) -> None:
    import pandas as pd

    frame = pd.read_csv(StringIO(render_report(report, "csv")))
    assert list(frame.columns) == ["backend", "label", "precision", "recall", "f1", "support", "f1_ci_low", "f1_ci_high"]
    assert len(frame) == 2 * len(LABELS)
    row = report["backends"][1]["scores"]["per_class"][0]
    got = frame[(frame.backend == "ort-cuda") & (frame.label == "cat")].iloc[0]
    assert (got.precision, got.recall, got.f1, got.support) == (row["precision"], row["recall"], row["f1"], row["support"])


@pytest.mark.parametrize(("text", "expected"), [
    ("=HYPERLINK(\"http://x\")", "'=HYPERLINK(\"http://x\")"), ("@SUM(A1)", "'@SUM(A1)"), ("+cmd", "'+cmd"),
    ("-1", "-1"), ("+2.5e3", "+2.5e3"), ("cat", "cat"), ("-", "'-"),
])
def test_csv_cells_cannot_become_formulas(text: str, expected: str) -> None:
    assert safe_cell(text) == expected


HOSTILE = ["<script>alert(1)</script>", "a|b", "$\\frac{1}{0}$", "=HYPERLINK(\"http://x\")", "[x](http://evil)"]


def test_hostile_labels_are_text_in_every_format() -> None:
    report = fixture_report(labels=HOSTILE)
    report["parity"]["reference"][0]["per_output"][0]["output"] = "<img src=x onerror=alert(1)>"
    assert report_problems(report) == []
    text = render_report(report, "md")
    # every markup character arrives backslash-escaped, so it renders as itself
    assert re.search(r"(?<!\\)[<>]", text) is None
    for label in HOSTILE:
        assert md(label) in text
        assert md(label) == label or label not in text
    assert "\\<script\\>alert(1)\\</script\\>" in text and "a\\|b" in text
    assert md("a|b") == "a\\|b"
    csv_text = render_report(report, "csv")
    assert "'=HYPERLINK" in csv_text
    ET.fromstring(render_report(report, "junit"))
    json.loads(render_report(report, "json"))


# -------------------------------------------------------------------------------- writing, loading


def test_write_report_writes_every_format_atomically(report: dict[str, Any], tmp_path: Path) -> None:
    out = tmp_path / "run"
    paths = write_report(report, out)
    assert {f: p.name for f, p in paths.items()} == FILENAMES
    assert sorted(p.name for p in out.iterdir()) == sorted(FILENAMES.values())   # no temp files left
    for fmt, path in paths.items():
        assert path.read_text("utf-8") == render_report(report, fmt)
    assert load_report(paths["json"]) == report


def test_write_report_refuses_to_overwrite_anything(report: dict[str, Any], tmp_path: Path) -> None:
    (tmp_path / "junit.xml").write_text("mine")
    with pytest.raises(ReportError, match="E_OUTPUT_EXISTS: .*already holds junit.xml; refusing to overwrite"):
        write_report(report, tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["junit.xml"]      # nothing half-written beside it
    assert (tmp_path / "junit.xml").read_text() == "mine"
    write_report(report, tmp_path, ("md", "junit"), overwrite=True)
    assert (tmp_path / "junit.xml").read_text("utf-8") == render_report(report, "junit")


def test_write_report_checks_before_writing(report: dict[str, Any], tmp_path: Path) -> None:
    report["environment"]["hostname"] = "ci-7"
    with pytest.raises(ReportError, match="E_DOCUMENT_SCHEMA") as e:
        write_report(report, tmp_path / "out")
    assert "report: $.environment: unknown field 'hostname'" in e.value.problems[0]
    del report["environment"]["hostname"]
    with pytest.raises(RegistryError, match="Did you mean 'junit'"):
        write_report(report, tmp_path / "out", ("md", "junit-xml"))
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(("content", "code", "message"), [
    (b'{"a": 1, "a": 2}', "E_FORMAT_CORRUPT", "report.json: duplicate key 'a'."),
    (b'{"seed": NaN}', "E_FORMAT_CORRUPT", "report.json: NaN is not valid JSON"),
    (b"\xef\xbb\xbf{}", "E_FORMAT_CORRUPT", "byte-order mark"),
    (b"schema_version: '1.0'\n", "E_FORMAT_CORRUPT", "report.json: line 1 column 1"),
    (b"[]", "E_DOCUMENT_SCHEMA", "report.json: is not a valid report (1 problem)."),
])
def test_load_report_is_strict(tmp_path: Path, content: bytes, code: str, message: str) -> None:
    path = tmp_path / "report.json"
    path.write_bytes(content)
    with pytest.raises(MmstdError) as e:
        load_report(path)
    assert e.value.code == code and message in str(e.value)


def test_load_report_lists_every_problem_with_its_path(report: dict[str, Any], tmp_path: Path) -> None:
    report["seed"] = -1
    del report["suite"]["fingerprint"]
    path = tmp_path / "report.json"
    path.write_text(json.dumps(report))
    with pytest.raises(ReportError) as e:
        load_report(path)
    assert e.value.problems == ("report.json: $.seed: expected a number >= 0, got -1.",
                                "report.json: $.suite: missing required field 'fingerprint'.")


def test_load_report_missing_or_directory(tmp_path: Path) -> None:
    with pytest.raises(ReportError, match="E_NOT_FOUND"):
        load_report(tmp_path / "nope.json")
    with pytest.raises(ReportError, match="E_FS_NOT_REGULAR"):
        load_report(tmp_path)


# ------------------------------------------------------------------------------------ helpers


@pytest.mark.parametrize("n", [1, 7, 200, 201, 1000, 12345])
def test_cdf_points_are_nearest_rank_quantiles(n: int) -> None:
    values = np.random.default_rng(n).gamma(2.0, 1.5, size=n).tolist()
    cdf = cdf_points(values)
    assert len(cdf["q"]) == len(cdf["ms"]) == min(n, 200)
    assert cdf["q"][-1] == 1.0 and cdf["ms"][-1] == max(values)
    ordered = sorted(values)
    # nearest rank in exact arithmetic: numpy's inverted_cdf rounds q * n in floats (7/200 * 200 > 7)
    ranks = [math.ceil(Fraction(q).limit_denominator(10**6) * n) for q in cdf["q"]]
    assert cdf["ms"] == [ordered[r - 1] for r in ranks]


def test_cdf_points_refuses_bad_input() -> None:
    with pytest.raises(ValueError):
        cdf_points([])
    with pytest.raises(ValueError):
        cdf_points([1.0, float("inf")])


def test_importing_reports_stays_light() -> None:
    code = ("import sys, mmstd.reports, mmstd.reports.html, mmstd.reports.csv, mmstd.reports.markdown, mmstd.hfcard\n"
            "heavy = [m for m in ('matplotlib', 'pandas', 'onnxruntime', 'torch') if m in sys.modules]\n"
            "assert not heavy, heavy\n")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_report_fixture_does_not_share_state() -> None:
    a = fixture_report()
    b = copy.deepcopy(a)
    a["backends"][0]["scores"]["confusion_matrix"][0][0] = 0
    assert fixture_report() == b
