"""The CNN of the course slides, built from ``ModelConfig``.

Default: raw pixels 28x28x1 -> rescale to [0, 1] -> [augmentation] -> conv(32, 3x3) -> conv(64, 3x3)
-> max-pool 2x2 -> dropout -> flatten -> dense(128) -> dropout -> dense(10, softmax), with optional batch
normalisation after each conv layer. Normalisation lives inside the model, so whatever scores it (the
evaluation, the batch-inference job) feeds raw 0-255 pixels and cannot skew from training.

Augmentation (random shift, rotation, zoom) is Keras preprocessing layers inside the model: they
transform images only when the model is called with ``training=True`` (``fit``) and pass them through
unchanged otherwise, so the logged model's signature and its predictions do not depend on them.

Each hidden activation is its own layer named ``<block>_act`` so the fraction of dead units can be
read off it.
"""

from __future__ import annotations

from pipeline.config import ACTIVATIONS, LOSSES, ModelConfig

DEAD_UNIT_ACTIVATIONS = ("relu",)  # activations whose units can die (output exactly 0 for every input)


def _activation(keras, name: str, layer_name: str):
    if name == "leaky_relu":
        return keras.layers.LeakyReLU(alpha=0.1, name=layer_name)
    return keras.layers.Activation(name, name=layer_name)


def build_model(cfg: ModelConfig):
    """Returns an uncompiled ``tf_keras`` model taking ``(batch, 28, 28, 1)`` raw pixel values 0-255."""
    import tf_keras as keras

    if cfg.activation not in ACTIVATIONS:
        raise ValueError(f"model.activation is {cfg.activation!r}; expected one of {', '.join(ACTIVATIONS)}")
    # float32 raw pixels 0-255: uint8 batches from the reader are cast by Keras; scoring services
    # (spark_udf, pyfunc) hand over float arrays, which a SavedModel signature must match exactly.
    inputs = keras.Input(shape=(28, 28, 1), name="image", dtype="float32")
    x = keras.layers.Rescaling(1.0 / 255, name="rescale")(inputs)
    for layer in augmentation_layers(keras, cfg):
        x = layer(x)
    for i, filters in enumerate(cfg.conv_filters, start=1):
        # Batch norm makes the conv's bias redundant (its beta plays that part).
        x = keras.layers.Conv2D(filters, cfg.kernel_size, use_bias=not cfg.batch_norm, name=f"conv{i}")(x)
        if cfg.batch_norm:
            x = keras.layers.BatchNormalization(name=f"conv{i}_bn")(x)
        x = _activation(keras, cfg.activation, f"conv{i}_act")(x)
    if cfg.conv_filters:
        x = keras.layers.MaxPooling2D(pool_size=cfg.pool_size, name="pool")(x)
        x = keras.layers.Dropout(cfg.conv_dropout, name="conv_dropout")(x)
    x = keras.layers.Flatten(name="flatten")(x)
    for i, units in enumerate(cfg.dense_units, start=1):
        x = keras.layers.Dense(units, name=f"dense{i}")(x)
        x = _activation(keras, cfg.activation, f"dense{i}_act")(x)
        x = keras.layers.Dropout(cfg.dense_dropout, name=f"dense{i}_dropout")(x)
    outputs = keras.layers.Dense(10, activation="softmax", name="probabilities")(x)
    return keras.Model(inputs, outputs, name="mnist_cnn")


def augmentation_layers(keras, cfg: ModelConfig) -> list:
    """The random transforms configured in ``cfg`` (none when all are 0). Pixels moved in from outside
    the image are black (``fill_mode="constant"``), like MNIST's background, not a reflection of the digit."""
    layers = []
    if cfg.augment_rotation > 0:  # degrees either way; Keras takes a fraction of a full turn
        layers.append(keras.layers.RandomRotation(cfg.augment_rotation / 360.0, fill_mode="constant",
                                                  name="augment_rotation"))
    if cfg.augment_zoom > 0:
        layers.append(keras.layers.RandomZoom(cfg.augment_zoom, fill_mode="constant", name="augment_zoom"))
    if cfg.augment_translation > 0:
        layers.append(keras.layers.RandomTranslation(cfg.augment_translation, cfg.augment_translation,
                                                     fill_mode="constant", name="augment_translation"))
    return layers


def hidden_activation_layers(model) -> list[str]:
    """Names of the hidden activation layers, in order (conv1_act, conv2_act, dense1_act, ...)."""
    return [layer.name for layer in model.layers if layer.name.endswith("_act")]


def make_loss(cfg: ModelConfig):
    """Sparse categorical cross-entropy on integer labels; with label smoothing when configured."""
    import tensorflow as tf
    import tf_keras as keras

    if cfg.loss not in LOSSES:
        raise ValueError(f"model.loss is {cfg.loss!r}; expected one of {', '.join(LOSSES)}")
    if cfg.label_smoothing <= 0:
        return keras.losses.SparseCategoricalCrossentropy(name="loss")
    smoothed = keras.losses.CategoricalCrossentropy(label_smoothing=cfg.label_smoothing)

    def sparse_smoothed_crossentropy(y_true, y_pred):
        labels = tf.cast(tf.reshape(y_true, [-1]), tf.int32)
        return smoothed(tf.one_hot(labels, 10), y_pred)

    return sparse_smoothed_crossentropy


def dead_unit_fractions(model, images) -> dict[str, float]:
    """Per hidden ReLU layer: the fraction of units that output 0 for every example of ``images``.

    A unit is one neuron of a dense layer or one (position, filter) output of a conv layer. Empty when
    the activation cannot produce dead units (not ReLU).
    """
    import numpy as np
    import tf_keras as keras

    names = [n for n in hidden_activation_layers(model)
             if getattr(model.get_layer(n), "activation", None) is not None
             and model.get_layer(n).activation.__name__ in DEAD_UNIT_ACTIVATIONS]
    if not names:
        return {}
    probe = keras.Model(model.inputs, [model.get_layer(n).output for n in names])
    outputs = probe(images, training=False)
    if len(names) == 1:
        outputs = [outputs]
    return {n.removesuffix("_act"): float(np.mean(np.all(np.asarray(o) == 0, axis=0))) for n, o in zip(names, outputs)}
