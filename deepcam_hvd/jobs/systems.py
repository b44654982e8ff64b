"""System descriptions (``systems.toml``, shipped in ``deepcam_hvd/resources/jobs/``): job layout
for templates, hardware for the scaling model."""

from __future__ import annotations

import os
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import tomllib

from deepcam_hvd.errors import ConfigError
from deepcam_hvd.resources import Traversable, resource

LAUNCHERS = ("slurm", "mpirun", "horovodrun", "none")


def jobs_dir() -> Traversable:
    """The folder with ``systems.toml`` and ``templates/``: ``$DEEPCAM_HVD_JOBS_DIR`` if set,
    else the copy shipped in the package (``deepcam_hvd/resources/jobs``)."""
    env = os.environ.get("DEEPCAM_HVD_JOBS_DIR")
    return Path(env) if env else resource("jobs")


@dataclass(frozen=True)
class Hardware:
    """What the scaling model needs to know about a system (see systems.toml)."""

    accelerator: str = "cpu"
    samples_per_s_per_rank: float = 0.0  # accelerators: training rate of the full model
    cores_per_rank: int = 1  # CPUs: cores behind one rank ...
    core_speed: float = 1.0  # ... each this fast relative to a core of the calibration machine
    thread_efficiency: float = 1.0  # ... used this well by torch's intra-op threads
    network_gbytes_per_s: float = 10.0  # per node, one direction
    intra_node_gbytes_per_s: float = 20.0
    latency_us: float = 2.0
    io_gbytes_per_s_per_node: float = 1.0
    overlap: float = 0.0  # share of the backward pass that hides the gradient allreduce
    sources: str = ""

    @property
    def is_cpu(self) -> bool:
        """True when ranks compute on CPU cores."""
        return self.accelerator.lower() == "cpu"

    @property
    def gpu_kind(self) -> str:
        """'rocm' for AMD Instinct accelerators (MI...), 'cuda' for other GPUs, '' for CPUs."""
        if self.is_cpu:
            return ""
        return "rocm" if self.accelerator.upper().startswith("MI") else "cuda"


@dataclass(frozen=True)
class System:
    """One entry of systems.toml."""

    name: str
    description: str
    template: str
    launcher: str
    tasks_per_node: int
    cpus_per_task: int
    gpus_per_node: int = 0
    partition: str = ""
    qos: str = ""
    constraint: str = ""
    modules: tuple[str, ...] = ()
    srun_mpi: str = ""
    data: str = ""
    cosmoflow_data: str = ""
    preset: str = ""
    time: str = ""
    max_time: str = ""
    max_nodes: int = 0
    qos_by_nodes: dict[str, int] = field(default_factory=dict)
    hardware: Hardware = field(default_factory=Hardware)

    @property
    def renderable(self) -> bool:
        """True when a job template exists for this system."""
        return bool(self.template)

    def qos_for(self, nodes: int) -> str:
        """The QoS for a job of ``nodes`` nodes (the largest threshold it reaches)."""
        chosen, reached = self.qos, 0
        for qos, threshold in self.qos_by_nodes.items():
            if reached < threshold <= nodes:
                chosen, reached = qos, threshold
        return chosen


def _build(name: str, raw: dict[str, Any], where: Traversable) -> System:
    known = {f.name for f in fields(System)} - {"name"}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise ConfigError(f"{where}: [{name}] has unknown key(s) {', '.join(unknown)}")
    values = dict(raw)
    hw_raw = values.pop("hardware", {})
    hw_known = {f.name for f in fields(Hardware)}
    bad = sorted(set(hw_raw) - hw_known)
    if bad:
        raise ConfigError(f"{where}: [{name}.hardware] has unknown key(s) {', '.join(bad)}")
    try:
        system = System(name=name, hardware=Hardware(**hw_raw),
                        modules=tuple(values.pop("modules", ())), **values)
    except TypeError as exc:
        raise ConfigError(f"{where}: [{name}] {exc}") from None
    if system.launcher not in LAUNCHERS:
        raise ConfigError(f"{where}: [{name}] launcher {system.launcher!r} is not one of "
                          f"{', '.join(LAUNCHERS)}")
    if system.tasks_per_node < 1 or system.cpus_per_task < 1:
        raise ConfigError(f"{where}: [{name}] tasks_per_node and cpus_per_task must be >= 1")
    return system


def load_systems(path: Traversable | None = None) -> dict[str, System]:
    """Read every system of the packaged ``systems.toml`` (or ``path``), in file order."""
    path = path or jobs_dir() / "systems.toml"
    try:
        raw = tomllib.loads(path.read_text())
    except OSError as exc:
        raise ConfigError(f"system descriptions {path}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"system descriptions {path}: {exc}") from None
    return {name: _build(name, entry, path) for name, entry in raw.items()}


def get_system(name: str, path: Traversable | None = None) -> System:
    """The named system, or a ConfigError listing the known ones."""
    systems = load_systems(path)
    if name not in systems:
        raise ConfigError(f"unknown system {name!r}; known systems: {', '.join(systems)} "
                          "(see 'deepcam-hvd jobs list')")
    return systems[name]
