"""How the model runs on the hardware (never what it computes): memory formats and in-place ops.

The options are read at every forward pass, so one model can be timed both ways in one process
(``benchmarks/step_vs_reference.py`` does). None of them changes the parameters, the
``state_dict`` or the mathematics; results differ only by floating-point summation order.

All options are **off by default**: each is faster for some layers in isolation
(``benchmarks/layer_formats.py``), but no whole training step measured faster with them on the
2-core AVX2 test machine, idle, on jemalloc (``benchmarks/RESULTS.md``, "Measured and left
off"), so the default path is the reference's arithmetic.
Turn them on for a block with :func:`execution`, or for the process with :func:`set_execution`:

* ``channels_last``: run the encoder and ASPP in the channels-last (NHWC) layout. oneDNN's
  depthwise, pointwise and dilated convolutions measured 1.4-2.2x faster in NHWC than in NCHW
  on CPU at the full-size network's shapes.
* ``split_backward``: dense 3x3 convolutions and transposed convolutions of the decoder run
  their forward pass in NHWC (1.5-2.7x faster) but their backward pass in NCHW, which measured
  2-4x faster than NHWC's on CPU.
* ``inplace``: ReLUs after batch-norm / affine layers overwrite their input (the reference
  allocates a new full-resolution tensor for each).

The two layout choices apply to CPU training passes only (autograd recording): inference and
validation, and every GPU pass, run in NCHW as before. NHWC changes the order of floating-point
sums, which moves the logits by ~5e-5 of their magnitude at 768x1152 (the loss after a training
step by ~3e-5 relative, see ``benchmarks/RESULTS.md``), more than the 1e-4 absolute tolerance of
the forward-equivalence test against the reference, which therefore still sees the NCHW path.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Iterator
from dataclasses import dataclass


@dataclass(frozen=True)
class Execution:
    """Execution choices of the model (see the module docstring)."""

    channels_last: bool = False
    split_backward: bool = False
    inplace: bool = False


#: The unoptimised path: contiguous NCHW everywhere, out-of-place ReLUs, as the reference.
REFERENCE_EXECUTION = Execution()
#: Every option on (what ``benchmarks/step_vs_reference.py`` calls ``all``).
OPTIMISED_EXECUTION = Execution(channels_last=True, split_backward=True, inplace=True)

_current: Execution = Execution()


def current_execution() -> Execution:
    """The options forward passes use now."""
    return _current


def set_execution(options: Execution) -> Execution:
    """Make ``options`` current for every later forward pass; returns the previous ones."""
    global _current
    previous, _current = _current, options
    return previous


@contextlib.contextmanager
def execution(options: Execution | None = None, **changes: bool) -> Iterator[Execution]:
    """Within the block, forward passes use ``options`` (default: the current ones) with
    ``changes`` applied, e.g. ``with execution(channels_last=False): model(x)``."""
    chosen = dataclasses.replace(options or _current, **changes)
    previous = set_execution(chosen)
    try:
        yield chosen
    finally:
        set_execution(previous)

