"""Training throughput: the pipeline on both backends (Horovod + Petastorm, and TensorFlow's
MultiWorkerMirroredStrategy in a Spark barrier stage: train.backend) at N=1 and N=2 ranks against plain
Keras on the same data held in memory, same model, batch size, seed and thread budget, in one run.
Each pipeline run is also the whole training stage (train, evaluate, register) over the full data set.

    .venv/bin/python bench/train_bench.py [--input /usr/share/datasets/fashion-mnist] [--epochs 3] [--repeats 3]
                                          [--streaming] [--unbound] [--backends horovod,tf_distribute]

The pipeline runs with its defaults, so on this data each rank holds its shards in memory
(``train.cache_in_memory: auto``) and two ranks on two cores are bound to one core each
(``train.bind_cores: auto``). ``--streaming`` adds N=1 and N=2 with the shards read through
Petastorm every epoch (``never``), ``--unbound`` N=2 with the ranks left to the OS
(``train.bind_cores: never``), in the same interleaved run.

The ceiling for N=2 is two plain Keras processes running at once, each on half the data with half
the threads, bound to cores as the ranks are, not talking to each other: what two ranks could reach
on this machine if the allreduce, the reader and the launch were free.

Each path runs --repeats times, interleaved; the medians give the ratios, min-max the spread, and the
figures go to bench/results/train.json.

Throughput counts an epoch as its training steps plus its validation pass, in every column alike;
the first epoch (graph tracing, warm-up) is left out of the images/s figures.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
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


def keras_in_memory(cfg: PipelineConfig, root: Path, epochs: int, threads: int, shard: int = 0, shards: int = 1) -> dict:
    from pipeline.train.devices import bind_to_cores

    bind_to_cores(shard, shards, threads, cfg.train.bind_cores)  # placed as rank ``shard`` of ``shards`` would be
    import tensorflow as tf
    import tf_keras as keras

    from pipeline.train.model import build_model, make_loss
    from pipeline.train.schedules import make_optimizer

    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    keras.utils.set_random_seed(cfg.train.seed)
    x, y = load_split(root, "train")
    xv, yv = load_split(root, "val")
    x, y, xv, yv = x[shard::shards], y[shard::shards], xv[shard::shards], yv[shard::shards]
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


def keras_processes(cfg: PipelineConfig, root: Path, epochs: int, n: int, threads: int) -> dict:
    """``n`` plain Keras processes at once, each with ``threads`` threads on its 1/n of the data and
    no communication: what n ranks on this machine could reach if the allreduce, the reader and the
    launch cost nothing (the ceiling for N=n)."""
    args = [sys.executable, __file__, "--epochs", str(epochs), "--keras-shard", "", "--root", str(root),
            "--threads", str(threads)]
    procs = []
    for i in range(n):
        args[args.index("--keras-shard") + 1] = f"{i}/{n}"
        procs.append(subprocess.Popen(list(args), stdout=subprocess.PIPE, text=True))
    results = []
    for p in procs:
        out, _ = p.communicate()
        if p.returncode:
            raise RuntimeError(f"keras shard process failed with exit code {p.returncode}")
        results.append(json.loads(out.strip().splitlines()[-1]))
    return {"images_per_sec": sum(r["images_per_sec"] for r in results), "processes": results}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--input", type=Path, default=FASHION_MNIST)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=3, help="interleaved repeats of every path; medians are reported")
    parser.add_argument("--streaming", action="store_true",
                        help="also run N=1 and N=2 streaming their shards (train.cache_in_memory=never)")
    parser.add_argument("--unbound", action="store_true",
                        help="also run N=2 with the ranks not bound to cores (train.bind_cores=never)")
    parser.add_argument("--backends", default="horovod,tf_distribute",
                        help="train.backend values to run, comma-separated (each at N=1 and N=2)")
    parser.add_argument("--keras-shard", help=argparse.SUPPRESS)  # i/n: one of keras_processes' children
    parser.add_argument("--root", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--threads", type=int, default=1, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.keras_shard:
        i, n = (int(v) for v in args.keras_shard.split("/"))
        result = keras_in_memory(PipelineConfig(), args.root, args.epochs, args.threads, shard=i, shards=n)
        print(json.dumps({k: v for k, v in result.items() if k != "val_accuracy"}))
        return
    require_idx_input(args.input)
    from common import setup_logging, write_results

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
        # Interleaved repeats (Keras, N=1, N=2, Keras, ...): a slow spell of the machine hits every path,
        # and the median of each path's repeats is what the ratios use.
        backends = args.backends.split(",")
        paths = [(n, "auto", "auto", backend) for backend in backends for n in (1, 2)] + \
            ([(1, "never", "auto", "horovod"), (2, "never", "auto", "horovod")] if args.streaming else []) + \
            ([(2, "auto", "never", "horovod")] if args.unbound else [])
        bases, ceilings, runs = [], [], {path: [] for path in paths}
        for _ in range(args.repeats):
            bases.append(keras_in_memory(cfg, work / "dataset", args.epochs, threads=cores))
            ceilings.append(keras_processes(cfg, work / "dataset", args.epochs, 2, max(1, cores // 2)))
            for n, cache, bind, backend in paths:
                cfg.train.backend = backend
                cfg.train.num_proc = n
                cfg.train.cache_in_memory = cache
                cfg.train.bind_cores = bind
                cfg.train.threads_per_rank = max(1, cores // n)
                start = time.perf_counter()
                result = train(spark, cfg)
                wall = time.perf_counter() - start
                steady = result.epochs[1:] or result.epochs
                runs[(n, cache, bind, backend)].append({"images_per_sec": float(np.mean([e["images_per_sec"] for e in steady])),
                                               "wall": wall, "accuracy": result.test_accuracy,
                                               "rank_cores": result.rank_cores,
                                               "epoch_seconds": [round(e["epoch_seconds"], 1) for e in result.epochs]})
            cfg.train.bind_cores = "auto"
        base_rates = [b["images_per_sec"] for b in bases]
        base_median = float(np.median(base_rates))
        print(f"\nmachine: {platform.machine()}, {cores} cores, Python {platform.python_version()}, Spark {spark.version}")
        print(f"data: {args.input}: train {manifest['splits']['train']['rows']:,}, val {manifest['splits']['val']['rows']:,}, "
              f"test {manifest['splits']['test']['rows']:,}; ingest {ingest_s:.1f} s")
        print(f"model: default CNN, batch {cfg.train.batch_size} per rank, {args.epochs} epochs, thread budget {cores}, "
              f"{args.repeats} interleaved repeats (median, [min-max])")
        print(f"{'path':44} {'images/s':>9} {'ratio':>6}  spread")
        print(f"{'plain Keras, in memory, 1 process':44} {base_median:9,.0f} {1.0:6.2f}  "
              f"[{min(base_rates):,.0f}-{max(base_rates):,.0f}]")
        figures = {"date": time.strftime("%Y-%m-%d"), "epochs": args.epochs, "repeats": args.repeats,
                   "batch_size_per_rank": cfg.train.batch_size, "train_rows": manifest["splits"]["train"]["rows"],
                   "baseline": {"path": "plain Keras in memory", "images_per_sec": base_rates,
                                "median": base_median}, "pipeline": {}}
        medians = {}
        for (n, cache, bind, backend), rows in runs.items():
            rates = [r["images_per_sec"] for r in rows]
            label = f"{backend} N={n}" + (" streamed" if cache == "never" else "") + (" unbound" if bind == "never" else "")
            medians[label] = float(np.median(rates))
            how = "in memory" if cache == "auto" else "Petastorm every epoch"
            print(f"{f'{label} ({how}, {max(1, cores // n)} thr/rank)':44} "
                  f"{medians[label]:9,.0f} {medians[label] / base_median:6.2f}  [{min(rates):,.0f}-{max(rates):,.0f}]")
            figures["pipeline"][label] = {"images_per_sec": rates, "median": medians[label], "backend": backend,
                                          "cache_in_memory": cache, "bind_cores": bind,
                                          "rank_cores": [{str(k): v for k, v in (r["rank_cores"] or {}).items()}
                                                         for r in rows],
                                          "ratio_vs_keras": medians[label] / base_median,
                                          "test_accuracy": [r["accuracy"] for r in rows],
                                          "wall_seconds": [round(r["wall"], 1) for r in rows]}
        for backend in backends:
            figures[f"scaling_efficiency_N2_vs_N1_{backend}"] = medians[f"{backend} N=2"] / medians[f"{backend} N=1"]
        if args.streaming:
            figures["scaling_efficiency_N2_vs_N1_streamed"] = \
                medians["horovod N=2 streamed"] / medians["horovod N=1 streamed"]
        if args.unbound:
            figures["scaling_efficiency_N2_vs_N1_unbound"] = medians["horovod N=2 unbound"] / medians["horovod N=1"]
        if {"horovod", "tf_distribute"} <= set(backends):
            accuracy = {b: float(np.median([r["accuracy"] for r in runs[(2, "auto", "auto", b)]])) for b in backends}
            figures["tf_distribute_vs_horovod_N2"] = {
                "images_per_sec_ratio": medians["tf_distribute N=2"] / medians["horovod N=2"],
                "test_accuracy_difference": accuracy["tf_distribute"] - accuracy["horovod"],
                "targets": "images/s ratio >= 0.9; |accuracy difference| <= 0.005 at equal epochs and seed"}
        ceiling_rates = [c["images_per_sec"] for c in ceilings]
        ceiling = float(np.median(ceiling_rates))
        figures["ceiling_N2"] = {"path": "2 plain Keras processes at once, half the data and threads each, bound to "
                                         "cores as the ranks are (train.bind_cores), no allreduce",
                                 "images_per_sec": ceiling_rates, "median": ceiling,
                                 "ratio_vs_keras": ceiling / base_median,
                                 "pipeline_N2_vs_ceiling": {b: medians[f"{b} N=2"] / ceiling for b in backends}}
        print(f"{f'ceiling N=2: 2 Keras processes, {max(1, cores // 2)} thr each':44} {ceiling:9,.0f} "
              f"{ceiling / base_median:6.2f}  [{min(ceiling_rates):,.0f}-{max(ceiling_rates):,.0f}]")
        for backend in backends:
            print(f"{backend}: scaling efficiency N=2 vs N=1: {medians[f'{backend} N=2'] / medians[f'{backend} N=1']:.2f}; "
                  f"N=2 vs its ceiling: {medians[f'{backend} N=2'] / ceiling:.2f}")
        if "tf_distribute_vs_horovod_N2" in figures:
            versus = figures["tf_distribute_vs_horovod_N2"]
            print(f"tf_distribute N=2 vs Horovod N=2: images/s {versus['images_per_sec_ratio']:.2f} (target >= 0.9), "
                  f"test accuracy {versus['test_accuracy_difference']:+.4f} (target within 0.005)")
        if args.streaming:
            print(f"scaling efficiency streamed: {figures['scaling_efficiency_N2_vs_N1_streamed']:.2f}")
        if args.unbound:
            print(f"scaling efficiency, N=2 unbound vs N=1: {figures['scaling_efficiency_N2_vs_N1_unbound']:.2f}")
        for (n, cache, bind, backend), rows in runs.items():
            print(f"{backend} N={n} {cache} bind={bind}: cores {rows[-1]['rank_cores']}, "
                  f"test accuracy {[round(r['accuracy'], 4) for r in rows]}, "
                  f"train+evaluate+register wall {[round(r['wall'], 1) for r in rows]} s")
        print(f"results: {write_results('train', figures)}")
    finally:
        spark.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
