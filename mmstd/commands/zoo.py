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


@zoo.command("train")
@click.argument("name")
@click.option("--framework", type=click.Choice(FRAMEWORKS), required=True, help="Build and train in this framework.")
@click.option("--suite", required=True, metavar="NAME|PATH",
              help="Train on its 'train' split, score on 'test'; its name picks the card (digits-av or shapes-itm).")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), required=True, help="Package directory to create.")
@click.option("--epochs", type=click.IntRange(1), help="Passes over the train split (default: the suite's, see "
                                                        "mmstd.zoo.train.DEFAULTS).")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed for weights, batch order and parity inputs.")
@click.option("--force", is_flag=True, help="Replace an existing package at --out.")
def train_zoo(name: str, framework: str, suite: str, out: Path, epochs: int | None, seed: int, force: bool) -> None:
    """Train zoo model NAME on a suite (CPU, deterministic) and export it as a sealed package.

    Parity is enforced on seeded inputs and on the suite's test samples; the exported graph's test
    accuracy and macro F1 (onnxruntime CPU) are recorded in the card's quantitative_analyses.
    """
    from mmstd.commands.export import echo_err
    from mmstd.zoo.train import summary_line, train_and_export

    pkg = train_and_export(name, framework, suite, out, epochs=epochs, seed=seed, force=force, progress=echo_err)
    echo_err(summary_line(pkg, out))
