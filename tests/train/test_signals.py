"""Stop requests and the ranks' agreement on them (train/signals.py)."""

from __future__ import annotations

import os
import signal
from collections.abc import Callable

import torch

from deepcam_hvd.distributed.local import LocalBackend
from deepcam_hvd.train.signals import StopAgreement, StopRequest


class PeerGotSignal(LocalBackend):
    """One rank of two, whose peer holds ``peer`` (one flag per stop signal)."""

    def __init__(self, peer: list[float]) -> None:
        super().__init__()
        self.peer = torch.tensor(peer)
        self.sent: list[list[float]] = []

    def allreduce_start(self, tensor: torch.Tensor, op: str = "sum",
                        name: str = "pending") -> Callable[[], torch.Tensor]:
        self.sent.append(tensor.tolist())
        return lambda: tensor + self.peer


def test_every_rank_names_the_signal_another_rank_received() -> None:
    backend = PeerGotSignal([0.0, 1.0])  # STOP_SIGNALS = (SIGTERM, SIGUSR1): peer got USR1
    agreement = StopAgreement(StopRequest(), backend)
    agreement.start()
    assert backend.sent == [[0.0, 0.0]]  # this rank received nothing
    assert agreement.agreed() and agreement.signal_name == "SIGUSR1"


def test_no_request_anywhere_is_no_stop() -> None:
    agreement = StopAgreement(StopRequest(), PeerGotSignal([0.0, 0.0]))
    assert not agreement.agreed()  # nothing started yet
    agreement.start()
    assert not agreement.agreed() and agreement.signal_name is None


def test_a_received_signal_is_sent_in_its_own_slot() -> None:
    request = StopRequest().install()
    try:
        os.kill(os.getpid(), signal.SIGTERM)
        backend = PeerGotSignal([0.0, 1.0])
        agreement = StopAgreement(request, backend)
        agreement.start()
        assert backend.sent == [[1.0, 0.0]]
        assert agreement.agreed() and agreement.signal_name == "SIGTERM"  # the first listed
    finally:
        request.uninstall()
