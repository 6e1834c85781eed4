"""``mmstd zoo``: the reference fusion models (early, late, intermediate, attention) in PyTorch and Keras."""
from __future__ import annotations

from pathlib import Path

import click

from mmstd.zoo import CONTRACTS, DEFAULT_CONTRACT, FRAMEWORKS


@click.group()
def zoo() -> None:
    """The reference fusion zoo: four fusion strategies, each in PyTorch and Keras, built from a card."""


@zoo.command("list")
def list_models() -> None:
    """List the zoo models, their fusion strategy and the contracts they have cards for."""
    from mmstd.zoo import list_zoo

    for e in list_zoo():
        click.echo(f"{e.name:<13} {e.summary}\n{'':<13} frameworks: {', '.join(e.frameworks)}; "
                   f"contracts: {', '.join(e.contracts)}")


@zoo.command("export")
@click.argument("name")
@click.option("--framework", type=click.Choice(FRAMEWORKS), required=True, help="Build the model in this framework.")
@click.option("--contract", type=click.Choice(CONTRACTS), default=DEFAULT_CONTRACT, show_default=True,
              help="Which input/output contract (card) to build for.")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), required=True, help="Package directory to create.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed for the (untrained) weights and parity inputs.")
@click.option("--exporter", "exporter_path", type=click.Choice(["torchscript", "dynamo", "tf2onnx"]),
              help="Exporter path (default: torchscript for torch, tf2onnx for keras).")
@click.option("--suite", metavar="NAME|PATH", help="Also check parity on this suite's test samples.")
@click.option("--force", is_flag=True, help="Replace an existing package at --out.")
def export_zoo(name: str, framework: str, contract: str, out: Path, seed: int, exporter_path: str | None,
               suite: str | None, force: bool) -> None:
    """Export zoo model NAME with seeded, untrained weights as a sealed package (parity enforced)."""
    from mmstd.commands.export import echo_err, passed_line
    from mmstd.exporters import ExportOptions
    from mmstd.zoo import export_zoo_model

    pkg = export_zoo_model(name, out, framework=framework, contract=contract, seed=seed, force=force,
                           options=ExportOptions(exporter_path=exporter_path, suite=suite), progress=echo_err)
    echo_err(passed_line(pkg, out))


# `mmstd zoo train NAME --suite S --framework F --out DIR` arrives with the training step. It will
# load the suite, build the model with mmstd.zoo.build_zoo_model(name, framework, card, seed=...),
# fit it, and seal the trained in-memory model with mmstd.exporters.export_model(model, card, out,
# framework=...), so training never goes through a model file.
