"""Horovod's cycle time, fusion threshold and thread placement, chosen from the run."""

from __future__ import annotations

from pathlib import Path

import pytest

from deepcam_hvd.config import TrainConfig
from deepcam_hvd.horovod_tuning import (
    AFFINITY_VARIABLE,
    CYCLE_VARIABLE,
    FUSION_VARIABLE,
    GRADIENT_VARIABLE,
    HOROVOD_FUSION_BYTES,
    HOROVOD_PATH,
    MAIN_THREAD,
    MAX_CYCLE_MS,
    MIN_CYCLE_MS,
    RunShape,
    Workload,
    choose,
    cycle_time_ms,
    estimate_step_s,
    spare_core,
    tune,
    workload_for_config,
)

DEMO = Workload("deeplab-xception-small", 96, 144, local_batch_size=2)
FULL = Workload("deeplab-xception", 768, 1152, local_batch_size=1)


def shape(step: float | None = 0.15, device: str = "cpu", threads: int = 1,
          bound: tuple[int, ...] = (0, 1), cores: int = 2, transport: str = "mpi") -> RunShape:
    return RunShape(device, transport, threads, 2, cores, bound, step)


def test_step_estimates_match_the_measured_steps() -> None:
    # the two points the model is fitted to (benchmarks/RESULTS.md), within a few percent
    assert estimate_step_s(DEMO, 1) == pytest.approx(0.121, rel=0.05)
    assert estimate_step_s(FULL, 1) == pytest.approx(35.9, rel=0.05)
    assert estimate_step_s(FULL, 2) == pytest.approx(35.9 / 2, rel=0.05)


def test_cycle_is_a_fraction_of_the_step_within_bounds() -> None:
    assert cycle_time_ms(None) == MAX_CYCLE_MS
    assert cycle_time_ms(0.121) == pytest.approx(1.2)
    assert cycle_time_ms(0.05) == MIN_CYCLE_MS
    assert cycle_time_ms(2.0) == pytest.approx(20.0)
    assert cycle_time_ms(35.9) == MAX_CYCLE_MS


def test_one_thread_per_rank_on_busy_cores_averages_on_the_main_thread_when_asked() -> None:
    default = choose(shape(0.121), {})  # opt-in: MPICH/UCX aborted once with two MPI threads
    assert default.value(GRADIENT_VARIABLE) == HOROVOD_PATH
    assert "opt-in" in default.settings[3].reason
    assert default.value(CYCLE_VARIABLE) == "1.2"
    small = choose(shape(0.121), {GRADIENT_VARIABLE: MAIN_THREAD})
    assert small.value(GRADIENT_VARIABLE) == MAIN_THREAD
    assert small.value(CYCLE_VARIABLE) == "200"  # nothing in training waits on the cycle
    # Horovod's own 128 MiB, left unset: fixing it beside the cycle crashes an elastic reset
    assert small.value(FUSION_VARIABLE) is None and HOROVOD_FUSION_BYTES == 128 * 2**20
    assert small.value(AFFINITY_VARIABLE) is None  # every core computes
    assert [s.source for s in small.settings] == ["chosen", "horovod default",
                                                  "horovod default", "user"]
    assert choose(shape(35.9), {GRADIENT_VARIABLE: MAIN_THREAD}).value(CYCLE_VARIABLE) == "200"
    assert choose(shape(35.9), {}).value(CYCLE_VARIABLE) == "50"
    assert choose(shape(None), {}).value(CYCLE_VARIABLE) == "50"


def test_horovods_thread_keeps_the_gradients_where_it_has_room() -> None:
    for room in (shape(0.121, threads=2, bound=(0, 1, 2, 3), cores=8),  # multi-threaded
                 shape(0.121, threads=3, bound=(4, 5, 6, 7), cores=16),  # a free core
                 shape(0.121, transport="gloo")):  # no MPI
        tuning = choose(room, {})
        assert tuning.value(GRADIENT_VARIABLE) == HOROVOD_PATH, room
        assert tuning.value(CYCLE_VARIABLE) == "1.2", room  # 1/100 of the step


def test_gpu_ranks_keep_horovods_defaults() -> None:
    tuning = choose(shape(0.03, device="cuda"), {})
    assert [(s.value, s.source) for s in tuning.settings[:3]] == \
        [(None, "horovod default")] * 3
    assert tuning.value(GRADIENT_VARIABLE) == HOROVOD_PATH


def test_users_variables_win_and_are_reported() -> None:
    env = {CYCLE_VARIABLE: "7", AFFINITY_VARIABLE: "3", GRADIENT_VARIABLE: HOROVOD_PATH}
    tuning = choose(shape(0.121), env)
    assert tuning.value(CYCLE_VARIABLE) == "7" and tuning.value(AFFINITY_VARIABLE) == "3"
    assert tuning.value(GRADIENT_VARIABLE) == HOROVOD_PATH
    assert [s.source for s in tuning.settings] == ["user", "horovod default", "user", "user"]
    # the user's gradient path decides the cycle rule the chosen cycle follows
    assert choose(shape(0.121), {GRADIENT_VARIABLE: HOROVOD_PATH}).value(CYCLE_VARIABLE) == \
        "1.2"


def test_background_thread_goes_to_a_core_the_rank_does_not_compute_on() -> None:
    assert spare_core(shape(threads=3, bound=(4, 5, 6, 7), cores=16)) == 7
    assert spare_core(shape(threads=4, bound=(4, 5, 6, 7), cores=16)) is None
    assert spare_core(shape(threads=1, bound=(0, 1), cores=2)) is None  # unbound
    tuning = choose(shape(threads=3, bound=(4, 5, 6, 7), cores=16), {})
    assert tuning.value(AFFINITY_VARIABLE) == "7"


def test_tune_exports_the_choice_without_overwriting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("os.sched_getaffinity", lambda _pid: {0, 1})
    monkeypatch.setattr("os.cpu_count", lambda: 2)
    env = {"OMP_NUM_THREADS": "1", FUSION_VARIABLE: "1048576"}
    tuning = tune("cpu", "mpi", 2, DEMO, env)
    assert tuning.shape.threads_per_rank == 1 and tuning.shape.node_cores == 2
    assert env[CYCLE_VARIABLE] == tuning.value(CYCLE_VARIABLE) == "1.2"
    assert env[FUSION_VARIABLE] == "1048576"
    assert tuning.value(GRADIENT_VARIABLE) == HOROVOD_PATH
    assert AFFINITY_VARIABLE not in env and GRADIENT_VARIABLE not in env  # ours: not exported
    assert tuning.summary() == ("cycle 1.2 ms (chosen), fusion 1048576 B (user), affinity "
                                "default (horovod default), gradients horovod (chosen)")


def test_without_a_workload_the_cycle_is_the_full_size_one() -> None:
    env: dict[str, str] = {"OMP_NUM_THREADS": "1"}
    tuning = tune("cpu", "gloo", 2, None, env)
    assert tuning.shape.step_estimate_s is None and env[CYCLE_VARIABLE] == "50"
    assert tune("cuda", "mpi", 2, DEMO, {}).shape.step_estimate_s is None


def test_workload_of_a_training_config(tiny_root: Path, tmp_path: Path) -> None:
    cfg = TrainConfig(model="deeplab-xception-small", data_dir_prefix=str(tiny_root),
                      local_batch_size=2, gradient_accumulation_frequency=3,
                      channels=[0, 1, 2])
    assert workload_for_config(cfg) == Workload("deeplab-xception-small", 32, 48, 6, 3)
    missing = TrainConfig(data_dir_prefix=str(tmp_path / "none"))
    assert workload_for_config(missing) == Workload("deeplab-xception", 768, 1152, 1, 16)


def test_keras_keeps_horovods_optimizer_and_a_step_fraction_cycle() -> None:
    keras = RunShape("cpu", "mpi", 1, 2, 2, (0, 1), 0.121, "tensorflow")
    tuning = choose(keras, {GRADIENT_VARIABLE: MAIN_THREAD})  # ours is PyTorch-only
    assert tuning.value(GRADIENT_VARIABLE) == HOROVOD_PATH
    assert tuning.value(CYCLE_VARIABLE) == "1.2"  # not the main-thread 200 ms
    assert choose(RunShape("cpu", "mpi", 1, 2, 2, (0, 1), None, "tensorflow"),
                  {}).value(CYCLE_VARIABLE) == "50"
