"""Horovod's cycle time, fusion threshold and thread placement, chosen from the run."""

from __future__ import annotations

from pathlib import Path

import pytest

from deepcam_hvd.config import TrainConfig
from deepcam_hvd.errors import ConfigError
from deepcam_hvd.horovod_tuning import (
    AFFINITY_VARIABLE,
    CONTROLLER_VARIABLE,
    CYCLE_VARIABLE,
    FUSION_VARIABLE,
    GRADIENT_VARIABLE,
    HOROVOD_FUSION_BYTES,
    HOROVOD_PATH,
    MAIN_THREAD,
    MAX_CYCLE_MS,
    MIN_CYCLE_MS,
    MPI_ALLREDUCE,
    REDUCTION_VARIABLE,
    SHARED_MEMORY,
    CosmoWorkload,
    RunShape,
    Workload,
    choose,
    cycle_time_ms,
    estimate_step_s,
    spare_core,
    tune,
    workload_for_config,
)
from deepcam_hvd.workloads.cosmoflow import forward_flops

DEMO = Workload("deeplab-xception-small", 96, 144, local_batch_size=2)
FULL = Workload("deeplab-xception", 768, 1152, local_batch_size=1)


def shape(step: float | None = 0.15, device: str = "cpu", threads: int = 1,
          bound: tuple[int, ...] = (0, 1), cores: int = 2, transport: str = "mpi",
          single_node: bool = True) -> RunShape:
    return RunShape(device, transport, threads, 2, cores, bound, step,
                    single_node=single_node)


def test_step_estimates_match_the_measured_steps() -> None:
    # the two points the model is fitted to (benchmarks/RESULTS.md), within a few percent
    assert estimate_step_s(DEMO, 1) == pytest.approx(0.121, rel=0.05)
    assert estimate_step_s(FULL, 1) == pytest.approx(35.9, rel=0.05)
    assert estimate_step_s(FULL, 2) == pytest.approx(35.9 / 2, rel=0.05)


def test_cycle_is_a_fraction_of_the_step_within_bounds() -> None:
    assert cycle_time_ms(None) == MAX_CYCLE_MS
    assert cycle_time_ms(0.121) == pytest.approx(12.1)  # 1/10 of the step
    assert cycle_time_ms(0.005) == MIN_CYCLE_MS
    assert cycle_time_ms(0.2) == pytest.approx(20.0)
    assert cycle_time_ms(35.9) == MAX_CYCLE_MS


def test_cosmoflow_step_is_estimated_from_its_flops() -> None:
    # 32^3: convolutions 226 + 453 + 226 + 113 + 57 MFLOP forward (2 k^3 Cin Cout per output
    # voxel, sides 32, 16, 8, 4, 2), dense layers 0.08 MFLOP; a step is 3 forwards per sample
    assert forward_flops(32) == pytest.approx(1.0760e9, rel=1e-4)
    assert forward_flops(128) == pytest.approx(64 * 1.0755e9, rel=1e-3)  # convs scale as side^3
    work = CosmoWorkload(32, 2)
    assert work.train_step_flops() == pytest.approx(3 * 2 * forward_flops(32))
    # the measured 0.045 s (2x1 batch 2, 1 thread; 1x2 batch 4, 2 threads) within 10 %
    assert estimate_step_s(work, 1) == pytest.approx(0.046, rel=0.1)
    assert estimate_step_s(CosmoWorkload(32, 4), 2) == pytest.approx(0.045, rel=0.1)
    keras = RunShape("cpu", "mpi", 1, 2, 2, (0, 1), estimate_step_s(work, 1), "tensorflow")
    assert choose(keras, {}).value(CYCLE_VARIABLE) == "4.6"  # measured best at 5-10 ms


def test_one_thread_per_rank_on_busy_cores_averages_on_the_main_thread() -> None:
    small = choose(shape(0.121), {})
    assert small.value(GRADIENT_VARIABLE) == MAIN_THREAD
    assert small.value(CYCLE_VARIABLE) == "200"  # nothing in training waits on the cycle
    # Horovod's own 128 MiB, left unset: fixing it beside the cycle crashes an elastic reset
    assert small.value(FUSION_VARIABLE) is None and HOROVOD_FUSION_BYTES == 128 * 2**20
    assert small.value(AFFINITY_VARIABLE) is None  # every core computes
    # the training thread owns MPI: Horovod's own thread talks Gloo over loopback
    assert small.value(CONTROLLER_VARIABLE) == "gloo"
    # on one node the sum goes through a shared-memory window
    assert small.value(REDUCTION_VARIABLE) == SHARED_MEMORY
    assert [s.source for s in small.settings] == ["chosen", "horovod default",
                                                  "horovod default", "chosen", "chosen",
                                                  "chosen"]
    assert choose(shape(35.9), {}).value(CYCLE_VARIABLE) == "200"
    assert choose(shape(None), {}).value(CYCLE_VARIABLE) == "200"


def test_main_thread_path_only_where_horovods_thread_can_leave_mpi() -> None:
    # several nodes: Gloo beside MPI runs on loopback only, so Horovod's thread would need MPI
    nodes = choose(shape(0.121, single_node=False), {})
    assert nodes.value(GRADIENT_VARIABLE) == HOROVOD_PATH
    assert nodes.value(CONTROLLER_VARIABLE) is None
    assert nodes.value(CYCLE_VARIABLE) == "12.1"
    # the user chose how Horovod talks
    for variable in (CONTROLLER_VARIABLE, "HOROVOD_CPU_OPERATIONS"):
        tuning = choose(shape(0.121), {variable: "mpi"})
        assert tuning.value(GRADIENT_VARIABLE) == HOROVOD_PATH, variable
    # a user who insists on several nodes gets it, with Horovod left on MPI
    insisted = choose(shape(0.121, single_node=False), {GRADIENT_VARIABLE: MAIN_THREAD})
    assert insisted.value(GRADIENT_VARIABLE) == MAIN_THREAD
    assert insisted.value(REDUCTION_VARIABLE) == MPI_ALLREDUCE  # no window spans nodes
    assert nodes.value(REDUCTION_VARIABLE) is None  # Horovod's thread sums
    assert insisted.value(CONTROLLER_VARIABLE) is None
    # and the Horovod path, asked for, keeps Horovod's controller and the step cycle
    asked = choose(shape(0.121), {GRADIENT_VARIABLE: HOROVOD_PATH})
    assert asked.value(CONTROLLER_VARIABLE) is None and asked.value(CYCLE_VARIABLE) == "12.1"
    assert choose(shape(35.9), {GRADIENT_VARIABLE: HOROVOD_PATH}).value(CYCLE_VARIABLE) == "50"


def test_horovods_thread_keeps_the_gradients_where_it_has_room() -> None:
    for room in (shape(0.121, threads=2, bound=(0, 1, 2, 3), cores=8),  # multi-threaded
                 shape(0.121, threads=3, bound=(4, 5, 6, 7), cores=16),  # a free core
                 shape(0.121, transport="gloo")):  # no MPI
        tuning = choose(room, {})
        assert tuning.value(GRADIENT_VARIABLE) == HOROVOD_PATH, room
        assert tuning.value(CYCLE_VARIABLE) == "12.1", room  # 1/10 of the step
        assert tuning.value(CONTROLLER_VARIABLE) is None, room


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
    assert [s.source for s in tuning.settings] == ["user", "horovod default", "user", "user",
                                                   "horovod default", "horovod default"]
    # the user's gradient path decides the cycle rule the chosen cycle follows
    assert choose(shape(0.121), {GRADIENT_VARIABLE: HOROVOD_PATH}).value(CYCLE_VARIABLE) == \
        "12.1"


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
    tuning = tune("cpu", "mpi", 2, DEMO, env, ranks=2)
    assert tuning.shape.threads_per_rank == 1 and tuning.shape.node_cores == 2
    assert tuning.shape.single_node
    assert env[CYCLE_VARIABLE] == tuning.value(CYCLE_VARIABLE) == "200"
    assert env[FUSION_VARIABLE] == "1048576"
    assert tuning.value(GRADIENT_VARIABLE) == MAIN_THREAD
    # ours, and the controller (the backend sets up Gloo's rendezvous): not exported
    assert not {AFFINITY_VARIABLE, GRADIENT_VARIABLE, CONTROLLER_VARIABLE} & set(env)
    assert tuning.summary() == ("cycle 200 ms (chosen), fusion 1048576 B (user), affinity "
                                "default (horovod default), gradients main-thread (chosen), "
                                "reduction shared-memory (chosen), controller gloo (chosen)")
    four_on_two_nodes = tune("cpu", "mpi", 2, DEMO, {"OMP_NUM_THREADS": "1"}, ranks=4)
    assert not four_on_two_nodes.shape.single_node
    assert four_on_two_nodes.value(GRADIENT_VARIABLE) == HOROVOD_PATH


def test_the_users_reduction_is_kept_and_a_bad_one_is_one_line() -> None:
    kept = choose(shape(0.121), {REDUCTION_VARIABLE: MPI_ALLREDUCE})
    assert kept.value(REDUCTION_VARIABLE) == MPI_ALLREDUCE
    assert kept.settings[4].source == "user"
    with pytest.raises(ConfigError, match=f"{REDUCTION_VARIABLE}='shm': expected shared-memory "
                                          "or mpi"):
        choose(shape(0.121), {REDUCTION_VARIABLE: "shm"})


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
    assert tuning.value(CYCLE_VARIABLE) == "12.1"  # not the main-thread 200 ms
    assert choose(RunShape("cpu", "mpi", 1, 2, 2, (0, 1), None, "tensorflow"),
                  {}).value(CYCLE_VARIABLE) == "50"
