"""The CI conformance gate: verify, scan, evaluate and judge submissions against a policy.

``check_gate`` takes submissions (package directories, ``.zip`` packages, directories of them, or
``report.json`` files evaluated elsewhere) and a ``Policy`` and returns one ``Verdict`` per
submission. Each package goes through SECURITY.md 4.1's pipeline; a failing stage stops that
submission, never the others:

1. ``fs``: lstat inventory with caps, then a hashed copy into a private staging directory (a
   ``.zip`` is checked member by member and extracted there instead: ``archive``);
2. ``formats``: every staged file identified by magic bytes (pickles, native code, Keras code refused);
3. ``package``: manifest, digests, strict card, safetensors headers (``open_package`` on the staged copy);
4. ``card.<field>``: the card fields the policy requires;
5. ``reference``: reference.safetensors holds the card's inputs and outputs;
6. ``onnx``: allowlisted IR/domains/opsets/operators, bounded tensors, ``onnx.checker``, card IO;
7. ``evaluate``: the pluggable ``Evaluator`` runs the model in a sandboxed child process;
8. the policy's rules, checked on the evaluation's report dict by ``check_rules``.

Every rejection carries a stable code and a message naming a submission-relative path; a gate
bug is ``E_INTERNAL`` (exit 4) with its traceback logged, never blamed on the submission.
"""
from __future__ import annotations

import hashlib
import html
import json
import math
import os
import re
import shutil
import stat
import tempfile
import threading
import time
import traceback
import unicodedata
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO, Protocol

from mmstd import __version__
from mmstd.card import ModelCard
from mmstd.errors import CODES, EXIT_INFRA, EXIT_OK, EXIT_REJECTED, GateError, InfraError, MmstdError
from mmstd.files import atomic_write_text, check_relpath, open_in_root
from mmstd.sandbox import SandboxLimits, kill_all, limits_dict, run_child
from mmstd.scan import (
    OnnxAllowlist,
    ScanLimits,
    StagedFile,
    check_onnx_inferred,
    check_onnx_static,
    extract_zip,
    identify,
    refuse,
    stage_tree,
)
from mmstd.schema import parse_document, validate

SCHEMA_VERSION = "1.0"
#: Codes that mean "the gate or its machine failed", not "the submission is bad": exit 4.
INFRA_CODES = frozenset({"E_INTERNAL", "E_BACKEND_UNAVAILABLE", "E_DEPENDENCY"})
MAX_REPORT_BYTES = 16 << 20
MAX_MESSAGE_CHARS = 600
MIB = 1 << 20
STAGED = "submission"  # the staged copy's directory name; stripped from every message

#: Policy ``limits`` defaults (also documented in schemas/policy.schema.json).
DEFAULT_LIMITS: dict[str, Any] = {
    "timeout_s": 300, "memory_mib": 4096, "cpu_s": None, "grace_s": 2.0, "output_mib": 64,
    "max_files": 256, "max_file_mib": 2048, "max_total_mib": 4096, "max_depth": 8,
    "max_tensor_elements": 1 << 28, "max_dim": 1 << 24, "max_rank": 8,
    "archive_max_members": 1024, "archive_max_ratio": 200,
}
#: Which report section each rule kind reads; an evaluation whose scope lacks it skips the rule.
RULE_SECTIONS = {
    "score": "scores", "per_class": "scores", "fraction_of_reference": "scores", "baseline_drop": "scores",
    "variant": "variants", "latency": "latency", "cross_backend": "cross_backend",
    "reference_parity": "reference_parity",
}
STAGE_DESCRIPTIONS = {
    "fs": "every path is a contained regular file within the caps; staged and hashed",
    "archive": "the archive's members are safe (names, links, sizes, ratios); extracted and hashed",
    "formats": "every file is an allowed kind by its magic bytes; no pickles, native code or Keras code",
    "package": "manifest, digests, strict card and safetensors headers verified",
    "reference": "reference.safetensors holds the card's inputs and outputs",
    "onnx": "ONNX graph allowlisted, tensors bounded, onnx.checker passed, IO equals the card",
    "evaluate": "the model ran in a sandboxed child; outputs match the card's contract",
    "report": "report.json is strict JSON and valid against schemas/report.schema.json",
}
PACKAGE_STAGES = ("fs", "formats", "package", "reference", "onnx", "evaluate")


# =========================================================================================== policy


@dataclass(frozen=True, slots=True)
class Rule:
    """One policy rule: ``kind`` picks the check, ``params`` are its fields from the policy."""

    id: str
    kind: str
    params: Mapping[str, Any]
    optional: bool = False

    def get(self, key: str, default: Any = None) -> Any:
        return self.params.get(key, default)

    def __getitem__(self, key: str) -> Any:
        return self.params[key]


@dataclass(frozen=True, slots=True)
class Policy:
    """A validated gate policy. Build it with ``load_policy`` or ``parse_policy``."""

    name: str
    source: str
    sha256: str
    suites: tuple[str, ...]
    backends: tuple[str, ...]
    variants: tuple[str, ...]
    scan: ScanLimits
    sandbox: SandboxLimits
    output_bytes: int
    onnx: OnnxAllowlist
    card_required: tuple[str, ...]
    licenses: tuple[str, ...] | None
    rules: tuple[Rule, ...]
    evaluate: Mapping[str, Any] = field(default_factory=dict)


def load_policy(path: Path) -> Policy:
    """Read a policy YAML/JSON file strictly and validate it against schemas/policy.schema.json.

    Raises:
        GateError: ``E_POLICY`` listing every problem with its JSON path, or ``E_NOT_FOUND``.
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise GateError(f"{path}: no such policy file.", code="E_NOT_FOUND") from None
    except IsADirectoryError:
        raise GateError(f"{path}: is a directory; expected a policy YAML file.", code="E_USAGE") from None
    doc = parse_document(data, source=path.name, code="E_POLICY")
    return parse_policy(doc, source=path.name, sha256=hashlib.sha256(data).hexdigest())


def parse_policy(doc: Any, *, source: str = "policy", sha256: str | None = None) -> Policy:
    """Validate a policy document (already parsed) and build the ``Policy``.

    Raises:
        GateError: ``E_POLICY`` listing every problem.
    """
    problems = validate(doc, "policy", source=source)
    if not problems:
        problems = _policy_problems(doc, source)
    if problems:
        raise GateError(f"{source}: is not a valid gate policy ({len(problems)} problem{'s' * (len(problems) > 1)}).",
                        code="E_POLICY", problems=problems,
                        hint="see schemas/policy.schema.json; conformance/policies/default.yaml is a commented example.")
    lim = {**DEFAULT_LIMITS, **doc.get("limits", {})}
    scan = ScanLimits(
        max_files=lim["max_files"], max_file_bytes=lim["max_file_mib"] * MIB, max_total_bytes=lim["max_total_mib"] * MIB,
        max_depth=lim["max_depth"], max_tensor_elements=lim["max_tensor_elements"], max_dim=lim["max_dim"],
        max_rank=lim["max_rank"], archive_max_members=lim["archive_max_members"],
        archive_max_ratio=float(lim["archive_max_ratio"]),
    )
    output_bytes = lim["output_mib"] * MIB
    sandbox = SandboxLimits(timeout_s=float(lim["timeout_s"]), memory_bytes=lim["memory_mib"] * MIB,
                            cpu_s=lim["cpu_s"], file_bytes=output_bytes + 16 * MIB, grace_s=float(lim["grace_s"]))
    onnx_doc = doc.get("onnx", {})
    allow = OnnxAllowlist()
    ir = onnx_doc.get("ir_version", {})
    opsets = onnx_doc.get("opsets")
    onnx_allow = OnnxAllowlist(
        ir_min=ir.get("min", allow.ir_min), ir_max=ir.get("max", allow.ir_max),
        opsets={("" if d == "ai.onnx" else d): (r.get("min", 1), r.get("max", 10_000)) for d, r in opsets.items()}
        if opsets is not None else allow.opsets,
        denied_ops=frozenset(onnx_doc.get("denied_ops", ())),
        local_functions=onnx_doc.get("local_functions", True),
    )
    ev = doc.get("evaluate", {})
    card = doc.get("card", {})
    rules = tuple(
        Rule(id=r.get("id") or f"{r['kind']}-{i + 1}", kind=r["kind"],
             params={k: v for k, v in r.items() if k not in ("id", "kind", "optional")}, optional=r.get("optional", False))
        for i, r in enumerate(doc["rules"])
    )
    return Policy(
        name=doc["name"], source=source, sha256=sha256 or hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest(),
        suites=tuple(ev.get("suites", ())), backends=tuple(ev.get("backends", ("ort-cpu",))),
        variants=tuple(ev.get("variants", ())), scan=scan, sandbox=sandbox, output_bytes=output_bytes, onnx=onnx_allow,
        card_required=tuple(card.get("required", ())),
        licenses=tuple(card["licenses"]) if "licenses" in card else None, rules=rules, evaluate=ev,
    )


def _policy_problems(doc: Mapping[str, Any], source: str) -> list[str]:
    """Rules JSON Schema cannot state, each with its JSON path."""
    problems = []
    seen: dict[str, int] = {}
    suites = doc.get("evaluate", {}).get("suites", [])
    for i, r in enumerate(doc["rules"]):
        rid = r.get("id") or f"{r['kind']}-{i + 1}"
        if rid in seen:
            problems.append(f"{source}: $.rules[{i}].id: {rid!r} is already used by $.rules[{seen[rid]}]; expected unique ids.")
        seen[rid] = i
        suite = r.get("suite")
        if suite and suites and not any(_suite_matches(suite, s) or _suite_matches(s, suite) for s in suites):
            problems.append(f"{source}: $.rules[{i}].suite: {suite!r} is not one of evaluate.suites ({', '.join(suites)}).")
        if r["kind"] == "cross_backend" and r["a"] == r["b"]:
            problems.append(f"{source}: $.rules[{i}]: a and b are both {r['a']!r}; expected two different backends.")
    lim = doc.get("limits", {})
    if lim.get("cpu_s") is not None and lim["cpu_s"] < lim.get("timeout_s", DEFAULT_LIMITS["timeout_s"]):
        problems.append(f"{source}: $.limits.cpu_s: {lim['cpu_s']} is below timeout_s; the CPU limit would fire first.")
    onnx_doc = doc.get("onnx", {})
    ranges = [("$.onnx.ir_version", onnx_doc.get("ir_version", {}))]
    ranges += [(f"$.onnx.opsets[{d!r}]", r) for d, r in onnx_doc.get("opsets", {}).items()]
    for where, r in ranges:
        if "min" in r and "max" in r and r["min"] > r["max"]:
            problems.append(f"{source}: {where}: min {r['min']} is above max {r['max']}.")
    return problems


# ========================================================================================= results


@dataclass(frozen=True, slots=True)
class Violation:
    """Why a submission was refused: a stable code and ``<path>[:<field>]: <what> (<limit>)``."""

    code: str
    message: str
    path: str = ""

    def __str__(self) -> str:
        return f"{self.code}: {self.message}"

    def to_dict(self) -> dict[str, Any]:
        return {"code": self.code, "path": self.path, "message": self.message, "text": str(self)}


@dataclass(frozen=True, slots=True)
class RuleResult:
    """One check of one submission: a pipeline stage, a required card field or a policy rule."""

    id: str
    kind: str
    status: str  # "pass" | "fail" | "skip"
    message: str
    code: str | None = None
    observed: float | None = None
    limit: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "kind": self.kind, "status": self.status, "message": self.message, "code": self.code,
                "observed": _finite(self.observed), "limit": _finite(self.limit)}


@dataclass(frozen=True, slots=True)
class Verdict:
    """The gate's decision on one submission, with every check it ran."""

    index: int
    submission: str
    kind: str
    status: str  # "accepted" | "rejected" | "error"
    scope: str  # "full" | "report-only"
    digest: str | None
    model: str | None
    checks: tuple[RuleResult, ...]
    violations: tuple[Violation, ...]
    evaluation: Mapping[str, Any] | None
    wall_s: float

    @property
    def accepted(self) -> bool:
        return self.status == "accepted"

    @property
    def file_name(self) -> str:
        """Gate-generated: an index and a digest, never a submission-controlled string."""
        key = self.digest or hashlib.sha256(self.submission.encode("utf-8", "surrogateescape")).hexdigest()
        return f"{self.index:04d}-{key[:16]}.json"

    def to_dict(self, policy: Policy) -> dict[str, Any]:
        return {
            "schema_version": SCHEMA_VERSION,
            "mmstd_version": __version__,
            "index": self.index,
            "submission": self.submission,
            "kind": self.kind,
            "scope": self.scope,
            "status": self.status,
            "accepted": self.accepted,
            "digest": self.digest,
            "model": self.model,
            "policy": {"name": policy.name, "sha256": policy.sha256},
            "violations": [v.to_dict() for v in self.violations],
            "checks": [c.to_dict() for c in self.checks],
            "evaluation": _jsonable(self.evaluation),
            "wall_s": round(self.wall_s, 4),
        }


@dataclass(frozen=True, slots=True)
class GateResult:
    """Every verdict of one gate run, in submission order, and the run's exit code."""

    policy: Policy
    verdicts: tuple[Verdict, ...]
    wall_s: float
    jobs: int
    created: str
    log: tuple[str, ...] = ()

    @property
    def exit_code(self) -> int:
        if any(v.status == "error" for v in self.verdicts):
            return EXIT_INFRA
        if any(v.status == "rejected" for v in self.verdicts):
            return EXIT_REJECTED
        return EXIT_OK

    @property
    def passed(self) -> bool:
        return self.exit_code == EXIT_OK

    def counts(self) -> dict[str, int]:
        c = {"submissions": len(self.verdicts), "accepted": 0, "rejected": 0, "error": 0}
        for v in self.verdicts:
            c[v.status] += 1
        return c

    def summary(self) -> dict[str, Any]:
        """The summary document (schemas/gate-summary.schema.json)."""
        return {
            "schema_version": SCHEMA_VERSION,
            "mmstd_version": __version__,
            "created": self.created,
            "policy": {"name": self.policy.name, "source": self.policy.source, "sha256": self.policy.sha256},
            "exit_code": self.exit_code,
            "passed": self.passed,
            "counts": self.counts(),
            "jobs": self.jobs,
            "wall_s": round(self.wall_s, 3),
            "verdicts": [
                {"index": v.index, "submission": v.submission, "kind": v.kind, "status": v.status, "scope": v.scope,
                 "model": v.model, "digest": v.digest, "file": f"verdicts/{v.file_name}",
                 "codes": sorted({x.code for x in v.violations}),
                 "reason": str(v.violations[0]) if v.violations else None}
                for v in self.verdicts
            ],
        }


def _finite(x: float | None) -> float | None:
    return x if x is None or math.isfinite(x) else None


def _jsonable(x: Any) -> Any:
    if isinstance(x, Mapping):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple, frozenset, set)):
        items = sorted(x) if isinstance(x, (frozenset, set)) else x
        return [_jsonable(v) for v in items]
    if isinstance(x, float):
        return x if math.isfinite(x) else None
    return x


# =========================================================================================== rules


class _Missing(Exception):
    """The report lacks what a rule needs; ``section`` says which part of an evaluation makes it."""

    def __init__(self, section: str, what: str) -> None:
        super().__init__(what)
        self.section = section
        self.what = what


def check_rules(
    report: Mapping[str, Any],
    policy: Policy,
    baseline: Mapping[str, Any] | None = None,
    *,
    scope: Collection[str] | None = None,
) -> list[RuleResult]:
    """Check every policy rule against one report dict (the shape of schemas/report.schema.json).

    A rule for another suite is skipped. When the report lacks what a rule reads, the rule fails
    (``E_POLICY_RULE``) unless it is ``optional``, the missing part is a baseline, or ``scope``
    says the evaluation does not produce that section (then it is skipped, and says so).

    Args:
        report: ``report["suite"]["ref"]``, ``report["backends"][i]`` (``name``, ``scores``,
            ``latency``), ``report["parity"]`` (``reference``, ``cross_backend``), ``report["variants"]``.
        policy: The rules and the suites the policy evaluates.
        baseline: An earlier report of the same model and suite, for ``baseline_drop`` and
            ``fraction_of_reference`` rules with ``reference: baseline``.
        scope: The sections the evaluation produced (``scores``, ``latency``, ``cross_backend``,
            ``variants``, ``reference_parity``); None means a complete report.

    Returns:
        One ``RuleResult`` per rule, in policy order, after a ``suite`` result when the report's
        suite is not one the policy evaluates.
    """
    results = []
    suite = _suite_ref(report)
    if suite is not None and policy.suites and not any(_suite_matches(s, suite) for s in policy.suites):
        results.append(RuleResult("suite", "suite", "fail", f"the report is for suite {suite!r}; the policy evaluates "
                                                            f"{', '.join(policy.suites)}", code="E_POLICY_RULE"))
    for rule in policy.rules:
        results.append(_check_rule(rule, report, baseline, scope))
    return results


def _check_rule(rule: Rule, report: Mapping[str, Any], baseline: Mapping[str, Any] | None,
                scope: Collection[str] | None) -> RuleResult:
    want, suite = rule.get("suite"), _suite_ref(report)
    if want and suite and not _suite_matches(want, suite):
        return RuleResult(rule.id, rule.kind, "skip", f"applies to suite {want}; this report is for {suite}")
    try:
        return _CHECKS[rule.kind](rule, report, baseline)
    except _Missing as m:
        if scope is not None and m.section not in scope:
            made = ", ".join(sorted(scope)) or "nothing"
            return RuleResult(rule.id, rule.kind, "skip", f"not evaluated: this evaluation produced {made}, not {m.section}")
        if m.section == "baseline":
            return RuleResult(rule.id, rule.kind, "skip", f"no baseline: {m.what}")
        if rule.optional:
            return RuleResult(rule.id, rule.kind, "skip", f"optional rule: the report lacks {m.what}")
        return RuleResult(rule.id, rule.kind, "fail", f"the report lacks {m.what}", code=_rule_code(rule))


def _rule_code(rule: Rule) -> str:
    return "E_PARITY" if rule.kind == "reference_parity" else "E_POLICY_RULE"


def _suite_ref(report: Mapping[str, Any]) -> str | None:
    suite = report.get("suite")
    return suite.get("ref") if isinstance(suite, Mapping) else None


def _suite_matches(want: str, ref: str) -> bool:
    """``digits-av`` matches any version of it; ``digits-av@1`` only that version."""
    return want == ref or ("@" not in want and ref.split("@", 1)[0] == want)


def _backends(report: Mapping[str, Any], name: str | None, section: str = "scores") -> list[Mapping[str, Any]]:
    entries = [b for b in report.get("backends") or [] if isinstance(b, Mapping)]
    if name is not None:
        entries = [b for b in entries if b.get("name") == name]
        if not entries:
            raise _Missing(section, f"results for backend {name!r}")
    if not entries:
        raise _Missing(section, "backend results")
    return entries


def _score(scores: Any, metric: str, on: str, where: str) -> tuple[float, bool]:
    head = scores.get("headline", {}) if isinstance(scores, Mapping) else {}
    s = head.get(metric)
    if not isinstance(s, Mapping):
        raise _Missing("scores", f"metric {metric!r} ({where})")
    v = s.get(on)
    if v is None:
        raise _Missing("scores", f"{metric}.{on} ({where}; no confidence interval was computed)")
    return float(v), bool(s.get("higher_is_better", True))


def _judge(rule: Rule, rows: list[tuple[str, float]], *, label: str, lo: float | None = None,
           hi: float | None = None) -> RuleResult:
    """Pass when every row is within [lo, hi]; the message lists the rows that are not (or all rows)."""
    def bound(v: float) -> str | None:
        if lo is not None and v < lo:
            return f"< min {lo:g}"
        if hi is not None and v > hi:
            return f"> max {hi:g}"
        return None

    bad = [(w, v, b) for w, v in rows if (b := bound(v)) is not None]
    if bad:
        msg = "; ".join(f"{label} = {v:.6g} {b} ({w})" for w, v, b in bad)
        return RuleResult(rule.id, rule.kind, "fail", msg, code=_rule_code(rule), observed=bad[0][1],
                          limit=lo if lo is not None and bad[0][1] < lo else hi)
    want = " and ".join(x for x in (f">= {lo:g}" if lo is not None else "", f"<= {hi:g}" if hi is not None else "") if x)
    msg = "; ".join(f"{label} = {v:.6g} {want} ({w})" for w, v in rows)
    observed = min(v for _, v in rows) if lo is not None else max(v for _, v in rows)
    return RuleResult(rule.id, rule.kind, "pass", msg, observed=observed, limit=lo if lo is not None else hi)


def _rule_score(rule: Rule, report: Mapping[str, Any], baseline: Mapping[str, Any] | None) -> RuleResult:
    metric, on = rule["metric"], rule.get("using", "value")
    rows = [(f"{_suite_ref(report)}, {b.get('name')}", _score(b.get("scores"), metric, on, str(b.get("name")))[0])
            for b in _backends(report, rule.get("backend"))]
    return _judge(rule, rows, label=f"{metric}.{on}", lo=rule.get("min"), hi=rule.get("max"))


def _rule_per_class(rule: Rule, report: Mapping[str, Any], baseline: Mapping[str, Any] | None) -> RuleResult:
    metric, on = rule["metric"], rule.get("using", "value")
    key = metric if on == "value" else f"{metric}_{on}"
    labels, min_support = rule.get("labels"), rule.get("min_support", 1)
    rows = []
    for b in _backends(report, rule.get("backend")):
        per_class = (b.get("scores") or {}).get("per_class")
        if not per_class:
            raise _Missing("scores", f"per-class scores ({b.get('name')})")
        for row in per_class:
            if (labels is not None and row.get("label") not in labels) or row.get("support", 0) < min_support:
                continue
            v = row.get(key)
            if v is None:
                raise _Missing("scores", f"per-class {key} ({b.get('name')})")
            rows.append((f"class {row.get('label')!r}, {b.get('name')}", float(v)))
    if not rows:
        raise _Missing("scores", "any class with enough support")
    return _judge(rule, rows, label=f"{key}", lo=rule["min"])


def _rule_latency(rule: Rule, report: Mapping[str, Any], baseline: Mapping[str, Any] | None) -> RuleResult:
    key = f"latency_{rule['percentile']}_ms"
    scenario = rule.get("scenario", "single_stream")
    rows = []
    for b in _backends(report, rule.get("backend"), "latency"):
        lat = b.get("latency")
        if not isinstance(lat, Mapping):
            raise _Missing("latency", f"latency results ({b.get('name')})")
        stats: list[Any] = [lat.get("single_stream")] if scenario == "single_stream" else list(lat.get("offline") or [])
        if "batch_size" in rule.params:
            stats = [s for s in stats if isinstance(s, Mapping) and s.get("batch_size") == rule["batch_size"]]
        stats = [s for s in stats if isinstance(s, Mapping) and s.get(key) is not None]
        if not stats:
            raise _Missing("latency", f"{scenario} {key} ({b.get('name')})")
        rows += [(f"{b.get('name')}, {scenario}, batch {s.get('batch_size')}", float(s[key])) for s in stats]
    return _judge(rule, rows, label=key, hi=rule["max_ms"])


def _rule_cross_backend(rule: Rule, report: Mapping[str, Any], baseline: Mapping[str, Any] | None) -> RuleResult:
    a, b = rule["a"], rule["b"]
    pairs = (report.get("parity") or {}).get("cross_backend") or []
    entry = next((e for e in pairs if isinstance(e, Mapping) and {e.get("a"), e.get("b")} == {a, b}), None)
    if entry is None:
        raise _Missing("cross_backend", f"a cross-backend comparison of {a} and {b}")
    fails: list[str] = []
    passes: list[str] = []
    if (need := rule.get("min_argmax_agreement")) is not None:
        got = float(entry["argmax_agreement"])
        (fails if got < need else passes).append(f"argmax agreement {got:.6g} {'<' if got < need else '>='} {need:g}")
    if (most := rule.get("max_label_flips")) is not None:
        flips = int(entry.get("label_flips", 0))
        (fails if flips > most else passes).append(f"{flips} label flips {'>' if flips > most else '<='} {most}")
    on = rule.get("using", "ci")
    for metric, margin in sorted((rule.get("metric_margins") or {}).items()):
        d = (entry.get("metric_deltas") or {}).get(metric)
        if not isinstance(d, Mapping):
            raise _Missing("cross_backend", f"the {metric} delta between {a} and {b}")
        if on == "ci":
            lo, hi = d.get("ci_low"), d.get("ci_high")
            if lo is None or hi is None:
                raise _Missing("cross_backend", f"a confidence interval for the {metric} delta between {a} and {b}")
            ok = -margin <= lo and hi <= margin
            text = f"{metric} delta CI [{lo:.6g}, {hi:.6g}] {'within' if ok else 'outside'} ±{margin:g}"
        else:
            delta = float(d["delta"])
            ok = abs(delta) <= margin
            text = f"{metric} delta {delta:.6g} {'within' if ok else 'outside'} ±{margin:g}"
        (passes if ok else fails).append(text)
    where = f" ({entry.get('a')} vs {entry.get('b')})"
    if fails:
        return RuleResult(rule.id, rule.kind, "fail", "; ".join(fails) + where, code="E_POLICY_RULE")
    return RuleResult(rule.id, rule.kind, "pass", "; ".join(passes) + where)


def _rule_reference_parity(rule: Rule, report: Mapping[str, Any], baseline: Mapping[str, Any] | None) -> RuleResult:
    ref = (report.get("parity") or {}).get("reference")
    entries = [ref] if isinstance(ref, Mapping) else [e for e in ref or [] if isinstance(e, Mapping)]
    if (backend := rule.get("backend")) is not None:
        entries = [e for e in entries if e.get("backend") == backend]
    if not entries:
        raise _Missing("reference_parity", "reference parity results" + (f" for {backend}" if backend else ""))
    agreement, max_abs = [], []
    fails = []
    for e in entries:
        for o in e.get("per_output") or []:
            where = f"output {o.get('output')!r}, {e.get('backend', '?')}"
            if rule.get("min_argmax_agreement") is not None and o.get("argmax_agreement") is not None:
                agreement.append((where, float(o["argmax_agreement"])))
            if rule.get("max_abs_diff") is not None:
                max_abs.append((where, float(o["max_abs_diff"])))
            if rule.get("require_passed") and o.get("passed") is False:
                fails.append(f"{where}: outside the card's tolerances (max abs diff {o.get('max_abs_diff'):.3g})")
    results = []
    if agreement:
        results.append(_judge(rule, agreement, label="argmax agreement", lo=rule["min_argmax_agreement"]))
    if max_abs:
        results.append(_judge(rule, max_abs, label="max abs diff", hi=rule["max_abs_diff"]))
    bad = [r for r in results if r.status == "fail"]
    if fails or bad:
        return RuleResult(rule.id, rule.kind, "fail", "; ".join([r.message for r in bad] + fails), code="E_PARITY",
                          observed=bad[0].observed if bad else None, limit=bad[0].limit if bad else None)
    if not results and not rule.get("require_passed"):
        raise _Missing("reference_parity", "argmax agreement (only embedding outputs)")
    return RuleResult(rule.id, rule.kind, "pass", "; ".join(r.message for r in results) or "every output within the "
                      "card's tolerances", observed=results[0].observed if results else None,
                      limit=results[0].limit if results else None)


def _baseline_backend(baseline: Mapping[str, Any] | None, report: Mapping[str, Any], name: Any) -> Mapping[str, Any]:
    if baseline is None:
        raise _Missing("baseline", "no baseline report was given (--baseline)")
    if _suite_ref(baseline) != _suite_ref(report):
        raise _Missing("baseline", f"the baseline is for suite {_suite_ref(baseline)}, not {_suite_ref(report)}")
    for b in baseline.get("backends") or []:
        if isinstance(b, Mapping) and b.get("name") == name:
            return b
    raise _Missing("baseline", f"the baseline has no backend {name!r}")


def _rule_fraction(rule: Rule, report: Mapping[str, Any], baseline: Mapping[str, Any] | None) -> RuleResult:
    metric, on, fraction, reference = rule["metric"], rule.get("using", "value"), rule["fraction"], rule["reference"]
    rows: list[str] = []
    fails: list[str] = []
    lows: list[tuple[float, float]] = []
    for b in _backends(report, rule.get("backend")):
        v, higher = _score(b.get("scores"), metric, on, str(b.get("name")))
        if reference == "baseline":
            ref_v, _ = _score(_baseline_backend(baseline, report, b.get("name")).get("scores"), metric, "value", "baseline")
        else:
            ref_v = float(reference)
        need = fraction * ref_v if higher else ref_v / fraction
        ok = v >= need if higher else v <= need
        text = (f"{metric}.{on} = {v:.6g} {'>=' if higher else '<='} {need:.6g} " if ok else
                f"{metric}.{on} = {v:.6g} {'<' if higher else '>'} {need:.6g} ") + \
               f"({fraction:g} of reference {ref_v:.6g}; {b.get('name')})"
        (rows if ok else fails).append(text)
        lows.append((v, need))
    if fails:
        return RuleResult(rule.id, rule.kind, "fail", "; ".join(fails), code="E_POLICY_RULE",
                          observed=lows[0][0], limit=lows[0][1])
    return RuleResult(rule.id, rule.kind, "pass", "; ".join(rows), observed=lows[0][0], limit=lows[0][1])


def _rule_baseline_drop(rule: Rule, report: Mapping[str, Any], baseline: Mapping[str, Any] | None) -> RuleResult:
    metric, on, max_drop, relative = rule["metric"], rule.get("using", "value"), rule["max_drop"], rule.get("relative", False)
    rows = []
    for b in _backends(report, rule.get("backend")):
        v, higher = _score(b.get("scores"), metric, on, str(b.get("name")))
        base, _ = _score(_baseline_backend(baseline, report, b.get("name")).get("scores"), metric, "value", "baseline")
        drop = (base - v) if higher else (v - base)
        if relative:
            drop = drop / abs(base) if base else (math.inf if drop > 0 else 0.0)
        rows.append((f"{b.get('name')}: {metric}.{on} {v:.6g} vs baseline {base:.6g}", drop))
    return _judge(rule, rows, label="relative drop" if relative else "drop", hi=max_drop)


def _rule_variant(rule: Rule, report: Mapping[str, Any], baseline: Mapping[str, Any] | None) -> RuleResult:
    name, metric, on, backend = rule["variant"], rule["metric"], rule.get("using", "value"), rule.get("backend")
    variants = [v for v in report.get("variants") or []
                if isinstance(v, Mapping) and v.get("name") == name and (backend is None or v.get("backend") == backend)]
    if not variants:
        raise _Missing("variants", f"variant {name!r}" + (f" on {backend}" if backend else ""))
    results = []
    for v in variants:
        where = f"variant {name}, {v.get('backend')}"
        if rule.get("min") is not None:
            value, _ = _score(v.get("scores"), metric, on, where)
            results.append(_judge(rule, [(where, value)], label=f"{metric}.{on}", lo=rule["min"]))
        if rule.get("max_drop") is not None:
            d = (v.get("deltas") or {}).get(metric)
            if not isinstance(d, Mapping):
                raise _Missing("variants", f"the {metric} delta of {where}")
            _, higher = _score(v.get("scores"), metric, "value", where)
            # deltas are variant minus unperturbed: a drop is the negative side for higher-is-better metrics
            key = {"value": "delta", "ci_low": "ci_low" if higher else "ci_high"}.get(on, "delta")
            delta = d.get(key)
            if delta is None:
                raise _Missing("variants", f"a confidence interval for the {metric} delta of {where}")
            drop = -float(delta) if higher else float(delta)
            results.append(_judge(rule, [(where, drop)], label=f"{metric} drop", hi=rule["max_drop"]))
    bad = [r for r in results if r.status == "fail"]
    pick = bad or results
    return RuleResult(rule.id, rule.kind, "fail" if bad else "pass", "; ".join(r.message for r in pick),
                      code="E_POLICY_RULE" if bad else None, observed=pick[0].observed, limit=pick[0].limit)


_CHECKS: dict[str, Callable[[Rule, Mapping[str, Any], Mapping[str, Any] | None], RuleResult]] = {
    "score": _rule_score,
    "per_class": _rule_per_class,
    "latency": _rule_latency,
    "cross_backend": _rule_cross_backend,
    "reference_parity": _rule_reference_parity,
    "fraction_of_reference": _rule_fraction,
    "baseline_drop": _rule_baseline_drop,
    "variant": _rule_variant,
}


# ====================================================================================== baselines


class Baselines:
    """Earlier reports, found by model name and suite (a directory), or one report for every submission (a file)."""

    def __init__(self, reports: Sequence[Mapping[str, Any]], *, single: bool = False) -> None:
        self._reports = list(reports)
        self._single = single

    def find(self, model: str | None, suite: str | None) -> Mapping[str, Any] | None:
        if self._single:
            return self._reports[0] if self._reports else None
        for r in self._reports:
            if (r.get("package") or {}).get("name") == model and (suite is None or _suite_ref(r) == suite):
                return r
        return None


def load_baselines(path: Path) -> Baselines:
    """Read ``--baseline``: one report.json, or a directory of them (matched by package name and suite).

    Raises:
        GateError: A baseline is not a strict JSON report (``E_DOCUMENT_SCHEMA``) or is missing.
    """
    path = Path(path)
    if path.is_file():
        return Baselines([_read_report_file(path)], single=True)
    if not path.is_dir():
        raise GateError(f"{path}: no such baseline report or directory.", code="E_NOT_FOUND")
    reports = []
    for entry in sorted(os.scandir(path), key=lambda e: e.name):
        if entry.name.endswith(".json") and entry.is_file(follow_symlinks=False):
            reports.append(_read_report_file(Path(entry.path)))
    return Baselines(reports)


def _read_report_file(path: Path) -> dict[str, Any]:
    with open_in_root(path.parent, path.name, max_bytes=MAX_REPORT_BYTES) as f:
        data = f.read()
    doc = parse_document(data, source=path.name, fmt="json", code="E_DOCUMENT_SCHEMA")
    problems = validate(doc, "report", source=path.name)
    if problems:
        raise GateError(f"{path.name}: is not a valid report.", code="E_DOCUMENT_SCHEMA", problems=problems)
    return doc


# ===================================================================================== evaluation


@dataclass(frozen=True, slots=True)
class EvalRequest:
    """What an evaluator gets: a verified, statically checked package in a gate-owned staging copy."""

    package_dir: Path
    card: ModelCard
    policy: Policy
    workdir: Path


@dataclass(frozen=True, slots=True)
class Evaluation:
    """What an evaluator returns: a report dict (the shape of report.json) and what it covers.

    ``scope`` lists the report sections the evaluator produces; rules reading other sections are
    skipped (with a message), not failed.
    """

    evaluator: str
    scope: frozenset[str]
    report: Mapping[str, Any]
    details: Mapping[str, Any] = field(default_factory=dict)
    more_reports: tuple[Mapping[str, Any], ...] = ()   # one per further suite of the policy

    @property
    def reports(self) -> tuple[Mapping[str, Any], ...]:
        return (self.report, *self.more_reports)


class Evaluator(Protocol):
    """The pluggable evaluation step: run the package somewhere safe and report on it.

    Raise ``MmstdError`` with a submission code to reject, ``InfraError`` for machine problems.
    """

    def __call__(self, request: EvalRequest) -> Evaluation: ...


def evaluate_in_child(request: EvalRequest) -> Evaluation:
    """The default evaluator: run reference.safetensors' inputs through onnxruntime CPU in a sandbox.

    The child (``mmstd.sandbox:reference_child``) runs with the policy's time, memory, CPU and
    file-size limits; its exit is mapped to a code; its outputs are checked here against the
    card (names, dtypes, shapes with consistent named axes, finiteness) and compared with the
    reference outputs. The report holds ``parity.reference`` in report.json's shape.

    Raises:
        MmstdError: E_TIMEOUT, E_MEMORY_LIMIT, E_RUNTIME_CRASH, E_RUNTIME_ERROR, E_IO_CONTRACT,
            E_NONFINITE_OUTPUT, and the load-time codes of SECURITY.md 4.7.
        InfraError: The child could not run (E_DEPENDENCY, E_BACKEND_UNAVAILABLE, E_INTERNAL).
    """
    import numpy as np
    from safetensors.numpy import load_file

    from mmstd.package import check_safetensors

    policy, card = request.policy, request.card
    work = request.workdir
    work.mkdir(mode=0o700)
    out = work / "out"
    out.mkdir(mode=0o700)
    limits = policy.sandbox
    # read what we compare against before the untrusted run starts: the child cannot change it afterwards
    reference = load_file(str(request.package_dir / "reference.safetensors"))
    outcome = run_child("mmstd.sandbox:reference_child",
                        [str(request.package_dir), str(out), repr(limits.timeout_s), str(policy.output_bytes)],
                        limits=limits, workdir=work)
    details: dict[str, Any] = {"wall_s": round(outcome.wall_s, 4), "max_rss_mib": round(outcome.max_rss_bytes / MIB, 1),
                               "limits": limits_dict(limits)}
    mem = f"{limits.memory_bytes // MIB} MiB address space" if limits.memory_bytes else "no memory limit"
    code = outcome.failure_code()
    if outcome.timed_out:
        raise MmstdError(f"model.onnx: did not finish within {limits.timeout_s:g} s; its process group was killed "
                         f"(limit {limits.timeout_s:g} s)", code="E_TIMEOUT")
    if code is not None and outcome.signal is not None:
        what = {"E_TIMEOUT": "its CPU-time limit", "E_MEMORY_LIMIT": f"memory ({mem})",
                "E_FS_LIMIT": "its file-size limit"}.get(code, "a crash")
        raise MmstdError(f"model.onnx: the runner process died from {outcome.signal} ({what})", code=code)
    result = _read_child_json(out / "result.json")
    if result is None or code is not None:
        last = ([ln for ln in outcome.stderr_tail.splitlines() if ln.strip()] or ["(no output)"])[-1]
        raise InfraError(f"the evaluation child exited with status {outcome.returncode} without a result "
                         f"(last stderr line: {last[-300:]})", code="E_INTERNAL")
    details.update({k: result[k] for k in ("providers", "session_create_ms", "run_ms", "onnxruntime") if k in result})
    if result.get("status") != "ok":
        rcode = str(result.get("code")) if result.get("code") in _CHILD_CODES else "E_INTERNAL"
        message = str(result.get("message", ""))
        limit = {"E_TIMEOUT": f" (limit {limits.timeout_s:g} s)", "E_MEMORY_LIMIT": f" (limit {mem})"}.get(rcode, "")
        text = f"model.onnx: {result.get('phase', 'run')}: {message}{limit}"
        if rcode in INFRA_CODES:
            raise InfraError(text, code=rcode)
        raise MmstdError(text, code=rcode)
    try:
        check_safetensors(out, "outputs.safetensors")
    except MmstdError as e:
        raise InfraError(f"the evaluation child wrote unreadable outputs ({e.message})", code="E_INTERNAL") from None
    observed = load_file(str(out / "outputs.safetensors"))
    parity = _check_observed(card, reference, observed, np)
    return Evaluation(evaluator="reference-ort-cpu", scope=frozenset({"reference_parity"}),
                      report={"parity": {"reference": [parity]}}, details=details)


_CHILD_CODES = frozenset({
    "E_NONDETERMINISTIC", "E_FS_LIMIT", "E_TIMEOUT", "E_MEMORY_LIMIT", "E_RUNTIME_ERROR", "E_RUNTIME_CRASH",
    "E_IO_CONTRACT", "E_TENSOR_LIMIT", "E_FORMAT_CORRUPT", "E_FS_NOT_REGULAR", "E_FS_PATH_ESCAPE", "E_ONNX_UNSUPPORTED", "E_ONNX_INVALID",
    "E_BACKEND_UNAVAILABLE", "E_DEPENDENCY", "E_INTERNAL", "E_SAFETENSORS_INVALID",
})


FULL_SCOPE = frozenset({"scores", "latency", "cross_backend", "variants", "reference_parity"})


def evaluate_suites_in_child(request: EvalRequest) -> Evaluation:
    """The full evaluator: the reference run, then ``mmstd evaluate`` per policy suite, each sandboxed.

    The strict reference child (``evaluate_in_child``) runs first: it is cheap and stops hangs,
    bombs and NaN outputs before a whole suite is spent on them. Then, for every suite of the
    policy, a child with the same limits runs the package on the policy's backends and variants
    and writes report.json, which is re-validated here (schema and consistency) and must name the
    staged package's digest.

    Raises:
        MmstdError: The submission's fault (timeouts, crashes, contract violations, bad outputs).
        InfraError: A backend is absent or the child failed for reasons of its own.
    """
    from mmstd.package import open_package
    from mmstd.reports import check_report

    policy = request.policy
    request.workdir.mkdir(mode=0o700)
    reference = evaluate_in_child(EvalRequest(request.package_dir, request.card, policy, request.workdir / "reference"))
    digest = open_package(request.package_dir, check_graph=False).digest
    opts = {"backends": list(policy.backends), "variants": list(policy.variants),
            "quick": bool(policy.evaluate.get("quick", False)), "limit": policy.evaluate.get("limit"), "seed": 0}
    reports: list[dict[str, Any]] = []
    details: dict[str, Any] = {"reference": dict(reference.details), "suites": {}}
    limits = policy.sandbox
    for i, suite in enumerate(policy.suites or ("digits-av",)):
        work = request.workdir / f"suite-{i}"
        work.mkdir(mode=0o700)
        out = work / "out"
        out.mkdir(mode=0o700)
        outcome = run_child("mmstd.sandbox:evaluate_child", [str(request.package_dir), suite, str(out), json.dumps(opts)],
                            limits=limits, workdir=work)
        details["suites"][suite] = {"wall_s": round(outcome.wall_s, 3), "max_rss_mib": round(outcome.max_rss_bytes / MIB, 1)}
        if outcome.timed_out:
            raise MmstdError(f"model.onnx: evaluating on {suite} did not finish within {limits.timeout_s:g} s; its "
                             f"process group was killed (limit {limits.timeout_s:g} s)", code="E_TIMEOUT")
        code = outcome.failure_code()
        if code is not None and outcome.signal is not None:
            raise MmstdError(f"model.onnx: the evaluation process on {suite} died from {outcome.signal}", code=code)
        result = _read_child_json(out / "result.json")
        if result is None:
            last = ([ln for ln in outcome.stderr_tail.splitlines() if ln.strip()] or ["(no output)"])[-1]
            raise InfraError(f"the evaluation child for {suite} exited with status {outcome.returncode} without a "
                             f"result (last stderr line: {last[-300:]})", code="E_INTERNAL")
        if result.get("status") != "ok":
            rcode = str(result.get("code")) if str(result.get("code")) in CODES else "E_INTERNAL"
            text = f"model.onnx: evaluating on {suite}: {str(result.get('message', ''))[:MAX_MESSAGE_CHARS]}"
            if result.get("infra") or rcode in INFRA_CODES:
                raise InfraError(text, code=rcode if rcode != "E_USAGE" else "E_INTERNAL")
            raise MmstdError(text, code=rcode)
        report = _read_report_file(out / "report" / "report.json")
        check_report(report, source=f"report.json ({suite})")
        if report["package"]["digest"] != digest:
            raise InfraError(f"the evaluation child for {suite} reported on package {report['package']['digest'][:12]}…, "
                             f"not the staged {digest[:12]}…", code="E_INTERNAL")
        reports.append(report)
    return Evaluation(evaluator="mmstd-evaluate", scope=FULL_SCOPE, report=reports[0],
                      more_reports=tuple(reports[1:]), details=details)


def _read_child_json(path: Path) -> dict[str, Any] | None:
    try:
        with open(path, "rb") as f:
            data = f.read(1 << 20)
        doc = parse_document(data, source="result.json", fmt="json", code="E_INTERNAL")
    except (OSError, MmstdError):
        return None
    return doc if isinstance(doc, dict) else None


def _check_observed(card: ModelCard, reference: Mapping[str, Any], observed: Mapping[str, Any], np: Any) -> dict[str, Any]:
    """Validate the outputs a run produced against the card, then compare them with the reference outputs."""
    axes: dict[str, int] = {}
    for spec in card.inputs:
        arr = reference[f"input.{spec.name}"]
        for d, want in zip(arr.shape, spec.shape, strict=True):
            if isinstance(want, str):
                axes.setdefault(want, int(d))
    problems = []
    names = {f"output.{s.name}" for s in card.outputs}
    for extra in sorted(set(observed) - names):
        problems.append(f"model.onnx:{extra}: the run produced an output the card does not declare")
    for spec in card.outputs:
        got = observed.get(f"output.{spec.name}")
        where = f"model.onnx:output {spec.name!r}"
        if got is None:
            problems.append(f"{where}: missing from the run's outputs")
            continue
        if str(got.dtype) != spec.dtype:
            problems.append(f"{where}: dtype is {got.dtype} at run time (expected {spec.dtype}, as the card says)")
        expected = tuple(axes.get(d, -1) if isinstance(d, str) else d for d in spec.shape)
        ok = len(got.shape) == len(expected) and all(w in (-1, g) for g, w in zip(got.shape, expected, strict=True))
        if not ok:
            shown = tuple("?" if w == -1 else w for w in expected)
            problems.append(f"{where}: shape is {tuple(got.shape)} at run time (expected {shown} from the card's "
                            f"{list(spec.shape)})")
    if problems:
        raise MmstdError(problems[0], code="E_IO_CONTRACT", problems=problems[1:])
    for spec in card.outputs:
        got = observed[f"output.{spec.name}"]
        if got.dtype.kind == "f" and not np.isfinite(got).all():
            n_nan, n_inf = int(np.isnan(got).sum()), int(np.isinf(got).sum())
            raise MmstdError(f"model.onnx:output {spec.name!r}: {n_nan} NaN and {n_inf} Inf among {got.size} values "
                             "(expected all finite)", code="E_NONFINITE_OUTPUT")
    parity = card.sections.get("parity", {})
    export = card.sections.get("export", {})
    atol = float(parity.get("atol", export.get("atol", 1e-4)))
    rtol = float(parity.get("rtol", export.get("rtol", 1e-3)))
    per_output = []
    samples = 1
    for spec in card.outputs:
        got = observed[f"output.{spec.name}"].astype(np.float64)
        ref = reference[f"output.{spec.name}"].astype(np.float64)
        if got.shape != ref.shape:
            raise MmstdError(f"model.onnx:output {spec.name!r}: shape {tuple(got.shape)} differs from the reference "
                             f"output's {tuple(ref.shape)}", code="E_IO_CONTRACT")
        diff = np.abs(got - ref)
        max_abs = float(diff.max()) if diff.size else 0.0
        max_rel = float((diff / np.maximum(np.abs(ref), 1e-12)).max()) if diff.size else 0.0
        agreement = None
        if spec.kind in ("probabilities", "logits") and got.ndim >= 2 and got.shape[-1] > 1:
            agreement = float((got.argmax(-1) == ref.argmax(-1)).mean())
        samples = max(samples, int(got.shape[0]) if got.ndim else 1)
        per_output.append({"output": spec.name, "max_abs_diff": max_abs, "max_rel_diff": max_rel,
                           "argmax_agreement": agreement, "passed": bool(np.allclose(got, ref, atol=atol, rtol=rtol))})
    return {"backend": "ort-cpu", "against": "reference.safetensors", "atol": atol, "rtol": rtol, "samples": samples,
            "per_output": per_output, "passed": all(o["passed"] for o in per_output)}


# ===================================================================================== discovery


@dataclass(frozen=True, slots=True)
class Submission:
    """One thing to gate: ``kind`` is package, zip, report, file, link or special (decided by lstat)."""

    index: int
    label: str
    path: Path
    kind: str


_README = frozenset({"readme", "readme.md", "readme.txt", "readme.rst"})


def find_submissions(paths: Sequence[Path]) -> list[Submission]:
    """Expand SUBMISSION arguments: a package dir, a .zip, a report.json, or a directory of those.

    Nothing is followed or opened: kinds come from ``lstat``. Inside a directory of submissions,
    hidden entries and READMEs are ignored; links and special files become submissions that
    will be rejected.

    Raises:
        GateError: ``E_NOT_FOUND`` for a missing argument, ``E_USAGE`` when nothing is found.
    """
    found: list[tuple[str, Path, str]] = []
    for p in map(Path, paths):
        if not os.path.lexists(p):
            raise GateError(f"{p}: no such submission (expected a package directory, a .zip or a report.json).",
                            code="E_NOT_FOUND")
        kind = _kind_of(p, top=True)
        if kind != "collection":
            found.append((str(p), p, kind))
            continue
        with os.scandir(p) as it:
            children = sorted(it, key=lambda e: e.name)
        for child in children:
            if child.name.startswith(".") or child.name.lower() in _README:
                continue
            cp = Path(child.path)
            found.append((f"{p}/{child.name}", cp, _kind_of(cp, top=False)))
    if not found:
        raise GateError(f"no submissions found in {', '.join(map(str, paths))}.", code="E_USAGE",
                        hint="pass package directories, .zip packages, report.json files, or a directory holding them.")
    return [Submission(i + 1, _display(label), path, kind) for i, (label, path, kind) in enumerate(found)]


def _kind_of(p: Path, *, top: bool) -> str:
    mode = os.lstat(p).st_mode
    if stat.S_ISLNK(mode):
        return "link"
    if stat.S_ISDIR(mode):
        if not top or any(os.path.lexists(p / n) for n in ("manifest.json", "card.json", "model.onnx")):
            return "package"
        return "collection"
    if stat.S_ISREG(mode):
        suffix = p.suffix.lower()
        return {".zip": "zip", ".json": "report"}.get(suffix, "file")
    return "special"


# ====================================================================================== pipeline


@dataclass
class _Context:
    """Mutable state of one submission's pipeline run (private to this module)."""

    sub: Submission
    policy: Policy
    work: Path
    evaluator: Evaluator
    baselines: Baselines | None
    files: dict[str, StagedFile] = field(default_factory=dict)
    package: Any = None
    card: ModelCard | None = None
    digest: str | None = None
    evaluation: Evaluation | None = None
    report: Mapping[str, Any] | None = None

    @property
    def staged(self) -> Path:
        return self.work / STAGED


def check_gate(
    submissions: Sequence[Path],
    policy: Policy,
    *,
    baseline: Path | None = None,
    jobs: int = 1,
    evaluator: Evaluator | None = None,
    progress: Callable[[Verdict], None] | None = None,
) -> GateResult:
    """Gate every submission against ``policy`` and return the verdicts (nothing is written).

    Each submission is staged into its own private directory under a fresh temporary root,
    checked, evaluated by ``evaluator`` in a sandboxed child, and its staging removed before the
    next one starts on that worker; ``jobs`` submissions run at once (threads driving child
    processes), which bounds peak memory to about ``jobs`` models.

    Args:
        submissions: SUBMISSION arguments (see ``find_submissions``).
        policy: From ``load_policy``.
        baseline: A report.json or a directory of them, for drop-against-baseline rules.
        jobs: Submissions processed in parallel.
        evaluator: The evaluation step; by default the policy's ``evaluate.mode`` decides:
            ``full`` (``evaluate_suites_in_child``) or ``reference`` (``evaluate_in_child``).
        progress: Called with each verdict as it is decided (from worker threads).

    Returns:
        A ``GateResult``; ``exit_code`` is 0 (all accepted), 3 (any rejected) or 4 (any error).

    Raises:
        GateError: A missing submission path or baseline, or no submissions at all.
    """
    start = time.monotonic()
    if evaluator is None:
        evaluator = evaluate_in_child if policy.evaluate.get("mode") == "reference" else evaluate_suites_in_child
    subs = find_submissions(submissions)
    baselines = load_baselines(baseline) if baseline is not None else None
    log: list[str] = []
    log_lock = threading.Lock()
    root = Path(tempfile.mkdtemp(prefix="mmstd-gate-"))

    def one(sub: Submission) -> Verdict:
        verdict = _gate_one(sub, policy, root / f"{sub.index:04d}", evaluator, baselines, log, log_lock)
        if progress is not None:
            progress(verdict)
        return verdict

    try:
        if jobs <= 1:
            verdicts = [one(s) for s in subs]
        else:
            with ThreadPoolExecutor(max_workers=jobs, thread_name_prefix="mmstd-gate") as pool:
                verdicts = list(pool.map(one, subs))
    except BaseException:
        kill_all()
        raise
    finally:
        _remove(root)
    created = datetime.now(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")
    return GateResult(policy=policy, verdicts=tuple(verdicts), wall_s=time.monotonic() - start, jobs=jobs,
                      created=created, log=tuple(log))


def _gate_one(sub: Submission, policy: Policy, work: Path, evaluator: Evaluator, baselines: Baselines | None,
              log: list[str], log_lock: threading.Lock) -> Verdict:
    start = time.monotonic()
    ctx = _Context(sub=sub, policy=policy, work=work, evaluator=evaluator, baselines=baselines)
    work.mkdir(mode=0o700)
    try:
        checks, violations, scope = _run_pipeline(ctx)
    except Exception:  # a gate bug: log the traceback, never blame the submission
        tb = traceback.format_exc()
        with log_lock:
            log.append(f"[{sub.index:04d}] {sub.label}: E_INTERNAL\n{tb}")
        v = Violation("E_INTERNAL", "the gate failed while checking this submission (a bug in mmstd; see gate.log)")
        checks, violations, scope = [RuleResult("gate", "stage", "fail", str(v), code=v.code)], [v], "full"
    finally:
        _remove(work)
    status = "accepted"
    if any(v.code in INFRA_CODES for v in violations):
        status = "error"
        with log_lock:
            log.extend(f"[{sub.index:04d}] {sub.label}: {v}" for v in violations if v.code in INFRA_CODES)
    elif violations:
        status = "rejected"
    evaluation = None
    if ctx.evaluation is not None:
        evaluation = {"evaluator": ctx.evaluation.evaluator, "scope": sorted(ctx.evaluation.scope),
                      "parity": ctx.evaluation.report.get("parity"), "details": ctx.evaluation.details}
    model = ctx.card.ref if ctx.card is not None else _report_model(ctx.report)
    return Verdict(index=sub.index, submission=sub.label, kind=sub.kind, status=status, scope=scope, digest=ctx.digest,
                   model=model, checks=tuple(checks), violations=tuple(violations), evaluation=evaluation,
                   wall_s=time.monotonic() - start)


def _remove(path: Path) -> None:
    """Delete a gate-owned tree, restoring write permission where the evaluation step removed it."""
    def retry(func: Callable[..., Any], p: str, _exc: Any) -> None:
        try:
            os.chmod(os.path.dirname(p), 0o700)
            if os.path.isdir(p) and not os.path.islink(p):
                os.chmod(p, 0o700)
            func(p)
        except OSError:
            pass

    shutil.rmtree(path, onerror=retry)


def _report_model(report: Mapping[str, Any] | None) -> str | None:
    pkg = (report or {}).get("package")
    if isinstance(pkg, Mapping) and isinstance(pkg.get("name"), str):
        return f"{pkg['name']}@{pkg.get('version', '?')}"
    return None


def _run_pipeline(ctx: _Context) -> tuple[list[RuleResult], list[Violation], str]:
    kind = ctx.sub.kind
    not_reached = [RuleResult(r.id, r.kind, "skip", "not reached: an earlier check failed") for r in ctx.policy.rules]
    if kind == "report":
        checks, violations = _run_stages(ctx, [("report", _stage_report)])
        for sid in PACKAGE_STAGES:
            checks.append(RuleResult(sid, "stage", "skip", "report-only submission: evaluated elsewhere; the package "
                                                           "was not verified, scanned or run by this gate"))
        if violations:
            checks += not_reached
        else:
            baseline = ctx.baselines.find(_report_name(ctx.report), _suite_ref(ctx.report or {})) if ctx.baselines else None
            _add_rules(checks, violations, check_rules(ctx.report or {}, ctx.policy, baseline))
        return checks, violations, "report-only"
    if kind == "link":
        v = Violation("E_FS_PATH_ESCAPE", ".: is a symlink; a submission must be a real directory or file "
                                          "(links are never followed)", ".")
        return [RuleResult("fs", "stage", "fail", str(v), code=v.code), *not_reached], [v], "full"
    if kind == "special":
        v = Violation("E_FS_NOT_REGULAR", ".: is a FIFO, socket or device, not a package directory, .zip or report.json", ".")
        return [RuleResult("fs", "stage", "fail", str(v), code=v.code), *not_reached], [v], "full"
    first = {"package": ("fs", _stage_fs), "zip": ("archive", _stage_archive), "file": ("formats", _stage_file)}[kind]
    stages: list[tuple[str, Callable[[_Context], list[RuleResult] | None]]] = [first]
    if kind != "file":
        stages += [("formats", _stage_formats), ("package", _stage_package), ("card", _stage_card),
                   ("reference", _stage_reference), ("onnx", _stage_onnx), ("evaluate", _stage_evaluate)]
    checks, violations = _run_stages(ctx, stages)
    if not violations and ctx.evaluation is not None:
        per_report = []
        for report in ctx.evaluation.reports:
            baseline = ctx.baselines.find(ctx.card.name if ctx.card else None, _suite_ref(report)) if ctx.baselines else None
            per_report.append(check_rules(report, ctx.policy, baseline, scope=ctx.evaluation.scope))
        _add_rules(checks, violations, _merge_rule_results(per_report))
    elif violations:
        checks += not_reached  # one result per policy rule for every submission, so CI test views line up
    return checks, violations, "full"


def _merge_rule_results(per_report: Sequence[Sequence[RuleResult]]) -> list[RuleResult]:
    """One result per rule over several suites' reports: a failure anywhere fails, else a pass passes."""
    if len(per_report) == 1:
        return list(per_report[0])
    rank = {"fail": 2, "pass": 1, "skip": 0}
    best: dict[str, RuleResult] = {}
    for results in per_report:
        for r in results:
            if r.id not in best or rank[r.status] > rank[best[r.id].status]:
                best[r.id] = r
    return list(best.values())


def _report_name(report: Mapping[str, Any] | None) -> str | None:
    pkg = (report or {}).get("package")
    return pkg.get("name") if isinstance(pkg, Mapping) else None


def _add_rules(checks: list[RuleResult], violations: list[Violation], results: list[RuleResult]) -> None:
    for r in results:
        checks.append(r)
        if r.status == "fail":
            violations.append(Violation(r.code or "E_POLICY_RULE", _display(f"rule {r.id}: {r.message}")))


def _run_stages(ctx: _Context, stages: list[tuple[str, Callable[[_Context], list[RuleResult] | None]]]
                ) -> tuple[list[RuleResult], list[Violation]]:
    checks: list[RuleResult] = []
    violations: list[Violation] = []
    for sid, fn in stages:
        if violations:
            if sid == "card":
                names = [f"card.{f}" for f in ctx.policy.card_required]
                names += ["card.license-allowed"] if ctx.policy.licenses is not None else []
                checks += [RuleResult(n, "card", "skip", "not reached: an earlier check failed") for n in names]
            else:
                checks.append(RuleResult(sid, "stage", "skip", "not reached: an earlier check failed"))
            continue
        try:
            extra = fn(ctx)
        except MmstdError as err:
            v = _violation(err, ctx)
            violations.append(v)
            checks.append(RuleResult(sid, "stage", "fail", str(v), code=v.code))
            continue
        if extra is None:
            checks.append(RuleResult(sid, "stage", "pass", STAGE_DESCRIPTIONS.get(sid, sid)))
            continue
        for r in extra:
            checks.append(r)
            if r.status == "fail":
                violations.append(Violation(r.code or "E_POLICY_RULE", r.message, r.message.split(":", 1)[0]))
    return checks, violations


# ---------------------------------------------------------------------------------------- stages


def _stage_fs(ctx: _Context) -> None:
    ctx.files = stage_tree(ctx.sub.path, ctx.staged, ctx.policy.scan)


@contextmanager
def _read_self(ctx: _Context, max_bytes: int) -> Iterator[BinaryIO]:
    """open_in_root on the submission file itself (a .zip, report or loose file); errors name it '.'."""
    try:
        with open_in_root(ctx.sub.path.parent, ctx.sub.path.name, max_bytes=max_bytes) as f:
            yield f
    except MmstdError as e:
        raise MmstdError(f".: {e.message.split(': ', 1)[-1]}", code=e.code) from None


def _copy_in(ctx: _Context, dest: Path, max_bytes: int) -> str:
    """Copy the submission file itself into the work dir, hashing it."""
    h = hashlib.sha256()
    n = 0
    with _read_self(ctx, max_bytes) as f, open(dest, "xb") as out:
        while chunk := f.read(1 << 20):
            n += len(chunk)
            if n > max_bytes:
                raise refuse("E_FS_LIMIT", ".", f"grew past {max_bytes} bytes while being read")
            h.update(chunk)
            out.write(chunk)
    return h.hexdigest()


def _stage_archive(ctx: _Context) -> None:
    archive = ctx.work / "archive.zip"
    ctx.digest = _copy_in(ctx, archive, ctx.policy.scan.max_total_bytes)
    ctx.files = extract_zip(archive, ctx.staged, ctx.policy.scan, name=".")
    archive.unlink()


def _stage_file(ctx: _Context) -> None:
    ctx.staged.mkdir(mode=0o700)
    name = "submission" + ctx.sub.path.suffix.lower()[:16] if ctx.sub.path.suffix.isascii() else "submission"
    ctx.digest = _copy_in(ctx, ctx.staged / name, ctx.policy.scan.max_file_bytes)
    try:
        kind = identify(ctx.staged, name, role="asset", limits=ctx.policy.scan)
    except MmstdError as e:
        raise MmstdError(e.message.replace(f"{name}:", ".:", 1).replace(f"{name}: ", ".: ", 1), code=e.code) from None
    raise refuse("E_FORMAT_UNSUPPORTED", ".", f"is a {kind} file, not a package directory, a .zip package or a report.json")


def _role(rel: str) -> str:
    if rel in ("manifest.json", "card.json"):
        return "document"
    if rel == "model.onnx":
        return "onnx"
    if rel in ("weights.safetensors", "reference.safetensors"):
        return "safetensors"
    if rel.startswith("assets/"):
        return "asset"
    return "data"  # ONNX external data: raw tensor bytes


def _stage_formats(ctx: _Context) -> None:
    for rel in sorted(ctx.files):
        identify(ctx.staged, rel, role=_role(rel), limits=ctx.policy.scan)


def _stage_package(ctx: _Context) -> None:
    from mmstd.package import open_package

    _precheck_manifest(ctx)
    pkg = open_package(ctx.staged, check_graph=False)
    ctx.package, ctx.card, ctx.digest = pkg, pkg.card, pkg.digest


def _precheck_manifest(ctx: _Context) -> None:
    """Refuse absolute and '..' manifest paths as escapes before schema validation calls them malformed."""
    if "manifest.json" not in ctx.files:
        return
    with open_in_root(ctx.staged, "manifest.json", max_bytes=16 << 20) as f:
        data = f.read()
    try:
        doc = parse_document(data, source="manifest.json", fmt="json", code="E_FORMAT_CORRUPT")
    except MmstdError:
        return  # open_package reports it with its own code
    entries = doc.get("files") if isinstance(doc, dict) else None
    for i, e in enumerate(entries if isinstance(entries, list) else []):
        if isinstance(e, dict) and isinstance(e.get("path"), str):
            check_relpath(e["path"], where=f"manifest.json:$.files[{i}].path")


def _stage_card(ctx: _Context) -> list[RuleResult]:
    assert ctx.card is not None
    doc = ctx.card.to_dict()
    results = []
    for dotted in ctx.policy.card_required:
        value: Any = doc
        for part in dotted.split("."):
            value = value.get(part) if isinstance(value, Mapping) else None
        if value is None or value == "" or value == [] or value == {}:
            results.append(RuleResult(f"card.{dotted}", "card", "fail", f"card.json:$.{dotted}: missing or empty "
                                      "(required by the policy)", code="E_CARD_SCHEMA"))
        else:
            results.append(RuleResult(f"card.{dotted}", "card", "pass", f"card.json:$.{dotted} is present"))
    if ctx.policy.licenses is not None:
        lic = doc["model_details"]["license"]
        ok = lic in ctx.policy.licenses
        results.append(RuleResult("card.license-allowed", "card", "pass" if ok else "fail",
                                  f"card.json:$.model_details.license: {lic!r} "
                                  + ("is allowed" if ok else f"is not allowed (allowed: {', '.join(ctx.policy.licenses)})"),
                                  code=None if ok else "E_CARD_SCHEMA"))
    return results


_ST_DTYPES = {"F32": "float32", "F16": "float16", "F64": "float64", "BF16": "bfloat16", "I8": "int8", "I16": "int16",
              "I32": "int32", "I64": "int64", "U8": "uint8", "BOOL": "bool"}


def _stage_reference(ctx: _Context) -> None:
    from mmstd.package import REFERENCE, check_safetensors

    assert ctx.card is not None
    header = check_safetensors(ctx.staged, REFERENCE)
    axes: dict[str, int] = {}
    expected = [(f"input.{s.name}", s, "input") for s in ctx.card.inputs]
    expected += [(f"output.{s.name}", s, "output") for s in ctx.card.outputs]
    for key, spec, side in expected:
        if key not in header:
            raise refuse("E_SAFETENSORS_INVALID", REFERENCE, f"lacks tensor {key!r} (the card declares {side} {spec.name!r})")
        dtype, shape = header[key]
        if _ST_DTYPES.get(dtype) != spec.dtype:
            raise refuse("E_SAFETENSORS_INVALID", REFERENCE, f"dtype {dtype} (expected {spec.dtype}, as the card says)", field=key)
        if len(shape) != spec.rank:
            raise refuse("E_SAFETENSORS_INVALID", REFERENCE, f"shape {list(shape)} (expected rank {spec.rank}: {list(spec.shape)})",
                         field=key)
        for d, want in zip(shape, spec.shape, strict=True):
            if isinstance(want, int) and d != want or isinstance(want, str) and axes.setdefault(want, d) != d:
                raise refuse("E_SAFETENSORS_INVALID", REFERENCE, f"shape {list(shape)} (expected {list(spec.shape)} with "
                                                                 f"consistent named axes {axes})", field=key)
        if math.prod(shape) > ctx.policy.scan.max_tensor_elements:
            raise refuse("E_TENSOR_LIMIT", REFERENCE, f"{math.prod(shape)} elements "
                                                      f"(limit {ctx.policy.scan.max_tensor_elements})", field=key)
    extra = sorted(set(header) - {k for k, _, _ in expected})
    if extra:
        raise refuse("E_SAFETENSORS_INVALID", REFERENCE, f"holds tensors the card does not declare: {extra[:5]} "
                                                         "(expected input.<name> and output.<name>)")


def _stage_onnx(ctx: _Context) -> None:
    from mmstd.package import MODEL, check_onnx

    assert ctx.card is not None and ctx.package is not None
    policy = ctx.policy
    model = check_onnx(ctx.staged, MODEL, ctx.card, allowed_external={f.path for f in ctx.package.files},
                       pre_check=lambda m: check_onnx_static(m, policy.onnx, policy.scan, where=MODEL))
    check_onnx_inferred(model, policy.scan, where=MODEL)


def _stage_evaluate(ctx: _Context) -> None:
    assert ctx.card is not None
    _set_writable(ctx.staged, False)  # defence in depth: the evaluation only reads the package
    try:
        ctx.evaluation = ctx.evaluator(EvalRequest(package_dir=ctx.staged, card=ctx.card, policy=ctx.policy,
                                                   workdir=ctx.work / "eval"))
    finally:
        _set_writable(ctx.staged, True)


def _set_writable(root: Path, writable: bool) -> None:
    for dirpath, _dirnames, filenames in os.walk(root, topdown=not writable):
        for name in filenames:
            os.chmod(os.path.join(dirpath, name), 0o600 if writable else 0o400, follow_symlinks=False)
        os.chmod(dirpath, 0o700 if writable else 0o500)


def _stage_report(ctx: _Context) -> None:
    with _read_self(ctx, MAX_REPORT_BYTES) as f:
        data = f.read()
    ctx.digest = hashlib.sha256(data).hexdigest()
    doc = parse_document(data, source=".", fmt="json", code="E_FORMAT_CORRUPT")
    if not isinstance(doc, dict):
        raise refuse("E_DOCUMENT_SCHEMA", ".", f"$: expected a report object, got {type(doc).__name__}")
    problems = validate(doc, "report", source=".")
    if problems:
        raise MmstdError(f".: is not a valid report ({len(problems)} problem{'s' * (len(problems) > 1)})",
                         code="E_DOCUMENT_SCHEMA", problems=problems)
    ctx.report = doc


# ------------------------------------------------------------------------------------- messages


def _violation(err: MmstdError, ctx: _Context) -> Violation:
    text = _relative(err.message, ctx)
    problems = [_relative(p, ctx) for p in err.problems]
    if problems:
        shown = problems[:6]
        more = f"; and {len(problems) - 6} more" if len(problems) > 6 else ""
        text = f"{text.rstrip('.')} [{'; '.join(shown)}{more}]"
    head = text.split(": ", 1)[0].split(":", 1)[0]
    path = head if head and " " not in head else ""
    return Violation(err.code, _display(text), _display(path))


def _relative(msg: str, ctx: _Context) -> str:
    """Rewrite a message to name submission-relative paths only (never the staging or host layout)."""
    for token in (STAGED, ctx.sub.path.name):
        if msg.startswith(f"Package {token!r}: "):
            rest = msg[len(f"Package {token!r}: "):]
            first = rest.split(" ", 1)[0]
            msg = f"{first}: {rest[len(first) + 1:]}" if first in ctx.files else f".: {rest}"
            break
        if msg.startswith(f"{token}/"):
            msg = msg[len(token) + 1:]
            break
        if msg.startswith(f"{token}: "):
            msg = f".: {msg[len(token) + 2:]}"
            break
    msg = msg.replace(f" {STAGED}/", " ")
    for host, short in ((str(ctx.staged), "."), (str(ctx.work), "<gate>"), (str(ctx.sub.path.absolute()), ".")):
        msg = msg.replace(f"{host}/", "" if short == "." else f"{short}/").replace(host, short)
    # a symlink's target is outside the submission by construction: never echo it
    return re.sub(r"is a symlink \(to .*?\); ", "is a symlink; ", msg)


def _display(text: str) -> str:
    """Escape control, format (bidi) and unpaired-surrogate characters; cap the length."""
    out = []
    for c in text:
        cat = unicodedata.category(c)
        if c == " " or cat[0] not in "CZ":
            out.append(c)
        else:
            out.append(c.encode("unicode_escape").decode("ascii") if ord(c) < 0x10000 else f"\\U{ord(c):08x}")
    s = "".join(out)
    return s if len(s) <= MAX_MESSAGE_CHARS else s[:MAX_MESSAGE_CHARS - 1] + "…"


# ======================================================================================= outputs


def prepare_output(out: Path, submissions: Sequence[Path], *, force: bool = False) -> None:
    """Refuse an output directory inside a submission, or one holding an earlier run (without ``force``).

    Raises:
        GateError: ``E_USAGE`` or ``E_OUTPUT_EXISTS``.
    """
    out_real = Path(os.path.realpath(out))
    for s in map(Path, submissions):
        if os.path.lexists(s) and out_real.is_relative_to(os.path.realpath(s)):
            raise GateError(f"--out {out}: is inside the submission {s}; the gate never writes into submissions.",
                            code="E_USAGE", hint="choose an output directory outside every SUBMISSION.")
    if (out / "summary.json").exists() and not force:
        raise GateError(f"{out}/summary.json: already exists; refusing to overwrite an earlier gate run.",
                        code="E_OUTPUT_EXISTS", hint="choose another --out, or pass --force to replace it.")


def write_gate_outputs(result: GateResult, out: Path, *, junit: Path | None = None, force: bool = False) -> list[Path]:
    """Write verdicts/<index>-<digest>.json, summary.json, summary.md, gate.log and JUnit XML, atomically.

    Every document is validated against its schema first (a failure is a gate bug). summary.md
    is also appended to ``$GITHUB_STEP_SUMMARY`` when that is set.

    Returns:
        The files written.
    """
    written = []
    docs = [(out / "verdicts" / v.file_name, v.to_dict(result.policy), "verdict") for v in result.verdicts]
    docs.append((out / "summary.json", result.summary(), "gate-summary"))
    for path, doc, schema in docs:
        problems = validate(doc, schema, source=path.name)
        if problems:
            raise MmstdError(f"gate bug: {path.name} does not match schemas/{schema}.schema.json: {problems[:3]}",
                             code="E_INTERNAL")
    for path, doc, _ in docs[:-1]:
        written.append(atomic_write_text(path, json.dumps(doc, indent=2, ensure_ascii=False) + "\n", overwrite=force))
    md = render_summary_md(result)
    written.append(atomic_write_text(out / "summary.md", md, overwrite=force))
    if result.log:
        written.append(atomic_write_text(out / "gate.log", "\n".join(result.log) + "\n", overwrite=force))
    if junit is not None:
        written.append(atomic_write_text(Path(junit), render_junit(result), overwrite=True))
    path, doc, _ = docs[-1]
    written.append(atomic_write_text(path, json.dumps(doc, indent=2, ensure_ascii=False) + "\n", overwrite=force))
    if step := os.environ.get("GITHUB_STEP_SUMMARY"):
        with open(step, "a", encoding="utf-8") as f:
            f.write(md)
    return written


def console_lines(result: GateResult) -> list[str]:
    """The checklist printed on stderr: one line per submission, then PASSED/FAILED."""
    mark = {"accepted": "[✓] accepted", "rejected": "[x] rejected", "error": "[!] error   "}
    lines = []
    for v in result.verdicts:
        model = f" ({v.model})" if v.model else ""
        scope = " [report only]" if v.scope == "report-only" else ""
        reason = f": {v.violations[0]}" if v.violations else ""
        more = f" (+{len(v.violations) - 1} more)" if len(v.violations) > 1 else ""
        lines.append(f"{mark[v.status]} {v.index:>4} {v.submission}{model}{scope}{reason}{more}")
    c = result.counts()
    word = {EXIT_OK: "PASSED", EXIT_REJECTED: "FAILED", EXIT_INFRA: "ERROR"}[result.exit_code]
    lines.append(f"{word} | {c['submissions']} submissions: {c['accepted']} accepted, {c['rejected']} rejected, "
                 f"{c['error']} errors | {result.wall_s:.1f}s | policy {result.policy.name}")
    return lines


def _md(text: Any) -> str:
    s = html.escape(str(text), quote=False).replace("|", "\\|").replace("`", "'").replace("\n", " ")
    return re.sub(r"([\\*_\[\]#])", lambda m: m.group(1) if m.group(1) == "\\" else "\\" + m.group(1), s)


def render_summary_md(result: GateResult) -> str:
    """GitHub-flavoured Markdown: a table of verdicts, then each rejection's failing checks."""
    c = result.counts()
    word = {EXIT_OK: "PASSED", EXIT_REJECTED: "FAILED", EXIT_INFRA: "ERROR"}[result.exit_code]
    icon = {"accepted": "✅ accepted", "rejected": "❌ rejected", "error": "⚠️ error"}
    lines = [
        f"## mmstd gate: {word}",
        "",
        f"Policy **{_md(result.policy.name)}** (sha256 {result.policy.sha256[:12]}) · {c['submissions']} submissions · "
        f"{c['accepted']} accepted · {c['rejected']} rejected · {c['error']} errors · {result.wall_s:.1f} s",
        "",
        "| # | Submission | Model | Verdict | Checks | First reason |",
        "|---:|---|---|---|---|---|",
    ]
    for v in result.verdicts:
        counts = {s: sum(1 for ch in v.checks if ch.status == s) for s in ("pass", "fail", "skip")}
        checks = f"{counts['pass']} passed, {counts['fail']} failed, {counts['skip']} skipped"
        reason = f"`{v.violations[0].code}` {_md(v.violations[0].message)}" if v.violations else ""
        scope = " (report only)" if v.scope == "report-only" else ""
        lines.append(f"| {v.index} | {_md(v.submission)} | {_md(v.model or '')} | {icon[v.status]}{scope} | {checks} | "
                     f"{reason} |")
    failing = [v for v in result.verdicts if v.violations]
    if failing:
        lines += ["", "### Why", ""]
        for v in failing:
            lines.append(f"- **{v.index}. {_md(v.submission)}**")
            lines += [f"  - `{x.code}` {_md(x.message)}" for x in v.violations]
    return "\n".join(lines) + "\n"


def render_junit(result: GateResult) -> str:
    """JUnit XML: one <testsuite> per submission, one <testcase> per check and per policy rule.

    Built with ``mmstd.reports.junit`` so gate and report XML look alike in CI test views;
    infrastructure failures are typed with their code (E_INTERNAL, E_BACKEND_UNAVAILABLE).
    """
    from mmstd.reports.junit import JunitCase, JunitSuite, junit_xml

    suites = []
    for v in result.verdicts:
        cases = []
        for ch in v.checks:
            cases.append(JunitCase(
                name=f"{ch.kind}:{ch.id}", classname=f"mmstd.gate.{v.index:04d}",
                failure=f"{ch.code}: {ch.message}" if ch.status == "fail" else None,
                failure_type=ch.code if ch.status == "fail" else None,
                skipped=ch.message if ch.status == "skip" else None,
                output=ch.message if ch.status == "pass" else None,
            ))
        props = (("status", v.status), ("scope", v.scope), ("model", v.model or ""), ("digest", v.digest or ""),
                 ("verdict", f"verdicts/{v.file_name}"))
        suites.append(JunitSuite(name=f"{v.index:04d} {v.submission}", cases=tuple(cases), properties=props,
                                 timestamp=result.created))
    return junit_xml(suites, name=f"mmstd gate ({result.policy.name})")
