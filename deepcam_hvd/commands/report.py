"""``deepcam-hvd report``: tables and plots over finished runs."""

from __future__ import annotations

from pathlib import Path

import click


@click.command()
@click.argument("run_dirs", nargs=-1, required=True, type=click.Path(file_okay=False))
@click.option("--out", "out_dir", type=click.Path(file_okay=False), default="report",
              show_default=True, help="Directory for report.md, report.csv and the PNGs.")
@click.option("--title", default="DeepCAM runs", show_default=True, help="Report title.")
@click.option("--no-plots", is_flag=True, help="Tables only.")
def report(run_dirs: tuple[str, ...], out_dir: str, title: str, no_plots: bool) -> None:
    """Summarise finished runs (their summary.json and mlperf.log) as a Markdown and CSV table
    (run, ranks, nodes, local batch, accumulation, epoch time, time to 16 epochs, epochs and
    time to 0.82 IoU, converged?) and PNG plots (IoU against time; throughput and efficiency
    against ranks)."""
    from deepcam_hvd.report import write_report

    files = write_report(list(run_dirs), Path(out_dir), title, plots=not no_plots)
    click.echo(files["markdown"].read_text(), nl=False)
    click.echo("wrote " + ", ".join(str(p) for p in files.values()), err=True)
