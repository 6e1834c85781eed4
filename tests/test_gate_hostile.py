"""The gate against hostile submissions: every case refused with its exact code, nothing outside touched.

One CLI run (a real child process per evaluation, real onnxruntime) gates every case of
``tests/hostile.py`` plus good submissions in one directory; the tests then read its verdicts,
its output, the canary outside the submissions and the file tree around them.
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest
from hostile import CASES, TEST_POLICY, Env, build_all, copy_good, package_zip

from mmstd.schema import validate

TIMEOUT_S, GRACE_S = 3, 2
OUT_NAME = re.compile(r"^(summary\.json|summary\.md|gate\.log|junit\.xml|verdicts|verdicts/\d{4}-[0-9a-f]{16}\.json)$")


def _snapshot(root: Path, skip: set[Path]) -> dict[str, tuple[int, int, int]]:
    """(mode, size, mtime_ns) of every entry under ``root``, by lstat: links are not followed."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        d = Path(dirpath)
        dirnames[:] = [n for n in dirnames if d / n not in skip]
        for name in dirnames + filenames:
            p = d / name
            if p in skip:
                continue
            st = os.lstat(p)
            out[str(p.relative_to(root))] = (st.st_mode, st.st_size, st.st_mtime_ns)
    return out


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory, tiny_package_dir: Path) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("hostile")
    outside = root / "outside"
    outside.mkdir()
    env = Env(good=tiny_package_dir, outside=outside)
    env.canary.write_text("canary: the gate must never read or write me\n")
    control = outside / "control.txt"
    control.write_text("read by the test itself, to show that reads update atime here\n")
    past = time.time() - 3 * 86400
    for f in (env.canary, control):
        os.utime(f, (past, past + 86400))  # atime < mtime: relatime updates atime on the next read
    cases = build_all(root / "subs", env)
    copy_good(env, root / "subs" / "good_package")
    package_zip(tiny_package_dir, root / "subs" / "good_zipped.zip", prefix="example-fusion/")
    (root / "policy.yaml").write_text(TEST_POLICY)
    gate_tmp = root / "gate-tmp"
    gate_tmp.mkdir()
    step_summary = root / "step-summary.md"
    step_summary.write_text("# earlier step\n")
    out = root / "out"
    before = _snapshot(root, {out, gate_tmp, step_summary})
    canary_stat = os.stat(env.canary)

    environ = {**os.environ, "TMPDIR": str(gate_tmp), "GITHUB_STEP_SUMMARY": str(step_summary),
               "AWS_SECRET_ACCESS_KEY": "must-not-reach-the-child"}
    start = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "mmstd", "gate", "subs", "--policy", "policy.yaml", "--out", "out",
         "--junit", "out/junit.xml", "--jobs", "2"],
        cwd=root, env=environ, capture_output=True, text=True, timeout=300,
    )
    wall = time.monotonic() - start
    control.read_bytes()
    verdicts = {}
    for p in sorted((out / "verdicts").glob("*.json")):
        v = json.loads(p.read_text())
        verdicts[v["submission"].split("/", 1)[1]] = v
    return {"root": root, "env": env, "cases": cases, "proc": proc, "wall": wall, "out": out, "verdicts": verdicts,
            "before": before, "after": _snapshot(root, {out, gate_tmp, step_summary}), "gate_tmp": gate_tmp,
            "canary_stat": canary_stat, "control": control, "step_summary": step_summary}


def test_the_run_rejects_overall_and_accepts_the_good_submissions(run: dict[str, Any]) -> None:
    proc = run["proc"]
    assert proc.returncode == 3, proc.stderr[-3000:]
    for name in ("good_package", "good_zipped.zip"):
        v = run["verdicts"][name]
        assert v["status"] == "accepted" and v["violations"] == [], v["violations"]
        assert v["model"] == "example-fusion@0.1.0"
        parity = v["evaluation"]["parity"]["reference"][0]["per_output"][0]
        assert parity["argmax_agreement"] == 1.0
    assert len(run["verdicts"]) == len(CASES) + 2
    assert len(CASES) >= 40
    summary = json.loads((run["out"] / "summary.json").read_text())
    assert summary["exit_code"] == 3
    assert summary["counts"] == {"submissions": len(CASES) + 2, "accepted": 2, "rejected": len(CASES), "error": 0}
    assert "FAILED | " in proc.stderr and f"{len(CASES)} rejected" in proc.stderr


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_hostile_case_is_refused_with_its_exact_code(run: dict[str, Any], case: Any) -> None:
    v = run["verdicts"][case.name]
    assert v["status"] == "rejected", v
    first = v["violations"][0]
    assert first["code"] == case.code, first["text"]
    assert re.search(case.match, first["message"]), first["text"]
    assert first["text"] == f"{case.code}: {first['message']}"
    if case.code != "E_PARITY":  # rule failures name the rule instead of a file
        assert re.match(r"^(\.|[\w.-]+(/[\w.-]+)*)(:\S[^:]*)*: \S", first["message"]), first["message"]
        assert first["path"] == first["message"].split(":", 1)[0]
    failed = [c for c in v["checks"] if c["status"] == "fail"]
    assert failed and failed[0]["code"] == case.code
    line = next(ln for ln in run["proc"].stderr.splitlines() if f" subs/{case.name}" in ln)
    assert line.startswith("[x] rejected") and f": {case.code}: " in line


def test_cli_output_has_no_traceback_and_no_host_paths(run: dict[str, Any]) -> None:
    text = run["proc"].stdout + run["proc"].stderr
    assert "Traceback" not in text
    assert not (run["out"] / "gate.log").exists()
    root = str(run["root"])
    for v in run["verdicts"].values():
        blob = json.dumps(v)
        assert root not in blob and "mmstd-gate-" not in blob, blob[:500]
        assert str(run["env"].canary) not in blob
    assert root not in text and "mmstd-gate-" not in text


def test_canary_outside_is_neither_read_nor_written(run: dict[str, Any]) -> None:
    canary, before = run["env"].canary, run["canary_stat"]
    after = os.stat(canary)
    assert canary.read_text() == "canary: the gate must never read or write me\n"
    assert (after.st_mtime_ns, after.st_size) == (before.st_mtime_ns, before.st_size)
    if os.stat(run["control"]).st_atime_ns == before.st_atime_ns:
        pytest.skip("this filesystem does not update atime on read (noatime); content and mtime were checked")
    assert after.st_atime_ns == before.st_atime_ns, "the gate read the canary through a link"


def test_nothing_outside_the_output_directory_was_written(run: dict[str, Any]) -> None:
    assert run["after"] == run["before"]
    assert not list(run["root"].rglob("escaped.txt")) and not Path("/tmp/mmstd-hostile-abs.txt").exists()
    assert not list(run["gate_tmp"].iterdir()), "the staging root was not removed"


def test_output_directory_holds_only_gate_named_files(run: dict[str, Any]) -> None:
    out = run["out"]
    names = {str(p.relative_to(out)) for p in out.rglob("*")}
    assert names and all(OUT_NAME.match(n) for n in names), sorted(n for n in names if not OUT_NAME.match(n))
    assert len(list((out / "verdicts").iterdir())) == len(CASES) + 2


def test_verdicts_summary_and_junit_are_valid(run: dict[str, Any]) -> None:
    out = run["out"]
    for p in (out / "verdicts").iterdir():
        assert validate(json.loads(p.read_text()), "verdict", source=p.name) == []
    summary = json.loads((out / "summary.json").read_text())
    assert validate(summary, "gate-summary", source="summary.json") == []
    assert {v["file"] for v in summary["verdicts"]} == {f"verdicts/{p.name}" for p in (out / "verdicts").iterdir()}
    tree = ET.parse(out / "junit.xml").getroot()
    suites = tree.findall("testsuite")
    assert len(suites) == len(CASES) + 2
    checks = sum(len(v["checks"]) for v in run["verdicts"].values())
    assert len(tree.findall("testsuite/testcase")) == checks
    assert int(tree.get("failures")) >= len(CASES)
    rule_cases = {"reference_parity:reference-parity", "score:digits-accuracy", "latency:cpu-latency"}
    for suite in suites:  # one test case per policy rule for every submission, reached or not
        assert rule_cases <= {c.get("name") for c in suite.findall("testcase")}, suite.get("name")
    md = (out / "summary.md").read_text()
    assert md.startswith("## mmstd gate: FAILED") and "`E_FS_PATH_ESCAPE`" in md
    assert run["step_summary"].read_text() == "# earlier step\n" + md


def test_never_finishing_model_is_stopped_within_the_timeout(run: dict[str, Any]) -> None:
    v = run["verdicts"]["run_never_finishes"]
    assert v["wall_s"] < TIMEOUT_S + GRACE_S + 5, v["wall_s"]


def test_the_child_got_a_scrubbed_environment_and_limits(run: dict[str, Any]) -> None:
    limits = run["verdicts"]["good_package"]["evaluation"]["details"]["limits"]
    assert limits["memory_bytes"] == 1024 << 20 and limits["timeout_s"] == TIMEOUT_S
    assert run["verdicts"]["good_package"]["evaluation"]["details"]["providers"] == ["CPUExecutionProvider"]


def test_hostile_set_runs_fast(run: dict[str, Any]) -> None:
    assert run["wall"] < 150, run["wall"]
