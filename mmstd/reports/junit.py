"""``junit.xml``: the report's checks as JUnit XML, for CI test views.

One ``<testsuite>`` per backend holds that backend's checks (requested provider active, parity
against ``reference.safetensors`` per output, the two run audits) and its headline scores and
latency as properties; one more holds the cross-backend comparisons. ``JunitCase``,
``JunitSuite``, ``junit_xml`` and ``report_suites`` are public so the gate can append one test case
per policy rule to the same suites.
"""
from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from mmstd.reports._common import backend_checks, fmt_diff, fmt_pct, metric_title, ordered_metrics, title

# XML 1.0 forbids most control characters even escaped; model-supplied text may hold them.
_NOT_XML = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


@dataclass(frozen=True, slots=True)
class JunitCase:
    """One test case. It failed when ``failure`` is set and was skipped when ``skipped`` is set.

    Args:
        name: Stable id, e.g. ``audit.repeat_run_identical`` or a policy rule id.
        classname: Groups cases in CI views, e.g. the backend.
        time_s: Seconds the case took; 0 for checks computed from a report.
        failure: The failure message (one line: what, the value, the limit).
        failure_type: A stable code, e.g. ``E_PARITY`` or the rule's kind.
        skipped: Why the case did not run.
        output: Detail shown as ``system-out`` whether or not the case passed.
    """

    name: str
    classname: str
    time_s: float = 0.0
    failure: str | None = None
    failure_type: str | None = None
    skipped: str | None = None
    output: str | None = None

    @property
    def failed(self) -> bool:
        return self.failure is not None


@dataclass(frozen=True, slots=True)
class JunitSuite:
    """A named group of cases with string properties (shown by Jenkins, GitLab and others)."""

    name: str
    cases: tuple[JunitCase, ...] = ()
    properties: tuple[tuple[str, str], ...] = ()
    timestamp: str | None = None

    def with_cases(self, *cases: JunitCase) -> JunitSuite:
        """A copy with ``cases`` appended (how the gate adds its rule cases)."""
        return JunitSuite(self.name, self.cases + cases, self.properties, self.timestamp)


def _clean(text: str) -> str:
    return _NOT_XML.sub("\ufffd", text)


def _counts(cases: Sequence[JunitCase]) -> dict[str, str]:
    return {
        "tests": str(len(cases)),
        "failures": str(sum(c.failed for c in cases)),
        "errors": "0",
        "skipped": str(sum(c.skipped is not None and not c.failed for c in cases)),
        "time": f"{sum(c.time_s for c in cases):.3f}",
    }


def junit_xml(suites: Sequence[JunitSuite], *, name: str) -> str:
    """Serialise ``suites`` as one ``<testsuites>`` document (UTF-8, indented, trailing newline).

    Attribute order and formatting are fixed, so the same suites always give the same bytes.
    """
    every = [c for s in suites for c in s.cases]
    root = ET.Element("testsuites", {"name": _clean(name), **_counts(every)})
    for suite in suites:
        attrs = {"name": _clean(suite.name), **_counts(suite.cases)}
        if suite.timestamp:
            attrs["timestamp"] = suite.timestamp
        el = ET.SubElement(root, "testsuite", attrs)
        if suite.properties:
            props = ET.SubElement(el, "properties")
            for key, value in suite.properties:
                ET.SubElement(props, "property", {"name": _clean(key), "value": _clean(value)})
        for case in suite.cases:
            c = ET.SubElement(el, "testcase", {"name": _clean(case.name), "classname": _clean(case.classname),
                                               "time": f"{case.time_s:.3f}"})
            if case.failure is not None:
                f = ET.SubElement(c, "failure", {"message": _clean(case.failure),
                                                 "type": _clean(case.failure_type or "failure")})
                f.text = _clean(case.failure)
            elif case.skipped is not None:
                ET.SubElement(c, "skipped", {"message": _clean(case.skipped)})
            if case.output:
                ET.SubElement(c, "system-out").text = _clean(case.output)
    ET.indent(root, space="  ")
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"


def report_suites(report: Mapping[str, Any], *, prefix: str = "") -> list[JunitSuite]:
    """The report's checks as suites: one per backend, then ``cross-backend`` when there are pairs.

    Args:
        report: A valid report.
        prefix: Prepended to suite names and class names (the gate passes the submission's name
            so that several submissions can share one file).
    """
    stamp = report["created"].removesuffix("Z")
    suites = []
    for b in report["backends"]:
        cls = f"{prefix}{b['name']}"
        cases = []
        for check in backend_checks(report, b):
            message = f"{check.title}: {check.detail}"
            code = "E_BACKEND_UNAVAILABLE" if check.id == "providers" else (
                "E_PARITY" if check.id.startswith("parity.") else "E_NONDETERMINISTIC")
            cases.append(JunitCase(check.id, cls, failure=None if check.passed else message,
                                   failure_type=None if check.passed else code, output=check.detail))
        suites.append(JunitSuite(cls, tuple(cases), _properties(report, b), stamp))
    pairs = report["parity"].get("cross_backend", [])
    if pairs:
        cls = f"{prefix}cross-backend"
        cases = [JunitCase(f"parity.cross_backend.{p['a']}~{p['b']}", cls, output=_pair_text(report, p)) for p in pairs]
        suites.append(JunitSuite(cls, tuple(cases), (), stamp))
    return suites


def _properties(report: Mapping[str, Any], b: Mapping[str, Any]) -> tuple[tuple[str, str], ...]:
    p, s = report["package"], report["suite"]
    props = [("package", f"{p['name']}@{p['version']}"), ("package.digest", p["digest"]), ("suite", s["ref"]),
             ("suite.fingerprint", s["fingerprint"]), ("run_id", report["run_id"]), ("device", b["device"]),
             ("providers_active", ",".join(b["providers_active"]))]
    headline = b["scores"]["headline"]
    props += [(f"score.{m}", repr(headline[m]["value"])) for m in ordered_metrics(headline)]
    ss = b["latency"]["single_stream"]
    props += [(f"latency.single_stream.{k}", repr(ss[k])) for k in
              ("latency_p50_ms", "latency_p90_ms", "latency_p99_ms", "throughput_per_s")]
    return tuple(props)


def _pair_text(report: Mapping[str, Any], pair: Mapping[str, Any]) -> str:
    lines = [f"{pair['a']} vs {pair['b']} on {report['suite']['samples']} samples: labels agree on "
             f"{fmt_pct(pair['argmax_agreement'])} ({pair['label_flips']} flipped)."]
    lines += [f"{o['output']}: max abs diff {fmt_diff(o['max_abs_diff'])}, max rel diff {fmt_diff(o['max_rel_diff'])}"
              for o in pair["per_output"]]
    lines += [f"{metric_title(m)}: {pair['b']} - {pair['a']} = {pair['metric_deltas'][m]['delta']:+.4f}"
              for m in ordered_metrics(pair["metric_deltas"])]
    return "\n".join(lines)


class JunitReporter:
    """Checks as JUnit test cases: a failed audit or parity check is a failed test."""

    name = "junit"
    filename = "junit.xml"

    def render(self, report: Mapping[str, Any]) -> str:
        return junit_xml(report_suites(report), name=f"mmstd evaluate {title(report)}")
