"""PNG plots of a set of runs: IoU against wall time, throughput and efficiency against ranks."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from deepcam_hvd.report.runs import RunRecord
from deepcam_hvd.report.tables import efficiencies


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


def plot_iou(runs: list[RunRecord], path: Path) -> Path:
    """Validation IoU against wall time since run_start, one line per run, target dashed."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for r in runs:
        if r.iou_curve:
            xs, ys = zip(*r.iou_curve, strict=True)
            ax.plot(xs, ys, marker="o", markersize=3, label=_label(r))
    targets = sorted({r.target_iou for r in runs})
    for t in targets:
        ax.axhline(t, color="grey", linestyle="--", linewidth=1)
    _finish(plt, fig, ax, ("wall time since run_start (s)", "validation IoU",
                           "Validation IoU against time"), any(r.iou_curve for r in runs), path)
    return path


def plot_scaling(runs: list[RunRecord], throughput_path: Path, efficiency_path: Path) -> None:
    """Training throughput (with the ideal line) and parallel efficiency against ranks."""
    plt = _pyplot()
    rated = sorted((r for r in runs if r.samples_per_s), key=lambda r: r.ranks)
    eff = efficiencies(runs)
    fig, ax = plt.subplots(figsize=(6, 4.5))
    if rated:
        base = rated[0]
        ranks = sorted({r.ranks for r in rated})
        ax.plot(ranks, [base.samples_per_s * p / base.ranks for p in ranks],  # type: ignore
                color="grey", linestyle="--", label="ideal (linear)")
        for r in rated:
            ax.scatter([r.ranks], [r.samples_per_s], label=_label(r))
    _finish(plt, fig, ax, ("ranks", "training samples/s (all ranks)",
                           "Throughput against ranks"), bool(rated), throughput_path)

    fig, ax = plt.subplots(figsize=(6, 4.5))
    for r in rated:
        if eff[r.name] is not None:
            ax.scatter([r.ranks], [eff[r.name]], label=_label(r))
    ax.axhline(1.0, color="grey", linestyle="--", linewidth=1)
    ax.set_ylim(0, 1.2)
    _finish(plt, fig, ax, ("ranks", "parallel efficiency", "Efficiency against ranks"),
            bool(rated), efficiency_path)
