"""Real 2-process runs of each backend under each launcher, checking collective values."""

from __future__ import annotations

import pytest

from tests.launch import PYTHON, results, run_ranks

pytestmark = pytest.mark.multirank

WORKER = "tests/distributed/worker.py"
COMBOS = [
    ("mpirun", "horovod"),
    ("horovodrun-gloo", "horovod"),
    ("mpirun", "torch"),
]


#: Under mpirun with one thread per rank on two cores the gradients go through MPI from the
#: training thread and Horovod runs on Gloo beside it; asked for, Horovod's own path on MPI.
PATHS = {("mpirun", "horovod"): ("main-thread", "gloo beside mpi"),
         ("mpirun", "horovod", "horovod"): ("horovod", "mpi"),
         ("horovodrun-gloo", "horovod"): ("horovod", "gloo")}


@pytest.mark.parametrize(("launcher", "backend", "path"),
                         [(*c, None) for c in COMBOS] + [("mpirun", "horovod", "horovod")])
def test_collectives(launcher: str, backend: str, path: str | None) -> None:
    env = {"DEEPCAM_GRADIENT_AVERAGING": path} if path else {}
    got = results(run_ranks([PYTHON, WORKER, "collectives", backend], launcher, env=env))
    assert sorted(got) == [0, 1]
    key = (launcher, backend, path) if path else (launcher, backend)
    for rank, r in got.items():
        if key in PATHS:
            assert (r["path"], r["controller"]) == PATHS[key]
        assert (r["size"], r["local_rank"], r["local_size"]) == (2, rank, 2)
        assert r["sum"] == [3.0, 6.0]
        assert r["mean"] == [1.5, 3.0]
        assert r["scalar_sum"] == 2.0
        assert r["bcast_from_1"] == [10.0, 1.0]
        assert r["bcast_obj"] == {"from": 0, "list": [0, 0, 0]}
        assert r["gather"] == ["r0", "r1"]
        assert r["group1_ranks"] == [rank]
        assert r["group1_sum"] == [rank + 1.0, 2.0 * (rank + 1)]
        assert r["groupall_mean"] == [1.5, 3.0]


@pytest.mark.parametrize(("launcher", "backend"), COMBOS)
def test_accumulated_step_equals_single_process_over_global_batch(launcher: str,
                                                                   backend: str) -> None:
    got = results(run_ranks([PYTHON, WORKER, "accumulation", backend], launcher))
    for r in got.values():
        assert r["sgd"] < 1e-6 and r["adamw"] < 1e-6
        assert r["sgd_moved"] > 1e-3 and r["adamw_moved"] > 1e-3  # the steps did something


@pytest.mark.parametrize(("launcher", "backend"), [COMBOS[0], COMBOS[2]])
def test_broadcast_state_and_buffer_average(launcher: str, backend: str) -> None:
    got = results(run_ranks([PYTHON, WORKER, "state_sync", backend], launcher))
    assert got[0]["model"] == got[1]["model"]
    assert got[0]["opt"] == got[1]["opt"] and len(got[0]["opt"]) > 0
    assert got[0]["fresh_opt_state"] == got[1]["fresh_opt_state"] == 0
    assert got[0]["bn_mean"] == got[1]["bn_mean"]
