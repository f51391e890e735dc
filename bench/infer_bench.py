"""Batch-inference throughput: the pipeline's Spark batch inference (read Parquet, score in one pass,
write predictions, rejects and a summary) against ``model.predict`` on the same rows already in memory,
in one run, interleaved and repeated (median and spread), with the same total threads.

    .venv/bin/python bench/infer_bench.py [--input /usr/share/datasets/fashion-mnist] [--split train] [--repeats 3]
    .venv/bin/python bench/infer_bench.py --synthetic 1000000 --repeats 2 --results infer_1m

Prints the figures and writes them to bench/results/infer.json (or ``--results``). ``--synthetic N``
scores the train split of N images made by ``bench/synth.py`` (ingested first, not timed). Each side
is warmed up first on the test split (Python workers started, model shipped; TensorFlow traced).

The model is the default CNN (weights do not change the cost of a forward pass), registered in a
temporary SQLite store. Both sides use the machine's cores; Spark runs local[*].
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--input", type=Path, default=FASHION_MNIST)
    parser.add_argument("--split", default="train")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--synthetic", type=int, default=0, metavar="N",
                        help="make N synthetic images (bench/synth.py) and use them as the input")
    parser.add_argument("--results", default="infer", help="name of the JSON file under bench/results/")
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
    spark = get_spark(cfg.spark)
    try:
        ingest(spark, cfg)
        experiment = setup_experiment(cfg.mlflow)
        model = build_model(ModelConfig())
        example = np.zeros((2, 28, 28, 1), dtype=np.float32)
        with mlflow.start_run(experiment_id=experiment):
            info = mlflow.tensorflow.log_model(model, **model_location(), registered_model_name=cfg.mlflow.registered_model,
                                               signature=mlflow.models.infer_signature(example, model.predict(example)))
        mlflow.MlflowClient().set_registered_model_alias(cfg.mlflow.registered_model, "champion",
                                                         info.registered_model_version)
        images, _ = load_split(Path(cfg.data.root), args.split)
        n = len(images)
        model.predict(images[:1024], batch_size=1024, verbose=0)  # warm-up (the same model that was registered)
        cfg.infer.split = "test"
        batch_infer(spark, cfg)  # warm-up on the small split: model shipped to executors, Python workers started
        cfg.infer.split = args.split
        memory, pipeline = [], []
        for _ in range(args.repeats):  # interleaved, so a noisy neighbour slows both sides alike
            start = time.perf_counter()
            model.predict(images, batch_size=1024, verbose=0)
            memory.append(n / (time.perf_counter() - start))
            start = time.perf_counter()
            summary = batch_infer(spark, cfg)
            pipeline.append(n / (time.perf_counter() - start))
            assert summary["rows_scored"] == n
        ratios = [p / m for p, m in zip(pipeline, memory)]
        print(f"\nmachine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
              f"Spark {spark.version} {spark.sparkContext.master}")
        print(f"rows: {n:,} ({'synthetic' if args.synthetic else args.input.name} {args.split} split), "
              f"{args.repeats} interleaved repeats")
        print(f"model.predict, rows in memory, batch 1024:       median {statistics.median(memory):9,.0f} rows/s "
              f"(min {min(memory):,.0f}, max {max(memory):,.0f})")
        print(f"Spark batch inference (read, score, write, summary): median {statistics.median(pipeline):9,.0f} "
              f"rows/s (min {min(pipeline):,.0f}, max {max(pipeline):,.0f})")
        print(f"ratio pipeline / in-memory: median {statistics.median(ratios):.2f} "
              f"(each run: {', '.join(f'{r:.2f}' for r in ratios)})")
        source = f"synthetic: {args.synthetic:,} images (bench/synth.py)" if args.synthetic else args.input.name
        path = write_results(args.results, {
            "benchmark": "bench/infer_bench.py", "rows": n, "input": f"{source}, {args.split} split",
            "repeats": args.repeats, "spark_master": spark.sparkContext.master,
            "baseline": "model.predict on the same rows in memory, batch 1024, same process",
            "baseline_rows_per_sec": memory, "pipeline_rows_per_sec": pipeline, "ratios": ratios,
            "median_ratio": statistics.median(ratios),
        })
        print(f"written to {path}")
    finally:
        spark.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
