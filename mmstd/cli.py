"""The ``mmstd`` command: a thin click group that loads each command family lazily.

Errors are mapped here, once: an ``MmstdError`` prints ``CODE: message`` (plus problems and hint)
on stderr without a traceback and exits with its code (1, or 4 for infrastructure); anything else
is a bug and keeps its traceback.
"""
from __future__ import annotations

import importlib
import sys
import time
from typing import Any

import click

from mmstd import __version__
from mmstd.errors import MmstdError, format_error

# command name -> "module:attr"; importing a command module must stay cheap (no torch/TF/ORT).
COMMANDS = {
    "card": "mmstd.commands.card:card",
    "validate": "mmstd.commands.package:validate",
    "inspect": "mmstd.commands.package:inspect",
    "export": "mmstd.commands.export:export",
    "zoo": "mmstd.commands.zoo:zoo",
    "suites": "mmstd.commands.suites:suites",
    "evaluate": "mmstd.commands.evaluate:evaluate",
    "gate": "mmstd.commands.gate:gate",
}


class _LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(n for n in COMMANDS if self._find(n) is not None)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        return self._find(name)

    @staticmethod
    def _find(name: str) -> click.Command | None:
        ref = COMMANDS.get(name)
        if ref is None:
            return None
        module, _, attr = ref.partition(":")
        try:
            mod = importlib.import_module(module)
        except ModuleNotFoundError as e:
            if e.name == module:  # a command family that has not landed yet
                return None
            raise
        return getattr(mod, attr)

    def invoke(self, ctx: click.Context) -> Any:
        start = time.perf_counter()
        try:
            return super().invoke(ctx)
        except MmstdError as err:
            click.echo(format_error(err), err=True)
            click.echo(f"FAILED | {time.perf_counter() - start:.1f}s | mmstd {' '.join(sys.argv[1:])}", err=True)
            ctx.exit(err.exit_code)


@click.group(cls=_LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="mmstd")
def cli() -> None:
    """Standard export and conformance evaluation for multimodal (image/text/audio) fusion models.

    \b
    Exit codes: 0 success, 1 an error you can fix, 2 usage, 3 gate rejected, 4 infrastructure.
    """


def main() -> None:
    cli(prog_name="mmstd")
