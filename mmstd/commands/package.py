"""``mmstd validate`` and ``mmstd inspect``: check a card or a package, summarize a package."""
from __future__ import annotations

import json
from pathlib import Path

import click

PATH = click.Path(exists=True, path_type=Path)


@click.command()
@click.argument("path", type=PATH)
def validate(path: Path) -> None:
    """Validate PATH: a card file (YAML/JSON) or a package directory.

    Exits 0 when valid, 1 with every problem listed when not.
    """
    if path.is_dir():
        from mmstd.package import open_package

        pkg = open_package(path)
        click.echo(f"PASSED | package {pkg.card.ref} | {len(pkg.files)} files verified | {path}", err=True)
    else:
        from mmstd.card import load_card

        c = load_card(path)
        click.echo(f"PASSED | card {c.ref} | {'sealed' if c.sealed else 'draft'} | {path}", err=True)


@click.command()
@click.argument("package", type=PATH)
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON on stdout.")
def inspect(package: Path, as_json: bool) -> None:
    """Summarize PACKAGE: inputs by modality, outputs, labels, fusion, provenance, hashes."""
    from mmstd.package import open_package

    summary = open_package(package).summary()
    if as_json:
        click.echo(json.dumps(summary, indent=2))
        return
    click.echo(_render(summary))


def _render(s: dict) -> str:
    src = s["source"] or {}
    parity = s["parity"]
    lines = [
        f"{s['model']}  ({s['package']}, digest {s['digest'][:16]}…, license {s['license']})",
        f"task      {s['task']['kind']}: {', '.join(s['task']['labels'])}",
        f"fusion    {s['fusion']['strategy']}: {s['fusion']['description']}",
        "inputs",
    ]
    for modality, specs in s["inputs_by_modality"].items():
        for spec in specs:
            ops = " -> ".join(spec["preprocessing"]) or "none"
            lines.append(f"  {modality:<8} {spec['name']:<16} {spec['dtype']:<8} {spec['shape']}  preprocessing: {ops}")
    lines.append("outputs")
    lines += [f"  {o['kind']:<14} {o['name']:<16} {o['dtype']:<8} {o['shape']}" for o in s["outputs"]]
    lines.append(f"source    {src.get('framework')} {src.get('framework_version')} via {src.get('exporter')} "
                 f"{src.get('exporter_version')} ({src.get('exporter_path')}), opset {src.get('opset')}, IR {src.get('ir_version')}")
    lines.append(f"parity    {'passed' if parity.get('passed') else 'FAILED'}: max abs {parity.get('max_abs_diff'):.3g} "
                 f"(atol {parity.get('atol')}), max rel {parity.get('max_rel_diff'):.3g}, argmax agreement "
                 f"{parity.get('argmax_agreement'):.4f} over {parity.get('samples')} samples")
    lines.append("files")
    lines += [f"  {f['sha256'][:16]}…  {f['bytes']:>10}  {f['path']}" for f in s["files"]]
    return "\n".join(lines)
