"""Batch-inference throughput: the pipeline's Spark batch inference (read Parquet, score in one pass,
write predictions, rejects and a summary) against ``model.predict`` on the same rows already in memory,
in one run, interleaved and repeated (median and spread), with the same total threads. Each side's
CPU seconds (driver, JVM and Python workers together) are reported beside its wall-clock throughput:
on a shared VM the wall clock also carries the neighbours' CPU steal, which the CPU seconds do not.

    .venv/bin/python bench/infer_bench.py [--input /usr/share/datasets/fashion-mnist] [--split train] [--repeats 3]
    .venv/bin/python bench/infer_bench.py --synthetic 1000000 --repeats 2 --results infer_1m
    .venv/bin/python bench/infer_bench.py --monitoring --repeats 15 --results monitor
    .venv/bin/python bench/infer_bench.py --monitoring --synthetic 1000000 --repeats 2 --results monitor_1m

Prints the figures and writes them to bench/results/infer.json (or ``--results``). ``--synthetic N``
scores the train split of N images made by ``bench/synth.py`` (ingested first, not timed). Each side
is warmed up first on the test split (Python workers started, model shipped; TensorFlow traced).

The model is the default CNN (weights do not change the cost of a forward pass), registered in a
temporary SQLite store. Both sides use the machine's cores; Spark runs local[*].

``--monitoring``: the two sides are the pipeline's batch inference with monitoring off
(``monitor.enabled=false``, the baseline) and on (the default: bins per row, the profile in the
counting aggregation, the inference log, the history row and the MLflow run), the model registered
with its reference as training registers it.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import FASHION_MNIST, load_split, require_idx_input, write_results  # noqa: E402

os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

from pipeline.config import ModelConfig, PipelineConfig  # noqa: E402
from pipeline.io.tracking import model_location  # noqa: E402


def cpu_seconds() -> float:
    """User + system CPU seconds so far of this process and every process under it (the JVM, Spark's
    Python workers)."""
    import psutil

    me = psutil.Process()
    total = 0.0
    for process in (me, *me.children(recursive=True)):
        try:
            times = process.cpu_times()
        except psutil.NoSuchProcess:  # ended between the listing and the reading: its time is gone with it
            continue
        total += times.user + times.system
    return total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--input", type=Path, default=FASHION_MNIST)
    parser.add_argument("--split", default="train")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--synthetic", type=int, default=0, metavar="N",
                        help="make N synthetic images (bench/synth.py) and use them as the input")
    parser.add_argument("--results", default="infer", help="name of the JSON file under bench/results/")
    parser.add_argument("--monitoring", action="store_true",
                        help="compare batch inference with monitoring on against off (instead of model.predict)")
    args = parser.parse_args()
    if not args.synthetic:
        require_idx_input(args.input)
    import mlflow
    from common import setup_logging

    from pipeline.infer.batch import batch_infer
    from pipeline.ingest.build import ingest
    from pipeline.io.spark import get_spark
    from pipeline.io.tracking import setup_experiment
    from pipeline.train.model import build_model

    setup_logging()
    work = Path(tempfile.mkdtemp(prefix="infer-bench-"))
    if args.synthetic:
        import synth

        args.input = synth.synthetic_input(args.synthetic, work / "input")
    cfg = PipelineConfig()
    cfg.spark.progress_interval_s = 0
    cfg.ingest.train, cfg.ingest.test = str(args.input / "train-*-ubyte.gz"), str(args.input / "t10k-*-ubyte.gz")
    cfg.data.root = str(work / "dataset")
    cfg.mlflow.tracking_uri = f"sqlite:///{work / 'mlflow.db'}"
    cfg.mlflow.artifact_location = str(work / "artifacts")
    cfg.infer.output = str(work / "predictions")
    cfg.monitor.path = str(work / "monitoring")
    spark = get_spark(cfg.spark)
    try:
        ingest(spark, cfg)
        experiment = setup_experiment(cfg.mlflow)
        model = build_model(ModelConfig())
        example = np.zeros((2, 28, 28, 1), dtype=np.float32)
        with mlflow.start_run(experiment_id=experiment) as run:
            if args.monitoring:  # registered as training registers it: with its reference
                from pipeline.assess import drift
                from pipeline.train.registration import log_and_register

                test_images, test_labels = load_split(Path(cfg.data.root), "test")
                probs = model.predict(test_images, batch_size=1024, verbose=0)
                reference = drift.profile(test_images.astype(np.uint8), probs, test_labels)
                version = log_and_register(model, test_images, cfg.mlflow, run.info.run_id, 0.0, reference)
            else:
                version = mlflow.tensorflow.log_model(
                    model, **model_location(), registered_model_name=cfg.mlflow.registered_model,
                    signature=mlflow.models.infer_signature(example, model.predict(example))).registered_model_version
        mlflow.MlflowClient().set_registered_model_alias(cfg.mlflow.registered_model, "champion", version)
        images, _ = load_split(Path(cfg.data.root), args.split)
        n = len(images)
        model.predict(images[:1024], batch_size=1024, verbose=0)  # warm-up (the same model that was registered)
        cfg.infer.split = "test"
        batch_infer(spark, cfg)  # warm-up on the small split: model shipped to executors, Python workers started
        cfg.infer.split = args.split
        memory, pipeline = [], []
        cpu: dict[str, list[float]] = {"baseline": [], "measured": []}

        def baseline() -> None:
            start, used = time.perf_counter(), cpu_seconds()
            if args.monitoring:
                cfg.monitor.enabled = False
                assert batch_infer(spark, cfg)["rows_scored"] == n
                cfg.monitor.enabled = True
            else:
                model.predict(images, batch_size=1024, verbose=0)
            memory.append(n / (time.perf_counter() - start))
            cpu["baseline"].append(cpu_seconds() - used)

        def measured() -> None:
            start, used = time.perf_counter(), cpu_seconds()
            summary = batch_infer(spark, cfg)
            pipeline.append(n / (time.perf_counter() - start))
            cpu["measured"].append(cpu_seconds() - used)
            assert summary["rows_scored"] == n
            if args.monitoring:
                assert summary["monitoring"]["class_psi"] is not None

        for i in range(args.repeats):  # interleaved, so a noisy neighbour slows both sides alike
            # the order alternates where both sides write the same output (monitoring), so neither side
            # always finds the previous output (and the page cache) left by the other
            sides = (measured, baseline) if args.monitoring and i % 2 else (baseline, measured)
            for side in sides:
                side()
        ratios = [p / m for p, m in zip(pipeline, memory)]
        if args.monitoring:  # (label, figure) of each side, then the JSON's names
            sides = ("batch inference, monitoring off:", "batch inference, monitoring on: ", "on / off")
            names = ("baseline_rows_per_sec", "monitored_rows_per_sec")
            extra = {"benchmark": "bench/infer_bench.py --monitoring", "cost": 1 - statistics.median(ratios),
                     "baseline": "batch inference with monitor.enabled=false, same process, interleaved"}
        else:
            sides = ("model.predict, rows in memory, batch 1024:      ",
                     "Spark batch inference (read, score, write, summary):", "pipeline / in-memory")
            names = ("baseline_rows_per_sec", "pipeline_rows_per_sec")
            extra = {"benchmark": "bench/infer_bench.py",
                     "baseline": "model.predict on the same rows in memory, batch 1024, same process"}
        source = f"synthetic: {args.synthetic:,} images (bench/synth.py)" if args.synthetic else args.input.name
        print(f"\nmachine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
              f"Spark {spark.version} {spark.sparkContext.master}")
        print(f"rows: {n:,} ({source}, {args.split} split), {args.repeats} interleaved repeats")
        for label, figures in zip(sides, (memory, pipeline)):
            print(f"{label} median {statistics.median(figures):9,.0f} rows/s "
                  f"(min {min(figures):,.0f}, max {max(figures):,.0f})")
        line = (f"ratio {sides[2]}: median {statistics.median(ratios):.3f} "
                f"(each run: {', '.join(f'{r:.3f}' for r in ratios)})")
        if args.monitoring:
            line += f"; monitoring costs {extra['cost'] * 100:.1f}% of throughput (target <= 10%)"
        print(line)
        # CPU seconds of the whole work (driver, JVM, Python workers) per run: what a run costs a machine
        # that is busy only with it; wall time on a shared VM also carries the neighbours' steal
        cpu_ratios = [b / m for b, m in zip(cpu["baseline"], cpu["measured"])]
        print(f"CPU seconds per run (driver, JVM, Python workers): baseline median "
              f"{statistics.median(cpu['baseline']):.1f}, measured median {statistics.median(cpu['measured']):.1f}; "
              f"rows per CPU second, ratio {sides[2]}: median {statistics.median(cpu_ratios):.3f} "
              f"(each run: {', '.join(f'{r:.3f}' for r in cpu_ratios)})")
        extra.update(baseline_cpu_seconds=cpu["baseline"], measured_cpu_seconds=cpu["measured"],
                     cpu_ratios=cpu_ratios, median_cpu_ratio=statistics.median(cpu_ratios))
        path = write_results(args.results, {
            "rows": n, "input": f"{source}, {args.split} split", "repeats": args.repeats,
            "spark_master": spark.sparkContext.master, names[0]: memory, names[1]: pipeline, "ratios": ratios,
            "median_ratio": statistics.median(ratios), **extra,
        })
        print(f"written to {path}")
    finally:
        spark.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
