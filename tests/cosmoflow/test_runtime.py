"""CosmoFlow's TensorFlow start-up makes the PyTorch runtime's decisions: launcher, threads,
Horovod only with more than one rank, the launcher-versus-communicator check, the GPU rule;
plus what only TF needs (oneDNN before import, intra/inter-op pools)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

# Not installed where its wheels do not exist (Python >= 3.12, not x86_64): see setup.cfg.
tf = pytest.importorskip("tensorflow", reason="CosmoFlow needs TensorFlow")

from deepcam_hvd.cosmoflow.runtime import (  # noqa: E402
    check_horovod_launch,
    gpu_index,
    horovod_tf_build,
    inter_op_threads,
    prepare_environment,
    start_tf_runtime,
)
from deepcam_hvd.distributed.communicator import LocalCommunicator  # noqa: E402
from deepcam_hvd.errors import ConfigError, LaunchError  # noqa: E402
from deepcam_hvd.launchers import LaunchInfo  # noqa: E402

HYDRA_2 = LaunchInfo("mpich-hydra", 0, 2, 0, 2, "mpi")
BUILT = {"installed": True, "mpi": True, "gloo": True}


def test_onednn_is_switched_on_unless_the_user_chose() -> None:
    env: dict[str, str] = {}
    # TensorFlow is imported in this process already: the value is set but said to be late.
    assert prepare_environment(env) == "too late"
    assert env == {"TF_ENABLE_ONEDNN_OPTS": "1", "TF_CPP_MIN_LOG_LEVEL": "2"}
    mine = {"TF_ENABLE_ONEDNN_OPTS": "0", "TF_CPP_MIN_LOG_LEVEL": "0"}
    assert prepare_environment(mine) == "user"
    assert mine == {"TF_ENABLE_ONEDNN_OPTS": "0", "TF_CPP_MIN_LOG_LEVEL": "0"}


PROBE = ("import os, json; from deepcam_hvd.cosmoflow.runtime import start_tf_runtime; "
         "rt = start_tf_runtime(); import tensorflow as tf; "
         "print(json.dumps([os.environ['TF_ENABLE_ONEDNN_OPTS'], rt.onednn, rt.intra_threads, "
         "rt.inter_threads, tf.config.threading.get_intra_op_parallelism_threads(), "
         "rt.device, rt.backend.name, rt.tuning is None]))")


@pytest.mark.parametrize(("env", "expected"), [
    ({"OMP_NUM_THREADS": "1"}, ["1", "set", 1, 1, 1, "/CPU:0", "local", True]),
    ({"OMP_NUM_THREADS": "2", "TF_ENABLE_ONEDNN_OPTS": "0"},
     ["0", "user", 2, 2, 2, "/CPU:0", "local", True]),
])
def test_fresh_process_sets_tf_before_its_import(env: dict[str, str], expected: list) -> None:
    import json

    clean = {k: v for k, v in os.environ.items()
             if k not in ("TF_ENABLE_ONEDNN_OPTS", "OMP_NUM_THREADS", "SLURM_CPUS_PER_TASK")}
    out = subprocess.run([sys.executable, "-c", PROBE], env={**clean, **env},
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    if (os.cpu_count() or 1) >= 2:  # two threads fit the rank's share of the node
        assert json.loads(out.stdout.splitlines()[-1]) == expected


def test_inter_op_threads_follow_the_reference_within_the_rank() -> None:
    assert [inter_op_threads(n) for n in (1, 2, 16)] == [1, 2, 2]
    assert inter_op_threads(16, 0) == 0  # TensorFlow chooses, as the ARCHER2 job script
    assert inter_op_threads(1, 4) == 4
    with pytest.raises(ConfigError, match="--inter_threads -1"):
        inter_op_threads(2, -1)


def test_gpu_rule_is_the_torch_runtimes() -> None:
    assert gpu_index(1, 3, 4) == 0  # the launcher gave each rank its own GPU
    assert gpu_index(4, 2, 4) == 2
    with pytest.raises(ConfigError, match="4 ranks on this node but 2 GPUs visible"):
        gpu_index(2, 1, 4)


def test_single_process_needs_no_horovod() -> None:
    rt = start_tf_runtime(env=dict(os.environ), launch=LaunchInfo("single", 0, 1, 0, 1, "none"))
    assert isinstance(rt.backend, LocalCommunicator) and rt.size == 1 and not rt.distributed
    assert rt.device == "/CPU:0" and rt.tuning is None and rt.keras_callbacks() == []
    optimizer = tf.keras.optimizers.SGD(0.1)
    assert rt.distributed_optimizer(optimizer) is optimizer
    facts = rt.describe()
    assert facts["backend"] == "local" and facts["tensorflow"] == tf.__version__


def test_backends_that_cannot_serve_tensorflow_are_refused() -> None:
    single = LaunchInfo("single", 0, 1, 0, 1, "none")
    with pytest.raises(ConfigError, match=r"--backend 'torch'.*torch.distributed is PyTorch"):
        start_tf_runtime(backend="torch", env=dict(os.environ), launch=single)
    with pytest.raises(ConfigError, match="--backend local runs one process"):
        start_tf_runtime(backend="local", env=dict(os.environ), launch=HYDRA_2)


@pytest.mark.parametrize(("build", "launch", "env", "message"), [
    ({"installed": False, "error": "No module named 'horovod'"}, HYDRA_2, {},
     "mpich-hydra started 2 ranks but Horovod's TensorFlow extension is not importable"),
    ({**BUILT, "mpi": False}, HYDRA_2, {}, "built without MPI"),
    ({**BUILT, "gloo": False}, LaunchInfo("horovodrun-gloo", 0, 2, 0, 2, "gloo"), {},
     "built without Gloo"),
    (BUILT, HYDRA_2, {"HOROVOD_CPU_OPERATIONS": "gloo"}, "HOROVOD_CPU_OPERATIONS=gloo"),
])
def test_horovod_builds_that_cannot_serve_the_launch_are_refused(
        build: dict, launch: LaunchInfo, env: dict[str, str], message: str) -> None:
    with pytest.raises(LaunchError, match=message):
        check_horovod_launch(build, launch, env, "TensorFlow")
    check_horovod_launch(BUILT, launch, {})  # the same launch with a full build passes


def test_communicator_that_disagrees_with_the_launcher_is_refused() -> None:
    """A process that looks like rank 0 of 2 under Hydra but is alone in Horovod's world."""
    if not horovod_tf_build().get("mpi"):
        pytest.skip("needs Horovod's TensorFlow extension built with MPI (backends/install.sh)")
    env = {**os.environ, "PMI_RANK": "0", "PMI_SIZE": "2", "MPI_LOCALRANKID": "0",
           "MPI_LOCALNRANKS": "2"}
    code = "from deepcam_hvd.cosmoflow.runtime import start_tf_runtime; start_tf_runtime()"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode != 0
    assert ("LaunchError: mpich-hydra started rank 0 of 2 but Horovod's communicator has rank "
            "0 of 1") in out.stderr
