"""Reports over finished runs of one workload (DeepCAM or CosmoFlow): Markdown/CSV tables and
PNG plots."""

from __future__ import annotations

from pathlib import Path

from deepcam_hvd.report.runs import RunRecord, read_run, workload_of
from deepcam_hvd.report.tables import efficiencies, to_csv, to_markdown
from deepcam_hvd.report.workloads import WORKLOADS, WorkloadSpec

__all__ = ["WORKLOADS", "RunRecord", "WorkloadSpec", "efficiencies", "read_run", "to_csv",
           "to_markdown", "workload_of", "write_report"]


def write_report(run_dirs: list[str | Path], out: Path, title: str | None = None,
                 plots: bool = True) -> dict[str, Path]:
    """Read ``run_dirs`` (all of one workload: DataError naming two directories otherwise) and
    write report.md, report.csv and the PNG plots into ``out``; the title defaults to
    'DeepCAM runs' or 'CosmoFlow runs'. Returns the files by kind (the quality plot's kind is
    the metric: ``iou`` or ``mae``)."""
    from deepcam_hvd.report.plots import plot_quality, plot_scaling

    runs = [read_run(d) for d in run_dirs]
    spec = workload_of(runs)
    _unique_names(runs)
    out.mkdir(parents=True, exist_ok=True)
    files = {"markdown": out / "report.md", "csv": out / "report.csv"}
    files["markdown"].write_text(to_markdown(runs, title))
    files["csv"].write_text(to_csv(runs))
    if plots:
        files[spec.short] = plot_quality(runs, out / f"{spec.short}_vs_time.png")
        files["throughput"] = out / "throughput_vs_ranks.png"
        files["efficiency"] = out / "efficiency_vs_ranks.png"
        plot_scaling(runs, files["throughput"], files["efficiency"])
    return files


def _unique_names(runs: list[RunRecord]) -> None:
    """Runs from different parents may share a directory name: qualify the repeats."""
    seen: dict[str, int] = {}
    for r in runs:
        if r.name in seen:
            seen[r.name] += 1
            r.name = f"{r.path.parent.name}/{r.name}"
        else:
            seen[r.name] = 1
