"""CosmoFlow's LR in every epoch equals the MLCommons reference's, also across a resume.

Expected values follow the reference's rules (utils/optimizers.py, applied per 0-based Keras
epoch by a LearningRateScheduler in train.py): peak = base x global / base batch (linear
scaling); warm-up ``e (peak - base) / W + base`` for e < W; then peak x the factor of the
latest boundary b < e. Where the reference is present (/tmp/cosmo-ref/cosmoflow or
$DEEPCAM_COSMOFLOW_REFERENCE), its own schedule and Keras callback are driven as well.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path
from types import ModuleType, SimpleNamespace
from typing import Any

import numpy as np
import pytest
import yaml

# Not installed where its wheels do not exist (Python >= 3.12, not x86_64): see setup.cfg.
tf = pytest.importorskip("tensorflow", reason="CosmoFlow needs TensorFlow")

from deepcam_hvd.cosmoflow.schedule import EpochLR, lr_at  # noqa: E402
from deepcam_hvd.workloads import cosmoflow as facts  # noqa: E402

REFERENCE = Path(os.environ.get("DEEPCAM_COSMOFLOW_REFERENCE", "/tmp/cosmo-ref/cosmoflow"))

# (settings, {epoch: LR}) written out by hand, both sides of the warm-up end and each boundary.
# Default config: base 0.001 at batch 64, W = 4, {32: 0.25, 64: 0.125}.
HAND: list[tuple[dict[str, Any], dict[int, float]]] = [
    # 256 = 64 ranks x 4: factor 4, peak 0.004; warm-up steps (0.004 - 0.001) / 4 = 0.00075.
    ({"global_batch_size": 256},
     {0: 0.001, 1: 0.00175, 2: 0.0025, 3: 0.00325, 4: 0.004, 5: 0.004, 32: 0.004,
      33: 0.001, 64: 0.001, 65: 0.0005, 127: 0.0005}),
    # 1024: peak 0.016, warm-up steps 0.00375.
    ({"global_batch_size": 1024},
     {0: 0.001, 1: 0.00475, 2: 0.0085, 3: 0.01225, 4: 0.016, 32: 0.016, 33: 0.004,
      64: 0.004, 65: 0.002}),
    # 32: factor 0.5, so the warm-up goes down from 0.001 to the peak 0.0005.
    ({"global_batch_size": 32},
     {0: 0.001, 1: 0.000875, 3: 0.000625, 4: 0.0005, 32: 0.0005, 33: 0.000125,
      65: 0.0000625}),
    # 64: the base batch, nothing to warm up.
    ({"global_batch_size": 64},
     {0: 0.001, 3: 0.001, 4: 0.001, 32: 0.001, 33: 0.00025, 64: 0.00025, 65: 0.000125}),
    # sqrt scaling: 256 / 64 = 4 -> factor 2, peak 0.002.
    ({"global_batch_size": 256, "scaling": "sqrt"},
     {0: 0.001, 2: 0.0015, 4: 0.002, 32: 0.002, 33: 0.0005, 65: 0.00025}),
    ({"global_batch_size": 256, "scaling": "none"}, {0: 0.001, 32: 0.001, 33: 0.00025}),
    # No warm-up: the peak from epoch 0.
    ({"global_batch_size": 256, "warmup_epochs": 0}, {0: 0.004, 32: 0.004, 33: 0.001}),
    # The RCP's 512 point: W = 6, boundaries 19 21 22 23, factors 0.5 0.25 0.125 0.0625.
    ({"global_batch_size": 512, "base_lr": 0.006, "base_batch_size": 512, "warmup_epochs": 6,
      "decay_schedule": {19: 0.5, 21: 0.25, 22: 0.125, 23: 0.0625}},
     {0: 0.006, 5: 0.006, 6: 0.006, 19: 0.006, 20: 0.003, 21: 0.003, 22: 0.0015,
      23: 0.00075, 24: 0.000375, 100: 0.000375}),
    # A boundary inside the warm-up acts only after it; factors are not cumulative.
    ({"global_batch_size": 128, "decay_schedule": {2: 0.5, 6: 0.1}},
     {0: 0.001, 2: 0.0015, 3: 0.00175, 4: 0.001, 6: 0.001, 7: 0.0002}),
    # Boundary 0 applies from epoch 1; the boundaries' order in the mapping does not matter.
    ({"global_batch_size": 64, "warmup_epochs": 0, "decay_schedule": {5: 0.1, 0: 0.5}},
     {0: 0.001, 1: 0.0005, 5: 0.0005, 6: 0.0001}),
]


@pytest.mark.parametrize(("settings", "expected"), HAND)
def test_lr_by_hand(settings: dict[str, Any], expected: dict[int, float]) -> None:
    settings = dict(settings)
    batch = settings.pop("global_batch_size")
    for epoch, lr in expected.items():
        assert lr_at(epoch, batch, **settings) == pytest.approx(lr, rel=1e-12), f"epoch {epoch}"


def test_bad_settings_raise() -> None:
    with pytest.raises(ValueError, match="unknown LR scaling 'Linear'"):
        lr_at(0, 256, scaling="Linear")
    with pytest.raises(ValueError, match="must not be negative"):
        lr_at(0, 256, warmup_epochs=-1)
    with pytest.raises(ValueError, match="must not be negative"):
        EpochLR(256, decay_schedule={-3: 0.5})


def fake_model() -> SimpleNamespace:
    """What a LR callback touches: ``model.optimizer``."""
    return SimpleNamespace(optimizer=tf.keras.optimizers.SGD(learning_rate=0.5, momentum=0.9))


def drive(callback: tf.keras.callbacks.Callback, epochs: range) -> list[float]:
    """The optimizer's LR in each epoch, as Keras' fit runs the callback."""
    model = fake_model()
    callback.set_model(model)
    out = []
    for epoch in epochs:
        callback.on_epoch_begin(epoch)
        out.append(float(tf.keras.backend.get_value(model.optimizer.learning_rate)))
    return out


def test_callback_sets_every_epoch() -> None:
    got = drive(EpochLR(1024), range(70))
    want = [lr_at(epoch, 1024) for epoch in range(70)]
    assert got == [float(np.float32(lr)) for lr in want]
    assert got[4] == pytest.approx(0.016) and got[33] == pytest.approx(0.004)


def test_fit_resume_uses_uninterrupted_lrs() -> None:
    settings = {"warmup_epochs": 3, "decay_schedule": {4: 0.5}}
    x, y = np.ones((4, 2), np.float32), np.zeros((4, 1), np.float32)

    def lrs(initial_epoch: int) -> list[float]:
        model = tf.keras.Sequential([tf.keras.Input((2,)), tf.keras.layers.Dense(1)])
        model.compile(optimizer=tf.keras.optimizers.SGD(learning_rate=1.0), loss="mse")
        history = model.fit(x, y, epochs=7, initial_epoch=initial_epoch, verbose=0,
                            callbacks=[EpochLR(256, **settings)])
        return history.history["lr"]

    # Peak 0.004; warm-up steps 0.001; boundary 4 -> 0.002 from epoch 5.
    expected = [0.001, 0.002, 0.003, 0.004, 0.004, 0.002, 0.002]
    whole = lrs(0)
    assert whole == pytest.approx(expected, rel=1e-6)
    assert lrs(4) == whole[4:]


def test_mlperf_hyperparameters_by_hand() -> None:
    got = facts.mlperf_hyperparameters(256, facts.FULL_TRAIN_SAMPLES, facts.FULL_EVAL_SAMPLES)
    assert got == {
        "global_batch_size": 256, "train_samples": 524_288, "eval_samples": 65_536,
        "opt_weight_decay": 0.0, "dropout": 0.5, "opt_name": "SGD",
        "opt_base_learning_rate": pytest.approx(0.004), "opt_learning_rate_warmup_epochs": 4,
        "opt_learning_rate_warmup_factor": 4.0,
        "opt_learning_rate_decay_boundary_epochs": [32, 64],
        "opt_learning_rate_decay_factor": 0.25}
    assert list(got) == list(facts.HYPERPARAMETER_KEYS)
    none = facts.mlperf_hyperparameters(64, 32, 32, decay_schedule={}, scaling="none")
    assert none["opt_learning_rate_decay_factor"] == 1
    assert none["opt_learning_rate_decay_boundary_epochs"] == []


def test_logged_keys_cover_the_hpc_3_checker() -> None:
    # closed_cosmoflow.yaml (EXACTLY_ONE, plus dropout and opt_weight_decay checked when
    # present) and common.yaml's train_samples / eval_samples.
    exactly_one = {"global_batch_size", "opt_name", "opt_base_learning_rate",
                   "opt_learning_rate_warmup_epochs", "opt_learning_rate_warmup_factor",
                   "opt_learning_rate_decay_boundary_epochs", "opt_learning_rate_decay_factor"}
    assert set(facts.CLOSED_EXACTLY_ONE_KEYS) == exactly_one
    assert set(facts.HYPERPARAMETER_KEYS) == exactly_one | {
        "dropout", "opt_weight_decay", "train_samples", "eval_samples"}
    got = facts.mlperf_hyperparameters(512, facts.FULL_TRAIN_SAMPLES, facts.FULL_EVAL_SAMPLES)
    assert got["opt_name"] in facts.CLOSED_OPT_NAMES
    assert 0 <= got["dropout"] < 1 and got["opt_weight_decay"] >= 0
    assert facts.TARGET_MAE == 0.124 and facts.EVAL_KEY == "eval_error"


# --- against the reference's own code --------------------------------------------------------

@pytest.fixture(scope="module")
def reference() -> ModuleType:
    """The reference's utils/optimizers.py, imported with Horovod and its rank helper stubbed
    (its schedule code uses neither)."""
    path = REFERENCE / "utils" / "optimizers.py"
    if not path.is_file():
        pytest.skip(f"no CosmoFlow reference at {REFERENCE} (set DEEPCAM_COSMOFLOW_REFERENCE)")
    horovod, hvd_tf, hvd_keras = (ModuleType(name) for name in (
        "horovod", "horovod.tensorflow", "horovod.tensorflow.keras"))
    horovod.tensorflow, hvd_tf.keras = hvd_tf, hvd_keras
    utils, distributed = ModuleType("utils"), ModuleType("utils.distributed")
    distributed.rank, utils.distributed = (lambda: 0), distributed
    spec = importlib.util.spec_from_file_location("cosmoflow_reference_optimizers", path)
    module = importlib.util.module_from_spec(spec)
    with pytest.MonkeyPatch.context() as patch:  # the stubs only while it imports them
        for stub in (horovod, hvd_tf, hvd_keras, utils, distributed):
            patch.setitem(sys.modules, stub.__name__, stub)
        spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def config() -> dict[str, Any]:
    """The reference's configs/cosmo.yaml."""
    path = REFERENCE / "configs" / "cosmo.yaml"
    if not path.is_file():
        pytest.skip(f"no CosmoFlow reference at {REFERENCE} (set DEEPCAM_COSMOFLOW_REFERENCE)")
    return yaml.safe_load(path.read_text())


def test_facts_equal_the_reference_config(config: dict[str, Any]) -> None:
    lr = config["lr_schedule"]
    assert (lr["base_lr"], lr["scaling"], lr["base_batch_size"], lr["n_warmup_epochs"]) == (
        facts.BASE_LR, facts.LR_SCALING, facts.BASE_BATCH_SIZE, facts.WARMUP_EPOCHS)
    assert lr["decay_schedule"] == dict(facts.DECAY_SCHEDULE)
    assert config["optimizer"] == {"name": facts.OPTIMIZER, "momentum": facts.MOMENTUM}
    data = config["data"]
    assert (data["n_train"], data["n_valid"], data["batch_size"], data["n_epochs"]) == (
        facts.FULL_TRAIN_SAMPLES, facts.FULL_EVAL_SAMPLES, facts.LOCAL_BATCH_SIZE, facts.EPOCHS)
    assert tuple(data["sample_shape"]) == facts.SAMPLE_SHAPE
    assert config["train"]["loss"] == "mse"
    assert config["train"]["metrics"] == [facts.EVAL_METRIC.removeprefix("val_")]


SETTINGS = [  # (global batch, lr_schedule overrides of cosmo.yaml)
    (4, {}), (32, {}), (64, {}), (256, {}), (1024, {}), (8192, {}),
    (256, {"scaling": "sqrt"}), (256, {"scaling": None}), (512, {"n_warmup_epochs": 0}),
    (512, {"base_lr": 0.006, "base_batch_size": 512, "n_warmup_epochs": 6,
           "decay_schedule": {19: 0.5, 21: 0.25, 22: 0.125, 23: 0.0625}}),
    (128, {"n_warmup_epochs": 5, "decay_schedule": {6: 0.5, 2: 0.1, 0: 0.9}}),
]


@pytest.mark.parametrize(("batch", "overrides"), SETTINGS)
def test_equals_reference_schedule(reference: ModuleType, config: dict[str, Any], batch: int,
                                   overrides: dict[str, Any]) -> None:
    settings = {**config["lr_schedule"], **overrides}
    ours = {"base_lr": settings["base_lr"], "base_batch_size": settings["base_batch_size"],
            "scaling": settings["scaling"], "warmup_epochs": settings["n_warmup_epochs"],
            "decay_schedule": settings["decay_schedule"]}
    schedule = reference.get_lr_schedule(global_batch_size=batch, **settings)
    epochs = range(config["data"]["n_epochs"])
    assert [lr_at(epoch, batch, **ours) for epoch in epochs] == [schedule(e) for e in epochs]
    # Both through Keras: the reference's LearningRateScheduler and our callback.
    keras_ref = drive(tf.keras.callbacks.LearningRateScheduler(schedule), epochs)
    assert drive(EpochLR(batch, **ours), epochs) == keras_ref


@pytest.mark.parametrize("batch", [32, 256, 1024])
def test_logged_values_equal_reference(reference: ModuleType, config: dict[str, Any],
                                       batch: int, monkeypatch: pytest.MonkeyPatch) -> None:
    mllog = pytest.importorskip("mlperf_logging.mllog")
    events: dict[str, Any] = {}
    logger = SimpleNamespace(event=lambda key, value=None, **_: events.__setitem__(key, value))
    monkeypatch.setattr(reference, "have_mlperf_logging", True)
    monkeypatch.setattr(reference, "mllog", SimpleNamespace(
        get_mllogger=lambda: logger, constants=mllog.constants))
    reference.get_lr_schedule(global_batch_size=batch, **config["lr_schedule"])
    reference.get_optimizer(config["optimizer"]["name"])
    ours = facts.mlperf_hyperparameters(batch, 1, 1)
    assert events == {key: ours[key] for key in events}
    assert set(events) == {key for key in facts.CLOSED_EXACTLY_ONE_KEYS
                           if key != "global_batch_size"}
