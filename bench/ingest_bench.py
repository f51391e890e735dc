"""Ingest throughput: the Spark pipeline against a single-process numpy + pyarrow baseline (figures printed
and written to bench/results/ingest.json).

Both start from the same gzipped IDX files and end with Parquet on local disk holding the same rows
(id, image bytes, label). The pipeline also validates, de-duplicates, splits and writes a manifest;
the baseline only parses and writes. Spark start-up is excluded (a warm-up ingest runs first).

    .venv/bin/python bench/ingest_bench.py [--input /usr/share/datasets/fashion-mnist] [--master local[*]]
    .venv/bin/python bench/ingest_bench.py --synthetic 1000000     # 1M images made by bench/synth.py

The default input is Fashion-MNIST (70,000 images, MNIST's IDX format) from the Debian package
``dataset-fashion-mnist`` (``apt-get install dataset-fashion-mnist``). ``--synthetic N`` makes N
shifted/rotated copies of the embedded sample's digits as gzipped IDX files of 10,000 images (plus a
10,000-image test set) first; making them is not timed.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import FASHION_MNIST, require_idx_input, write_results  # noqa: E402

from pipeline.config import PipelineConfig  # noqa: E402
from pipeline.ingest.build import ingest  # noqa: E402
from pipeline.io.spark import get_spark  # noqa: E402
from pipeline.sources import formats  # noqa: E402

SAMPLE = Path(__file__).resolve().parent.parent / "data" / "mnist-sample"


def baseline(input_dir: Path, out: Path, rows_per_group: int) -> int:
    """Single process: gunzip + parse with numpy, hash ids, write one Parquet file per split."""
    total = 0
    for split, prefix in (("train", "train"), ("test", "t10k")):
        xs, ys = [], []
        for images in sorted(input_dir.glob(f"{prefix}*-images-idx3-ubyte.gz")):
            labels = images.with_name(images.name.replace("images-idx3", "labels-idx1"))
            x, y = formats.parse_idx_pair(images.read_bytes(), images.name, labels.read_bytes(), labels.name)
            xs.append(x)
            ys.append(y)
        x, y = np.concatenate(xs), np.concatenate(ys)
        ids = [hashlib.sha256(row.tobytes()).hexdigest()[:32] for row in x]
        table = pa.table({
            "id": pa.array(ids, pa.string()),
            "image": pa.array([row.tobytes() for row in x], pa.binary()),
            "label": pa.array(y.astype(np.int32)),
        })
        out.mkdir(parents=True, exist_ok=True)
        pq.write_table(table, out / f"{split}.parquet", row_group_size=rows_per_group)
        total += len(y)
    return total


def spark_floor(spark, rows_dir: Path, out: Path, files: int) -> float:
    """Seconds Spark alone needs to move already parsed rows (id, image, label) into sorted files by
    shuffling them: read the baseline's Parquet, one shuffle by id, a sorted write. No parsing,
    validation or de-duplication: the least an ingest that shuffles its images once pays here (the
    pipeline did until 2026-11-27; its write tasks now read id ranges from the staged files)."""
    from pipeline.ingest.build import _PARQUET_OPTIONS

    start = time.perf_counter()
    (spark.read.parquet(str(rows_dir)).repartitionByRange(files, "id").sortWithinPartitions("id")
     .write.options(**_PARQUET_OPTIONS).parquet(str(out)))
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--input", type=Path, default=FASHION_MNIST)
    parser.add_argument("--master", default="local[*]")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--synthetic", type=int, default=0, metavar="N",
                        help="make N synthetic images (bench/synth.py) and use them as the input")
    parser.add_argument("--results", default="ingest", help="name of the JSON file under bench/results/")
    args = parser.parse_args()

    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    work = Path(tempfile.mkdtemp(prefix="ingest-bench-"))
    if args.synthetic:
        import synth

        args.input = synth.synthetic_input(args.synthetic, work / "input")
    else:
        require_idx_input(args.input)
    cfg = PipelineConfig()
    cfg.spark.master = args.master
    cfg.spark.progress_interval_s = 0
    cfg.spark.conf["spark.driver.memory"] = "4g"  # local mode: the executors live in the driver JVM
    spark = get_spark(cfg.spark)
    try:
        cfg.data.root = str(work / "warmup")
        cfg.ingest.train, cfg.ingest.test = str(SAMPLE / "train-*"), str(SAMPLE / "t10k-*")
        ingest(spark, cfg)

        cfg.ingest.train, cfg.ingest.test = str(args.input / "train*-ubyte.gz"), str(args.input / "t10k*-ubyte.gz")
        pipe_times, base_times, floor_times = [], [], []
        for i in range(args.repeats):
            cfg.data.root = str(work / f"pipeline-{i}")
            start = time.perf_counter()
            manifest = ingest(spark, cfg)
            pipe_times.append(time.perf_counter() - start)
            start = time.perf_counter()
            rows = baseline(args.input, work / f"baseline-{i}", cfg.ingest.rows_per_row_group)
            base_times.append(time.perf_counter() - start)
            files = sum(v["row_groups"] for v in manifest["splits"].values())
            floor_times.append(spark_floor(spark, work / f"baseline-{i}", work / f"floor-{i}", files))
            shutil.rmtree(work / f"pipeline-{i}", ignore_errors=True)
            shutil.rmtree(work / f"floor-{i}", ignore_errors=True)
        pipe_rows = manifest["rows_parsed"]
        assert pipe_rows == rows, (pipe_rows, rows)
        pipe, base, floor = min(pipe_times), min(base_times), min(floor_times)
        print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
              f"Spark {spark.version} {args.master}")
        print(f"input: {args.input} ({rows:,} images)")
        print(f"pipeline ingest (parse, validate, dedupe {manifest['duplicates']['dropped']}, split, write): "
              f"best of {args.repeats}: {pipe:.2f} s = {pipe_rows / pipe:,.0f} rows/s  (all: "
              + ", ".join(f"{t:.2f}" for t in pipe_times) + ")")
        print(f"baseline numpy+pyarrow, one process (parse, write): best of {args.repeats}: {base:.2f} s = "
              f"{rows / base:,.0f} rows/s  (all: " + ", ".join(f"{t:.2f}" for t in base_times) + ")")
        print(f"ratio pipeline/baseline throughput: {base / pipe:.2f}")
        print(f"Spark floor of a shuffle write (those rows read as Parquet, one shuffle by id, sorted write; no "
              f"parsing): best of {args.repeats}: {floor:.2f} s; baseline/floor: {base / floor:.2f} (the ceiling "
              "of an ingest that shuffles its images; the pipeline does not)")
        print("splits: " + ", ".join(f"{s} {v['rows']:,} rows in {v['row_groups']} row groups"
                                     for s, v in manifest["splits"].items()))
        path = write_results(args.results, {
            "benchmark": "bench/ingest_bench.py", "rows": rows,
            "input": f"synthetic: {args.synthetic:,} + 10,000 images (bench/synth.py)" if args.synthetic
            else str(args.input),
            "spark_master": args.master,
            "repeats": args.repeats, "pipeline_seconds": pipe_times, "baseline_seconds": base_times,
            "pipeline_rows_per_sec": pipe_rows / pipe, "baseline": "numpy + pyarrow, one process, same files",
            "baseline_rows_per_sec": rows / base, "ratio": base / pipe,
            "spark_floor": "baseline's Parquet read by Spark, one range shuffle by id, sorted write (no parsing): "
                           "the ceiling of an ingest that shuffles its images, which the pipeline no longer does",
            "spark_floor_seconds": floor_times, "ceiling_ratio": base / floor,
        })
        print(f"written to {path}")
    finally:
        spark.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
