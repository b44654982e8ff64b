"""A calibrated scaling model of data-parallel DeepCAM training. Its outputs are PREDICTIONS.

Per optimizer step of one rank (local batch b, P ranks on N nodes, r ranks per node):

    compute   t_c = b x s                s: seconds per training sample of one rank
    data      t_d = max(0, b x bytes / (io_node / r) - t_c)   (readers prefetch during compute)
    allreduce t_a = 2 (r-1)/r x G / B_intra + 2 (N-1)/N x G / B_net
                    + calls x (2 (r-1) + 2 ceil(log2 N)) x latency        G: gradient bytes
    exposed   t_x = max(0, t_a - overlap x 2/3 t_c)   (Horovod reduces during the backward pass)
    step      t_s = t_c + t_d + t_x

An epoch is ceil(train / (P b)) steps plus an evaluation of ceil(val / P) samples at
``eval_cost`` of a training sample each. Weak-scaling efficiency is t_s(1 node) / t_s(N nodes)
(the N, 2N, 4N view); ``rank_efficiency`` is t_s(1 rank alone) / t_s(P), as SC18 reports it.

s comes from the system description for accelerators (published per-GPU rates) and from the
rate measured on this machine for CPUs, scaled by the rank's cores, their speed and how well
torch uses them (all in deepcam_hvd/resources/jobs/systems.toml, each marked measured,
published or assumed).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

from deepcam_hvd.jobs.systems import Hardware, System
from deepcam_hvd.workloads.deepcam import FULL_EVAL_SAMPLES, FULL_TRAIN_SAMPLES

PREDICTION_LABEL = "PREDICTION from the scaling model (not a measurement)"
REFERENCE_PARAMS = 56_454_720  # deeplab-xception, 16 channels in, 3 classes out
SAMPLE_BYTES = 768 * 1152 * 16 * 4 + 768 * 1152 * 2  # float32 data + int16 labels, ~57 MB
FUSION_BYTES = 64 * 1024 * 1024  # Horovod's default tensor fusion buffer


@dataclass(frozen=True)
class Workload:
    """What a training run asks of the machine (defaults: the full DeepCAM benchmark)."""

    local_batch_size: int = 1
    params: int = REFERENCE_PARAMS
    bytes_per_gradient: int = 4  # 2 with fp16 gradient compression
    sample_bytes: int = SAMPLE_BYTES
    train_samples: int = FULL_TRAIN_SAMPLES
    val_samples: int = FULL_EVAL_SAMPLES
    eval_cost: float = 1 / 3  # forward only: about a third of a training sample

    @property
    def gradient_bytes(self) -> int:
        """Bytes every rank reduces per optimizer step."""
        return self.params * self.bytes_per_gradient


@dataclass(frozen=True)
class Calibration:
    """Rates measured on the calibration machine, with the command that measured them."""

    cpu_s_per_sample: float  # full model at 768x1152, one thread of this machine
    cpu_overlap: float  # share of the backward pass that hid the allreduce here (CPU, MPI)
    measured_by: str = ""
    machine: str = ""
    details: dict[str, Any] | None = None


@dataclass(frozen=True)
class StepPrediction:
    """One configuration's predicted step, epoch and throughput (a PREDICTION)."""

    system: str
    nodes: int
    ranks: int
    local_batch_size: int
    compute_s: float
    data_s: float
    allreduce_s: float
    exposed_allreduce_s: float
    step_s: float
    epoch_train_s: float
    epoch_eval_s: float
    samples_per_s: float
    efficiency: float  # against one full node
    rank_efficiency: float  # against one rank alone on a node
    label: str = PREDICTION_LABEL

    @property
    def epoch_s(self) -> float:
        """Training plus evaluation time of one epoch."""
        return self.epoch_train_s + self.epoch_eval_s

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready dict, derived figures included."""
        return {**asdict(self), "epoch_s": self.epoch_s}


def seconds_per_sample(hw: Hardware, cal: Calibration | None) -> float:
    """Training seconds per sample of one rank of ``hw``."""
    if not hw.is_cpu:
        if hw.samples_per_s_per_rank <= 0:
            raise ValueError(f"{hw.accelerator}: samples_per_s_per_rank is not set")
        return 1.0 / hw.samples_per_s_per_rank
    if cal is None:
        raise ValueError("a CPU system needs the calibration measured on this machine "
                         "(deepcam-hvd study calibrate)")
    speed = hw.cores_per_rank * hw.core_speed * hw.thread_efficiency
    return cal.cpu_s_per_sample / max(speed, 1e-9)


def allreduce_seconds(gradient_bytes: float, ranks_per_node: int, nodes: int,
                      hw: Hardware) -> float:
    """Time of one hierarchical ring allreduce of ``gradient_bytes`` (bandwidth + latency)."""
    if ranks_per_node * nodes <= 1:
        return 0.0
    r, n = ranks_per_node, nodes
    intra = 2 * (r - 1) / r * gradient_bytes / (hw.intra_node_gbytes_per_s * 1e9) if r > 1 else 0
    inter = 2 * (n - 1) / n * gradient_bytes / (hw.network_gbytes_per_s * 1e9) if n > 1 else 0
    calls = math.ceil(gradient_bytes / FUSION_BYTES)
    hops = 2 * (r - 1) + 2 * math.ceil(math.log2(n)) if n > 1 else 2 * (r - 1)
    return intra + inter + calls * hops * hw.latency_us * 1e-6


def _step(system: System, nodes: int, ranks_per_node: int, work: Workload,
          cal: Calibration | None) -> tuple[float, float, float, float, float]:
    hw = system.hardware
    per_sample = seconds_per_sample(hw, cal)
    compute = work.local_batch_size * per_sample
    io_per_rank = hw.io_gbytes_per_s_per_node * 1e9 / ranks_per_node
    read = work.local_batch_size * work.sample_bytes / io_per_rank
    data = max(0.0, read - compute)
    allreduce = allreduce_seconds(work.gradient_bytes, ranks_per_node, nodes, hw)
    overlap = cal.cpu_overlap if (hw.is_cpu and cal is not None) else hw.overlap
    exposed = max(0.0, allreduce - overlap * (2 / 3) * compute)
    return compute, data, allreduce, exposed, compute + data + exposed


def predict(system: System, nodes: int, work: Workload, cal: Calibration | None = None,
            ranks_per_node: int | None = None) -> StepPrediction:
    """Predict step time, epoch time, throughput and weak-scaling efficiency (a PREDICTION).

    ``ranks_per_node`` defaults to the system's; each rank keeps ``work.local_batch_size``.
    """
    if nodes < 1:
        raise ValueError("nodes must be at least 1")
    r = ranks_per_node or system.tasks_per_node
    ranks = nodes * r
    compute, data, allreduce, exposed, step = _step(system, nodes, r, work, cal)
    *_, one_node = _step(system, 1, r, work, cal)
    *_, one_rank = _step(system, 1, 1, work, cal)
    steps = math.ceil(work.train_samples / (ranks * work.local_batch_size))
    hw = system.hardware
    eval_sample = max(work.eval_cost * seconds_per_sample(hw, cal),
                      work.sample_bytes / (hw.io_gbytes_per_s_per_node * 1e9 / r))
    return StepPrediction(
        system=system.name, nodes=nodes, ranks=ranks, local_batch_size=work.local_batch_size,
        compute_s=compute, data_s=data, allreduce_s=allreduce, exposed_allreduce_s=exposed,
        step_s=step, epoch_train_s=steps * step,
        epoch_eval_s=math.ceil(work.val_samples / ranks) * eval_sample,
        samples_per_s=ranks * work.local_batch_size / step, efficiency=one_node / step,
        rank_efficiency=one_rank / step)


def scaling_series(system: System, node_counts: list[int], work: Workload,
                   cal: Calibration | None = None) -> list[StepPrediction]:
    """Predictions for several node counts (e.g. the ESIF N, 2N, 4N series)."""
    return [predict(system, n, work, cal) for n in node_counts]
