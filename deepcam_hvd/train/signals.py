"""Graceful stop on SIGTERM / SIGUSR1 (what Slurm sends before the time limit with --signal)."""

from __future__ import annotations

import signal
from types import FrameType
from typing import Any

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
