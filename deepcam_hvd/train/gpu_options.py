"""The GPU speed options of the training path: what each is, what ``auto`` means on which device,
and the one place that turns the settings into what a rank does.

Each option is ``auto``, ``on`` or ``off``. ``auto`` takes the value of :data:`GPU_DEFAULTS` on a
GPU: on only where a measurement on a GPU showed a gain, and that table names the measurement.
On the CPU every option is off (each is about a device's memory or its kernels) and ``on`` is
an error naming the option, as ``--precision fp16`` is.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import get_args

import torch

from deepcam_hvd.config import Switch, TrainConfig
from deepcam_hvd.errors import ConfigError

SWITCH_VALUES: tuple[str, ...] = get_args(Switch)

#: What ``auto`` means on a GPU, and the measurement behind it (None: not yet measured on a
#: GPU, so off). ``benchmarks/gpu_check.sh`` times each against its absence (``bench step
#: --input``/``--cudnn-benchmark``, stages ``feed_*``; ``benchmarks/lamb_step.py``).
GPU_DEFAULTS: dict[str, tuple[bool, str | None]] = {
    "pin_memory": (False, None),
    "device_prefetch": (False, None),
    "cudnn_benchmark": (False, None),
    "lamb_foreach": (False, None),  # benchmarks/lamb_step.py, stage lamb_step
}


@dataclass(frozen=True)
class GpuOptions:
    """The resolved speed options of one rank (all False on the CPU)."""

    pin_memory: bool = False
    device_prefetch: bool = False
    cudnn_benchmark: bool = False
    lamb_foreach: bool = False

    def describe(self, cfg: TrainConfig) -> str:
        """One line: each option's value and where it came from, e.g.
        ``pin_memory off (auto: not measured on a GPU yet)``."""
        parts = []
        for f in fields(self):
            value = "on" if getattr(self, f.name) else "off"
            asked = getattr(cfg, f.name)
            if asked == "auto":
                source = GPU_DEFAULTS[f.name][1]
                why = f"auto: measured, {source}" if source else "auto: not measured on a GPU yet"
            else:
                why = "asked"
            parts.append(f"{f.name} {value} ({why})")
        return ", ".join(parts)

    def apply(self, device: torch.device) -> None:
        """Set the process-wide switches these options stand for (cuDNN's autotuner)."""
        if device.type == "cuda":
            torch.backends.cudnn.benchmark = self.cudnn_benchmark


def resolve_gpu_options(cfg: TrainConfig, device: torch.device) -> GpuOptions:
    """The options a rank on ``device`` runs with, from the config's 'auto'/'on'/'off' values.
    'on' on the CPU is a ConfigError naming the option."""
    values = {}
    for name, (gpu_default, _source) in GPU_DEFAULTS.items():
        asked = getattr(cfg, name)
        if asked not in SWITCH_VALUES:
            raise ConfigError(f"--{name} {asked!r} is not one of {', '.join(SWITCH_VALUES)}")
        if device.type != "cuda":
            if asked == "on":
                raise ConfigError(f"--{name} on needs a GPU (this rank computes on "
                                  f"{device.type}); use auto or off")
            values[name] = False
        else:
            values[name] = gpu_default if asked == "auto" else asked == "on"
    return GpuOptions(**values)
