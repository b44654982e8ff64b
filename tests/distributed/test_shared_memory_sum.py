"""Gradients summed through an MPI shared-memory window (distributed/shared_memory_sum.py)."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
import torch

from deepcam_hvd.distributed.shared_memory_sum import (
    ALIGN,
    _pieces,
    block_floats,
    flat_view,
    window_bytes,
)
from tests.launch import PYTHON, ROOT, results, run_ranks


def test_pieces_split_the_tensors_at_block_edges() -> None:
    ends = [3, 3, 10, 12]  # sizes 3, 0, 7, 2
    assert _pieces(ends, 0, 5) == [(0, 0, 3), (2, 0, 2)]  # the empty tensor has no part
    assert _pieces(ends, 5, 10) == [(2, 2, 7)]
    assert _pieces(ends, 10, 12) == [(3, 0, 2)]
    # every value lands in exactly one piece, in order
    covered = [(i, v) for s in range(0, 12, 4) for i, lo, hi in _pieces(ends, s, min(12, s + 4))
               for v in range(lo, hi)]
    assert covered == [(0, v) for v in range(3)] + [(2, v) for v in range(7)] + \
        [(3, 0), (3, 1)]


def test_blocks_fit_the_window_and_start_on_cache_lines() -> None:
    assert block_floats(2, 1_052_416) == 1_052_416  # the demo's gradients: one round
    full = block_floats(2, 56_500_000)  # the full model's: rounds within 64 MiB
    assert full % ALIGN == 0 and window_bytes(2, full) == 4 * 3 * full <= 64 * 2**20
    assert window_bytes(128, block_floats(128, 56_500_000)) <= 64 * 2**20
    assert block_floats(2, 5) == ALIGN


def test_flat_views_follow_memory_order() -> None:
    plain = torch.arange(24.0).reshape(2, 3, 4)
    assert flat_view(plain).data_ptr() == plain.data_ptr()
    channels_last = torch.randn(2, 3, 4, 5).to(memory_format=torch.channels_last)
    view = flat_view(channels_last)
    assert view is not None and view.numel() == 120
    view.zero_()  # a view: writing it writes the gradient
    assert not channels_last.any()
    assert flat_view(torch.randn(6, 8)[:, ::2]) is None  # strided: no dense run


WORKER = textwrap.dedent("""
    import hashlib, json, sys, torch
    from mpi4py import MPI
    from deepcam_hvd.distributed.shared_memory_sum import (
        SharedMemorySum, open_shared_memory_sum)
    from deepcam_hvd.distributed.mpi_averaging import mpi_gradient_averager

    comm = MPI.COMM_WORLD
    r, p = comm.Get_rank(), comm.Get_size()

    def tensors(seed):
        g = torch.Generator().manual_seed(seed)
        return [torch.randn(37, generator=g), torch.empty(0),
                torch.randn(2, 3, 4, 5, generator=g).to(memory_format=torch.channels_last),
                torch.randn(6, 8, generator=g)[:, ::2], torch.randn(1000, generator=g)]

    mine = tensors(r)
    everyone = [tensors(q) for q in range(p)]
    # what every rank must get: the sum in rank order, then the division
    expected = []
    for i, t in enumerate(mine):
        total = everyone[0][i].clone()
        for q in range(1, p):
            total = total + everyone[q][i]
        expected.append(total / p if i != 4 else total)  # the last one: a plain sum

    out = {}
    for name, block in (("rounds", 32), ("one", None)):
        got = [t.clone() for t in mine]
        if block is None:
            summer, why = open_shared_memory_sum(comm, sum(t.numel() for t in got))
            out["opened"] = why
        else:
            summer = SharedMemorySum(comm, block)
        summer(got, 4)
        out[name] = all(torch.equal(a, b) for a, b in zip(got, expected))
        digest = hashlib.sha256(b"".join(t.contiguous().numpy().tobytes() for t in got))
        out[name + "_same_on_all"] = len(set(comm.allgather(digest.hexdigest()))) == 1
        out[name + "_layout"] = got[2].is_contiguous(memory_format=torch.channels_last)

    # the averager: the shared-memory path gives MPI_Allreduce's values and the rider's sum
    grads = {}
    for shared in (False, True):
        averager = mpi_gradient_averager(shared_memory=shared)
        g = [t.clone() for t in mine[:4]]
        flag = averager.ride(torch.tensor([float(r + 1)]))
        averager(g)
        grads[shared] = g
        out[f"flag_{shared}"] = flag().item()
        out[f"reduction_{shared}"] = averager.reduction
    out["averager_equal"] = all(torch.equal(a, b) for a, b in zip(grads[False], grads[True]))

    # no room in /dev/shm on one rank: every rank stays with MPI_Allreduce, and says why
    import deepcam_hvd.distributed.shared_memory_sum as sms
    if r == p - 1:
        sms.free_shm_bytes = lambda path=sms.SHM_DIR: 0
    cramped = mpi_gradient_averager(shared_memory=True)
    g = [t.clone() for t in mine[:4]]
    cramped(g)
    out["cramped"] = cramped.reduction
    out["cramped_equal"] = all(torch.equal(a, b) for a, b in zip(grads[False], g))
    sys.stdout.write(f"RESULT {r} {json.dumps(out)}\\n")
    sys.stdout.flush()
""")


@pytest.mark.multirank
@pytest.mark.parametrize("ranks", [2, 3])
def test_ranks_get_the_same_sum_in_rank_order(tmp_path: Path, ranks: int) -> None:
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    found = results(run_ranks([PYTHON, str(script)], np=ranks, env={"PYTHONPATH": str(ROOT)}))
    assert sorted(found) == list(range(ranks))
    flag = float(sum(range(1, ranks + 1)))
    for doc in found.values():
        assert doc["opened"] == "shared-memory"
        assert doc["rounds"] and doc["one"]  # equal to the rank-order sum, bit for bit
        assert doc["rounds_same_on_all"] and doc["one_same_on_all"]
        assert doc["rounds_layout"] and doc["one_layout"]  # channels-last stays so
        assert doc["reduction_False"] == "mpi" and doc["reduction_True"] == "shared-memory"
        assert doc["flag_False"] == doc["flag_True"] == flag
        if ranks == 2:  # a + b whichever rank adds: MPI_Allreduce's values exactly
            assert doc["averager_equal"]
        assert doc["cramped"].startswith("mpi (") and doc["cramped_equal"]
    # 4 tensors of 181 values: blocks of 192 floats, (ranks + 1) of them
    assert found[ranks - 1]["cramped"] == "mpi (/dev/shm has 0.0 KiB free, the window needs " \
        f"twice {4 * 192 * (ranks + 1) / 1024:.1f} KiB)"
