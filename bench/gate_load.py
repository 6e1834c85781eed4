"""Load test of ``mmstd gate``: many small submissions in one run keep peak memory bounded.

Seals one tiny package, copies it N times (every tenth copy made hostile, so rejections are in
the mix), and gates the directory in a fresh process per configuration, reporting:

- the gate process's peak RSS (``ru_maxrss`` of RUSAGE_SELF) and the largest evaluation
  child's (RUSAGE_CHILDREN), from the process that ran ``check_gate``;
- wall time and submissions per second;
- that the parent's peak does not grow with N (10 vs N submissions).

The last line printed is one JSON object. Run it from the repository root::

    .venv/bin/python bench/gate_load.py            # N=100, jobs 1 and 2
    .venv/bin/python bench/gate_load.py --n 200 --jobs 4
"""
from __future__ import annotations

import argparse
import json
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

POLICY = REPO / "conformance" / "policies" / "default.yaml"
EXAMPLE_CARD = REPO / "mmstd" / "templates" / "example-card.yaml"


def make_submissions(root: Path, n: int) -> Path:
    """N copies of one sealed tiny package; every tenth is tampered with (a digest mismatch)."""
    from mmstd.card import load_card
    from mmstd.testing import seal_tiny_package

    good = root / "good"
    seal_tiny_package(load_card(EXAMPLE_CARD), good)
    subs = root / "subs"
    subs.mkdir()
    for i in range(n):
        dest = subs / f"sub{i:04d}"
        shutil.copytree(good, dest)
        if i % 10 == 9:
            data = bytearray((dest / "model.onnx").read_bytes())
            data[len(data) // 2] ^= 1
            (dest / "model.onnx").write_bytes(bytes(data))
    return subs


def _quick_policy(out: Path) -> Path:
    """The default policy (full evaluation in a sandboxed child) on the first 100 test samples, quick latency."""
    path = out.parent / f"{out.name}-policy.yaml"
    path.write_text(POLICY.read_text().replace("  split: test\n", "  split: test\n  quick: true\n  limit: 100\n"))
    return path


def _child_rss(details: dict[str, Any]) -> list[float]:
    """Peak RSS of every child of one verdict: the reference run and one evaluation per suite."""
    found = [details["max_rss_mib"]] if "max_rss_mib" in details else []
    found += _child_rss(details.get("reference", {})) if "reference" in details else []
    found += [s["max_rss_mib"] for s in details.get("suites", {}).values()]
    return found


def inner(subs: Path, n: int, jobs: int, out: Path) -> dict[str, Any]:
    """Runs in a fresh process: gate the first ``n`` submissions and report time and peak memory."""
    from mmstd.gate import check_gate, load_policy, write_gate_outputs

    paths = sorted(subs.iterdir())[:n]
    start = time.perf_counter()
    result = check_gate(paths, load_policy(_quick_policy(out)), jobs=jobs)
    write_gate_outputs(result, out, force=True)
    wall = time.perf_counter() - start
    counts = result.counts()
    child_rss = [rss for v in result.verdicts if v.evaluation for rss in _child_rss(v.evaluation["details"])]
    return {
        "n": n, "jobs": jobs, "wall_s": round(wall, 2), "per_s": round(n / wall, 1),
        "accepted": counts["accepted"], "rejected": counts["rejected"], "error": counts["error"],
        "parent_peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "child_peak_rss_mib": round(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024, 1),
        "child_rss_mib_max_reported": max(child_rss, default=None),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=100)
    parser.add_argument("--jobs", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--inner", nargs=4, metavar=("SUBS", "N", "JOBS", "OUT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.inner:
        subs, n, jobs, out = args.inner
        print(json.dumps(inner(Path(subs), int(n), int(jobs), Path(out))))
        return
    with tempfile.TemporaryDirectory(prefix="mmstd-gate-load-") as tmp:
        root = Path(tmp)
        subs = make_submissions(root, args.n)
        runs = []
        for n, jobs in [(10, args.jobs[0])] + [(args.n, j) for j in args.jobs]:
            proc = subprocess.run([sys.executable, __file__, "--inner", str(subs), str(n), str(jobs), str(root / "out")],
                                  capture_output=True, text=True, check=True)
            row = json.loads(proc.stdout.strip().splitlines()[-1])
            runs.append(row)
            print(f"n={row['n']:>4} jobs={row['jobs']}: {row['wall_s']:>6.1f} s ({row['per_s']} /s), "
                  f"{row['accepted']} accepted, {row['rejected']} rejected, {row['error']} errors; "
                  f"peak RSS parent {row['parent_peak_rss_mib']} MiB, largest child {row['child_peak_rss_mib']} MiB",
                  file=sys.stderr)
    small, big = runs[0], runs[1]
    summary = {
        "runs": runs,
        "parent_rss_growth_10_to_n": round(big["parent_peak_rss_mib"] / small["parent_peak_rss_mib"], 3),
        "speedup_jobs": round(runs[1]["wall_s"] / runs[-1]["wall_s"], 2) if len(runs) > 2 else None,
    }
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
