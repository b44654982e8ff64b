"""Turn a system's job template into a ready script: ``deepcam-hvd jobs render``.

Templates are shell scripts with ``{{name}}`` placeholders. ``{{name?}}`` is optional: a line
holding an empty optional placeholder is dropped whole (an ``#SBATCH --account=`` line with
no account, a continuation line with no ``--mpi``). A placeholder alone on its line may expand
to several lines (the ``module load`` block). Trailing blanks left by an empty value go.

One template serves both workloads (``--workload``): ``{{train_command}}`` is
``deepcam-hvd train`` or ``deepcam-hvd cosmoflow train`` (``{{info_command}}`` likewise), and
``{{cosmoflow?}}`` is the word CosmoFlow in a CosmoFlow script and empty in a DeepCAM one, so a
line holding it (a setting with a comment saying why) is in CosmoFlow scripts only. Presets,
``--config`` and ``--run_tag`` are DeepCAM's. On GPU systems each workload needs its own
install profile (``{{profile}}``, :data:`GPU_PROFILES`); CosmoFlow has none for AMD GPUs.

Every script trains in a directory of its own under the output root: ``ROOT/JOBNAME-JOBID``
for Slurm (a requeued job keeps its id and so resumes its own unfinished run with
``--resume auto``; a new submission gets a new directory and a fresh run), and
``ROOT/JOBNAME-TIMESTAMP-PID`` for the mpirun/horovodrun scripts. ``DEEPCAM_RUN_DIR=DIR``
in the environment makes a script continue the run in DIR instead. Scripts pass no
``--seed``: the trainer draws a fresh one per run (a resumed run takes it from its checkpoint).
"""

from __future__ import annotations

import re
import shlex
import sys
from dataclasses import dataclass, field
from pathlib import Path

from deepcam_hvd.config import read_config_file
from deepcam_hvd.errors import ConfigError
from deepcam_hvd.jobs.systems import System, jobs_dir
from deepcam_hvd.presets import PRESETS
from deepcam_hvd.resources import Traversable

PLACEHOLDER = re.compile(r"\{\{\s*([a-z_]+)(\?)?\s*\}\}")
TIME = re.compile(r"^(?:(\d+)-)?(\d{1,3}):(\d{2}):(\d{2})$")
SAFE_WORD = re.compile(r"^[A-Za-z0-9_.+-]+$")
DEFAULT_SIGNAL_S = 300
DEFAULT_OUTPUT_ROOT = "runs"
WORKLOADS = ("deepcam", "cosmoflow")
DEFAULT_WORKLOAD = "deepcam"
TRAIN_COMMANDS = {"deepcam": "deepcam-hvd train", "cosmoflow": "deepcam-hvd cosmoflow train"}
INFO_COMMANDS = {"deepcam": "deepcam-hvd info", "cosmoflow": "deepcam-hvd cosmoflow info"}
#: The install profile (backends/profiles/) whose venv a GPU job runs in, by GPU kind and
#: workload: one venv cannot hold torch's CUDA 13 build and TensorFlow's CUDA 12.2 build
#: (backends/README.md, "GPU profiles and TensorFlow"); there is no TensorFlow ROCm profile.
GPU_PROFILES = {("cuda", "deepcam"): "nvidia-nccl", ("rocm", "deepcam"): "amd-rccl",
                ("cuda", "cosmoflow"): "nvidia-nccl-tf"}
#: Written by backends/install.sh into the venv: the profile it was installed with.
PROFILE_MARKER = ".deepcam-profile"
TITLES = {"deepcam": "DeepCAM", "cosmoflow": "CosmoFlow"}
DATA_LAYOUTS = {"deepcam": "train/, validation/, stats.h5",
                "cosmoflow": "train/ and validation/ of TFRecord or .npy samples"}


@dataclass
class RenderRequest:
    """What the user asked ``jobs render`` for; None means the system's default."""

    system: str
    nodes: int
    workload: str = DEFAULT_WORKLOAD
    preset: str | None = None
    data: str | None = None
    time: str | None = None
    account: str | None = None
    partition: str | None = None
    qos: str | None = None
    tasks_per_node: int | None = None
    cpus_per_task: int | None = None
    config: str | None = None
    output_root: str | None = None
    job_name: str | None = None
    venv: str | None = None
    hosts: str | None = None
    srun_mpi: str | None = None
    modules: list[str] | None = None
    signal_seconds: int = DEFAULT_SIGNAL_S
    info_step: bool = True
    workdir: str | None = None
    train_args: list[str] = field(default_factory=list)


def parse_time(text: str) -> int:
    """Seconds in a Slurm time limit ``HH:MM:SS`` or ``D-HH:MM:SS``; ConfigError otherwise."""
    match = TIME.match(text.strip())
    if not match:
        raise ConfigError(f"--time {text!r} is not HH:MM:SS or D-HH:MM:SS")
    days, hours, minutes, seconds = (int(g) if g else 0 for g in match.groups())
    if minutes >= 60 or seconds >= 60:
        raise ConfigError(f"--time {text!r}: minutes and seconds must be below 60")
    total = ((days * 24 + hours) * 60 + minutes) * 60 + seconds
    if total <= 0:
        raise ConfigError(f"--time {text!r} must be longer than zero")
    return total


def _word(option: str, value: str) -> str:
    """A value that goes into an ``#SBATCH`` line verbatim: no spaces or shell characters."""
    if not SAFE_WORD.match(value):
        raise ConfigError(f"{option} {value!r} may only hold letters, digits and _ . + -")
    return value


def _check_preset(name: str, ranks: int) -> None:
    if name not in PRESETS:
        raise ConfigError(f"--preset {name!r} is not known; choose one of {', '.join(PRESETS)}")
    global_batch = PRESETS[name].get("global_batch_size", 0)
    if global_batch and global_batch % ranks:
        raise ConfigError(f"--preset {name} fixes the global batch at {global_batch}, which "
                          f"{ranks} ranks cannot split evenly; choose a node count whose "
                          f"rank count divides {global_batch}")


def _layout(system: System, req: RenderRequest) -> tuple[int, int]:
    tasks = req.tasks_per_node if req.tasks_per_node is not None else system.tasks_per_node
    cpus = req.cpus_per_task if req.cpus_per_task is not None else system.cpus_per_task
    if tasks < 1 or cpus < 1:
        raise ConfigError("--tasks-per-node and --cpus-per-task must be at least 1")
    if system.gpus_per_node and tasks > system.gpus_per_node:
        raise ConfigError(f"{system.name} has {system.gpus_per_node} GPUs per node: at most "
                          f"one rank per GPU (--tasks-per-node <= {system.gpus_per_node})")
    return tasks, cpus


def _time(system: System, req: RenderRequest) -> str:
    text = req.time or system.time
    if system.launcher != "slurm":
        return text or ""
    if not text:
        raise ConfigError(f"--time is required for {system.name}")
    seconds = parse_time(text)
    if system.max_time and seconds > parse_time(system.max_time):
        raise ConfigError(f"--time {text} is longer than {system.name}'s limit "
                          f"{system.max_time}")
    if seconds <= req.signal_seconds:
        raise ConfigError(f"--time {text} leaves no room for the {req.signal_seconds} s "
                          "stop warning (--signal-seconds): ask for more time")
    return text.strip()


def _workload(system: System, req: RenderRequest) -> str:
    """The workload to train; CosmoFlow only where the install can run it distributed."""
    if req.workload not in WORKLOADS:
        raise ConfigError(f"--workload {req.workload!r} is not one of {', '.join(WORKLOADS)}")
    if system.gpus_per_node and (system.hardware.gpu_kind, req.workload) not in GPU_PROFILES:
        raise ConfigError(f"--workload {req.workload}: {system.name} has "
                          f"{system.hardware.accelerator} GPUs and there is no install profile "
                          f"for {TITLES[req.workload]} on them (TensorFlow's ROCm build is "
                          "untried, backends/README.md); render it for a CPU or NVIDIA system")
    if req.workload == "cosmoflow" and req.config:
        raise ConfigError("--config is read by DeepCAM's train only; give CosmoFlow's "
                          "settings after '--' (e.g. -- --max_epochs 64)")
    return req.workload


def _preset(system: System, req: RenderRequest, workload: str, ranks: int) -> str:
    """The DeepCAM preset to pass ("" for none); CosmoFlow has none."""
    if workload != "deepcam":
        if req.preset:
            raise ConfigError(f"--preset {req.preset} is a DeepCAM preset; --workload "
                              f"{workload} takes none")
        return ""
    preset = system.preset if req.preset is None else req.preset
    if preset:
        _check_preset(preset, ranks)
    return preset


def _data(system: System, req: RenderRequest, workload: str, workdir: Path) -> str:
    """The data root: --data, else the site's copy for the workload; absolute."""
    data = req.data or (system.cosmoflow_data if workload == "cosmoflow" else system.data)
    if not data:
        raise ConfigError(f"--data is required for {system.name} (no shared "
                          f"{TITLES[workload]} data set is known there): the data root with "
                          f"{DATA_LAYOUTS[workload]}")
    return data if Path(data).is_absolute() else str(workdir / data)


def _train_args(req: RenderRequest, workload: str, preset: str, run_tag: str) -> list[str]:
    """Options after the data and output directories: DeepCAM's run tag, preset and settings
    file, then the user's (CosmoFlow's train takes none of the three)."""
    if workload == "cosmoflow":
        return list(req.train_args)
    args = ["--run_tag", run_tag]
    if preset:
        args += ["--preset", preset]
    if req.config:
        path = Path(req.config).resolve()
        read_config_file(path)  # refuse a missing or malformed file now, not in the queue
        args += ["--config", str(path)]
    return args + list(req.train_args)


def render_values(system: System, req: RenderRequest) -> dict[str, str]:
    """Every placeholder's value for ``req`` on ``system``; ConfigError on bad input."""
    if not system.renderable:
        raise ConfigError(f"{system.name} is a description for the scaling model only "
                          "(no job template)")
    if req.nodes < 1:
        raise ConfigError(f"--nodes must be at least 1, got {req.nodes}")
    if system.max_nodes and req.nodes > system.max_nodes:
        raise ConfigError(f"--nodes {req.nodes} is more than {system.name} allows "
                          f"({system.max_nodes})")
    if req.signal_seconds < 0:
        raise ConfigError("--signal-seconds must not be negative")
    workload = _workload(system, req)
    tasks, cpus = _layout(system, req)
    ranks = req.nodes * tasks
    preset = _preset(system, req, workload, ranks)
    workdir = Path(req.workdir or Path.cwd()).resolve()
    data = _data(system, req, workload, workdir)
    run_name = f"{system.name}-{req.nodes}n" + (f"-{preset}" if preset else "")
    job_name = _word("--job-name", req.job_name or f"{workload}-{run_name}")
    output_root = Path(req.output_root or DEFAULT_OUTPUT_ROOT)
    if not output_root.is_absolute():
        output_root = workdir / output_root
    modules = system.modules if req.modules is None else tuple(req.modules)
    hosts = req.hosts or ""
    if hosts and len(hosts.split(",")) != req.nodes:
        raise ConfigError(f"--hosts names {len(hosts.split(','))} host(s) but --nodes is "
                          f"{req.nodes}")
    if system.launcher in ("mpirun", "horovodrun") and req.nodes > 1 and not hosts:
        raise ConfigError(f"--hosts h1,h2,... is required for {system.name} on more than "
                          "one node")
    srun_mpi = system.srun_mpi if req.srun_mpi is None else req.srun_mpi
    venv = Path(req.venv).resolve() if req.venv else Path(sys.prefix)
    optional = {"account": req.account, "partition": req.partition or system.partition,
                "qos": req.qos or system.qos_for(req.nodes), "constraint": system.constraint}
    values = {key: _word(f"--{key}", value) if value else "" for key, value in optional.items()}
    values.update({
        "system": system.name,
        "description": system.description,
        "workload": workload,
        "workload_title": TITLES[workload],
        "train_command": TRAIN_COMMANDS[workload],
        "info_command": INFO_COMMANDS[workload],
        "profile": job_profile(system, workload),
        "cosmoflow": TITLES["cosmoflow"] if workload == "cosmoflow" else "",
        "command_line": command_line(req),
        "job_name": job_name,
        "nodes": str(req.nodes),
        "tasks_per_node": str(tasks),
        "cpus_per_task": str(cpus),
        "ntasks": str(ranks),
        "gpus_per_node": str(system.gpus_per_node),
        "gpus_total": str(system.gpus_per_node * req.nodes),
        "time": _time(system, req),
        "signal_seconds": str(req.signal_seconds),
        "workdir": str(workdir),
        "module_lines": "\n".join(f"module load {shlex.quote(m)}" for m in modules),
        "venv": shlex.quote(str(venv)),
        "data": shlex.quote(data),
        "output_root": shlex.quote(str(output_root)),
        "train_args": " ".join(map(shlex.quote, _train_args(req, workload, preset, run_name))),
        "srun_mpi_option": f"--mpi={_word('--srun-mpi', srun_mpi)}" if srun_mpi else "",
        "hosts": shlex.quote(hosts) if hosts else "",
        "info_step": "1" if req.info_step else "0",
    })
    return values


def job_profile(system: System, workload: str) -> str:
    """The install profile a GPU job of ``workload`` needs ("" on CPU systems)."""
    if not system.gpus_per_node:
        return ""
    return GPU_PROFILES[(system.hardware.gpu_kind, workload)]


def venv_warning(system: System, req: RenderRequest) -> str | None:
    """A line when ``--venv`` (or this venv) says it was installed with another profile than
    the GPU job needs; None when it matches, or cannot tell (no marker: a site's own install,
    or a venv that lives on the cluster only)."""
    if not system.gpus_per_node or req.workload not in WORKLOADS:
        return None
    venv = Path(req.venv).resolve() if req.venv else Path(sys.prefix)
    try:
        have = (venv / PROFILE_MARKER).read_text().strip()
    except OSError:
        return None
    need = GPU_PROFILES.get((system.hardware.gpu_kind, req.workload))
    if need is None or have == need:
        return None
    return (f"{venv} was installed with profile {have}, but a {TITLES[req.workload]} job on "
            f"{system.name} needs one installed with DEEPCAM_BACKEND={need} "
            "(backends/README.md); pass that venv as --venv")


def command_line(req: RenderRequest) -> str:
    """The ``deepcam-hvd jobs render`` command that reproduces ``req``."""
    parts = ["deepcam-hvd", "jobs", "render", req.system, "--nodes", str(req.nodes)]
    if req.workload != DEFAULT_WORKLOAD:
        parts += ["--workload", req.workload]
    for option, value in (("--preset", req.preset), ("--data", req.data),
                          ("--time", req.time), ("--account", req.account),
                          ("--partition", req.partition), ("--qos", req.qos),
                          ("--tasks-per-node", req.tasks_per_node),
                          ("--cpus-per-task", req.cpus_per_task), ("--config", req.config),
                          ("--output-root", req.output_root), ("--job-name", req.job_name),
                          ("--hosts", req.hosts), ("--srun-mpi", req.srun_mpi)):
        if value is not None:
            parts += [option, str(value)]
    for module in req.modules or []:
        parts += ["--module", module]
    if req.signal_seconds != DEFAULT_SIGNAL_S:
        parts += ["--signal-seconds", str(req.signal_seconds)]
    if not req.info_step:
        parts.append("--no-info")
    if req.train_args:
        parts += ["--", *req.train_args]
    return " ".join(shlex.quote(p) for p in parts)


def fill(template: str, values: dict[str, str]) -> str:
    """Substitute placeholders; drop lines whose optional placeholder is empty."""
    out: list[str] = []
    for line in template.splitlines():
        names = PLACEHOLDER.findall(line)
        if any(optional and not values.get(name) for name, optional in names):
            continue
        missing = [name for name, _ in names if name not in values]
        if missing:
            raise ConfigError(f"job template uses unknown placeholder(s) {', '.join(missing)}")
        if len(names) == 1 and PLACEHOLDER.fullmatch(line.strip()) and not values[names[0][0]]:
            continue  # a block placeholder (module lines) with nothing in it
        filled = PLACEHOLDER.sub(lambda m: values[m.group(1)], line)
        out.append(filled.rstrip() if names else filled)
    return "\n".join(out) + "\n"


def render(system: System, req: RenderRequest, templates: Traversable | None = None) -> str:
    """The job script for ``req`` on ``system``."""
    values = render_values(system, req)
    path = (templates or jobs_dir() / "templates") / system.template
    try:
        template = path.read_text()
    except OSError as exc:
        raise ConfigError(f"job template {path}: {exc.strerror}") from None
    return fill(template, values)
