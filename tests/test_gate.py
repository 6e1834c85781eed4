"""``mmstd gate`` end to end: reports evaluated elsewhere, exit codes, outputs, the pluggable evaluator, gate bugs."""
from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

from click.testing import CliRunner
from report_fixtures import fixture_report

from mmstd.cli import cli
from mmstd.errors import InfraError
from mmstd.gate import (
    EvalRequest,
    Evaluation,
    check_gate,
    load_policy,
    parse_policy,
    write_gate_outputs,
)
from mmstd.schema import validate

REPO = Path(__file__).resolve().parent.parent
DEFAULT_POLICY = REPO / "conformance" / "policies" / "default.yaml"

REPORT_POLICY = """\
schema_version: "1.0"
name: reports
evaluate: {suites: [digits-av], backends: [ort-cpu, ort-cuda], mode: reference}
rules:
  - {id: acc, kind: score, suite: digits-av, metric: accuracy, min: %(min_acc)s, using: ci_low}
  - {id: recall, kind: per_class, metric: recall, min: 0.5}
  - {id: p99, kind: latency, backend: ort-cpu, percentile: p99, max_ms: 50}
  - {id: cpu-gpu, kind: cross_backend, a: ort-cpu, b: ort-cuda, min_argmax_agreement: 0.95, metric_margins: {accuracy: 0.05}}
  - {id: parity, kind: reference_parity, min_argmax_agreement: 0.99}
  - {id: drop, kind: baseline_drop, metric: accuracy, max_drop: 0.01}
"""


def _policy(tmp_path: Path, min_acc: float = 0.5) -> Path:
    p = tmp_path / "policy.yaml"
    p.write_text(REPORT_POLICY % {"min_acc": min_acc})
    return p


def _gate(*args: str) -> Any:
    return CliRunner().invoke(cli, ["gate", *args], catch_exceptions=False)


def _verdicts(out: Path) -> list[dict[str, Any]]:
    return [json.loads(p.read_text()) for p in sorted((out / "verdicts").glob("*.json"))]


def _default_with(tmp_path: Path, extra: str) -> Path:
    """The default policy with more keys in its ``evaluate`` block (e.g. reference mode, a quick run)."""
    text = DEFAULT_POLICY.read_text().replace("  split: test\n", f"  split: test\n{extra}")
    assert text != DEFAULT_POLICY.read_text()
    path = tmp_path / "default-variant.yaml"
    path.write_text(text)
    return path


def test_default_policy_is_valid_and_modest() -> None:
    pol = load_policy(DEFAULT_POLICY)
    assert pol.backends == ("ort-cpu",) and pol.suites == ("digits-av",)
    kinds = {r.kind for r in pol.rules}
    assert {"score", "per_class", "latency", "cross_backend", "reference_parity", "baseline_drop", "variant"} <= kinds
    acc = next(r for r in pol.rules if r.id == "digits-accuracy")
    assert acc["min"] <= 0.5
    assert {"model_details.license", "intended_use.primary_uses", "caveats"} <= set(pol.card_required)


def test_report_evaluated_elsewhere_is_judged_on_its_rules_only(tmp_path: Path) -> None:
    (tmp_path / "report.json").write_text(json.dumps(fixture_report()))
    out = tmp_path / "out"
    res = _gate(str(tmp_path / "report.json"), "--policy", str(_policy(tmp_path)), "--out", str(out))
    assert res.exit_code == 0, res.output
    (v,) = _verdicts(out)
    assert v["status"] == "accepted" and v["scope"] == "report-only" and v["kind"] == "report"
    assert v["model"] == "fusion-demo@1.2.0"
    by_id = {c["id"]: c for c in v["checks"]}
    assert by_id["onnx"]["status"] == "skip" and "report-only submission" in by_id["onnx"]["message"]
    assert by_id["acc"]["status"] == "pass" and by_id["cpu-gpu"]["status"] == "pass"
    assert by_id["drop"]["status"] == "skip"
    assert "[report only]" in res.output


def test_a_report_below_the_policy_is_rejected_with_the_rule(tmp_path: Path) -> None:
    (tmp_path / "report.json").write_text(json.dumps(fixture_report()))
    out = tmp_path / "out"
    res = _gate(str(tmp_path / "report.json"), "--policy", str(_policy(tmp_path, 0.99)), "--out", str(out))
    assert res.exit_code == 3
    (v,) = _verdicts(out)
    assert [x["code"] for x in v["violations"]] == ["E_POLICY_RULE"]
    assert re.search(r"rule acc: accuracy\.ci_low = [\d.]+ < min 0\.99 \(digits-av@1, ort-cpu\)", v["violations"][0]["message"])
    assert "E_POLICY_RULE: rule acc" in res.output and "Traceback" not in res.output


def test_baseline_directory_is_matched_by_model_and_suite(tmp_path: Path) -> None:
    (tmp_path / "report.json").write_text(json.dumps(fixture_report()))
    base = fixture_report()
    for b in base["backends"]:
        b["scores"]["headline"]["accuracy"]["value"] += 0.05
    (tmp_path / "baselines").mkdir()
    (tmp_path / "baselines" / "anything.json").write_text(json.dumps(base))
    out = tmp_path / "out"
    res = _gate(str(tmp_path / "report.json"), "--policy", str(_policy(tmp_path)), "--out", str(out),
                "--baseline", str(tmp_path / "baselines"))
    assert res.exit_code == 3
    (v,) = _verdicts(out)
    assert v["violations"][0]["message"].startswith("rule drop: drop = 0.05 > max 0.01")


def test_an_invalid_report_is_a_schema_rejection(tmp_path: Path) -> None:
    doc = fixture_report()
    del doc["suite"]
    (tmp_path / "report.json").write_text(json.dumps(doc))
    res = _gate(str(tmp_path / "report.json"), "--policy", str(_policy(tmp_path)), "--out", str(tmp_path / "out"))
    assert res.exit_code == 3
    (v,) = _verdicts(tmp_path / "out")
    assert v["violations"][0]["code"] == "E_DOCUMENT_SCHEMA" and "missing required field 'suite'" in v["violations"][0]["message"]


def test_usage_errors_exit_1_without_traceback(tmp_path: Path, tiny_package_dir: Path) -> None:
    pol = _policy(tmp_path)
    res = _gate(str(tmp_path / "nope"), "--policy", str(pol), "--out", str(tmp_path / "o"))
    assert res.exit_code == 1 and "E_NOT_FOUND" in res.output and "Traceback" not in res.output
    sub = tmp_path / "pkg"
    shutil.copytree(tiny_package_dir, sub)
    res = _gate(str(sub), "--policy", str(pol), "--out", str(sub / "out"))
    assert res.exit_code == 1 and "E_USAGE" in res.output and "never writes into submissions" in res.output
    assert not (sub / "out").exists()
    bad = tmp_path / "bad.yaml"
    bad.write_text('schema_version: "1.0"\nname: x\nrules: [{kind: score, metric: accuracy, on: ci_low, min: 1}]\n')
    res = _gate(str(sub), "--policy", str(bad), "--out", str(tmp_path / "o"))
    assert res.exit_code == 1 and "E_POLICY" in res.output and "key True is a bool" in res.output


def test_an_earlier_run_is_never_clobbered_without_force(tmp_path: Path) -> None:
    (tmp_path / "report.json").write_text(json.dumps(fixture_report()))
    args = [str(tmp_path / "report.json"), "--policy", str(_policy(tmp_path)), "--out", str(tmp_path / "out")]
    assert _gate(*args).exit_code == 0
    res = _gate(*args)
    assert res.exit_code == 1 and "E_OUTPUT_EXISTS" in res.output
    assert _gate(*args, "--force").exit_code == 0


def test_verdict_names_never_come_from_submission_strings(tmp_path: Path, tiny_package_dir: Path) -> None:
    subs = tmp_path / "subs"
    subs.mkdir()
    weird = "evil\x1b[31m\n[✓] accepted \u202e..x"
    shutil.copytree(tiny_package_dir, subs / weird)
    (subs / weird / "model.onnx").write_bytes(b"tampered")
    out = tmp_path / "out"
    res = _gate(str(subs), "--policy", str(_policy(tmp_path)), "--out", str(out), "--junit", str(tmp_path / "j.xml"))
    assert res.exit_code == 3
    files = [p.name for p in (out / "verdicts").iterdir()]
    assert len(files) == 1 and re.fullmatch(r"0001-[0-9a-f]{16}\.json", files[0])
    (v,) = _verdicts(out)
    assert v["submission"].endswith("evil\\x1b[31m\\n[✓] accepted \\u202e..x")
    lines = [ln for ln in res.output.splitlines() if "evil" in ln]
    assert len(lines) == 1 and "\x1b" not in res.output and lines[0].startswith("[x] rejected")
    ET.parse(tmp_path / "j.xml")
    assert "\x1b" not in (out / "summary.md").read_text()


class _Report:
    """An evaluator standing in for the full suite evaluation: it returns a complete report."""

    def __init__(self, accuracy: float) -> None:
        self.accuracy = accuracy

    def __call__(self, request: EvalRequest) -> Evaluation:
        assert request.package_dir.name == "submission" and (request.package_dir / "model.onnx").is_file()
        report = fixture_report()
        for b in report["backends"]:
            b["scores"]["headline"]["accuracy"]["value"] = self.accuracy
        return Evaluation(evaluator="fixture", scope=frozenset({"scores", "latency", "cross_backend", "variants",
                                                                "reference_parity"}), report=report)


def test_the_evaluation_step_is_pluggable(tmp_path: Path, tiny_package_dir: Path) -> None:
    pol = load_policy(_policy(tmp_path, 0.1))
    ok = check_gate([tiny_package_dir], pol, evaluator=_Report(0.9))
    (v,) = ok.verdicts
    assert v.status == "accepted" and ok.exit_code == 0
    assert {c.id: c.status for c in v.checks}["acc"] == "pass"
    strict = parse_policy({"schema_version": "1.0", "name": "s", "rules": [
        {"id": "acc", "kind": "score", "metric": "accuracy", "min": 0.95}]})
    bad = check_gate([tiny_package_dir], strict, evaluator=_Report(0.9))
    assert bad.exit_code == 3 and bad.verdicts[0].violations[0].code == "E_POLICY_RULE"


def test_a_gate_bug_is_e_internal_exit_4_and_never_the_submissions_fault(tmp_path: Path, tiny_package_dir: Path) -> None:
    def buggy(request: EvalRequest) -> Evaluation:
        raise RuntimeError("boom in the evaluator")

    subs = tmp_path / "subs"
    subs.mkdir()
    shutil.copytree(tiny_package_dir, subs / "a_good")
    shutil.copytree(tiny_package_dir, subs / "b_bad")
    (subs / "b_bad" / "weights.safetensors").write_bytes(b"\x80\x04tampered")
    result = check_gate([subs], load_policy(_policy(tmp_path)), evaluator=buggy, jobs=2)
    good, bad = result.verdicts
    assert good.status == "error" and [v.code for v in good.violations] == ["E_INTERNAL"]
    assert "a bug in mmstd" in good.violations[0].message
    assert bad.status == "rejected" and bad.violations[0].code == "E_UNSAFE_CONTENT"
    assert result.exit_code == 4
    out = tmp_path / "out"
    write_gate_outputs(result, out)
    log = (out / "gate.log").read_text()
    assert "Traceback" in log and "RuntimeError: boom in the evaluator" in log
    assert validate(json.loads((out / "summary.json").read_text()), "gate-summary", source="s") == []


def test_infrastructure_failures_are_errors_not_rejections(tmp_path: Path, tiny_package_dir: Path) -> None:
    def no_gpu(request: EvalRequest) -> Evaluation:
        raise InfraError("ort-cuda: CUDAExecutionProvider is not available on this machine", code="E_BACKEND_UNAVAILABLE")

    result = check_gate([tiny_package_dir], load_policy(_policy(tmp_path)), evaluator=no_gpu)
    assert result.verdicts[0].status == "error" and result.exit_code == 4
    assert result.verdicts[0].violations[0].code == "E_BACKEND_UNAVAILABLE"


def test_parallel_jobs_give_the_same_verdicts_in_order(tmp_path: Path, tiny_package_dir: Path) -> None:
    subs = tmp_path / "subs"
    subs.mkdir()
    for i in range(4):
        shutil.copytree(tiny_package_dir, subs / f"p{i}")
    (subs / "p1" / "card.json").write_bytes(b"\xef\xbb\xbf{}")
    pol = load_policy(_default_with(tmp_path, "  mode: reference\n"))
    one = check_gate([subs], pol, jobs=1)
    two = check_gate([subs], pol, jobs=2)
    assert [(v.index, v.status, [x.code for x in v.violations]) for v in one.verdicts] == \
           [(v.index, v.status, [x.code for x in v.violations]) for v in two.verdicts]
    assert [v.status for v in two.verdicts] == ["accepted", "rejected", "accepted", "accepted"]


def test_default_policy_accepts_a_sealed_package_via_the_cli(tmp_path: Path, tiny_package_dir: Path) -> None:
    out = tmp_path / "out"
    policy = _default_with(tmp_path, "  mode: reference\n")
    proc = subprocess.run([sys.executable, "-m", "mmstd", "gate", str(tiny_package_dir), "--policy", str(policy),
                           "--out", str(out)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "PASSED | 1 submissions: 1 accepted" in proc.stderr
    (v,) = _verdicts(out)
    skipped = {c["id"] for c in v["checks"] if c["status"] == "skip"}
    assert "digits-accuracy" in skipped  # suite scores come from the full evaluator, not this one


def test_full_evaluation_rejects_an_untrained_model_on_its_scores(tmp_path: Path, tiny_package_dir: Path) -> None:
    """The default (full) mode runs mmstd evaluate in the sandbox; chance-level accuracy fails the rules."""
    pol = load_policy(_default_with(tmp_path, "  quick: true\n  limit: 120\n"))
    result = check_gate([tiny_package_dir], pol)
    (v,) = result.verdicts
    assert result.exit_code == 3 and v.status == "rejected"
    status = {c.id: c.status for c in v.checks}
    assert status["digits-accuracy"] == "fail" and status["reference-parity"] == "pass"
    assert status["cpu-latency-p99"] == "pass"
    assert {x.code for x in v.violations} == {"E_POLICY_RULE"}
    assert any("digits-accuracy" in x.message for x in v.violations)


def test_importing_the_gate_stays_light() -> None:
    code = ("import sys, mmstd.commands.gate, mmstd.gate, mmstd.scan, mmstd.sandbox; "
            "print(sorted(m for m in ('onnxruntime', 'torch', 'tensorflow', 'onnx') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_the_staged_package_is_read_only_while_it_is_evaluated(tmp_path: Path, tiny_package_dir: Path) -> None:
    modes: dict[str, int] = {}

    def look(request: EvalRequest) -> Evaluation:
        modes["dir"] = request.package_dir.stat().st_mode & 0o777
        modes["file"] = (request.package_dir / "model.onnx").stat().st_mode & 0o777
        assert not request.workdir.exists()  # the evaluator gets a fresh directory of its own
        return Evaluation(evaluator="look", scope=frozenset(), report={})

    result = check_gate([tiny_package_dir], load_policy(_policy(tmp_path)), evaluator=look)
    assert modes == {"dir": 0o500, "file": 0o400}
    assert result.verdicts[0].status == "accepted"
    assert all(c.status == "skip" for c in result.verdicts[0].checks if c.kind not in ("stage", "card"))
