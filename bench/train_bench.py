"""Training throughput: the pipeline (Petastorm + Horovod on Spark) at N=1 and N=2 ranks against plain
Keras on the same data held in memory, same model, batch size and thread budget, in one run.
The N=2 run is also the whole pipeline (ingest, train, evaluate, register) over the full data set.

    .venv/bin/python bench/train_bench.py [--input /usr/share/datasets/fashion-mnist] [--epochs 3]

Throughput counts an epoch as its training steps plus its validation pass, in every column alike;
the first epoch (graph tracing, warm-up) is left out of the images/s figures.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import FASHION_MNIST, load_split, require_idx_input  # noqa: E402

os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

from pipeline.config import PipelineConfig  # noqa: E402


def keras_in_memory(cfg: PipelineConfig, root: Path, epochs: int, threads: int) -> dict:
    import tensorflow as tf
    import tf_keras as keras

    from pipeline.train.model import build_model, make_loss
    from pipeline.train.schedules import make_optimizer

    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    keras.utils.set_random_seed(cfg.train.seed)
    x, y = load_split(root, "train")
    xv, yv = load_split(root, "val")
    batch = cfg.train.batch_size
    train_ds = tf.data.Dataset.from_tensor_slices((x, y)).shuffle(cfg.train.shuffle_buffer).batch(batch).prefetch(2)
    val_ds = tf.data.Dataset.from_tensor_slices((xv, yv)).batch(batch)
    model = build_model(cfg.model)
    model.compile(make_optimizer(cfg.optimizer, cfg.optimizer.learning_rate), make_loss(cfg.model), ["accuracy"])
    times = []

    class Timer(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.start = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            times.append(time.perf_counter() - self.start)

    history = model.fit(train_ds, epochs=epochs, validation_data=val_ds, callbacks=[Timer()], verbose=0)
    steady = times[1:] or times
    return {"images_per_sec": len(x) / np.mean(steady), "epoch_seconds": times,
            "val_accuracy": history.history["val_accuracy"][-1]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--input", type=Path, default=FASHION_MNIST)
    parser.add_argument("--epochs", type=int, default=3)
    args = parser.parse_args()
    require_idx_input(args.input)
    from common import setup_logging

    from pipeline.ingest.build import ingest
    from pipeline.io.spark import get_spark
    from pipeline.train.driver import train

    setup_logging()
    work = Path(tempfile.mkdtemp(prefix="train-bench-"))
    cores = os.cpu_count() or 1
    cfg = PipelineConfig()
    cfg.spark.master = "local[2]"
    cfg.spark.progress_interval_s = 0
    cfg.ingest.train, cfg.ingest.test = str(args.input / "train-*-ubyte.gz"), str(args.input / "t10k-*-ubyte.gz")
    cfg.data.root = str(work / "dataset")
    cfg.train.epochs = args.epochs
    cfg.train.checkpoint_dir = str(work / "checkpoints")
    cfg.mlflow.tracking_uri = f"sqlite:///{work / 'mlflow.db'}"
    cfg.mlflow.artifact_location = str(work / "artifacts")
    spark = get_spark(cfg.spark)
    try:
        start = time.perf_counter()
        manifest = ingest(spark, cfg)
        ingest_s = time.perf_counter() - start
        base = keras_in_memory(cfg, work / "dataset", args.epochs, threads=cores)
        rows = {}
        for n in (1, 2):
            cfg.train.num_proc = n
            cfg.train.threads_per_rank = max(1, cores // n)
            start = time.perf_counter()
            result = train(spark, cfg)
            wall = time.perf_counter() - start
            steady = result.epochs[1:] or result.epochs
            rows[n] = {"images_per_sec": float(np.mean([e["images_per_sec"] for e in steady])),
                       "wall": wall, "accuracy": result.test_accuracy,
                       "epoch_seconds": [round(e["epoch_seconds"], 1) for e in result.epochs]}
        print(f"\nmachine: {platform.machine()}, {cores} cores, Python {platform.python_version()}, Spark {spark.version}")
        print(f"data: {args.input}: train {manifest['splits']['train']['rows']:,}, val {manifest['splits']['val']['rows']:,}, "
              f"test {manifest['splits']['test']['rows']:,}; ingest {ingest_s:.1f} s")
        print(f"model: default CNN, batch {cfg.train.batch_size} per rank, {args.epochs} epochs, thread budget {cores}")
        print(f"{'path':44} {'images/s':>9} {'ratio':>6}  epoch seconds")
        print(f"{'plain Keras, in memory, 1 process':44} {base['images_per_sec']:9,.0f} {1.0:6.2f}  "
              f"{[round(t, 1) for t in base['epoch_seconds']]}")
        for n, row in rows.items():
            print(f"{f'pipeline N={n} (Petastorm + Horovod, {max(1, cores // n)} thr/rank)':44} "
                  f"{row['images_per_sec']:9,.0f} {row['images_per_sec'] / base['images_per_sec']:6.2f}  "
                  f"{row['epoch_seconds']}")
        for n, row in rows.items():
            print(f"pipeline N={n}: test accuracy {row['accuracy']:.4f}, train+evaluate+register wall {row['wall']:.1f} s")
        print(f"plain Keras val accuracy after {args.epochs} epochs: {base['val_accuracy']:.4f}")
    finally:
        spark.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
