"""The process's memory allocator: jemalloc keeping freed pages, or the system's malloc.

Why it matters on CPU: a training step at 768x1152 allocates and frees full-resolution
activations and gradients of up to 226 MB each. glibc's malloc serves every block above 32 MB
with ``mmap`` and unmaps it on ``free``, so each step the kernel hands out and zero-fills
gigabytes of fresh pages. Measured on the 2-core test machine (``benchmarks/allocator_step.py``,
``benchmarks/RESULTS.md``): 2.6-3.0 million page faults and 17-20 s of system time in a 33-35 s
step. jemalloc with page purging off reuses freed pages; the same step took 18-20 s, with
bit-identical losses.

A preloaded malloc only takes effect when a program starts, so the ``deepcam-hvd`` entry point
calls :func:`exec_with_allocator` before anything imports torch. It re-executes the same command
line once with ``LD_PRELOAD`` set; the process id, open files and environment stay, so MPI
launchers, Slurm and ``horovodrun`` see the same process.

``DEEPCAM_ALLOCATOR`` chooses: ``auto`` (default: jemalloc when installed, else the system malloc
with transparent huge pages for large tensors), ``jemalloc`` (required; an error if missing),
``system`` (no change), or the path of a malloc library to preload. ``MALLOC_CONF``, when set,
is left as the user gave it.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from deepcam_hvd.errors import ConfigError

CHOICE_VARIABLE = "DEEPCAM_ALLOCATOR"
#: Set on the re-executed process: the library it asked the loader to preload.
ACTIVE_VARIABLE = "DEEPCAM_ALLOCATOR_PRELOADED"
#: Never give freed pages back to the kernel: the next step needs the same sizes again.
JEMALLOC_CONF = "dirty_decay_ms:-1,muzzy_decay_ms:-1"
JEMALLOC_NAME = "libjemalloc.so.2"
JEMALLOC_DIRS = (
    "/usr/lib/x86_64-linux-gnu",
    "/usr/lib/aarch64-linux-gnu",
    "/usr/lib64",
    "/usr/lib",
    "/usr/local/lib",
    "/opt/homebrew/lib",
)
THP_SETTING = Path("/sys/kernel/mm/transparent_hugepage/enabled")


@dataclass(frozen=True)
class AllocatorPlan:
    """What the process should run on: ``library`` to preload (None: none) and variables to set."""

    name: str
    library: str | None = None
    env: dict[str, str] = field(default_factory=dict)


def find_jemalloc(dirs: Sequence[str] = JEMALLOC_DIRS, prefix: str = sys.prefix) -> str | None:
    """Path of an installed jemalloc (system library directories, then the environment's lib)."""
    for directory in (*dirs, os.path.join(prefix, "lib")):
        candidate = os.path.join(directory, JEMALLOC_NAME)
        if os.path.isfile(candidate):
            return candidate
    return None


def _huge_pages_available(setting: Path = THP_SETTING) -> bool:
    """Whether the kernel lets a process ask for transparent huge pages (madvise or always)."""
    try:
        return "[never]" not in setting.read_text()
    except OSError:
        return False


def plan_allocator(env: Mapping[str, str], jemalloc: str | None = None,
                   huge_pages: bool | None = None) -> AllocatorPlan:
    """Decide the allocator from ``DEEPCAM_ALLOCATOR`` in ``env``; a bad value raises ConfigError.

    ``jemalloc`` (its path, "" for none) and ``huge_pages`` default to what this machine has.
    """
    choice = env.get(CHOICE_VARIABLE, "auto").strip() or "auto"
    if choice == "system":
        return AllocatorPlan("system")
    if choice in ("auto", "jemalloc"):
        library = jemalloc if jemalloc is not None else find_jemalloc()
        if not library:
            if choice == "jemalloc":
                raise ConfigError(f"{CHOICE_VARIABLE}=jemalloc but no {JEMALLOC_NAME} was found "
                                  f"in {', '.join(JEMALLOC_DIRS)}; install it (Debian/Ubuntu: "
                                  "apt-get install libjemalloc2) or give its path")
            thp = _huge_pages_available() if huge_pages is None else huge_pages
            # torch then asks for 2 MB pages for large tensors: 512x fewer page faults.
            return AllocatorPlan("system+hugepages", env={"THP_MEM_ALLOC_ENABLE": "1"}) if thp \
                else AllocatorPlan("system")
        return AllocatorPlan("jemalloc", library, {"MALLOC_CONF": JEMALLOC_CONF})
    if "/" in choice:
        if not os.path.isfile(choice):
            raise ConfigError(f"{CHOICE_VARIABLE}={choice}: no such file")
        name = "jemalloc" if "jemalloc" in os.path.basename(choice) else "preloaded"
        return AllocatorPlan(name, choice, {"MALLOC_CONF": JEMALLOC_CONF}
                             if name == "jemalloc" else {})
    raise ConfigError(f"{CHOICE_VARIABLE}={choice!r} is not one of auto, jemalloc, system "
                      "or the path of a malloc library")


def preload_environment(plan: AllocatorPlan, env: Mapping[str, str]) -> dict[str, str] | None:
    """The environment to re-execute with, or None when this process already runs as planned."""
    if plan.library is None:
        return None
    preloaded = env.get("LD_PRELOAD", "").replace(":", " ").split()
    if plan.library in preloaded or env.get(ACTIVE_VARIABLE) == plan.library:
        return None  # done already (by us, by the user, or the loader refused it: no loop)
    new = dict(env)
    new["LD_PRELOAD"] = " ".join([plan.library, *preloaded])
    for key, value in plan.env.items():
        new.setdefault(key, value)
    new[ACTIVE_VARIABLE] = plan.library
    return new


def exec_with_allocator() -> None:
    """Make this process run on the planned allocator: re-execute it once if a library must be
    preloaded, else set the plan's variables in place. Call before torch is imported."""
    plan = plan_allocator(os.environ)
    new_env = preload_environment(plan, os.environ)
    if new_env is None:
        if plan.library is None:
            for key, value in plan.env.items():
                os.environ.setdefault(key, value)
        return
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(sys.executable, [sys.executable, *sys.orig_argv[1:]], new_env)


def active_allocator(maps: Path = Path("/proc/self/maps")) -> str:
    """The malloc this process really runs on: ``jemalloc``, ``tcmalloc`` or ``system``."""
    try:
        mapped = maps.read_text()
    except OSError:
        return "unknown"
    for name in ("jemalloc", "tcmalloc", "mimalloc"):
        if f"lib{name}" in mapped:
            return name
    huge = os.environ.get("THP_MEM_ALLOC_ENABLE") == "1"
    return "system+hugepages" if huge else "system"
