"""``deepcam-hvd report``: tables and plots over finished runs (DeepCAM or CosmoFlow)."""

from __future__ import annotations

from pathlib import Path

import click


@click.command()
@click.argument("run_dirs", nargs=-1, required=True, type=click.Path(file_okay=False))
@click.option("--out", "out_dir", type=click.Path(file_okay=False), default="report",
              show_default=True, help="Directory for report.md, report.csv and the PNGs.")
@click.option("--title", default=None,
              help="Report title.  [default: 'DeepCAM runs' or 'CosmoFlow runs']")
@click.option("--no-plots", is_flag=True, help="Tables only.")
def report(run_dirs: tuple[str, ...], out_dir: str, title: str | None, no_plots: bool) -> None:
    """Summarise finished runs (their summary.json and mlperf.log) as a Markdown and CSV table
    (run, ranks, nodes, local batch, epoch time, epochs and time to the target, converged?,
    samples/s, efficiency against a named baseline) and PNG plots (the quality metric against
    time; throughput and efficiency against ranks).

    DeepCAM runs are measured in IoU (higher is better; DeepCAM's table adds gradient
    accumulation and the NERSC-10 time to 16 epochs), CosmoFlow runs in MAE (lower is better;
    its table adds the best MAE and the MLPerf log's status). Each run directory's workload is
    read from its summary.json; runs of both workloads in one report are refused, naming one
    directory of each: report them separately."""
    from deepcam_hvd.report import write_report

    files = write_report(list(run_dirs), Path(out_dir), title, plots=not no_plots)
    click.echo(files["markdown"].read_text(), nl=False)
    click.echo("wrote " + ", ".join(str(p) for p in files.values()), err=True)
