"""Forward and backward time of the network's layer kinds, NCHW against NHWC (channels-last).

The shapes are the full-size (768x1152) network's: depthwise and pointwise convolutions of the
entry and middle flow, a dilated ASPP convolution, the decoder's dense 3x3 and transposed
convolutions and a batch-norm. These per-layer figures motivated the layout experiments of
``benchmarks/RESULTS.md`` ("Measured and left off"), which did not pay for a whole step; the model
runs in the reference's NCHW layout unless the trainer's ``--channels_last`` converts all of it.
Best of ``--repeats`` calls after one warm-up call.

    .venv/bin/python benchmarks/layer_formats.py [--threads 2] [--repeats 3] [--only NAME,...]

Writes ``benchmarks/results/layer_formats.json`` (or ``--output``) and prints a table.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import torch
from torch import nn

RESULTS = Path(__file__).resolve().parent / "results" / "layer_formats.json"


def cases() -> dict[str, tuple[nn.Module, tuple[int, int, int, int]]]:
    """Layer kinds of the full-size network with their input shapes."""
    deconv = {"stride": 2, "padding": 1, "output_padding": 1, "bias": False}
    return {
        "pointwise 728->728 @48x72": (nn.Conv2d(728, 728, 1, bias=False), (1, 728, 48, 72)),
        "pointwise 128->128 @384x576": (nn.Conv2d(128, 128, 1, bias=False), (1, 128, 384, 576)),
        "depthwise 728 @48x72": (nn.Conv2d(728, 728, 3, padding=1, groups=728, bias=False),
                                 (1, 728, 48, 72)),
        "depthwise 128 @384x576": (nn.Conv2d(128, 128, 3, padding=1, groups=128, bias=False),
                                   (1, 128, 384, 576)),
        "ASPP 3x3 d12 2048->256 @48x72": (
            nn.Conv2d(2048, 256, 3, padding=12, dilation=12, bias=False), (1, 2048, 48, 72)),
        "decoder 3x3 256->256 @192x288": (nn.Conv2d(256, 256, 3, padding=1, bias=False),
                                          (1, 256, 192, 288)),
        "deconv 256->256 @192x288": (nn.ConvTranspose2d(256, 256, 3, **deconv),
                                     (1, 256, 192, 288)),
        "deconv 256->3 @384x576": (nn.ConvTranspose2d(256, 3, 3, **deconv), (1, 256, 384, 576)),
        "batch-norm 128 @384x576": (nn.BatchNorm2d(128), (1, 128, 384, 576)),
    }


def time_layer(module: nn.Module, shape: tuple[int, ...], fmt: torch.memory_format,
               repeats: int) -> tuple[float, float]:
    """Best forward and backward seconds of ``module`` on a random input in ``fmt``."""
    module = module.to(memory_format=fmt)
    x = torch.randn(shape).contiguous(memory_format=fmt).requires_grad_()
    forward, backward = [], []
    for i in range(repeats + 1):
        t0 = time.perf_counter()
        y = module(x)
        t1 = time.perf_counter()
        grad = torch.ones_like(y)
        t2 = time.perf_counter()
        y.backward(grad)
        t3 = time.perf_counter()
        if i:
            forward.append(t1 - t0)
            backward.append(t3 - t2)
        x.grad = None
        module.zero_grad()
    return min(forward), min(backward)


def main() -> None:
    """Time every case in both layouts, write the JSON and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--only", default="", help="comma-separated case names")
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    rows = []
    print("| layer | NCHW fwd ms | NCHW bwd ms | NHWC fwd ms | NHWC bwd ms |")
    print("|---|---|---|---|---|")
    for name, (module, shape) in cases().items():
        if args.only and name not in args.only.split(","):
            continue
        nchw = time_layer(module, shape, torch.contiguous_format, args.repeats)
        nhwc = time_layer(module, shape, torch.channels_last, args.repeats)
        rows.append({"layer": name, "nchw_forward_s": nchw[0], "nchw_backward_s": nchw[1],
                     "nhwc_forward_s": nhwc[0], "nhwc_backward_s": nhwc[1],
                     "load_average": list(os.getloadavg())})
        print(f"| {name} | {1e3 * nchw[0]:.0f} | {1e3 * nchw[1]:.0f} | {1e3 * nhwc[0]:.0f} | "
              f"{1e3 * nhwc[1]:.0f} |", flush=True)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps({"threads": args.threads, "rows": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
