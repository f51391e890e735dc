"""Learning-rate warm-up and decay, from ``OptimizerConfig``.

With N ranks the effective batch is N times larger, so the rate is scaled by N (``scale_by_ranks``)
and reached by a linear warm-up from the one-rank rate over ``warmup_epochs`` (Goyal et al., 2017),
which Horovod's examples follow too. Decay is then applied on top: step, exponential or cosine as a
function of the (fractional) epoch; ``plateau`` is left to Keras' ReduceLROnPlateau.
"""

from __future__ import annotations

import math

from pipeline.config import OptimizerConfig


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


def make_optimizer(opt: OptimizerConfig, learning_rate: float):
    """A ``tf_keras`` optimizer from config (the learning rate is set per batch by the controller)."""
    import tf_keras as keras

    if opt.name == "adam":
        return keras.optimizers.Adam(learning_rate, beta_1=opt.beta_1, beta_2=opt.beta_2, epsilon=opt.epsilon)
    if opt.name == "sgd":
        return keras.optimizers.SGD(learning_rate, momentum=opt.momentum, nesterov=opt.nesterov)
    if opt.name == "rmsprop":
        return keras.optimizers.RMSprop(learning_rate, momentum=opt.momentum, epsilon=opt.epsilon)
    if opt.name == "adadelta":
        return keras.optimizers.Adadelta(learning_rate, epsilon=opt.epsilon)
    raise ValueError(f"optimizer.name is {opt.name!r}; expected adam, sgd, rmsprop or adadelta")
