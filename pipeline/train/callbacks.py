"""Keras callbacks each rank trains with (imported inside the rank, after ``keras_compat``).

Module-level classes, so they are testable on their own and the rank function stays a recipe.
"""

from __future__ import annotations

import math
import threading
import time

import tf_keras as keras

from pipeline.assess.fit import accuracy_gap
from pipeline.config import LrFindConfig, OptimizerConfig
from pipeline.train import checkpoints
from pipeline.train.model import dead_unit_fractions
from pipeline.train.schedules import learning_rate_at

# Fault injection for tests and drills: rank 0 raises right after checkpointing this epoch.
FAIL_AFTER_EPOCH_ENV = "MNIST_PIPELINE_FAIL_AFTER_EPOCH"
# ... and "<epoch>:<rank>": that rank hangs alive (sleeps) once the epoch is done, a stuck worker.
HANG_AFTER_EPOCH_ENV = "MNIST_PIPELINE_HANG_AFTER_EPOCH"


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


class ResourceSampler(keras.callbacks.Callback):
    """Every rank: its own process's CPU use over the epoch (per cent of one core: 200 = two cores busy),
    resident memory, and GPU memory where TensorFlow has a GPU, written to its own record in the run
    folder (``checkpoints.append_resources``); the driver logs them per rank, so a straggler shows."""

    def __init__(self, rank: int, run_dir: str):
        super().__init__()
        import psutil

        self._rank, self._run_dir = rank, run_dir
        self._process = psutil.Process()
        self._cpu = self._wall = 0.0

    def _cpu_seconds(self) -> float:
        times = self._process.cpu_times()
        return times.user + times.system

    def on_epoch_begin(self, epoch, logs=None):
        self._cpu, self._wall = self._cpu_seconds(), time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        wall = max(time.perf_counter() - self._wall, 1e-9)
        record = {"epoch": epoch + 1, "rank": self._rank,
                  "cpu_percent": 100.0 * (self._cpu_seconds() - self._cpu) / wall,
                  "rss_mb": self._process.memory_info().rss / 2**20}
        gpu = _gpu_memory_mb()
        if gpu is not None:
            record["gpu_memory_mb"] = gpu
        try:
            checkpoints.append_resources(self._run_dir, self._rank, record)
        except OSError:  # a figure to look at, never a reason to stop training
            pass


def _gpu_memory_mb() -> float | None:
    import tensorflow as tf

    if not tf.config.list_logical_devices("GPU"):
        return None
    return tf.config.experimental.get_memory_info("GPU:0")["current"] / 2**20


class StopOnRequest(keras.callbacks.Callback):
    """Stops every rank at the same batch once the driver asks (``checkpoints.request_stop``: a pruned
    tuning trial), so no rank is left waiting in an allreduce for the others.

    Rank 0 watches for the request in a background thread; every ``every`` batches all ranks take rank
    0's answer through one collective of the backend (``side.any_rank``: a Horovod broadcast, a
    strategy reduce) and stop together. ``stopped`` tells the epoch recorder not to record the
    cut-short epoch.
    """

    def __init__(self, side, run_dir: str, every: int = 10, poll_s: float = 1.0):
        super().__init__()
        self._side, self._run_dir, self._every, self._poll_s = side, run_dir, every, poll_s
        self._requested = threading.Event()
        self._done = threading.Event()
        self._batches = 0
        self.stopped = False

    def on_train_begin(self, logs=None):
        if self._side.rank == 0:
            threading.Thread(target=self._watch, name="stop-watch", daemon=True).start()

    def _watch(self) -> None:
        while not self._done.wait(self._poll_s):
            try:
                if checkpoints.stop_requested(self._run_dir):
                    self._requested.set()
                    return
            except Exception:  # storage hiccup: look again next time
                pass

    def on_train_batch_end(self, batch, logs=None):
        self._batches += 1
        if self._batches % self._every:
            return
        # every rank calls this at the same batch; rank 0's answer decides for all
        if self._side.any_rank(self._requested.is_set()):
            self.stopped = True
            self.model.stop_training = True

    def on_train_end(self, logs=None):
        self._done.set()


class DeadUnits(keras.callbacks.Callback):
    """Adds the fraction of dead ReLU units per layer (``dead_units_<layer>``) to the epoch logs, from
    the same probe images on every rank: under ``MultiWorkerMirroredStrategy`` a forward pass of a new
    model is collective, so every worker runs it, not rank 0 alone."""

    def __init__(self, probe_images):
        super().__init__()
        self._probe = probe_images

    def on_epoch_end(self, epoch, logs=None):
        for layer, fraction in dead_unit_fractions(self.model, self._probe).items():
            logs[f"dead_units_{layer}"] = fraction


class RankZeroRecorder(keras.callbacks.Callback):
    """Rank 0: the checkpoint, the epoch record (the driver logs it) and the resume state. With
    ``chief=False`` (the other workers of ``tf_distribute``, where writing a checkpoint may take part in
    collectives) it writes the checkpoint to a local folder it throws away, and nothing else."""

    def __init__(self, checkpoint, run_dir: str, ranks: int, stop: StopOnRequest | None = None,
                 keep: int = 2, chief: bool = True):
        super().__init__()
        self._ckpt, self._run_dir, self._ranks = checkpoint, run_dir, ranks
        self._stop, self._keep, self._chief = stop, keep, chief

    def on_epoch_end(self, epoch, logs=None):
        if self._stop is not None and self._stop.stopped:
            return  # the driver stopped the run mid-epoch: that epoch is neither recorded nor checkpointed
        if not self._chief:
            checkpoints.discard_checkpoint(self._ckpt)
            return
        record = {"epoch": epoch + 1, **{k: float(v) for k, v in logs.items()}}
        record["images_per_sec"] = record["images_per_sec_per_rank"] * self._ranks
        if "val_accuracy" in record:  # over/under-fitting at a glance: train minus validation accuracy
            record["accuracy_gap"] = accuracy_gap(record)
        prefix = checkpoints.save_checkpoint(self._ckpt, self._run_dir, epoch + 1)
        checkpoints.append_epoch(self._run_dir, record)
        state = checkpoints.read_state(self._run_dir)
        state.completed_epoch, state.checkpoint = epoch + 1, prefix
        state.weights_digest = checkpoints.weights_digest(self.model.get_weights())
        checkpoints.write_state(self._run_dir, state)
        checkpoints.prune_checkpoints(self._run_dir, epoch + 1, self._keep)  # state.json names the new one now


class FailAfterEpoch(keras.callbacks.Callback):
    """Fault drill: raises on rank 0 after the given epoch's checkpoint. Installed only when
    ``MNIST_PIPELINE_FAIL_AFTER_EPOCH`` is set."""

    def __init__(self, epoch: int):
        super().__init__()
        self._epoch = epoch

    def on_epoch_end(self, epoch, logs=None):
        if epoch + 1 == self._epoch:
            raise RuntimeError(f"{FAIL_AFTER_EPOCH_ENV}={self._epoch}: failing on purpose after the checkpoint")


class HangAfterEpoch(keras.callbacks.Callback):
    """Fault drill: this rank stops doing anything after the given epoch while its process stays alive
    (TensorFlow's own threads go on). Installed only when ``MNIST_PIPELINE_HANG_AFTER_EPOCH`` names it."""

    def __init__(self, epoch: int):
        super().__init__()
        self._epoch = epoch

    def on_epoch_end(self, epoch, logs=None):
        if epoch + 1 == self._epoch:
            import time

            while True:
                time.sleep(60)


class LearningRateSweep(keras.callbacks.Callback):
    """The learning-rate range test: the rate grows by the same factor every batch, from
    ``min_learning_rate`` to ``max_learning_rate`` over ``steps`` batches, and each batch's loss,
    averaged over the ranks, is recorded. Training stops once the smoothed loss exceeds
    ``diverge_factor`` times its minimum (or is not finite). Every rank sees the same averaged loss,
    so all decide to stop at the same batch.
    """

    def __init__(self, side, cfg: LrFindConfig):
        super().__init__()
        self._side, self._cfg = side, cfg
        self._factor = (cfg.max_learning_rate / cfg.min_learning_rate) ** (1.0 / (cfg.steps - 1))
        self.rates: list[float] = []
        self.losses: list[float] = []
        self.diverged_at: int | None = None
        self._average = 0.0
        self._running = 0.0  # the epoch's running mean loss after the previous batch
        self._best = float("inf")

    def on_train_batch_begin(self, batch, logs=None):
        rate = self._cfg.min_learning_rate * self._factor ** len(self.rates)
        keras.backend.set_value(self.model.optimizer.learning_rate, rate)
        self.rates.append(rate)

    def on_train_batch_end(self, batch, logs=None):
        # Keras reports the epoch's running mean as "loss" (this worker's: lr_find_worker); this batch's
        # own loss is what the mean, averaged over the workers, moved by.
        n = len(self.losses) + 1
        running = self._side.mean(float(logs["loss"]))
        loss = n * running - (n - 1) * self._running
        self._running = running
        self.losses.append(loss)
        beta = self._cfg.smoothing
        self._average = beta * self._average + (1 - beta) * loss
        smoothed = self._average / (1 - beta ** n)
        self._best = min(self._best, smoothed)
        if not math.isfinite(smoothed) or (n > 1 and smoothed > self._cfg.diverge_factor * self._best):
            self.diverged_at = n
            self.model.stop_training = True
