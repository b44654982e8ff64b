"""PNG plots of a set of runs: the quality metric (IoU, MAE) against wall time, throughput and
efficiency against cores."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from deepcam_hvd.report.runs import RunRecord, workload_of
from deepcam_hvd.report.tables import efficiencies, rated


def _pyplot() -> Any:
    """matplotlib.pyplot on the Agg backend (files only, never a display)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _label(r: RunRecord) -> str:
    threads = f"x{r.threads_per_rank}t" if r.threads_per_rank else ""
    return f"{r.name} ({r.ranks}r{threads}, gb {r.global_batch_size})"


def _finish(plt: Any, fig: Any, ax: Any, labels: tuple[str, str, str], legend: bool,
            path: Path) -> None:
    """Label the axes and title, add grid and legend, save ``path`` and close the figure."""
    xlabel, ylabel, title = labels
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    if legend:
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_quality(runs: list[RunRecord], path: Path) -> Path:
    """The runs' validation metric (IoU, MAE: their workload's) against wall time since
    run_start, one line per run, each target dashed."""
    spec = workload_of(runs)
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for r in runs:
        if r.curve:
            xs, ys = zip(*r.curve, strict=True)
            ax.plot(xs, ys, marker="o", markersize=3, label=_label(r))
    targets = sorted({r.target for r in runs})
    for t in targets:
        ax.axhline(t, color="grey", linestyle="--", linewidth=1)
    _finish(plt, fig, ax, ("wall time since run_start (s)", f"validation {spec.metric}",
                           f"Validation {spec.metric} against time"),
            any(r.curve for r in runs), path)
    return path


def plot_scaling(runs: list[RunRecord], throughput_path: Path, efficiency_path: Path) -> None:
    """Training throughput against cores (with the ideal line from the runs' baseline) and
    each series' efficiency against cores, as ``report.md`` defines them (``tables.py``)."""
    plt = _pyplot()
    rated = sorted((r for r in runs if r.samples_per_s), key=lambda r: (cores(r), r.name))
    eff = efficiencies(runs)
    fig, ax = plt.subplots(figsize=(6, 4.5))
    if rated:
        base = min(rated, key=lambda r: (cores(r), -(r.samples_per_s or 0.0)))
        per_core = (base.samples_per_s or 0.0) / cores(base)
        xs = sorted({cores(r) for r in rated})
        ax.plot(xs, [per_core * c for c in xs], color="grey", linestyle="--",
                label=f"ideal (linear from {base.name})")
        for r in rated:
            ax.scatter([cores(r)], [r.samples_per_s], label=_label(r))
    _finish(plt, fig, ax, ("cores (ranks x threads per rank)", "training samples/s (all ranks)",
                           "Throughput against cores"), bool(rated), throughput_path)

    fig, ax = plt.subplots(figsize=(6, 4.5))
    markers = "osD^v<>"
    series = list(dict.fromkeys(s for r in rated for s in eff[r.name]))
    for i, name in enumerate(series):
        points = [(cores(r), eff[r.name][name]) for r in rated if name in eff[r.name]]
        if points:
            ax.scatter([c for c, _ in points], [e.value for _, e in points],
                       marker=markers[i % len(markers)],
                       label=f"{name} (vs {points[0][1].baseline})")
    ax.axhline(1.0, color="grey", linestyle="--", linewidth=1)
    ax.set_ylim(0, 1.2)
    _finish(plt, fig, ax, ("cores (ranks x threads per rank)", "efficiency per core",
                           "Efficiency against cores"), bool(series), efficiency_path)


def cores(run: RunRecord) -> int:
    """Cores a run computed on (ranks x threads per rank; 1 thread when not recorded)."""
    return rated(run).cores
