"""The runs table in the form users keep (Markdown and CSV) and the scaling efficiency."""

from __future__ import annotations

import csv
import io

from deepcam_hvd.report.runs import RunRecord

CSV_COLUMNS = (
    "run", "ranks", "nodes", "threads_per_rank", "local_batch_size",
    "gradient_accumulation_frequency", "global_batch_size", "epochs_run", "mean_epoch_s",
    "time_to_16_epochs_s", "time_to_16_epochs_estimated", "target_iou", "epochs_to_target",
    "time_to_target_s", "converged", "samples_per_s", "data_wait_fraction",
    "parallel_efficiency", "status",
)


def duration(seconds: float | None) -> str:
    """Seconds as users write them: '48.2 s', '17.53 min', '4.60 h'; '-' when unknown."""
    if seconds is None:
        return "-"
    if seconds < 120:
        return f"{seconds:.1f} s"
    if seconds < 3 * 3600:
        return f"{seconds / 60:.2f} min"
    return f"{seconds / 3600:.2f} h"


def efficiencies(runs: list[RunRecord]) -> dict[str, float | None]:
    """Parallel efficiency per run: throughput(P) / ((P / P0) x throughput(P0)).

    P0 is the smallest rank count among the runs (its best throughput is the base). With the
    same global work (strong scaling) or the same local batch (weak scaling) this is the
    usual efficiency; 1.0 is perfect scaling.
    """
    rated = [r for r in runs if r.samples_per_s]
    if not rated:
        return {r.name: None for r in runs}
    base_ranks = min(r.ranks for r in rated)
    base = max(r.samples_per_s or 0.0 for r in rated if r.ranks == base_ranks)
    return {r.name: (r.samples_per_s / (r.ranks / base_ranks * base)
                     if r.samples_per_s else None) for r in runs}


def _row(r: RunRecord, eff: float | None) -> dict[str, object]:
    return {
        "run": r.name, "ranks": r.ranks, "nodes": r.nodes,
        "threads_per_rank": r.threads_per_rank if r.threads_per_rank is not None else "",
        "local_batch_size": r.local_batch_size,
        "gradient_accumulation_frequency": r.gradient_accumulation_frequency,
        "global_batch_size": r.global_batch_size, "epochs_run": r.epochs_run,
        "mean_epoch_s": _num(r.mean_epoch_s), "time_to_16_epochs_s": _num(r.time_to_16_epochs_s),
        "time_to_16_epochs_estimated": r.time_to_16_epochs_estimated,
        "target_iou": r.target_iou,
        "epochs_to_target": r.epochs_to_target if r.epochs_to_target is not None else "",
        "time_to_target_s": _num(r.time_to_target_s), "converged": r.converged,
        "samples_per_s": _num(r.samples_per_s), "data_wait_fraction": _num(r.data_wait_fraction),
        "parallel_efficiency": _num(eff), "status": r.status,
    }


def _num(value: float | None) -> object:
    return "" if value is None else round(value, 4)


def to_csv(runs: list[RunRecord]) -> str:
    """One row per run with the raw numbers (seconds, fractions)."""
    eff = efficiencies(runs)
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=CSV_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for r in runs:
        writer.writerow(_row(r, eff[r.name]))
    return out.getvalue()


def to_markdown(runs: list[RunRecord], title: str = "DeepCAM runs") -> str:
    """The table of the NERSC-10/NREL reports: one row per run, then notes."""
    eff = efficiencies(runs)
    targets = {r.target_iou for r in runs}
    goal = f"{targets.pop():g} IoU" if len(targets) == 1 else "target IoU"
    head = ("| run | ranks | nodes | threads/rank | local batch size | gradient accumulation | "
            f"~ epoch time | time to 16 epochs | epochs to {goal} | time to {goal} | "
            "converged? | samples/s | efficiency |")
    lines = [f"# {title}", "", head, "|" + "---|" * 13]
    for r in runs:
        t16 = duration(r.time_to_16_epochs_s)
        if r.time_to_16_epochs_s is not None and r.time_to_16_epochs_estimated:
            t16 += f" (est. from {r.epochs_run})"
        epochs = str(r.epochs_to_target) if r.converged else f"- (not in {r.epochs_run})"
        converged = "yes" if r.converged else ("no" if r.status != "running" else "running")
        rate = f"{r.samples_per_s:.2f}" if r.samples_per_s else "-"
        e = eff[r.name]
        lines.append(
            f"| {r.name} | {r.ranks} | {r.nodes} | "
            f"{r.threads_per_rank if r.threads_per_rank is not None else '-'} | "
            f"{r.local_batch_size} | {r.gradient_accumulation_frequency} | "
            f"{duration(r.mean_epoch_s)} | {t16} | {epochs} | "
            f"{duration(r.time_to_target_s) if r.converged else '-'} | {converged} | {rate} | "
            f"{f'{e:.2f}' if e is not None else '-'} |")
    lines += [
        "",
        "Epoch time is training only (evaluation excluded), the mean over the run's epochs. "
        "Time to 16 epochs is the NERSC-10 figure: the sum of the first 16 epoch times, or the "
        "mean epoch x 16 when fewer ran (marked est.). Time to the target is wall time from "
        "run_start to the evaluation that reached it (evaluations included). samples/s is the "
        "median epoch's training throughput over all ranks; efficiency is "
        "throughput(P) / ((P / P0) x throughput(P0)) against the run with the fewest ranks.",
        "",
    ]
    return "\n".join(lines)
