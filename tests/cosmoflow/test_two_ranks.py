"""Horovod's TensorFlow side on two real processes: the collectives the trainer uses, and one
training step on 2 ranks x batch 2 equal to 1 rank x batch 4 (cosmoflow/runtime.py), all
without loading torch."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

pytest.importorskip("tensorflow", reason="CosmoFlow needs TensorFlow")

from tests.launch import PYTHON, results, run_ranks  # noqa: E402

WORKER = textwrap.dedent("""
    import json, sys
    import numpy as np
    from deepcam_hvd.cosmoflow.runtime import start_tf_runtime

    runtime = start_tf_runtime(device="cpu")
    import tensorflow as tf
    from deepcam_hvd.cosmoflow.model import build_model

    b, r = runtime.backend, runtime.rank
    out = {
        "sum": b.allreduce_values([r + 1.0, 10.0 * r], "sum"),
        "mean": b.allreduce_values([r + 1.0], "mean"),
        "scalar": b.allreduce_scalar(0.1 * (r + 1), "sum"),
        "counts": b.start_count_sum([float(r), 1.0], name="stop")(),
        "bcast": b.broadcast_object({"from": r}, root=1),
        "gather": b.allgather_object(r * 3),
    }

    rng = np.random.default_rng(7)  # the same global batch on every rank
    x = rng.random((4, 32, 32, 32, 4)).astype("float32")
    y = rng.uniform(-1, 1, (4, 4)).astype("float32")

    def trained(optimizer, xs, ys):
        tf.keras.utils.set_random_seed(3)  # the same initial weights everywhere
        model = build_model(cube=32, dropout=0.0)
        model.compile(optimizer=optimizer or "sgd", loss="mse")
        if optimizer is not None:
            model.train_on_batch(xs, ys)
        return [w.numpy() for w in model.weights]

    def largest(one, other):
        return max(float(np.max(np.abs(a - c))) for a, c in zip(one, other))

    sgd = lambda: tf.keras.optimizers.SGD(0.05, momentum=0.9)
    mine = trained(runtime.distributed_optimizer(sgd()), x[2 * r:2 * r + 2], y[2 * r:2 * r + 2])
    whole = trained(sgd(), x, y)
    out["max_diff"] = largest(mine, whole)
    out["max_change"] = largest(whole, trained(None, x, y))
    out["distributed"] = runtime.distributed
    out["torch_loaded"] = "torch" in sys.modules
    sys.stdout.write(f"RESULT {r} {json.dumps(out)}\\n")
    sys.stdout.flush()
    b.shutdown()
""")


@pytest.mark.multirank
@pytest.mark.slow
@pytest.mark.parametrize("launcher", ["mpirun", "horovodrun-gloo"])
def test_collectives_and_one_step_equal_one_rank_with_the_whole_batch(
        tmp_path: Path, launcher: str) -> None:
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    found = results(run_ranks([PYTHON, str(script)], launcher=launcher, timeout=240,
                              env={"PYTHONPATH": str(Path(__file__).resolve().parents[2])}))
    assert sorted(found) == [0, 1]
    for rank, doc in found.items():
        assert doc["distributed"] is True
        assert doc["sum"] == [3.0, 10.0] and doc["mean"] == [1.5]
        assert doc["bcast"] == {"from": 1} and doc["gather"] == [0, 3]
        assert doc["scalar"] == pytest.approx(0.3, abs=1e-15)  # float64 on the wire
        assert doc["counts"] == [1.0, 2.0], rank
        assert doc["torch_loaded"] is False, rank  # a TensorFlow rank never imports torch
        # 2 ranks x batch 2 (gradients averaged by hvd.DistributedOptimizer) = 1 x batch 4
        assert doc["max_diff"] < 1e-5, doc["max_diff"]
        assert doc["max_change"] > 1e-3  # the step moved the weights: the check can fail
