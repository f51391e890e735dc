"""How cost grows with size: ingest time, training throughput and inference throughput at 10k, 100k and
1M images, with the Python driver's peak memory for each stage (it should stay flat: nothing is
collected on the driver). Data: shifted/rotated copies of the embedded sample (``bench/synth.py``), as
IDX files of 10,000 images.

    .venv/bin/python bench/scale_bench.py [--sizes 10000 100000 1000000] [--train-steps 100]

Training throughput is measured over a fixed number of steps per epoch (``train.steps_per_epoch``, and
10 validation steps), 2 ranks, the second of two epochs; it should not depend on the size of the data set.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import psutil  # noqa: E402

from pipeline.config import PipelineConfig  # noqa: E402


class PeakRss:
    """Samples this (driver) process's resident memory in a thread; ``peak`` in MiB."""

    def __init__(self, interval_s: float = 0.2):
        self._proc = psutil.Process()
        self._interval = interval_s
        self.peak = 0.0
        self._stop = threading.Event()

    def __enter__(self):
        self.peak = self._proc.memory_info().rss / 2**20
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def _run(self):
        while not self._stop.wait(self._interval):
            self.peak = max(self.peak, self._proc.memory_info().rss / 2**20)

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--train-steps", type=int, default=100)
    parser.add_argument("--work", type=Path, default=None)
    args = parser.parse_args()

    import mlflow
    import synth  # bench/synth.py
    from common import setup_logging

    from pipeline.infer.batch import batch_infer
    from pipeline.ingest.build import ingest
    from pipeline.io.spark import get_spark
    from pipeline.train.driver import train

    setup_logging()
    work = args.work or Path(tempfile.mkdtemp(prefix="scale-bench-"))
    cfg = PipelineConfig()
    cfg.spark.master = "local[2]"
    cfg.spark.progress_interval_s = 30
    cfg.spark.conf["spark.driver.memory"] = "4g"  # local mode: executors live in the driver JVM
    cfg.mlflow.tracking_uri = f"sqlite:///{work / 'mlflow.db'}"
    cfg.mlflow.artifact_location = str(work / "artifacts")
    cfg.promote.min_accuracy = 0.0
    spark = get_spark(cfg.spark)
    rows = []
    try:
        for n in args.sizes:
            raw = work / f"raw-{n}"
            start = time.perf_counter()
            synth.synthetic_input(n, raw, test=2_000, seed=n)
            gen_s = time.perf_counter() - start
            cfg.ingest.train, cfg.ingest.test = str(raw / "train-*"), str(raw / "t10k-*")
            cfg.data.root = str(work / f"dataset-{n}")
            with PeakRss() as mem_ingest:
                start = time.perf_counter()
                manifest = ingest(spark, cfg)
                ingest_s = time.perf_counter() - start
            cfg.train.num_proc, cfg.train.epochs, cfg.train.steps_per_epoch = 2, 2, args.train_steps
            cfg.train.validation_steps = 10  # the same work per epoch at every size
            cfg.train.checkpoint_dir = str(work / "checkpoints")
            cfg.mlflow.registered_model = f"scale-{n}"
            with PeakRss() as mem_train:
                result = train(spark, cfg)
            mlflow.MlflowClient().set_registered_model_alias(cfg.mlflow.registered_model, "champion",
                                                             result.model_version)
            cfg.infer.split = "train"
            cfg.infer.output = str(work / f"predictions-{n}")
            with PeakRss() as mem_infer:
                summary = batch_infer(spark, cfg)
            rows.append({
                "n": n, "generate_s": gen_s, "files": len(list(raw.glob("train-*images*"))),
                "ingest_s": ingest_s, "ingest_rows_s": manifest["rows_parsed"] / ingest_s,
                "dropped": manifest["duplicates"]["dropped"],
                "train_img_s": result.epochs[-1]["images_per_sec"], "infer_rows": summary["rows_scored"],
                "infer_s": summary["seconds"], "infer_rows_s": summary["rows_per_sec"],
                "mem": (mem_ingest.peak, mem_train.peak, mem_infer.peak),
            })
            shutil.rmtree(raw, ignore_errors=True)
            shutil.rmtree(work / f"predictions-{n}", ignore_errors=True)
            print_table(rows, spark)
        from common import write_results

        path = write_results("scale", {
            "benchmark": "bench/scale_bench.py", "spark_master": cfg.spark.master,
            "train_steps_per_epoch": args.train_steps, "sizes": [
                {"images": r["n"], "train_files": r["files"], "ingest_seconds": r["ingest_s"],
                 "ingest_rows_per_sec": r["ingest_rows_s"], "duplicates_dropped": r["dropped"],
                 "train_images_per_sec": r["train_img_s"], "infer_rows": r["infer_rows"],
                 "infer_seconds": r["infer_s"], "infer_rows_per_sec": r["infer_rows_s"],
                 "driver_peak_rss_mib": {"ingest": r["mem"][0], "train": r["mem"][1], "infer": r["mem"][2]}}
                for r in rows],
        })
        print(f"written to {path}")
    finally:
        spark.stop()
        if args.work is None:
            shutil.rmtree(work, ignore_errors=True)


def print_table(rows, spark) -> None:
    base = rows[0]
    print(f"\nmachine: {platform.machine()}, {os.cpu_count()} cores, {psutil.virtual_memory().total / 2**30:.0f} GiB, "
          f"Python {platform.python_version()}, Spark {spark.version} {spark.sparkContext.master}")
    print(f"{'images':>9} {'files':>5} {'ingest s':>9} {'rows/s':>8} {'x time':>7} {'dups':>6} {'train img/s':>11} "
          f"{'infer s':>8} {'rows/s':>7} {'x time':>7}  driver peak RSS MiB (ingest/train/infer)")
    for r in rows:
        print(f"{r['n']:>9,} {r['files']:>5} {r['ingest_s']:>9.1f} {r['ingest_rows_s']:>8,.0f} "
              f"{r['ingest_s'] / base['ingest_s']:>7.1f} {r['dropped']:>6,} {r['train_img_s']:>11,.0f} "
              f"{r['infer_s']:>8.1f} {r['infer_rows_s']:>7,.0f} {r['infer_s'] / base['infer_s']:>7.1f}  "
              + " / ".join(f"{m:,.0f}" for m in r["mem"]))


if __name__ == "__main__":
    main()
