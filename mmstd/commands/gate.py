"""``mmstd gate``: verify, scan, evaluate and judge submissions against a policy; exit 0, 3 or 4."""
from __future__ import annotations

import traceback
from pathlib import Path

import click

from mmstd.errors import EXIT_INFRA


@click.command()
@click.argument("submissions", metavar="SUBMISSION...", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--policy", required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Gate policy YAML (see conformance/policies/default.yaml).")
@click.option("--baseline", type=click.Path(exists=True, path_type=Path),
              help="An earlier report.json, or a directory of them, for baseline_drop rules.")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=Path("gate-out"), show_default=True,
              help="Where verdicts/, summary.json and summary.md go (never inside a submission).")
@click.option("--junit", type=click.Path(dir_okay=False, path_type=Path), help="Also write JUnit XML here.")
@click.option("--jobs", type=click.IntRange(1, 64), default=1, show_default=True,
              help="Submissions checked and evaluated in parallel (one child process each).")
@click.option("--force", is_flag=True, help="Replace the results of an earlier run in --out.")
@click.pass_context
def gate(ctx: click.Context, submissions: tuple[Path, ...], policy: Path, baseline: Path | None, out: Path,
         junit: Path | None, jobs: int, force: bool) -> None:
    """Gate each SUBMISSION against a policy and write one verdict per submission.

    A SUBMISSION is a package directory, a .zip of one, a report.json evaluated elsewhere (only
    its rules are checked), or a directory holding those. Nothing from a submission is run as code
    and nothing is written into one.

    \b
    Exit codes: 0 every submission accepted, 1 bad policy or usage, 3 at least one rejected,
    4 infrastructure error or gate bug (retry).
    """
    from mmstd.errors import MmstdError
    from mmstd.gate import check_gate, console_lines, load_policy, prepare_output, write_gate_outputs

    pol = load_policy(policy)
    prepare_output(out, submissions, force=force)
    try:
        result = check_gate(submissions, pol, baseline=baseline, jobs=jobs)
        write_gate_outputs(result, out, junit=junit, force=force)
    except Exception as e:
        if isinstance(e, MmstdError) and e.code != "E_INTERNAL":
            raise  # the user's to fix (a missing baseline, an existing output): exit 1, no traceback
        click.echo(traceback.format_exc(), err=True)
        click.echo("E_INTERNAL: the gate failed (a bug in mmstd, not the submissions' fault); retry or report it.", err=True)
        ctx.exit(EXIT_INFRA)
    for line in console_lines(result):
        click.echo(line, err=True)
    click.echo(f"verdicts in {out}/", err=True)
    ctx.exit(result.exit_code)
