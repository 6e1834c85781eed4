"""``mmstd card``: write an example card draft."""
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
