"""What each Horovod rank runs: read its shard with Petastorm, train the CNN, checkpoint on rank 0.

``train_on_rank`` is sent to Spark tasks by ``horovod.spark.run``; it imports everything inside so it
pickles small. Rank 0 returns the history and the final weights; the others return None. Lines that
exist only because training is distributed carry a ``# Horovod:`` comment.
"""

from __future__ import annotations

import os
import socket
import time
from dataclasses import dataclass

from pipeline.config import PipelineConfig

# Fault injection for tests and drills: a rank raises right after checkpointing this epoch.
FAIL_AFTER_EPOCH_ENV = "MNIST_PIPELINE_FAIL_AFTER_EPOCH"


@dataclass
class TrainJob:
    cfg: PipelineConfig
    dataset_root: str
    run_dir: str
    ranks: int
    steps_per_epoch: int
    val_steps: int
    threads_per_rank: int
    start_epoch: int = 0
    checkpoint: str | None = None  # prefix inside run_dir to resume from


def train_on_rank(job: TrainJob):
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from pipeline.train.keras_compat import horovod_keras

    hvd = horovod_keras()
    import numpy as np
    import tensorflow as tf
    import tf_keras as keras

    from pipeline.io.reader import open_split
    from pipeline.train import checkpoints
    from pipeline.train.model import build_model, dead_unit_fractions, make_loss
    from pipeline.train.schedules import learning_rate_at, make_optimizer

    # Horovod: start the collective runtime (Gloo) for this process.
    hvd.init()
    rank, size = hvd.rank(), hvd.size()
    # Which process is which rank, for operators (and fault drills): <run_dir>/rank-<r>.pid
    with tf.io.gfile.GFile(f"{job.run_dir}/rank-{rank}.pid", "w") as handle:
        handle.write(f"{os.getpid()} {socket.gethostname()}\n")
    # Horovod: N ranks share the machine's cores; give each its part so they do not oversubscribe.
    tf.config.threading.set_intra_op_parallelism_threads(job.threads_per_rank)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    cfg = job.cfg
    keras.utils.set_random_seed(cfg.train.seed)

    model = build_model(cfg.model)
    optimizer = make_optimizer(cfg.optimizer, learning_rate_at(job.start_epoch, cfg.optimizer, size, cfg.train.epochs))
    # Horovod: average gradients over all ranks with allreduce before they are applied.
    optimizer = hvd.DistributedOptimizer(optimizer)
    model.compile(optimizer=optimizer, loss=make_loss(cfg.model), metrics=["accuracy"])
    ckpt = tf.train.Checkpoint(model=model, optimizer=optimizer)
    if job.checkpoint:
        # Every rank restores the same checkpoint from shared storage, then broadcast makes sure.
        optimizer.build(model.trainable_variables)
        ckpt.restore(f"{job.run_dir}/{job.checkpoint}").expect_partial()
    start_digest = checkpoints.weights_digest(model.get_weights())
    shard_ids = None
    if cfg.train.report_shards:
        shard_ids = []
        with open_split(job.dataset_root, "train", 1024, cur_shard=rank, shard_count=size, with_ids=True) as ids_ds:
            for _, _, ids in ids_ds:
                shard_ids += [i.decode() for i in ids.numpy()]

    class LearningRateController(keras.callbacks.Callback):
        """Sets the warm-up / decay rate before every batch and reports it per epoch."""

        def on_epoch_begin(self, epoch, logs=None):
            self.epoch = epoch

        def on_train_batch_begin(self, batch, logs=None):
            if cfg.optimizer.schedule == "plateau" and self.epoch >= cfg.optimizer.warmup_epochs:
                return  # ReduceLROnPlateau owns the rate after warm-up
            epoch = self.epoch + batch / job.steps_per_epoch
            keras.backend.set_value(self.model.optimizer.learning_rate,
                                    learning_rate_at(epoch, cfg.optimizer, size, cfg.train.epochs))

        def on_epoch_end(self, epoch, logs=None):
            logs["learning_rate"] = float(keras.backend.get_value(self.model.optimizer.learning_rate))

    class Throughput(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.start = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            seconds = time.perf_counter() - self.start
            logs["epoch_seconds"] = seconds
            logs["images_per_sec_per_rank"] = job.steps_per_epoch * cfg.train.batch_size / seconds

    with open_split(job.dataset_root, "train", cfg.train.batch_size, cur_shard=rank, shard_count=size,
                    num_epochs=None, shuffle_row_groups=True, shuffle_buffer=cfg.train.shuffle_buffer,
                    seed=cfg.train.seed + rank) as train_ds, \
         open_split(job.dataset_root, "val", cfg.train.batch_size, cur_shard=rank, shard_count=size,
                    num_epochs=None) as val_ds:
        probe_images = None
        if rank == 0:
            with open_split(job.dataset_root, "val", cfg.train.dead_unit_batch, num_epochs=1) as probe_ds:
                probe_images = next(iter(probe_ds))[0]

        class RankZeroRecorder(keras.callbacks.Callback):
            """Rank 0: dead units, checkpoint, the epoch record (the driver logs it) and the resume state."""

            def on_epoch_end(self, epoch, logs=None):
                record = {"epoch": epoch + 1, **{k: float(v) for k, v in logs.items()}}
                record["images_per_sec"] = record["images_per_sec_per_rank"] * size
                for layer, fraction in dead_unit_fractions(self.model, probe_images).items():
                    record[f"dead_units_{layer}"] = fraction
                prefix = f"ckpt-{epoch + 1}"
                ckpt.write(f"{job.run_dir}/{prefix}")
                checkpoints.append_epoch(job.run_dir, record)
                state = checkpoints.read_state(job.run_dir)
                state.completed_epoch, state.checkpoint = epoch + 1, prefix
                state.weights_digest = checkpoints.weights_digest(self.model.get_weights())
                checkpoints.write_state(job.run_dir, state)

        class FailAfterEpoch(keras.callbacks.Callback):
            def on_epoch_end(self, epoch, logs=None):
                if os.environ.get(FAIL_AFTER_EPOCH_ENV) == str(epoch + 1) and rank == 0:
                    raise RuntimeError(f"{FAIL_AFTER_EPOCH_ENV}={epoch + 1}: failing on purpose after the checkpoint")

        callbacks = [
            LearningRateController(),
            Throughput(),
            # Horovod: start every rank from rank 0's variables (fresh init or the resumed checkpoint).
            hvd.callbacks.BroadcastGlobalVariablesCallback(0),
            # Horovod: average the epoch's metrics over ranks so every rank sees (and decides on) the same.
            hvd.callbacks.MetricAverageCallback(),
        ]
        if cfg.optimizer.schedule == "plateau":
            callbacks.append(keras.callbacks.ReduceLROnPlateau(
                monitor="val_loss", factor=cfg.optimizer.decay_rate, patience=cfg.optimizer.plateau_patience,
                min_lr=cfg.optimizer.min_learning_rate))
        if cfg.train.early_stopping_patience > 0:
            callbacks.append(keras.callbacks.EarlyStopping(
                monitor="val_loss", patience=cfg.train.early_stopping_patience, restore_best_weights=True))
        # Horovod: only rank 0 writes checkpoints and records.
        if rank == 0:
            callbacks.append(RankZeroRecorder())
        callbacks.append(FailAfterEpoch())

        model.fit(train_ds, steps_per_epoch=job.steps_per_epoch, epochs=cfg.train.epochs,
                  initial_epoch=job.start_epoch, validation_data=val_ds, validation_steps=job.val_steps,
                  callbacks=callbacks, verbose=0)

    # Horovod: the driver needs one copy of the results; rank 0 sends it.
    if rank != 0:
        return {"rank": rank, "shard_ids": shard_ids}
    return {
        "rank": rank,
        "shard_ids": shard_ids,
        "weights": [np.asarray(w) for w in model.get_weights()],
        "start_epoch": job.start_epoch,
        "start_weights_digest": start_digest,
        "ranks": size,
    }
