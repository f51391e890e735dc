"""Which distributed backend trains: Horovod where it loads, TensorFlow's own multi-worker strategy
where it does not (``train.backend``).

Both run the same worker code (``pipeline.train.worker``): the model, the shards, the callbacks, the
epoch records, the checkpoints and what a worker returns are shared; a ``Side`` object holds the few
things that differ (how a worker starts, the optimizer wrapper, the strategy scope, how the workers
agree on a flag).
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os

from pipeline.errors import PreflightError

log = logging.getLogger(__name__)

HOROVOD, TF_DISTRIBUTE = "horovod", "tf_distribute"


@functools.lru_cache(maxsize=1)
def horovod_import_error() -> BaseException | None:
    """None when ``horovod.tensorflow`` imports and loads its ops against the installed TensorFlow."""
    try:
        import horovod.tensorflow  # noqa: F401
    except Exception as exc:  # ImportError, or a TensorFlow op library that does not link
        return exc
    return None


def resolve_backend(setting: str) -> str:
    """``train.backend`` as it will run: ``auto`` is Horovod when it loads, else ``tf_distribute``.

    Raises:
        PreflightError: ``horovod`` was asked for but does not load (the message says why and what to use).
    """
    if setting == TF_DISTRIBUTE:
        return TF_DISTRIBUTE
    error = horovod_import_error()
    if error is None:
        return HOROVOD
    if setting == HOROVOD:
        from importlib.metadata import PackageNotFoundError, version

        from pipeline.io.versions import horovod_problem

        try:
            tensorflow = version("tensorflow")
        except PackageNotFoundError:
            tensorflow = None
        raise PreflightError(f"train.backend=horovod but {horovod_problem(error, tensorflow)}; or set "
                             "train.backend=tf_distribute (TensorFlow's MultiWorkerMirroredStrategy, no Horovod needed)")
    log.info("Horovod does not load here (%s); training with tf_distribute", str(error).splitlines()[0] if str(error)
             else type(error).__name__)
    return TF_DISTRIBUTE


class HorovodSide:
    """A Horovod rank: ``hvd.init()``, its GPU and cores, ``DistributedOptimizer``, rank 0's variables
    broadcast at the start and the epoch's metrics averaged over the ranks."""

    name = HOROVOD
    symmetric_checkpoints = False  # rank 0 alone writes
    reader = "petastorm"  # pipeline.io.reader's engine for streamed shards

    def __init__(self, run_dir: str, threads: int, seed: int, bind_cores: str):
        from pipeline.train.worker import start_rank

        self.hvd, self.cores = start_rank(run_dir, threads, seed, bind_cores)
        self.rank, self.size = self.hvd.rank(), self.hvd.size()

    def scope(self):
        return contextlib.nullcontext()

    def optimizer(self, optimizer, train):
        # Horovod: average gradients over all ranks with allreduce before they are applied.
        compression = self.hvd.Compression.fp16 if train.fp16_allreduce else self.hvd.Compression.none
        return self.hvd.DistributedOptimizer(optimizer, compression=compression,
                                             backward_passes_per_step=train.backward_passes_per_step)

    def callbacks(self) -> list:
        return [
            # Horovod: start every rank from rank 0's variables (fresh init or the resumed checkpoint).
            self.hvd.callbacks.BroadcastGlobalVariablesCallback(0),
            # Horovod: average the epoch's metrics over ranks so every rank sees (and decides on) the same.
            self.hvd.callbacks.MetricAverageCallback(),
        ]

    def distribute(self, dataset):
        return dataset

    def any_rank(self, flag: bool) -> bool:
        """Rank 0's flag, the same on every rank (every rank calls this at the same batch)."""
        import tensorflow as tf

        return bool(int(self.hvd.broadcast(tf.constant(1 if flag else 0), 0, name="stop_request")))

    def mean(self, value: float) -> float:
        import tensorflow as tf

        return float(self.hvd.allreduce(tf.constant(float(value)), name="lr_find_loss"))


class TFDistributeSide:
    """A ``MultiWorkerMirroredStrategy`` worker of a Spark barrier stage. ``TF_CONFIG`` is set by the
    stage's task before this process imports TensorFlow; every collective fails after
    ``collective_timeout_s`` instead of waiting forever on a worker that hangs."""

    name = TF_DISTRIBUTE
    reader = "pyarrow"  # no Petastorm on the runtimes this backend is for
    symmetric_checkpoints = True  # a checkpoint write of mirrored variables may be collective: all take part

    def __init__(self, run_dir: str, threads: int, seed: int, bind_cores: str, rank: int, size: int,
                 local_rank: int, local_size: int, collective_timeout_s: float):
        import socket

        import tensorflow as tf
        import tf_keras as keras

        from pipeline.io import storage
        from pipeline.train.devices import bind_to_cores, pin_gpu

        self.rank, self.size = rank, size
        pin_gpu(tf, local_rank)
        self.cores = bind_to_cores(local_rank, local_size, threads, bind_cores)
        storage.write_text(storage.join(run_dir, f"rank-{rank}.pid"), f"{os.getpid()} {socket.gethostname()}\n")
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(1)
        keras.utils.set_random_seed(seed)
        options = tf.distribute.experimental.CommunicationOptions(timeout_seconds=collective_timeout_s)
        self.strategy = tf.distribute.MultiWorkerMirroredStrategy(communication_options=options)

    def scope(self):
        return self.strategy.scope()

    def optimizer(self, optimizer, train):
        return optimizer  # the strategy all-reduces the gradients itself

    def callbacks(self) -> list:
        return []  # the strategy starts every worker from the chief's variables and averages the metrics

    def distribute(self, dataset):
        """This worker's own shard, as it is: the shards are disjoint already, so no auto-sharding."""
        return self.strategy.distribute_datasets_from_function(lambda context: dataset)

    def _reduce(self, value: float, op):
        import tensorflow as tf

        per_replica = self.strategy.run(lambda: tf.constant(float(value)))
        return float(self.strategy.reduce(op, per_replica, axis=None))

    def any_rank(self, flag: bool) -> bool:
        """True when any worker's flag is set (only the chief's can be), the same on every worker."""
        import tensorflow as tf

        return self._reduce(1.0 if flag else 0.0, tf.distribute.ReduceOp.SUM) > 0

    def mean(self, value: float) -> float:
        import tensorflow as tf

        return self._reduce(value, tf.distribute.ReduceOp.MEAN)
