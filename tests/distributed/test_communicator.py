"""The framework-neutral communicator: one process, and torch's Backend speaking it."""

from __future__ import annotations

import subprocess
import sys

import pytest

from deepcam_hvd.distributed.communicator import LocalCommunicator
from deepcam_hvd.distributed.local import LocalBackend


@pytest.mark.parametrize("comm", [LocalCommunicator(), LocalBackend()],
                         ids=["neutral", "torch"])
def test_one_process_numbers_and_objects(comm: LocalCommunicator) -> None:
    assert (comm.rank, comm.size, comm.local_rank, comm.local_size, comm.is_root) == \
        (0, 1, 0, 1, True)
    assert comm.allreduce_values([1.5, 2], "sum") == [1.5, 2.0]
    assert comm.allreduce_values([0.1], "mean") == [0.1]
    assert comm.allreduce_scalar(0.1 + 0.2, "mean") == 0.1 + 0.2  # float64, not float32
    wait = comm.start_count_sum([0.0, 1.0], name="stop")
    assert wait() == [0.0, 1.0]
    assert comm.broadcast_object({"a": 1}) == {"a": 1}
    assert comm.allgather_object(5) == [5]


def test_neutral_modules_load_without_torch() -> None:
    """What a TensorFlow rank imports: the communicator, the helpers that take one, the CLI."""
    code = ("import sys\n"
            "import deepcam_hvd.cli, deepcam_hvd.commands.cosmoflow\n"
            "import deepcam_hvd.distributed.agreement, deepcam_hvd.train.signals\n"
            "import deepcam_hvd.train.seed, deepcam_hvd.train.checkpoint, deepcam_hvd.device\n"
            "import deepcam_hvd.threads, deepcam_hvd.files, deepcam_hvd.data.sharding\n"
            "import deepcam_hvd.cosmoflow.runtime, deepcam_hvd.cosmoflow.checkpoints\n"
            "import deepcam_hvd.cosmoflow.inputs\n"
            "print(sorted(m for m in sys.modules if m == 'torch' or m.startswith('torch.')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, timeout=120)
    assert out.stdout.strip() == "[]"
