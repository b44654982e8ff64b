"""The CosmoFlow network equals the MLCommons reference's: layers, shapes, settings, outputs.

Expected shapes and counts follow the reference's construction (models/cosmoflow.py with
configs/cosmo.yaml) step by step: a same-padded k^3 Conv3D from c_in to c_out channels keeps
the cube and has k^3 c_in c_out + c_out parameters, MaxPool3D(2) halves the cube, Dense n -> m
has n m + m. The reference itself is imported from /tmp/cosmo-ref/cosmoflow (or
$DEEPCAM_COSMOFLOW_REFERENCE) where present.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pytest
import yaml

# Not installed where its wheels do not exist (Python >= 3.12, not x86_64): see setup.cfg.
tf = pytest.importorskip("tensorflow", reason="CosmoFlow needs TensorFlow")

from deepcam_hvd.cosmoflow.model import Scale, build_model, loss_and_metric  # noqa: E402
from deepcam_hvd.workloads import cosmoflow as facts  # noqa: E402

REFERENCE = Path(os.environ.get("DEEPCAM_COSMOFLOW_REFERENCE", "/tmp/cosmo-ref/cosmoflow"))

Layer = tuple[str, tuple[int, ...], list[tuple[int, ...]]]  # class, output shape, weights


def expected_layers(cube: int, channels: int = 4, targets: int = 4) -> list[Layer]:
    """The reference's layers for a cube, from its construction rules (batch dim left out)."""
    out: list[Layer] = []
    side, c_in = cube, channels
    for i in range(5):
        c_out = 32 * 2**i
        out.append(("Conv3D", (side, side, side, c_out), [(3, 3, 3, c_in, c_out), (c_out,)]))
        out.append(("LeakyReLU", (side, side, side, c_out), []))
        side //= 2
        out.append(("MaxPooling3D", (side, side, side, c_out), []))
        c_in = c_out
    flat = side**3 * c_in
    out.append(("Flatten", (flat,), []))
    for n_in, n_out in ((flat, 128), (128, 64)):
        out += [("Dense", (n_out,), [(n_in, n_out), (n_out,)]), ("LeakyReLU", (n_out,), []),
                ("Dropout", (n_out,), [])]
    out += [("Dense", (targets,), [(64, targets), (targets,)]), ("Scale", (targets,), [])]
    return out


def layers_of(model: tf.keras.Model) -> list[Layer]:
    return [(type(layer).__name__, tuple(layer.output_shape[1:]),
             [tuple(w.shape) for w in layer.weights]) for layer in model.layers]


def count(layers: list[Layer]) -> int:
    return sum(int(np.prod(shape)) for _, _, weights in layers for shape in weights)


@pytest.fixture(scope="module")
def model_128() -> tf.keras.Model:
    return build_model()


@pytest.fixture(scope="module")
def model_32() -> tf.keras.Model:
    return build_model(cube=32)


def test_parameter_counts_by_hand(model_128: tf.keras.Model, model_32: tf.keras.Model) -> None:
    # Convolutions: 27 (4*32 + 32*64 + 64*128 + 128*256 + 256*512) + (32+64+128+256+512)
    # = 4,703,616 + 992; dense 128: 4^3*512 = 32,768 inputs at 128^3, 1*512 at 32^3.
    convs = 27 * (4 * 32 + 32 * 64 + 64 * 128 + 128 * 256 + 256 * 512) + 992
    head = 128 * 64 + 64 + 64 * 4 + 4
    assert convs == 4_704_608 and head == 8_516
    assert model_128.count_params() == convs + 32_768 * 128 + 128 + head == 8_907_556
    assert model_32.count_params() == convs + 512 * 128 + 128 + head == 4_778_788
    assert count(expected_layers(128)) == 8_907_556


@pytest.mark.parametrize("cube", [128, 32, 64])
def test_layer_shapes_by_hand(cube: int, model_128: tf.keras.Model,
                              model_32: tf.keras.Model) -> None:
    model = {128: model_128, 32: model_32}.get(cube) or build_model(cube=cube)
    assert layers_of(model) == expected_layers(cube)
    assert model.input_shape == (None, cube, cube, cube, 4)


def of_type(model: tf.keras.Model, kind: type) -> list[tf.keras.layers.Layer]:
    return [layer for layer in model.layers if isinstance(layer, kind)]


def test_layer_settings(model_128: tf.keras.Model) -> None:
    k = tf.keras.layers
    convs = of_type(model_128, k.Conv3D)
    assert [c.filters for c in convs] == [32, 64, 128, 256, 512]
    for conv in convs:
        assert (conv.kernel_size, conv.strides, conv.padding) == ((3, 3, 3), (1, 1, 1), "same")
        assert conv.get_config()["activation"] == "linear"
    assert [(p.pool_size, p.strides, p.padding) for p in of_type(model_128, k.MaxPool3D)] == \
        [((2, 2, 2), (2, 2, 2), "valid")] * 5
    relus = of_type(model_128, k.LeakyReLU)
    assert len(relus) == 7 and all(float(r.alpha) == pytest.approx(0.3) for r in relus)
    assert [d.rate for d in of_type(model_128, k.Dropout)] == [0.5, 0.5]
    dense = of_type(model_128, k.Dense)
    assert [d.get_config()["activation"] for d in dense] == ["linear", "linear", "tanh"]
    assert [d.kernel_regularizer.get_config() if d.kernel_regularizer else None
            for d in dense] == [{"l2": 0.0}, {"l2": 0.0}, None]
    for layer in convs + dense:
        assert isinstance(layer.kernel_initializer, tf.keras.initializers.GlorotUniform)
        assert isinstance(layer.bias_initializer, tf.keras.initializers.Zeros)
    assert model_128.layers[-1].factor == 1.2


def test_options_change_the_network() -> None:
    model = build_model(cube=16, channels=2, targets=3, conv_channels=4, layers=4, dropout=0.25,
                        l2=0.01)
    # Conv 2->4->8->16->32 at 16, 8, 4, 2; one voxel of 32 channels; dense 32->128->64->3.
    assert [layer.output_shape[1:] for layer in model.layers[:12:3]] == [
        (16, 16, 16, 4), (8, 8, 8, 8), (4, 4, 4, 16), (2, 2, 2, 32)]
    assert model.count_params() == 27 * (2 * 4 + 4 * 8 + 8 * 16 + 16 * 32) + 60 + \
        32 * 128 + 128 + 128 * 64 + 64 + 64 * 3 + 3
    assert [layer.rate for layer in of_type(model, tf.keras.layers.Dropout)] == [0.25, 0.25]
    assert model.layers[13].kernel_regularizer.get_config() == {"l2": pytest.approx(0.01)}


@pytest.mark.parametrize("cube", [100, 48, 16, 0])
def test_cube_must_survive_five_poolings(cube: int) -> None:
    with pytest.raises(ValueError, match=f"cube size {cube} is not a positive multiple of 32"):
        build_model(cube=cube)


def test_loss_and_metric_are_mse_and_mae() -> None:
    rng = np.random.default_rng(3)
    y_true, y_pred = (rng.uniform(-1, 1, (8, 4)).astype(np.float32) for _ in range(2))
    loss, metric = loss_and_metric()
    assert float(loss(y_true, y_pred)) == pytest.approx(np.mean((y_true - y_pred) ** 2), 1e-6)
    metric.update_state(y_true, y_pred)
    assert float(metric.result()) == pytest.approx(np.mean(np.abs(y_true - y_pred)), 1e-6)
    assert "val_" + metric.name == facts.EVAL_METRIC == "val_mean_absolute_error"


@pytest.mark.filterwarnings("ignore:You are saving your model as an HDF5 file")
@pytest.mark.parametrize("name", ["cosmoflow.h5", "cosmoflow.keras"])
def test_save_and_reload(tmp_path: Path, model_32: tf.keras.Model, name: str) -> None:
    x = np.random.default_rng(4).normal(size=(1, 32, 32, 32, 4)).astype(np.float32)
    path = tmp_path / name
    model_32.save(path)
    again = tf.keras.models.load_model(path)
    assert isinstance(again.layers[-1], Scale) and again.layers[-1].factor == 1.2
    np.testing.assert_array_equal(again(x, training=False), model_32(x, training=False))


# --- against the reference's own model -------------------------------------------------------

@pytest.fixture(scope="module")
def reference() -> Iterator[ModuleType]:
    """The reference's models/cosmoflow.py, imported as a package under a private name."""
    models = REFERENCE / "models"
    if not (models / "cosmoflow.py").is_file():
        pytest.skip(f"no CosmoFlow reference at {REFERENCE} (set DEEPCAM_COSMOFLOW_REFERENCE)")
    name = "cosmoflow_reference_models"
    spec = importlib.util.spec_from_file_location(name, models / "__init__.py",
                                                  submodule_search_locations=[str(models)])
    sys.modules[name] = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(sys.modules[name])
        yield importlib.import_module(f"{name}.cosmoflow")
    finally:
        for module in [m for m in sys.modules if m == name or m.startswith(name + ".")]:
            del sys.modules[module]


@pytest.fixture(scope="module")
def model_config() -> dict[str, Any]:
    """The ``model`` section of the reference's configs/cosmo.yaml (what train.py passes)."""
    path = REFERENCE / "configs" / "cosmo.yaml"
    if not path.is_file():
        pytest.skip(f"no CosmoFlow reference at {REFERENCE} (set DEEPCAM_COSMOFLOW_REFERENCE)")
    config = yaml.safe_load(path.read_text())["model"]
    assert config.pop("name") == "cosmoflow"
    return config


def reference_model(reference: ModuleType, config: dict[str, Any], cube: int) -> tf.keras.Model:
    return reference.build_model(**{**config, "input_shape": [cube, cube, cube, 4]})


def test_facts_equal_the_reference_config(model_config: dict[str, Any]) -> None:
    assert model_config == {
        "input_shape": list(facts.SAMPLE_SHAPE), "kernel_size": facts.KERNEL_SIZE,
        "target_size": facts.NUM_TARGETS, "conv_size": facts.CONV_CHANNELS,
        "fc1_size": facts.FC1_SIZE, "fc2_size": facts.FC2_SIZE,
        "hidden_activation": "LeakyReLU", "pooling_type": "MaxPool3D", "dropout": facts.DROPOUT}


@pytest.mark.parametrize("cube", [128, 32])
def test_layers_equal_the_reference(reference: ModuleType, model_config: dict[str, Any],
                                    cube: int, model_128: tf.keras.Model,
                                    model_32: tf.keras.Model) -> None:
    ours = {128: model_128, 32: model_32}[cube]
    ref = reference_model(reference, model_config, cube)
    assert ours.count_params() == ref.count_params()
    assert len(ours.layers) == len(ref.layers) == 24
    ref_layers = layers_of(ref)
    assert ref_layers[-1][0] == "Lambda"
    assert layers_of(ours) == ref_layers[:-1] + [("Scale",) + ref_layers[-1][1:]]
    for a, b in zip(ours.layers[:-1], ref.layers[:-1], strict=True):
        ca, cb = a.get_config(), b.get_config()
        for config in (ca, cb):
            config.pop("name")
            config.pop("batch_input_shape", None)
        assert ca == cb, type(a).__name__


def test_outputs_equal_the_reference(reference: ModuleType, model_config: dict[str, Any]) -> None:
    ours, ref = build_model(cube=32), reference_model(reference, model_config, 32)
    x = np.log1p(np.random.default_rng(5).poisson(3.0, (2, 32, 32, 32, 4))).astype(np.float32)
    assert not np.allclose(ours(x, training=False), ref(x, training=False))
    ours.set_weights(ref.get_weights())
    want = ref(x, training=False).numpy()
    np.testing.assert_allclose(ours(x, training=False).numpy(), want, rtol=1e-6, atol=1e-7)
    assert want.shape == (2, 4) and np.all(np.abs(want) < 1.2) and np.std(want) > 0
