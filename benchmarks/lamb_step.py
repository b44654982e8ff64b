"""LAMB's update over the full DeepCAM model's parameters: one tensor at a time against all at
once (``torch._foreach_*``), on the CPU or a GPU.

    python benchmarks/lamb_step.py [--device cuda] [--steps 20] [--output lamb_step.json]

Random gradients stand in for backward; each round times ``--steps`` optimizer steps of each
implementation, the two alternating so that a drifting clock or load hits both; medians over
``--rounds``. The GPU check runs it (stage ``lamb_step``) to decide whether all-at-once pays.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

from deepcam_hvd.model import build_model
from deepcam_hvd.train.lamb import LAMB


def time_steps(foreach: bool, device: torch.device, steps: int) -> float:
    """Seconds per LAMB step (after one untimed step) with random gradients."""
    torch.manual_seed(5)
    params = list(build_model("deeplab-xception", 16, 3).to(device).parameters())
    for p in params:
        p.grad = torch.randn_like(p) * 1e-3
    opt = LAMB(params, lr=1e-3, weight_decay=0.01, foreach=foreach)
    opt.step()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    for _ in range(steps):
        opt.step()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return (time.perf_counter() - start) / steps


def main(argv: list[str]) -> int:
    """Time both implementations; print and optionally write the JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--output", type=Path, default=None)
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    seconds: dict[str, list[float]] = {"one_at_a_time": [], "all_at_once": []}
    for _ in range(args.rounds):
        seconds["one_at_a_time"].append(time_steps(False, device, args.steps))
        seconds["all_at_once"].append(time_steps(True, device, args.steps))
    each, together = (statistics.median(seconds[k]) for k in ("one_at_a_time", "all_at_once"))
    doc = {"device": str(device), "torch": torch.__version__, "steps": args.steps,
           "rounds": args.rounds, "seconds_per_step": seconds,
           "median_one_at_a_time_s": each, "median_all_at_once_s": together,
           "speedup": each / together,
           "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else None}
    text = json.dumps(doc, indent=2)
    print(text)
    if args.output:
        args.output.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
