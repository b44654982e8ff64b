"""Graceful stop on SIGTERM / SIGUSR1 (what Slurm sends before the time limit with --signal)."""

from __future__ import annotations

import signal
from collections.abc import Callable
from types import FrameType
from typing import Any

from deepcam_hvd.distributed.communicator import Communicator

# Distinct exit code for "stopped by a signal after checkpointing": rerun to resume.
EXIT_PREEMPTED = 75  # EX_TEMPFAIL: try again later
STOP_SIGNALS = (signal.SIGTERM, signal.SIGUSR1)


class StopRequest:
    """Remembers that a stop signal arrived; the trainer acts on it between steps."""

    def __init__(self) -> None:
        self.signal_name: str | None = None
        self._previous: dict[int, Any] = {}

    def install(self) -> StopRequest:
        """Catch the stop signals in this (main) thread."""
        for sig in STOP_SIGNALS:
            self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum: int, _frame: FrameType | None) -> None:
        self.signal_name = signal.Signals(signum).name

    @property
    def requested(self) -> bool:
        """True once a stop signal has arrived on this rank."""
        return self.signal_name is not None

    def uninstall(self) -> None:
        """Restore the handlers that were there before."""
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()


class StopAgreement:
    """Ranks agree on a stop request without a blocking collective of their own each step.

    ``start()`` at the beginning of a step sends this rank's flag in a background allreduce,
    which Horovod negotiates alongside the step's gradient averaging; ``agreed()`` after the
    optimizer step reads the sum, by then long arrived. Every rank acts on the same sum, so all
    stop after the same step, at most one step after the signal reached any of them.
    """

    def __init__(self, request: StopRequest, backend: Communicator) -> None:
        self.request = request
        self.backend = backend
        self._wait: Callable[[], list[float]] | None = None
        #: The signal the ranks agreed on (the first of STOP_SIGNALS any rank received), the
        #: same on every rank even where this rank received none.
        self.signal_name: str | None = None

    def start(self) -> None:
        """Send this rank's flags, one per stop signal (they travel with the gradients where
        the backend can fuse them)."""
        flags = [1.0 if sig.name == self.request.signal_name else 0.0 for sig in STOP_SIGNALS]
        self._wait = self.backend.start_count_sum(flags, name="stop")

    def agreed(self) -> bool:
        """Whether any rank had a stop request when the current step started."""
        if self._wait is None:
            return False
        wait, self._wait = self._wait, None
        counts = wait()
        for sig, count in zip(STOP_SIGNALS, counts, strict=True):
            if count > 0:
                self.signal_name = sig.name
                return True
        return False
