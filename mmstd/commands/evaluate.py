"""``mmstd evaluate``: run a package on a suite and write the reports."""
from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import click

FORMATS = ("json", "md", "html", "junit", "csv")


@click.command()
@click.argument("package", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--suite", "suite_ref", required=True, help="Built-in suite name or path to a suite.yaml.")
@click.option("--backend", "backends", multiple=True, default=("ort-cpu",), show_default=True,
              help="Backend (repeatable): ort-cpu, ort-cuda, ort-trt. The first is the baseline.")
@click.option("--variant", "variants", multiple=True, help="Suite variant to score too (repeatable), or 'all'.")
@click.option("--batch-size", type=click.IntRange(min=1), default=32, show_default=True, help="Batch of the accuracy run.")
@click.option("--limit", type=click.IntRange(min=1), help="Only the first N samples of the split.")
@click.option("--quick", is_flag=True, help="Smoke run: LoadGen's p90 minimum (64 queries), no offline throughput.")
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), default=Path("report"),
              show_default=True, help="Directory for report.json, .md, .html, junit.xml, per_class.csv, record.npz.")
@click.option("--format", "formats", default=",".join(FORMATS), show_default=True,
              help="Comma-separated report formats.")
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True, help="Seed of bootstrap and runs.")
@click.option("--threads", type=click.IntRange(min=1), help="Intra-op threads (default: the per-batch-size rule).")
@click.option("--force", is_flag=True, help="Overwrite an earlier evaluation in --out.")
def evaluate(package: Path, suite_ref: str, backends: tuple[str, ...], variants: tuple[str, ...], batch_size: int,
             limit: int | None, quick: bool, out_dir: Path, formats: str, seed: int, threads: int | None,
             force: bool) -> None:
    """Evaluate PACKAGE on a suite: scores with CIs, latency, parity, variants; exit 4 if a backend is absent."""
    from mmstd.evaluate import evaluate as run
    from mmstd.run import RunSettings

    chosen = [f.strip() for f in formats.split(",") if f.strip()]
    bad = sorted(set(chosen) - set(FORMATS))
    if bad:
        raise click.BadParameter(f"unknown format(s) {', '.join(bad)}; choose from {', '.join(FORMATS)}.", param_hint="--format")
    settings = RunSettings(batch_size=batch_size, limit=limit, quick=quick, seed=seed, threads=threads)
    with _progress() as progress:
        result = run(package, suite_ref, out_dir=out_dir, backends=backends, variants=variants, settings=settings,
                     formats=chosen, overwrite=force, progress=progress)
    for backend in result.report["backends"]:
        acc = backend["scores"]["headline"]["accuracy"]
        p99 = backend["latency"]["single_stream"]["latency_p99_ms"]
        click.echo(f"{backend['name']}: accuracy {acc['value']:.4f} [{acc['ci_low']:.4f}, {acc['ci_high']:.4f}], "
                   f"p99 {p99:.3f} ms, providers {backend['providers_active']}", err=True)
    for fmt, path in result.files.items():
        click.echo(f"{fmt}: {path}", err=True)
    click.echo(str(result.files.get("html", result.files.get("json", out_dir))))


@contextmanager
def _progress() -> Iterator[Callable[[int, int, str], None]]:
    """A rich progress bar on a terminal; plain ``[done/total] step`` lines otherwise (CI logs)."""
    if not sys.stderr.isatty():
        yield lambda done, total, what: click.echo(f"[{done}/{total}] {what}", err=True)
        return
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    with Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                  TimeElapsedColumn(), console=Console(stderr=True), transient=True) as bar:
        task = bar.add_task("evaluating", total=None)

        def update(done: int, total: int, what: str) -> None:
            bar.update(task, completed=done, total=total, description=what)

        yield update
