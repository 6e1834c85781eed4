"""``mmstd suites list | show NAME | verify NAME_OR_PATH``: the shared datasets and their digests."""
from __future__ import annotations

import json

import click


@click.group()
def suites() -> None:
    """List, describe and verify suites (versioned shared datasets)."""


@suites.command("list")
def list_() -> None:
    """List the built-in suites: name@version, task, fields, description."""
    from mmstd.schema import load_document
    from mmstd.suite import builtin_suites, suite_path

    for name in builtin_suites():
        doc = load_document(suite_path(name), code="E_DOCUMENT_SCHEMA")
        fields = ", ".join(f"{n} ({f['modality']})" for n, f in doc["fields"].items())
        click.echo(f"{doc['name']}@{doc['version']}  {doc['task']['kind']} x{len(doc['task']['labels'])}  "
                   f"fields: {fields}\n    {doc['description']}")


@suites.command()
@click.argument("name_or_path")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON on stdout.")
def show(name_or_path: str, as_json: bool) -> None:
    """Describe NAME_OR_PATH: datasheet, fields, splits and sizes, metrics, variants, digests."""
    from mmstd.suite import load_suite

    summary = load_suite(name_or_path).summary()
    click.echo(json.dumps(summary, indent=2) if as_json else _render(summary))


@suites.command()
@click.argument("name_or_path")
def verify(name_or_path: str) -> None:
    """Verify NAME_OR_PATH: schema, data sha256, every sample decoded and checked.

    Exits 0 when the suite is intact, 1 (e.g. E_DIGEST_MISMATCH) when not.
    """
    from mmstd.suite import load_suite

    s = load_suite(name_or_path)
    n = sum(len(x) for x in s.splits.values())
    click.echo(f"PASSED | suite {s.ref} | {s.data.path} sha256 {s.data.sha256[:16]}… | {n} samples | "
               f"fingerprint {s.fingerprint[:16]}…", err=True)


def _render(s: dict) -> str:
    lines = [
        f"{s['suite']}  ({s['task']['kind']}, license {s['license']})",
        f"  {s['description']}",
    ]
    if s.get("source"):
        lines.append(f"  source: {s['source']}")
    labels = s["task"]["labels"]
    lines += [
        f"labels    {', '.join(labels[:20])}{' …' if len(labels) > 20 else ''}",
        f"data      {s['data']['format']} {s['data']['path']} ({s['data']['bytes']} bytes)",
        f"  sha256      {s['data']['sha256']}",
        f"  fingerprint {s['fingerprint']}",
        "fields",
    ]
    for name, f in s["fields"].items():
        detail = ", ".join(f"{k} {v}" for k, v in f.items() if k != "modality")
        lines.append(f"  {name:<10} {f['modality']:<6} {detail}")
    lines.append("splits")
    for name, sp in s["splits"].items():
        lines.append(f"  {name:<10} {sp['samples']:>6} samples  per label {sp['label_counts']}")
    lines.append("metrics   " + ", ".join(m["name"] for m in s["metrics"]))
    lat = s["latency"]
    lines.append(f"latency   warmup {lat['warmup']}, at least {lat['min_duration_s']} s and {lat['min_queries']} "
                 f"queries, batch sizes {lat['batch_sizes']}")
    lines.append("variants")
    for v in s["variants"]:
        extra = ", ".join(f"{k} {v[k]}" for k in ("std", "rate", "seed") if k in v)
        lines.append(f"  {v['name']:<16} {v['kind']:<8} {v['field']}{'  (' + extra + ')' if extra else ''}")
    if s.get("readme"):
        lines.append(f"datasheet {s['readme']}")
    return "\n".join(lines)
