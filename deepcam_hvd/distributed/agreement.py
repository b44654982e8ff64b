"""Small helpers so that a failure on one rank fails every rank instead of hanging the others."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from deepcam_hvd.distributed.communicator import Communicator
from deepcam_hvd.errors import DataError, DeepcamError

T = TypeVar("T")


def agree(backend: Communicator, error: str | None) -> None:
    """Collective: raise DataError on every rank if any rank passes an error message.

    The message raised is the lowest failing rank's, with the number of failing ranks.
    """
    errors = backend.allgather_object(error)
    failed = [(rank, msg) for rank, msg in enumerate(errors) if msg is not None]
    if failed:
        rank, msg = failed[0]
        more = f" (and {len(failed) - 1} more rank(s) failed)" if len(failed) > 1 else ""
        raise DataError(f"{msg}{more}" if rank == backend.rank else f"rank {rank}: {msg}{more}")


def run_agreed(backend: Communicator, step: Callable[[], T]) -> T | None:
    """Collective: run ``step`` here, then fail on every rank if it failed on any.

    ``step`` should only raise DeepcamError (or OSError) for problems the user can fix.
    """
    result: T | None = None
    error: str | None = None
    try:
        result = step()
    except DeepcamError as exc:
        error = str(exc)
    except OSError as exc:
        error = f"{exc.filename or ''}: {exc.strerror or exc}".lstrip(": ")
    agree(backend, error)
    return result


def run_on_root(backend: Communicator, action: Callable[[], None], what: str) -> None:
    """Collective: run ``action`` on rank 0 only, then fail on every rank if it failed there.

    For rank-0 work that peers must not wait on alone (output directory, checkpoint writes).
    An OSError becomes one line naming its file, or ``what`` when it names none.
    """
    error: str | None = None
    if backend.is_root:
        try:
            action()
        except DeepcamError as exc:
            error = str(exc)
        except OSError as exc:
            error = f"{getattr(exc, 'filename', '') or what}: {exc.strerror or exc}"
    error = backend.broadcast_object(error, root=0)
    if error is not None:
        raise DataError(error)
