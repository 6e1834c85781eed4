"""``mmstd card``: write an example card draft; render a card and its reports as a hub README."""
from __future__ import annotations

from importlib import resources
from pathlib import Path

import click

from mmstd.files import atomic_write_text


def example_card_text() -> str:
    """The commented example card shipped with mmstd (a 3-input image/text/audio classifier)."""
    return resources.files("mmstd").joinpath("templates/example-card.yaml").read_text("utf-8")


@click.group()
def card() -> None:
    """Create and render model cards."""


@card.command("init")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), help="Write here instead of stdout.")
@click.option("--force", is_flag=True, help="Overwrite --out if it exists.")
def init(out: Path | None, force: bool) -> None:
    """Write a commented example card (YAML) that validates as written."""
    text = example_card_text()
    if out is None:
        click.echo(text, nl=False)
        return
    atomic_write_text(out, text, overwrite=force)
    click.echo(f"wrote {out}", err=True)


@card.command("render")
@click.argument("package", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--report", "reports", type=click.Path(dir_okay=False, path_type=Path), multiple=True,
              help="report.json from 'mmstd evaluate' on this package; repeat for several suites.")
@click.option("--format", "fmt", type=click.Choice(["hf"]), default="hf", show_default=True,
              help="hf: a Hugging Face Hub README.md with model-index metadata.")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), help="Write here instead of stdout.")
@click.option("--force", is_flag=True, help="Overwrite --out if it exists.")
def render(package: Path, reports: tuple[Path, ...], fmt: str, out: Path | None, force: bool) -> None:
    """Render PACKAGE's card (and its evaluation reports) as a model-hub README."""
    from mmstd.hfcard import render_hf_readme
    from mmstd.package import open_package
    from mmstd.reports import load_report

    pkg = open_package(package)
    text = render_hf_readme(pkg.card, [load_report(r) for r in reports], digest=pkg.digest)
    if out is None:
        click.echo(text, nl=False)
        return
    atomic_write_text(out, text, overwrite=force)
    click.echo(f"wrote {out}", err=True)
