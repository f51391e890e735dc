"""The CNN, its loss and the learning-rate schedules, built from config."""

import math

import numpy as np
import pytest

from pipeline.config import ModelConfig, OptimizerConfig
from pipeline.train.model import build_model, dead_unit_fractions, hidden_activation_layers, make_loss
from pipeline.train.schedules import learning_rate_at, make_optimizer

_DIGITS = np.random.default_rng(0).integers(0, 256, size=(4, 28, 28, 1), dtype=np.uint8)


def test_default_model_is_the_course_cnn():
    model = build_model(ModelConfig())
    # conv 3x3x1x32+32, conv 3x3x32x64+64, dense 12*12*64*128+128, dense 128*10+10
    assert model.count_params() == 320 + 18_496 + 1_179_776 + 1_290 == 1_199_882
    kinds = [type(layer).__name__ for layer in model.layers]
    assert kinds == ["InputLayer", "Rescaling", "RandomRotation", "RandomZoom", "RandomTranslation",
                     "Conv2D", "Activation", "Conv2D", "Activation", "MaxPooling2D",
                     "Dropout", "Flatten", "Dense", "Activation", "Dropout", "Dense"]
    assert model.get_layer("pool").output_shape == (None, 12, 12, 64)
    probs = model.predict(_DIGITS, verbose=0)
    assert probs.shape == (4, 10)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-5)


def test_augmentation_changes_training_inputs_only():
    """The augmentation layers move pixels under fit (training=True) and are the identity otherwise, so a
    model with them predicts exactly what the same weights predict without them."""
    augmented = build_model(ModelConfig())
    plain = build_model(ModelConfig(augment_rotation=0, augment_zoom=0, augment_translation=0))
    assert len(augmented.layers) == len(plain.layers) + 3  # the three augmentation layers carry no weights
    plain.set_weights(augmented.get_weights())
    first = augmented.predict(_DIGITS, verbose=0)
    np.testing.assert_array_equal(first, augmented.predict(_DIGITS, verbose=0))
    np.testing.assert_allclose(first, plain.predict(_DIGITS, verbose=0), rtol=1e-6)
    images = np.asarray(_DIGITS, dtype=np.float32)
    before = augmented.get_layer("rescale")(images)
    after = before
    for name in ("augment_rotation", "augment_zoom", "augment_translation"):
        after = augmented.get_layer(name)(after, training=True)
        np.testing.assert_array_equal(augmented.get_layer(name)(before, training=False), before)
    assert not np.allclose(after, before)


def test_each_augmentation_can_be_turned_off_alone():
    model = build_model(ModelConfig(augment_rotation=0, augment_zoom=0.2, augment_translation=0))
    names = [layer.name for layer in model.layers if layer.name.startswith("augment_")]
    assert names == ["augment_zoom"]
    assert model.get_layer("augment_zoom").height_factor == 0.2


def test_batch_norm_follows_each_conv_and_replaces_its_bias():
    model = build_model(ModelConfig(batch_norm=True))
    names = [layer.name for layer in model.layers]
    assert names.index("conv1_bn") == names.index("conv1") + 1
    assert names.index("conv2_act") == names.index("conv2_bn") + 1
    assert model.get_layer("conv1").use_bias is False
    # conv weights lose their biases (32 + 64), batch norm adds 4 per channel (2 trainable, 2 moving)
    assert model.count_params() == 1_199_882 - 96 + 4 * 96


def test_model_normalises_raw_pixels_inside():
    model = build_model(ModelConfig())
    rescale = model.get_layer("rescale")
    out = rescale(np.full((1, 28, 28, 1), 255, dtype=np.uint8)).numpy()
    assert out.max() == pytest.approx(1.0)


@pytest.mark.parametrize("activation", ["relu", "leaky_relu", "elu", "selu", "tanh", "sigmoid"])
def test_every_activation_builds_and_predicts(activation):
    model = build_model(ModelConfig(activation=activation))
    assert model.predict(_DIGITS, verbose=0).shape == (4, 10)
    assert hidden_activation_layers(model) == ["conv1_act", "conv2_act", "dense1_act"]


def test_layers_and_units_follow_config():
    model = build_model(ModelConfig(conv_filters=[8, 16, 16], dense_units=[64, 32], kernel_size=5))
    assert [layer.filters for layer in model.layers if layer.name.startswith("conv") and "_" not in layer.name] \
        == [8, 16, 16]
    assert [model.get_layer(n).units for n in ("dense1", "dense2")] == [64, 32]
    assert model.get_layer("conv1").kernel_size == (5, 5)
    assert hidden_activation_layers(model) == ["conv1_act", "conv2_act", "conv3_act", "dense1_act", "dense2_act"]


def test_dense_only_model_has_no_pooling():
    model = build_model(ModelConfig(conv_filters=[], dense_units=[32]))
    assert "pool" not in [layer.name for layer in model.layers]
    assert model.count_params() == 784 * 32 + 32 + 32 * 10 + 10


def test_label_smoothing_raises_the_loss_of_a_confident_correct_prediction():
    y_true = np.array([3])
    y_pred = np.full((1, 10), 1e-6, dtype=np.float32)
    y_pred[0, 3] = 1 - 9e-6
    plain = float(make_loss(ModelConfig())(y_true, y_pred))
    smoothed = float(make_loss(ModelConfig(label_smoothing=0.1))(y_true, y_pred))
    assert plain < 0.01 < smoothed


def test_dead_units_counts_units_that_never_fire():
    model = build_model(ModelConfig(conv_filters=[4], dense_units=[8]))
    dense = model.get_layer("dense1")
    kernel, bias = dense.get_weights()
    bias[:3] = -1e6  # three of eight units can never be positive...
    bias[3:] = 1e6  # ...and the other five always are
    dense.set_weights([kernel, bias])
    fractions = dead_unit_fractions(model, _DIGITS)
    assert fractions["dense1"] == pytest.approx(3 / 8)
    assert set(fractions) == {"conv1", "dense1"}
    assert dead_unit_fractions(build_model(ModelConfig(activation="tanh")), _DIGITS) == {}


def test_warmup_scales_by_ranks_linearly():
    opt = OptimizerConfig(learning_rate=0.01, warmup_epochs=2, schedule="none")
    assert learning_rate_at(0, opt, ranks=4, total_epochs=10) == pytest.approx(0.01)
    assert learning_rate_at(1, opt, ranks=4, total_epochs=10) == pytest.approx(0.025)
    assert learning_rate_at(5, opt, ranks=4, total_epochs=10) == pytest.approx(0.04)
    unscaled = OptimizerConfig(learning_rate=0.01, scale_by_ranks=False, schedule="none")
    assert learning_rate_at(5, unscaled, 4, 10) == pytest.approx(0.01)


def test_decay_schedules():
    base = dict(learning_rate=0.1, warmup_epochs=0, decay_rate=0.5, decay_epochs=2)
    step = OptimizerConfig(schedule="step", **base)
    assert [learning_rate_at(e, step, 1, 10) for e in (0, 1.9, 2, 4.5)] == pytest.approx([0.1, 0.1, 0.05, 0.025])
    exp = OptimizerConfig(schedule="exponential", **base)
    assert learning_rate_at(1, exp, 1, 10) == pytest.approx(0.1 * 0.5 ** 0.5)
    cos = OptimizerConfig(schedule="cosine", min_learning_rate=0.0, **base)
    assert learning_rate_at(5, cos, 1, 10) == pytest.approx(0.05)
    assert learning_rate_at(10, cos, 1, 10) == pytest.approx(0.0, abs=1e-12)
    assert learning_rate_at(2.5, cos, 1, 10) == pytest.approx(0.05 * (1 + math.cos(math.pi / 4)))


@pytest.mark.parametrize("name, cls", [("adam", "Adam"), ("sgd", "SGD"), ("rmsprop", "RMSprop"), ("adadelta", "Adadelta")])
def test_optimizers_from_config(name, cls):
    opt = make_optimizer(OptimizerConfig(name=name, momentum=0.8, nesterov=True), 0.05)
    assert type(opt).__name__ == cls
    assert float(opt.learning_rate) == pytest.approx(0.05)
    if name == "sgd":
        assert opt.momentum == pytest.approx(0.8) and opt.nesterov
