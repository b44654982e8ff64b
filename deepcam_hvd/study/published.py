"""Published DeepCAM figures (docs/REFERENCE.md) set against the scaling model's PREDICTIONS.

Each scenario runs the model for the published layout (system, nodes, local batch) and turns
the prediction into the published metric. Epoch counts to convergence are taken from the
publication (the model predicts time, not convergence). Per-GPU compute rates are model
inputs from the NVIDIA weak-scaling figures, so those figures are not compared against.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from deepcam_hvd.jobs.systems import System
from deepcam_hvd.study.model import PREDICTION_LABEL, Calibration, StepPrediction, Workload, predict


@dataclass(frozen=True)
class Scenario:
    """A published result and how to predict it."""

    what: str
    system: str
    nodes: int
    local_batch_size: int
    metric: str  # epoch_s | time_s (epochs x epoch incl. eval) | efficiency
    published: float
    unit: str  # s | min | h | fraction
    epochs: float = 1.0
    source: str = ""


SCENARIOS: tuple[Scenario, ...] = (
    Scenario("NERSC-10 baseline, 16 epochs, 256 nodes x 4 A100, global batch 2048",
             "perlmutter-gpu", 256, 2, "time_s", 240.0, "s", 16, "NERSC-10 (EPCC DeepCAM notes)"),
    Scenario("NERSC-10 baseline, 16 epochs, 512 nodes x 4 A100, global batch 2048",
             "perlmutter-gpu", 512, 1, "time_s", 204.0, "s", 16, "NERSC-10 (EPCC DeepCAM notes)"),
    Scenario("NERSC-10 optimized, 16 epochs, 512 nodes x 4 A100",
             "perlmutter-gpu", 512, 1, "time_s", 99.2, "s", 16, "NERSC-10 (EPCC DeepCAM notes)"),
    Scenario("NREL Kestrel baseline, 4 nodes x 4 H100, local batch 8, 26 epochs to 0.82",
             "kestrel-gpu", 4, 8, "time_s", 276.0, "min", 26, "NREL ESIF-HPC4 workload"),
    Scenario("MLPerf HPC v3.0 best, 2048 H100 (Eos), 22.9 epochs (RCP at batch 2048)",
             "eos-h100", 256, 1, "time_s", 0.83, "min", 22.9, "MLPerf HPC v3.0"),
    Scenario("ARCHER2 CPU, 256 nodes x 8 ranks x 16 threads, local batch 1: epoch",
             "archer2-cpu", 256, 1, "epoch_s", 58.0, "min", 1, "EPCC DeepCAM notes (preliminary)"),
    Scenario("Cirrus, 64 V100, local batch 2: epoch", "cirrus-gpu", 16, 2, "epoch_s", 17.5,
             "min", 1, "EPCC DeepCAM notes"),
    Scenario("SC18, 27,360 V100 on Summit with Horovod: parallel efficiency",
             "summit-v100", 4560, 2, "efficiency", 0.907, "fraction", 1, "Kurth et al. SC18"),
)

UNIT_SECONDS = {"s": 1.0, "min": 60.0, "h": 3600.0, "fraction": 1.0}


def predicted_value(s: Scenario, p: StepPrediction) -> float:
    """The prediction in the scenario's metric and unit."""
    if s.metric == "efficiency":  # SC18: against one GPU
        return p.rank_efficiency
    seconds = p.epoch_s * (s.epochs if s.metric == "time_s" else 1.0)
    return seconds / UNIT_SECONDS[s.unit]


def compare(systems: dict[str, System], cal: Calibration | None) -> list[dict[str, Any]]:
    """One row per scenario: published figure, PREDICTION, their ratio and the step split."""
    rows = []
    for s in SCENARIOS:
        p = predict(systems[s.system], s.nodes, Workload(local_batch_size=s.local_batch_size),
                    cal)
        value = predicted_value(s, p)
        rows.append({
            "what": s.what, "system": s.system, "nodes": s.nodes, "ranks": p.ranks,
            "local_batch_size": s.local_batch_size, "unit": s.unit,
            "published": s.published, "predicted": value,
            "predicted_over_published": value / s.published if s.published else None,
            "step_s": p.step_s, "compute_s": p.compute_s, "data_s": p.data_s,
            "allreduce_s": p.allreduce_s, "exposed_allreduce_s": p.exposed_allreduce_s,
            "efficiency": p.efficiency, "rank_efficiency": p.rank_efficiency,
            "source": s.source, "label": PREDICTION_LABEL,
        })
    return rows


def to_markdown(rows: list[dict[str, Any]]) -> str:
    """The comparison as a Markdown table, labelled as predictions."""
    lines = [
        f"**{PREDICTION_LABEL}**, set against published figures (docs/REFERENCE.md).", "",
        "| published result | published | predicted | predicted / published | "
        "predicted step: compute + data + exposed allreduce (raw allreduce) |",
        "|---|---|---|---|---|",
    ]
    for r in rows:
        unit = "" if r["unit"] == "fraction" else f" {r['unit']}"
        fmt = "{:.3f}" if r["unit"] == "fraction" else "{:.3g}"
        lines.append(
            f"| {r['what']} | {fmt.format(r['published'])}{unit} | "
            f"{fmt.format(r['predicted'])}{unit} | {r['predicted_over_published']:.2f} | "
            f"{r['compute_s'] * 1e3:.0f} + {r['data_s'] * 1e3:.0f} + "
            f"{r['exposed_allreduce_s'] * 1e3:.0f} ms ({r['allreduce_s'] * 1e3:.0f} ms) |")
    return "\n".join(lines) + "\n"
