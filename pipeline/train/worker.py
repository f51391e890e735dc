"""What each rank (worker) runs: read its shard, train the CNN, checkpoint on rank 0.

``train_on_rank`` is sent to Spark tasks by ``horovod.spark.run``; ``on_tf_worker`` runs in the
process a ``tf_distribute`` barrier task starts (``pipeline.train.tf_worker``). Both run
``train_worker`` with the backend's ``Side`` (``pipeline.train.backends``). They import everything
inside so they pickle small. A ``RankJob`` holds only what a rank needs (model, optimizer and training
settings, and paths): no tracking URI, no credentials, since ranks never talk to MLflow. Rank 0
returns the final weights; the others return their rank; each also returns the cores it was bound
to. Lines that exist only because training is distributed carry a ``# Horovod:`` comment or go
through the side.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass

from pipeline.config import LrFindConfig, ModelConfig, OptimizerConfig, TrainConfig


@dataclass
class RankJob:
    model: ModelConfig
    optimizer: OptimizerConfig
    train: TrainConfig
    dataset_root: str
    run_dir: str
    ranks: int
    steps_per_epoch: int
    val_steps: int
    threads_per_rank: int
    in_memory: bool = False  # read the train and val shards once into memory (the driver decides)
    start_epoch: int = 0
    checkpoint: str | None = None  # prefix inside run_dir to resume from
    stoppable: bool = False  # the driver may stop the ranks early (tuning trials); they then look every few batches


@dataclass
class LrFindJob:
    """What a rank needs for the learning-rate range test."""

    model: ModelConfig
    optimizer: OptimizerConfig
    lr_find: LrFindConfig
    train: TrainConfig
    dataset_root: str
    run_dir: str
    threads_per_rank: int


def train_on_rank(job: RankJob):
    """A Horovod rank's part. A failure leaves ``rank-<r>.error`` (the traceback) in the run folder,
    so the driver can say what went wrong without anyone opening an executor's log."""

    def run(job):
        from pipeline.train.backends import HorovodSide

        return train_worker(job, HorovodSide(job.run_dir, job.threads_per_rank, job.train.seed, job.train.bind_cores))

    return _reporting_errors(run, job)


def on_tf_worker(job: RankJob | LrFindJob, rank: int, size: int, local_rank: int, local_size: int):
    """A ``tf_distribute`` worker's part (``TF_CONFIG`` already set): training, or the learning-rate
    range test for an ``LrFindJob``; failures as ``train_on_rank``."""
    os.environ[RANK_ENV] = str(rank)

    def run(job):
        from pipeline.train.backends import TFDistributeSide

        side = TFDistributeSide(job.run_dir, job.threads_per_rank, job.train.seed, job.train.bind_cores, rank, size,
                                local_rank, local_size, job.train.collective_timeout_s)
        return lr_find_worker(job, side) if isinstance(job, LrFindJob) else train_worker(job, side)

    return _reporting_errors(run, job)


def lr_find_on_rank(job: LrFindJob):
    """Runs this Horovod rank's part of the learning-rate range test; rank 0 returns the rates and losses."""

    def run(job):
        from pipeline.train.backends import HorovodSide

        return lr_find_worker(job, HorovodSide(job.run_dir, job.threads_per_rank, job.train.seed,
                                               job.train.bind_cores))

    return _reporting_errors(run, job)


def _reporting_errors(fn, job):
    try:
        return fn(job)
    except BaseException:
        import traceback

        from pipeline.train import checkpoints

        rank = _rank_or_none()
        if rank is not None:
            try:
                checkpoints.write_rank_error(job.run_dir, rank, traceback.format_exc())
            except Exception:  # the run folder itself may be what failed; the exception still propagates
                pass
        raise


RANK_ENV = "MNIST_PIPELINE_RANK"  # a tf_distribute worker's rank, for its error file


def _rank_or_none() -> int | None:
    if RANK_ENV in os.environ:
        return int(os.environ[RANK_ENV])
    try:
        import horovod.tensorflow as hvd_tf

        return hvd_tf.rank()
    except Exception:
        return int(os.environ["HOROVOD_RANK"]) if "HOROVOD_RANK" in os.environ else None


def start_rank(run_dir: str, threads: int, seed: int, bind_cores: str):
    """Horovod and TensorFlow set-up every rank does first; returns ``horovod.tensorflow.keras`` and the
    cores the rank is bound to (None: not bound)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    from pipeline.train.keras_compat import horovod_keras

    hvd = horovod_keras()
    import tensorflow as tf
    import tf_keras as keras

    from pipeline.io import storage
    from pipeline.train.devices import bind_to_cores, pin_gpu

    # Horovod: start the collective runtime (Gloo) for this process.
    hvd.init()
    # Horovod: one GPU per rank, by local rank, when the node has GPUs (CPU-only nodes: nothing to do).
    pin_gpu(tf, hvd.local_rank())
    # Horovod: when the host's ranks fill its cores, each takes its own block of them, threads and all
    # (Horovod's and Gloo's included, so its communication takes time from its own training only).
    cores = bind_to_cores(hvd.local_rank(), hvd.local_size(), threads, bind_cores)
    # Which process is which rank, for operators (and fault drills): <run_dir>/rank-<r>.pid
    storage.write_text(storage.join(run_dir, f"rank-{hvd.rank()}.pid"), f"{os.getpid()} {socket.gethostname()}\n")
    # Horovod: N ranks share the machine's cores; give each its part so they do not oversubscribe.
    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    keras.utils.set_random_seed(seed)
    return hvd, cores


def lr_find_worker(job: LrFindJob, side):
    """This worker's part of the learning-rate range test under ``side`` (either backend); rank 0
    returns the rates and the losses averaged over the workers."""
    from pipeline.io.reader import open_split
    from pipeline.train import callbacks as cb
    from pipeline.train.model import build_model, make_loss
    from pipeline.train.schedules import make_optimizer

    rank, size = side.rank, side.size
    with side.scope():
        model = build_model(job.model)
        # the gradients averaged over every worker, as in training; the sweep sets the rate every batch
        optimizer = side.optimizer(make_optimizer(job.optimizer, job.lr_find.min_learning_rate), job.train)
        model.compile(optimizer=optimizer, loss=make_loss(job.model))
    # Each batch's logs as this worker's own values, which the sweep averages over the workers itself;
    # Keras' default under MultiWorkerMirroredStrategy sums the workers' running means ("auto" = "sum").
    model.distribute_reduction_method = "first"
    sweep = cb.LearningRateSweep(side, job.lr_find)
    with open_split(job.dataset_root, "train", job.train.batch_size, cur_shard=rank, shard_count=size,
                    num_epochs=None, shuffle_row_groups=True, shuffle_buffer=job.train.shuffle_buffer,
                    seed=job.train.seed + rank, engine=side.reader) as train_ds:
        # every worker starts from rank 0's initial weights (Horovod: the broadcast callback)
        model.fit(side.distribute(train_ds), steps_per_epoch=job.lr_find.steps, epochs=1, verbose=0,
                  callbacks=[*side.callbacks(), sweep])
    if rank != 0:
        return {"rank": rank}
    return {"rank": rank, "rates": sweep.rates, "losses": sweep.losses, "diverged_at": sweep.diverged_at,
            "ranks": size}


def train_worker(job: RankJob, side):
    """Trains this worker's part under ``side`` (``pipeline.train.backends``); returns what the driver needs."""
    tcfg = job.train
    import numpy as np
    import tensorflow as tf
    import tf_keras as keras

    from pipeline.io.reader import open_split
    from pipeline.train import callbacks as cb
    from pipeline.train import checkpoints
    from pipeline.train.model import build_model, make_loss
    from pipeline.train.schedules import learning_rate_at, make_optimizer

    rank, size = side.rank, side.size
    with side.scope():
        model = build_model(job.model)
        optimizer = make_optimizer(job.optimizer, learning_rate_at(job.start_epoch, job.optimizer, size, tcfg.epochs))
        optimizer = side.optimizer(optimizer, tcfg)
        model.compile(optimizer=optimizer, loss=make_loss(job.model), metrics=["accuracy"])
        ckpt = tf.train.Checkpoint(model=model, optimizer=optimizer)
        if job.checkpoint:
            # Every rank restores the same checkpoint from shared storage (Horovod: then broadcast makes sure).
            optimizer.build(model.trainable_variables)
            with checkpoints.local_checkpoint(job.run_dir, job.checkpoint) as prefix:
                ckpt.restore(prefix).expect_partial()
    start_digest = checkpoints.weights_digest(model.get_weights())
    shard_ids = None
    if tcfg.report_shards:
        shard_ids = []
        with open_split(job.dataset_root, "train", 1024, cur_shard=rank, shard_count=size, with_ids=True,
                        engine=side.reader) as ids_ds:
            for _, _, ids in ids_ds:
                shard_ids += [i.decode() for i in ids.numpy()]

    with open_split(job.dataset_root, "train", tcfg.batch_size, cur_shard=rank, shard_count=size,
                    num_epochs=None, shuffle_row_groups=True, shuffle_buffer=tcfg.shuffle_buffer,
                    seed=tcfg.seed + rank, in_memory=job.in_memory, engine=side.reader) as train_ds, \
         open_split(job.dataset_root, "val", tcfg.batch_size, cur_shard=rank, shard_count=size,
                    num_epochs=None, in_memory=job.in_memory, engine=side.reader) as val_ds:
        callbacks = [
            cb.LearningRateController(job.optimizer, size, tcfg.epochs, job.steps_per_epoch),
            cb.Throughput(job.steps_per_epoch, tcfg.batch_size),
            cb.ResourceSampler(rank, job.run_dir),
            *side.callbacks(),
        ]
        if job.optimizer.schedule == "plateau":
            callbacks.append(keras.callbacks.ReduceLROnPlateau(
                monitor="val_loss", factor=job.optimizer.decay_rate, patience=job.optimizer.plateau_patience,
                min_lr=job.optimizer.min_learning_rate))
        stop = None
        if job.stoppable:
            stop = cb.StopOnRequest(side, job.run_dir)
            callbacks.append(stop)
        if tcfg.early_stopping_patience > 0:
            callbacks.append(keras.callbacks.EarlyStopping(
                monitor="val_loss", patience=tcfg.early_stopping_patience, restore_best_weights=True))
        with open_split(job.dataset_root, "val", tcfg.dead_unit_batch, num_epochs=1, engine=side.reader) as probe_ds:
            callbacks.append(cb.DeadUnits(next(iter(probe_ds))[0]))
        # Only rank 0 writes checkpoints and records (tf_distribute: the others take part in the write).
        if rank == 0 or side.symmetric_checkpoints:
            callbacks.append(cb.RankZeroRecorder(ckpt, job.run_dir, size, stop, keep=tcfg.keep_checkpoints,
                                                 chief=rank == 0))
        fail_after = os.environ.get(cb.FAIL_AFTER_EPOCH_ENV)
        if fail_after and rank == 0:
            callbacks.append(cb.FailAfterEpoch(int(fail_after)))
        hang_after = os.environ.get(cb.HANG_AFTER_EPOCH_ENV, "")
        if hang_after and int(hang_after.split(":")[1]) == rank:
            callbacks.append(cb.HangAfterEpoch(int(hang_after.split(":")[0])))

        model.fit(side.distribute(train_ds), steps_per_epoch=job.steps_per_epoch, epochs=tcfg.epochs,
                  initial_epoch=job.start_epoch, validation_data=side.distribute(val_ds),
                  validation_steps=job.val_steps, callbacks=callbacks, verbose=0)

    # The driver needs one copy of the results; rank 0 sends it.
    if rank != 0:
        return {"rank": rank, "shard_ids": shard_ids, "cores": side.cores}
    return {
        "rank": rank,
        "shard_ids": shard_ids,
        "cores": side.cores,
        "weights": [np.asarray(w) for w in model.get_weights()],
        "start_epoch": job.start_epoch,
        "start_weights_digest": start_digest,
        "ranks": size,
    }
