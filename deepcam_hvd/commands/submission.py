"""``deepcam-hvd submission``: MLPerf HPC 3.0.0 submission runs and packages."""

from __future__ import annotations

from pathlib import Path

import click

from deepcam_hvd.submission import REQUIRED_RUNS
from deepcam_hvd.submission.layout import Layout


@click.group()
def submission() -> None:
    """MLPerf HPC 3.0.0 submissions: independent runs, a checked package."""


@submission.command("run", context_settings={"show_default": True,
                                             "ignore_unknown_options": True})
@click.option("--runs", type=int, default=REQUIRED_RUNS, help="Independent runs to train.")
@click.option("--out", type=click.Path(file_okay=False), required=True,
              help="Runs directory: run_0 .. run_<N-1> are created in it (never reused).")
@click.option("--launcher-cmd", default="",
              help="Launcher prefix, e.g. 'mpirun -np 2'; empty: one process.")
@click.option("--timeout", "timeout_s", type=float, default=86400.0,
              help="Seconds one run may take before it is stopped.")
@click.argument("train_options", nargs=-1, type=click.UNPROCESSED)
def run(runs: int, out: str, launcher_cmd: str, timeout_s: float,
        train_options: tuple[str, ...]) -> None:
    """Train RUNS independent runs: fresh output directory and seed each, never resumed.

    Options after '--' go to every 'deepcam-hvd train'.
    """
    from deepcam_hvd.submission.runner import make_plan, run_all

    plan = make_plan(Path(out), runs, launcher_cmd, list(train_options), timeout_s)
    run_all(plan, progress=lambda text: click.echo(text))
    dirs = " ".join(str(d) for d in plan.run_dirs)
    click.echo(f"next: deepcam-hvd submission package {dirs} --system NAME --out PKG")


@submission.command("package", context_settings={"show_default": True})
@click.argument("run_dirs", nargs=-1, required=True, type=click.Path())
@click.option("--out", type=click.Path(file_okay=False), required=True,
              help="Package root: <out>/<org>/{results,systems,benchmarks}, <out>/checks.")
@click.option("--system", required=True, help="System name (systems/<system>.json).")
@click.option("--org", default=None, help="Submitting organisation [default: the logs' "
                                          "submission_org].")
@click.option("--division", type=click.Choice(["auto", "open", "closed"]), default="auto",
              help="Division; auto: the one the runs logged.")
@click.option("--impl", default="pytorch-horovod", help="Implementation folder name.")
@click.option("--system-field", "system_fields", multiple=True, metavar="KEY=VALUE",
              help="Set a field of the system description (repeatable).")
@click.option("--allow-fewer", is_flag=True,
              help=f"Package fewer than {REQUIRED_RUNS} runs: for testing only, NOT a valid "
                   "submission.")
@click.option("--check/--no-check", default=True, help="Run the official checkers.")
@click.option("--timeout", "timeout_s", type=float, default=900.0,
              help="Seconds each checker may take.")
def package(run_dirs: tuple[str, ...], out: str, system: str, org: str | None, division: str,
            impl: str, system_fields: tuple[str, ...], allow_fewer: bool, check: bool,
            timeout_s: float) -> None:
    """Package RUN_DIRS (training output directories or mlperf.log files) and check it."""
    from deepcam_hvd.errors import ConfigError
    from deepcam_hvd.submission.assemble import assemble, preflight
    from deepcam_hvd.submission.machine import describe_machine
    from deepcam_hvd.submission.record import read_record
    from deepcam_hvd.submission.runset import check_runs, log_of
    from deepcam_hvd.submission.system_desc import (
        build_system_desc,
        empty_fields,
        parse_overrides,
    )

    overrides = parse_overrides(system_fields)
    paths = [Path(p) for p in run_dirs]
    runs = check_runs([log_of(p) for p in paths], division, allow_fewer)
    if org is not None and org != runs.org:
        raise ConfigError(f"--org {org!r} but the runs logged submission_org {runs.org!r} "
                          f"({runs.runs[0].path}); train with --organization {org}")
    layout = Layout(Path(out), org or runs.org, system, impl)
    preflight(layout, len(runs.runs))
    for run_log in runs.runs:
        best = run_log.best_accuracy
        click.echo(f"{run_log.path}: {run_log.division}, status {run_log.status}, seed "
                   f"{','.join(map(str, run_log.seeds)) or 'none'}, "
                   f"{run_log.epochs_to_stop or 0:g} epochs, best eval_accuracy "
                   f"{'none' if best is None else f'{best:.4f}'}")
    desc = build_system_desc(runs, describe_machine(Path(out)), layout.org,
                             system, overrides)
    records = [read_record(p) if p.is_dir() else None for p in paths]
    written = assemble(layout, runs, desc, records)
    click.echo(f"wrote {layout.org_dir}: {len(written.results)} results, "
               f"{written.system_file.name}, implementation {impl}"
               f"{'' if written.source_copied else ' (already there, identical)'}")
    if empty := empty_fields(desc):
        click.echo(f"system description: {len(empty)} field(s) left empty, fill them with "
                   f"--system-field KEY=VALUE: {', '.join(empty)}")
    if not runs.complete:
        click.echo(f"WARNING: {len(runs.runs)} run(s) packaged with --allow-fewer: NOT a valid "
                   f"submission (DeepCAM needs {REQUIRED_RUNS})", err=True)
    if check:
        _check(layout, runs.division, timeout_s)


@submission.command("check", context_settings={"show_default": True})
@click.argument("package_dir", type=click.Path(file_okay=False, exists=True))
@click.option("--org", required=True, help="Organisation folder inside PACKAGE_DIR.")
@click.option("--system", required=True, help="System whose results to RCP-check.")
@click.option("--timeout", "timeout_s", type=float, default=900.0,
              help="Seconds each checker may take.")
def check_cmd(package_dir: str, org: str, system: str, timeout_s: float) -> None:
    """Run the official checkers on an existing package."""
    import json

    from deepcam_hvd.errors import DataError

    layout = Layout(Path(package_dir), org, system)
    try:
        division = json.loads(layout.system_file.read_text())["division"]
    except (OSError, ValueError, KeyError, TypeError):
        raise DataError(f"{layout.system_file}: not a readable system description with a "
                        "division") from None
    _check(layout, division, timeout_s)


def _check(layout: Layout, division: str, timeout_s: float) -> None:
    """Print each checker's verdict line; exit 1 if any failed."""
    from deepcam_hvd.submission.checkers import run_checkers

    verdicts = run_checkers(layout, division, timeout_s)
    for verdict in verdicts:
        click.echo(verdict.line())
    if not all(v.passed for v in verdicts):
        raise SystemExit(1)
