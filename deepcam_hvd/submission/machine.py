"""Facts about this machine and its software stack for the system description.

Each probe returns "" when it cannot tell: the field stays present but empty, and the caller
names it so the user can fill it with ``--system-field``.
"""

from __future__ import annotations

import importlib.metadata
import os
import platform
import re
import shutil
import socket
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

CPU_SYSFS = Path("/sys/devices/system/cpu")


@dataclass(frozen=True)
class Machine:
    """This node's hardware and software, as strings ready for the system description."""

    hostname: str = ""
    cpu_model: str = ""
    sockets: str = ""
    cores_per_socket: str = ""
    vcpus_per_socket: str = ""
    cpu_frequency: str = ""
    cpu_caches: str = ""
    memory: str = ""
    storage_capacity: str = ""
    operating_system: str = ""
    gpus: tuple[tuple[str, str], ...] = ()  # (model, memory) per GPU nvidia-smi lists
    software: dict[str, str] = field(default_factory=dict)  # name -> version


def parse_cpuinfo(text: str) -> dict[str, str]:
    """Model, sockets, cores and hardware threads per socket, MHz from /proc/cpuinfo text."""
    blocks = [dict(_pairs(b)) for b in text.split("\n\n") if b.strip()]
    blocks = [b for b in blocks if "processor" in b]
    if not blocks:
        return {}
    first = blocks[0]
    sockets = {b.get("physical id", "0") for b in blocks}
    return {
        "model": first.get("model name", ""),
        "sockets": str(len(sockets)),
        "cores": first.get("cpu cores", ""),
        "threads": first.get("siblings", str(len(blocks) // max(1, len(sockets)))),
        "mhz": first.get("cpu MHz", ""),
    }


def _pairs(block: str) -> list[tuple[str, str]]:
    pairs = []
    for line in block.splitlines():
        key, sep, value = line.partition(":")
        if sep:
            pairs.append((key.strip(), value.strip()))
    return pairs


def _read(path: Path) -> str:
    try:
        return path.read_text().strip()
    except OSError:
        return ""


def cpu_caches(cpu_dir: Path = CPU_SYSFS / "cpu0") -> str:
    """Cache levels of one core, e.g. 'L1d 32K, L1i 32K, L2 1024K, L3 32768K'."""
    parts = []
    for index in sorted((cpu_dir / "cache").glob("index*")):
        level, kind, size = (_read(index / n) for n in ("level", "type", "size"))
        if level and size:
            suffix = {"Data": "d", "Instruction": "i"}.get(kind, "")
            parts.append(f"L{level}{suffix} {size}")
    return ", ".join(parts)


def cpu_frequency(mhz_from_cpuinfo: str) -> str:
    """Maximum frequency from cpufreq, else the current MHz cpuinfo shows."""
    khz = _read(CPU_SYSFS / "cpu0" / "cpufreq" / "cpuinfo_max_freq")
    if khz.isdigit():
        return f"{int(khz) / 1e6:.2f} GHz"
    try:
        return f"{float(mhz_from_cpuinfo) / 1000:.2f} GHz"
    except ValueError:
        return ""


def memory_total(meminfo: str) -> str:
    """MemTotal of /proc/meminfo text in GB."""
    match = re.search(r"^MemTotal:\s+(\d+) kB", meminfo, re.MULTILINE)
    return f"{int(match.group(1)) / 1024**2:.0f} GB" if match else ""


def operating_system() -> str:
    """PRETTY_NAME of /etc/os-release and the kernel release."""
    match = re.search(r'^PRETTY_NAME="?([^"\n]*)', _read(Path("/etc/os-release")), re.MULTILINE)
    name = match.group(1) if match else platform.system()
    return f"{name}, kernel {platform.release()}"


def mpi_version(timeout: float = 20) -> str:
    """The MPI that ``mpirun`` belongs to, e.g. 'MPICH 4.0.2' or 'Open MPI 4.1.5'."""
    if shutil.which("mpirun") is None:
        return ""
    try:
        out = subprocess.run(["mpirun", "--version"], capture_output=True, text=True,
                             timeout=timeout, check=False).stdout
    except (OSError, subprocess.TimeoutExpired):
        return ""
    if match := re.search(r"\(Open MPI\) (\S+)", out):
        return f"Open MPI {match.group(1)}"
    if match := re.search(r"HYDRA build details:\s*Version:\s*(\S+)", out):
        return f"MPICH {match.group(1)}"  # Hydra ships with MPICH and shares its version
    first = out.strip().splitlines()
    return first[0] if first else ""


def nvidia_gpus(timeout: float = 20) -> tuple[tuple[str, str], ...]:
    """(name, memory) of each GPU nvidia-smi lists; empty without NVIDIA GPUs."""
    if shutil.which("nvidia-smi") is None:
        return ()
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=name,memory.total",
                              "--format=csv,noheader"], capture_output=True, text=True,
                             timeout=timeout, check=False).stdout
    except (OSError, subprocess.TimeoutExpired):
        return ()
    rows = [line.split(",", 1) for line in out.strip().splitlines() if "," in line]
    return tuple((name.strip(), memory.strip()) for name, memory in rows)


def package_versions(names: tuple[str, ...]) -> dict[str, str]:
    """Installed versions of Python distributions, read from metadata (nothing imported)."""
    found = {}
    for name in names:
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return found


def describe_machine(storage: Path) -> Machine:
    """Probe this node; ``storage`` is a path on the file system whose size is reported."""
    cpu = parse_cpuinfo(_read(Path("/proc/cpuinfo")))
    storage = storage.resolve()
    while not storage.exists() and storage != storage.parent:
        storage = storage.parent
    try:
        disk = f"{shutil.disk_usage(storage).total / 1000**3:.0f} GB"
    except OSError:
        disk = ""
    software = package_versions(("deepcam-hvd", "torch", "horovod", "numpy", "h5py",
                                 "mpi4py", "mlperf-logging"))
    software["python"] = platform.python_version()
    if mpi := mpi_version():
        software["mpi"] = mpi
    return Machine(
        hostname=socket.gethostname(), cpu_model=cpu.get("model", platform.processor()),
        sockets=cpu.get("sockets", ""), cores_per_socket=cpu.get("cores", ""),
        vcpus_per_socket=cpu.get("threads", str(os.cpu_count() or "")),
        cpu_frequency=cpu_frequency(cpu.get("mhz", "")), cpu_caches=cpu_caches(),
        memory=memory_total(_read(Path("/proc/meminfo"))), storage_capacity=disk,
        operating_system=operating_system(), gpus=nvidia_gpus(), software=software)
