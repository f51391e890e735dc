"""Keras callbacks each rank trains with (imported inside the rank, after ``keras_compat``).

Module-level classes, so they are testable on their own and the rank function stays a recipe.
"""

from __future__ import annotations

import time

import tf_keras as keras

from pipeline.config import OptimizerConfig
from pipeline.evaluate.fit import accuracy_gap
from pipeline.train import checkpoints
from pipeline.train.model import dead_unit_fractions
from pipeline.train.schedules import learning_rate_at

# Fault injection for tests and drills: rank 0 raises right after checkpointing this epoch.
FAIL_AFTER_EPOCH_ENV = "MNIST_PIPELINE_FAIL_AFTER_EPOCH"


class LearningRateController(keras.callbacks.Callback):
    """Sets the warm-up / decay rate before every batch and reports it per epoch."""

    def __init__(self, opt: OptimizerConfig, ranks: int, total_epochs: int, steps_per_epoch: int):
        super().__init__()
        self._opt, self._ranks, self._total, self._steps = opt, ranks, total_epochs, steps_per_epoch
        self._epoch = 0

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch

    def on_train_batch_begin(self, batch, logs=None):
        if self._opt.schedule == "plateau" and self._epoch >= self._opt.warmup_epochs:
            return  # ReduceLROnPlateau owns the rate after warm-up
        epoch = self._epoch + batch / self._steps
        keras.backend.set_value(self.model.optimizer.learning_rate,
                                learning_rate_at(epoch, self._opt, self._ranks, self._total))

    def on_epoch_end(self, epoch, logs=None):
        logs["learning_rate"] = float(keras.backend.get_value(self.model.optimizer.learning_rate))


class Throughput(keras.callbacks.Callback):
    """Adds the epoch's wall time and this rank's images/s to the epoch logs."""

    def __init__(self, steps_per_epoch: int, batch_size: int):
        super().__init__()
        self._images = steps_per_epoch * batch_size
        self._start = 0.0

    def on_epoch_begin(self, epoch, logs=None):
        self._start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        seconds = time.perf_counter() - self._start
        logs["epoch_seconds"] = seconds
        logs["images_per_sec_per_rank"] = self._images / seconds


class RankZeroRecorder(keras.callbacks.Callback):
    """Rank 0 only: dead units, checkpoint, the epoch record (the driver logs it) and the resume state."""

    def __init__(self, checkpoint, run_dir: str, probe_images, ranks: int):
        super().__init__()
        self._ckpt, self._run_dir, self._probe, self._ranks = checkpoint, run_dir, probe_images, ranks

    def on_epoch_end(self, epoch, logs=None):
        record = {"epoch": epoch + 1, **{k: float(v) for k, v in logs.items()}}
        record["images_per_sec"] = record["images_per_sec_per_rank"] * self._ranks
        if "val_accuracy" in record:  # over/under-fitting at a glance: train minus validation accuracy
            record["accuracy_gap"] = accuracy_gap(record)
        for layer, fraction in dead_unit_fractions(self.model, self._probe).items():
            record[f"dead_units_{layer}"] = fraction
        prefix = checkpoints.save_checkpoint(self._ckpt, self._run_dir, epoch + 1)
        checkpoints.append_epoch(self._run_dir, record)
        state = checkpoints.read_state(self._run_dir)
        state.completed_epoch, state.checkpoint = epoch + 1, prefix
        state.weights_digest = checkpoints.weights_digest(self.model.get_weights())
        checkpoints.write_state(self._run_dir, state)


class FailAfterEpoch(keras.callbacks.Callback):
    """Fault drill: raises on rank 0 after the given epoch's checkpoint. Installed only when
    ``MNIST_PIPELINE_FAIL_AFTER_EPOCH`` is set."""

    def __init__(self, epoch: int):
        super().__init__()
        self._epoch = epoch

    def on_epoch_end(self, epoch, logs=None):
        if epoch + 1 == self._epoch:
            raise RuntimeError(f"{FAIL_AFTER_EPOCH_ENV}={self._epoch}: failing on purpose after the checkpoint")
