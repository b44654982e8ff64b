"""Peak memory and device facts of a step benchmark.

On a GPU the figure that says whether a local batch fits is the caching allocator's peak,
``torch.cuda.max_memory_allocated`` (tensors alive at the worst moment), next to what the
allocator reserved from the driver and what the device has. On the CPU there is no allocator
peak to read; the process's peak resident set size stands in (it includes everything the
process ever held, the Python interpreter and the model build among it).
"""

from __future__ import annotations

import resource
import sys
from typing import Any

import torch


def reset_peak(device: torch.device) -> None:
    """Start counting the device's peak allocation afresh (no-op on the CPU)."""
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def _max_rss_bytes() -> int:
    """Peak resident set size of this process (``ru_maxrss`` is KiB on Linux, bytes on macOS)."""
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(rss if sys.platform == "darwin" else rss * 1024)


def peak_memory(device: torch.device) -> dict[str, int | None]:
    """Peak memory since the last :func:`reset_peak`, in bytes.

    ``max_memory_allocated_bytes`` and ``max_memory_reserved_bytes`` are ``None`` on the CPU;
    ``max_rss_bytes`` is always the process's peak resident set size.
    """
    figures: dict[str, int | None] = {
        "max_memory_allocated_bytes": None,
        "max_memory_reserved_bytes": None,
        "device_total_memory_bytes": None,
        "max_rss_bytes": _max_rss_bytes(),
    }
    if device.type == "cuda":
        figures["max_memory_allocated_bytes"] = int(torch.cuda.max_memory_allocated(device))
        figures["max_memory_reserved_bytes"] = int(torch.cuda.max_memory_reserved(device))
        figures["device_total_memory_bytes"] = int(
            torch.cuda.get_device_properties(device).total_memory)
    return figures


def device_facts(device: torch.device) -> dict[str, Any]:
    """What the step ran on: GPU name and capability, CUDA/cuDNN versions and the TF32 flags
    that decide how fp32 convolutions and matrix products are computed."""
    facts: dict[str, Any] = {"device_name": None, "compute_capability": None,
                             "cuda": torch.version.cuda, "cudnn": None,
                             "cudnn_benchmark": bool(torch.backends.cudnn.benchmark),
                             "cudnn_allow_tf32": bool(torch.backends.cudnn.allow_tf32),
                             "matmul_allow_tf32": bool(torch.backends.cuda.matmul.allow_tf32)}
    if device.type == "cuda":
        major, minor = torch.cuda.get_device_capability(device)
        facts["device_name"] = torch.cuda.get_device_name(device)
        facts["compute_capability"] = f"{major}.{minor}"
        facts["cudnn"] = torch.backends.cudnn.version()
    return facts


def is_out_of_memory(exc: BaseException) -> bool:
    """Whether ``exc`` is the GPU running out of memory (torch's own type, or the bare
    RuntimeError some kernels still raise)."""
    if isinstance(exc, torch.cuda.OutOfMemoryError):
        return True
    return isinstance(exc, RuntimeError) and "out of memory" in str(exc).lower()


def gib(value: int | None) -> str:
    """``value`` bytes as GiB with two decimals, or 'n/a'."""
    return "n/a" if value is None else f"{value / 2**30:.2f} GiB"
