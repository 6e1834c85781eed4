"""``mmstd export``: a Keras or PyTorch model and a card draft become a sealed package, parity enforced."""
from __future__ import annotations

from pathlib import Path

import click

FILE = click.Path(exists=True, dir_okay=False, path_type=Path)


def echo_err(line: str) -> None:
    """Progress and checklists go to stderr; stdout stays free for machine output."""
    click.echo(line, err=True)


def passed_line(pkg: object, out: Path) -> str:
    """The one-line summary after a successful export."""
    card = pkg.card  # type: ignore[attr-defined]
    src, par = card.sections["source"], card.sections["parity"]
    return (f"PASSED | package {card.ref} | {src['framework']} via {src['exporter_path']} (opset {src['opset']}) | "
            f"parity max abs diff {par['max_abs_diff']:.2g}, argmax agreement {par['argmax_agreement']:.4f} "
            f"over {par['samples']} samples | {out}")


@click.command()
@click.option("--framework", required=True, metavar="NAME", help="Exporter: torch or keras (or a plugin's name).")
@click.option("--model", "model_ref", required=True, metavar="REF",
              help="pkg.module:factory (called with card= when it takes it), or a .keras/.h5 file for keras.")
@click.option("--weights", type=FILE, help="A weights.safetensors to load into the factory's model first.")
@click.option("--card", "card_path", type=FILE, required=True, help="The card draft (YAML or JSON).")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), required=True, help="Package directory to create.")
@click.option("--opset", type=click.IntRange(7, 30), help="ONNX opset (default: the card's export.opset, else 18).")
@click.option("--exporter", "exporter_path", type=click.Choice(["torchscript", "dynamo", "tf2onnx"]),
              help="Exporter path (torch default: torchscript, or dynamo when pre-flight requires it).")
@click.option("--suite", metavar="NAME|PATH", help="Also check parity on this suite's test samples (card preprocessing).")
@click.option("--suite-samples", type=click.IntRange(1), default=64, show_default=True, help="How many suite samples.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed for the parity inputs.")
@click.option("--force", is_flag=True, help="Replace an existing package at --out.")
def export(framework: str, model_ref: str, weights: Path | None, card_path: Path, out: Path, opset: int | None,
           exporter_path: str | None, suite: str | None, suite_samples: int, seed: int, force: bool) -> None:
    """Export a model to a sealed package: ONNX graph, safetensors weights, reference outputs, card.

    Parity between the source framework and onnxruntime CPU is enforced on seeded inputs (and on
    --suite samples): any failing output exits 1 (E_PARITY) and writes nothing. Assets the card's
    preprocessing names (assets/...) are read beside the card and packaged.
    """
    from mmstd.card import load_card
    from mmstd.exporters import ExportOptions, export_ref

    options = ExportOptions(exporter_path=exporter_path, opset=opset, seed=seed, assets_root=card_path.parent,
                            suite=suite, suite_samples=suite_samples)
    pkg = export_ref(model_ref, load_card(card_path), out, framework=framework, weights=weights, options=options,
                     force=force, progress=echo_err)
    echo_err(passed_line(pkg, out))
