"""Keras 2 for Horovod, kept in one place so it can go when Horovod is fixed or replaced.

TensorFlow 2.18 installs Keras 3 as the package ``keras``, and ``horovod.tensorflow.keras`` does
``from keras import backend as K``; against Keras 3, ``MetricAverageCallback`` then fails with
``module 'keras.backend' has no attribute 'constant'``. The pipeline's models are Keras 2
(``tf_keras``), so in a Horovod worker the name ``keras`` is made to resolve to ``tf_keras`` before
Horovod's Keras module is imported.
"""

from __future__ import annotations

import os
import sys


def horovod_keras():
    """Returns ``horovod.tensorflow.keras`` bound to Keras 2 (``tf_keras``). Call in workers only."""
    os.environ["TF_USE_LEGACY_KERAS"] = "1"
    import tf_keras

    sys.modules["keras"] = tf_keras
    import horovod.tensorflow.keras as hvd

    return hvd
