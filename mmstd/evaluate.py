"""``mmstd evaluate``: a package on a suite, on one or more backends, with variants, into reports.

The flow of DESIGN.md in one call: ``open_package`` -> ``load_suite`` -> ``run_suite`` per backend
and variant -> RunRecords saved to ``record.npz`` -> ``make_report`` -> ``write_report``. Output goes
to a fresh directory (or an existing one with ``overwrite``); nothing is written anywhere else.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from mmstd.errors import MmstdError
from mmstd.files import sha256_file
from mmstd.run import DEFAULT_SETTINGS, RunSettings, latency_protocol, run_suite

RECORD_FILE = "record.npz"


@dataclass(frozen=True, slots=True)
class Evaluation:
    """What an evaluation produced: the report dict and the files written."""

    report: dict[str, Any]
    files: dict[str, Path]
    out_dir: Path


def evaluate(
    package_path: Path,
    suite_ref: str | Path,
    *,
    out_dir: Path,
    backends: Sequence[str] = ("ort-cpu",),
    variants: Sequence[str] = (),
    settings: RunSettings = DEFAULT_SETTINGS,
    formats: Sequence[str] | None = None,
    overwrite: bool = False,
    progress: Callable[[int, int, str], None] | None = None,
    resamples: int = 1000,
) -> Evaluation:
    """Evaluate a package on a suite and write the reports.

    Args:
        package_path: A package directory; verified by ``open_package`` first.
        suite_ref: A built-in suite name or a path to a suite.yaml / suite directory.
        out_dir: Where report.json, report.md, report.html, junit.xml, per_class.csv and
            record.npz go.
        backends: Backend keys; the first is the baseline for cross-backend deltas.
        variants: Suite variant names; ``["all"]`` means every variant the suite declares.
        settings: Batch size, limit, quick protocol, seed, threads.
        formats: Report formats (default: all).
        overwrite: Replace existing report files in ``out_dir``.
        progress: Called as ``progress(done, total, what)`` before each step (the CLI draws it).
        resamples: Bootstrap resamples per confidence interval.

    Raises:
        MmstdError: Any user-fixable problem (bad package, suite, variant, contract); InfraError
            (exit 4) when a backend cannot run here.
    """
    from mmstd.env import capture_environment
    from mmstd.package import open_package
    from mmstd.record import save_records
    from mmstd.reports import DEFAULT_FORMATS, write_report
    from mmstd.reports.make import make_report
    from mmstd.suite import load_suite

    say = progress or (lambda _done, _total, _what: None)
    if len(set(backends)) != len(backends):
        raise MmstdError(f"--backend: each backend once, got {list(backends)}.", code="E_USAGE")
    package = open_package(package_path)
    suite = load_suite(suite_ref)
    names = [v.name for v in suite.variants] if list(variants) == ["all"] else list(variants)
    for name in names:
        suite.variant(name)  # unknown names fail before anything runs
    out_dir = Path(out_dir)
    _check_out_dir(out_dir, overwrite)
    env = capture_environment()
    records = []
    total = len(backends) * (1 + len(names)) + 1
    for backend in backends:
        say(len(records), total, f"{backend}: {suite.ref} clean")
        records.append(run_suite(package, suite, backend=backend, settings=settings, environment=env))
        for name in names:
            say(len(records), total, f"{backend}: {suite.ref} variant {name}")
            records.append(run_suite(package, suite, backend=backend, variant=name,
                                     settings=replace(settings, latency=False), environment=env))
    out_dir.mkdir(parents=True, exist_ok=True)
    record_path = save_records(out_dir / RECORD_FILE, records, overwrite=overwrite)
    card = package.card
    source = card.sections["source"]
    split = records[0]
    say(len(records), total, "scoring")
    report = make_report(
        records,
        package={"name": card.name, "version": card.version, "digest": package.digest, "path": package.root.name,
                 "task_kind": card.task_kind, "labels": list(card.labels), "fusion_strategy": card.fusion_strategy,
                 "source": {k: source[k] for k in ("framework", "framework_version", "exporter", "exporter_version",
                                                    "exporter_path", "opset") if k in source}},
        suite={"name": suite.name, "version": suite.version, "ref": suite.ref, "data_sha256": suite.data.sha256,
               "fingerprint": suite.fingerprint, "split": split.split, "samples": split.n_samples},
        protocol=latency_protocol(suite, quick=settings.quick),
        quick=settings.quick,
        limit=settings.limit,
        record_file={"path": RECORD_FILE, "sha256": sha256_file(record_path), "bytes": record_path.stat().st_size},
        resamples=resamples,
        variant_kinds={v.name: {"kind": v.kind, "description": v.description,
                                "params": {k: x for k, x in v.to_dict().items() if k not in ("name", "field", "kind")}
                                | {"field": v.field}}
                       for v in suite.variants},
    )
    files = write_report(report, out_dir, formats or DEFAULT_FORMATS, overwrite=overwrite)
    files["record"] = record_path
    return Evaluation(report=report, files=files, out_dir=out_dir)


def _check_out_dir(out_dir: Path, overwrite: bool) -> None:
    if overwrite or not out_dir.exists():
        return
    taken = sorted(p.name for p in out_dir.iterdir() if p.name in {RECORD_FILE, "report.json"})
    if taken:
        raise MmstdError(f"{out_dir}: already holds {', '.join(taken)}; refusing to overwrite an earlier evaluation.",
                         code="E_OUTPUT_EXISTS", hint="choose another --out, or pass --force to replace it.")
