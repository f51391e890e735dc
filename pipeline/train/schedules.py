"""Learning-rate warm-up and decay, from ``OptimizerConfig``.

With N ranks the effective batch is N times larger, so the rate is scaled by N (``scale_by_ranks``)
and reached by a linear warm-up from the one-rank rate over ``warmup_epochs`` (Goyal et al., 2017),
which Horovod's examples follow too. Decay is then applied on top: step, exponential or cosine as a
function of the (fractional) epoch; ``plateau`` is left to Keras' ReduceLROnPlateau.
"""

from __future__ import annotations

import math

from pipeline.config import OPTIMIZERS, OptimizerConfig


def target_learning_rate(opt: OptimizerConfig, ranks: int) -> float:
    return opt.learning_rate * (ranks if opt.scale_by_ranks else 1)


def learning_rate_at(epoch: float, opt: OptimizerConfig, ranks: int, total_epochs: int) -> float:
    """The learning rate at a fractional epoch (0.5 = half-way through the first epoch)."""
    target = target_learning_rate(opt, ranks)
    if opt.schedule == "step":
        rate = target * opt.decay_rate ** math.floor(epoch / opt.decay_epochs)
    elif opt.schedule == "exponential":
        rate = target * opt.decay_rate ** (epoch / opt.decay_epochs)
    elif opt.schedule == "cosine":
        progress = min(epoch / max(total_epochs, 1), 1.0)
        rate = opt.min_learning_rate + (target - opt.min_learning_rate) * 0.5 * (1 + math.cos(math.pi * progress))
    else:  # none, plateau
        rate = target
    if opt.warmup_epochs > 0 and epoch < opt.warmup_epochs:
        start = opt.learning_rate
        rate = start + (rate - start) * (epoch / opt.warmup_epochs)
    return rate


def _optimizer_builders(keras, opt: OptimizerConfig, rate: float) -> dict:
    return {
        "adam": lambda: keras.optimizers.Adam(rate, beta_1=opt.beta_1, beta_2=opt.beta_2, epsilon=opt.epsilon),
        "sgd": lambda: keras.optimizers.SGD(rate, momentum=opt.momentum, nesterov=opt.nesterov),
        "rmsprop": lambda: keras.optimizers.RMSprop(rate, momentum=opt.momentum, epsilon=opt.epsilon),
        "adadelta": lambda: keras.optimizers.Adadelta(rate, epsilon=opt.epsilon),
    }


def make_optimizer(opt: OptimizerConfig, learning_rate: float):
    """A ``tf_keras`` optimizer from config (the learning rate is set per batch by the controller)."""
    import tf_keras as keras

    builders = _optimizer_builders(keras, opt, learning_rate)
    if opt.name not in builders:
        raise ValueError(f"optimizer.name is {opt.name!r}; expected one of {', '.join(OPTIMIZERS)}")
    return builders[opt.name]()
