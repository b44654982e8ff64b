"""Per-rank thread sizing."""

from __future__ import annotations

import pytest

from deepcam_hvd.errors import ConfigError
from deepcam_hvd.threads import plan_threads

ALL16 = set(range(16))


def test_share_of_node_when_unbound() -> None:
    plan = plan_threads({}, local_size=8, affinity=ALL16, node_cores=16)
    assert (plan.threads, plan.source, plan.capped) == (2, "cores/local_ranks", False)


def test_slurm_cpus_per_task_wins() -> None:
    plan = plan_threads({"SLURM_CPUS_PER_TASK": "16", "OMP_NUM_THREADS": "4"}, local_size=8,
                        affinity=set(range(16, 32)), node_cores=128)
    assert (plan.threads, plan.source) == (16, "SLURM_CPUS_PER_TASK")


def test_omp_num_threads_capped_to_share() -> None:
    plan = plan_threads({"OMP_NUM_THREADS": "8"}, local_size=2, affinity={0, 1}, node_cores=2)
    assert (plan.threads, plan.source, plan.capped) == (1, "OMP_NUM_THREADS", True)


def test_binding_decides_when_no_request() -> None:
    plan = plan_threads({}, local_size=2, affinity={4, 5, 6}, node_cores=16)
    assert (plan.threads, plan.source, plan.bound_cores) == (3, "binding", [4, 5, 6])


def test_never_oversubscribes() -> None:
    for local_size in (1, 2, 3, 5, 16, 40):
        plan = plan_threads({"OMP_NUM_THREADS": "64"}, local_size, ALL16, 16)
        assert plan.threads * local_size <= max(16, local_size)
        assert plan.threads >= 1


@pytest.mark.parametrize("value", ["zero", "0", "-2"])
def test_bad_thread_variable(value: str) -> None:
    with pytest.raises(ConfigError, match="OMP_NUM_THREADS"):
        plan_threads({"OMP_NUM_THREADS": value}, 1, ALL16, 16)
