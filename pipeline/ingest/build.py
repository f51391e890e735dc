"""Ingest: raw MNIST files -> validated, de-duplicated, split, shard-ready Parquet + manifest.

Parsing runs on the executors, one task per input unit (an IDX images/labels pair, or one text
file), so data spread over many files scales with the cluster; nothing is collected on the driver
but per-file metadata and counts.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import math
import subprocess
import time
from pathlib import Path

from pyspark import StorageLevel
from pyspark.sql import DataFrame, SparkSession, Window
from pyspark.sql import functions as F

import pipeline
from pipeline.config import PipelineConfig
from pipeline.errors import InputError
from pipeline.ingest.download import download_mnist
from pipeline.io import storage
from pipeline.io.dataset import (
    MANIFEST,
    SCHEMA_VERSION,
    SPLITS,
    count_row_groups,
    new_staging_path,
    split_path,
    swap_into_place,
)
from pipeline.io.fs import HadoopFS, qualify
from pipeline.io.progress import SparkProgress
from pipeline.sources.files import parse_inputs, plan_units

log = logging.getLogger(__name__)

def drop_duplicates(images: DataFrame) -> DataFrame:
    """Keeps one row per distinct image: the test copy if there is one (so test never leaks into
    train), else the first by source file and index. Adds ``id`` (128 bits of the image's SHA-256),
    ``copies`` and ``labels`` (distinct labels among the copies)."""
    with_id = images.withColumn("id", F.substring(F.sha2("image", 256), 1, 32))
    priority = F.when(F.col("split") == "test", 0).otherwise(1)
    grouped = with_id.groupBy("id").agg(
        F.min(F.struct(priority.alias("p"), "source", "idx", "split", "label", "image")).alias("keep"),
        F.count(F.lit(1)).alias("copies"),
        F.countDistinct("label").alias("labels"),
    )
    return grouped.select("id", "keep.split", "keep.label", "keep.image", "copies", "labels")


def assign_val(deduped: DataFrame, val_counts: dict[int, int], seed: int) -> DataFrame:
    """Moves ``val_counts[label]`` train rows of each class to ``val``, chosen by a seeded hash of
    the id, so the choice is the same on every run and independent of partitioning."""
    thresholds = F.create_map(*[F.lit(x) for kv in sorted(val_counts.items()) for x in kv])
    order = Window.partitionBy("label").orderBy(F.xxhash64("id", F.lit(seed)), "id")
    train = deduped.where(F.col("split") == "train").withColumn("rank", F.row_number().over(order))
    train = train.withColumn(
        "split", F.when(F.col("rank") <= F.coalesce(thresholds[F.col("label")], F.lit(0)), "val").otherwise("train")
    ).drop("rank")
    return train.unionByName(deduped.where(F.col("split") == "test"))


def _code_version() -> str:
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=Path(pipeline.__file__).parent,
            capture_output=True, text=True, timeout=5, check=True,
        ).stdout.strip()
        return f"{pipeline.__version__}+g{sha}"
    except Exception:
        return pipeline.__version__


def ingest(spark: SparkSession, cfg: PipelineConfig) -> dict:
    """Runs the ingest stage and returns the manifest it wrote.

    Raises:
        InputError: any input problem; nothing is written and a previous dataset stays intact.
    """
    icfg = cfg.ingest
    fs = HadoopFS(spark)
    root = qualify(cfg.data.root).rstrip("/")
    fmt, train_spec, test_spec = icfg.format, icfg.train, icfg.test
    if fmt == "download":
        cache = download_mnist(icfg.download)
        fmt, train_spec, test_spec = "idx", f"{cache}/train-*-ubyte*", f"{cache}/t10k-*-ubyte*"
    units = plan_units(fs, fmt, "train", train_spec) + plan_units(fs, fmt, "test", test_spec)
    log.info("ingest: %d %s input files -> %s", len(units), fmt, root)

    sc = spark.sparkContext
    rows_parsed = sc.accumulator(0)
    start = time.monotonic()
    parsed = parse_inputs(spark, fmt, units, icfg.csv_header, rows_parsed).persist(StorageLevel.MEMORY_AND_DISK)
    staging = None
    deduped = assigned = None
    try:
        with SparkProgress(sc, "ingest parse", cfg.spark.progress_interval_s, lambda: rows_parsed.value) as prog:
            meta = parsed.where("kind != 'image'").drop("image").collect()
        errors = sorted({m.message for m in meta if m.kind == "error"})
        if errors:
            more = f" (and {len(errors) - 10} more)" if len(errors) > 10 else ""
            raise InputError("invalid input, nothing written:\n  " + "\n  ".join(errors[:10]) + more)
        inputs = sorted(
            ({"path": m.source, "split": m.split, "sha256": m.sha256, "bytes": m.nbytes, "rows": m.nrows}
             for m in meta if m.kind == "file"),
            key=lambda d: d["path"],
        )
        total = sum(int(m.nrows) for m in meta if m.kind == "file" and m.role != "labels")
        log.info("ingest: parsed %s rows from %d files in %.1f s (%s rows/s)", f"{total:,}", len(inputs),
                 prog.elapsed, f"{total / max(prog.elapsed, 1e-9):,.0f}")

        deduped = drop_duplicates(parsed.where("kind = 'image'"))
        deduped = deduped.persist(StorageLevel.MEMORY_AND_DISK)
        with SparkProgress(sc, "ingest dedupe", cfg.spark.progress_interval_s):
            stats = deduped.groupBy("split", "label").agg(
                F.count(F.lit(1)).alias("n"),
                F.sum(F.col("copies") - 1).alias("dropped"),
                F.sum(F.when(F.col("labels") > 1, 1).otherwise(0)).alias("conflicts"),
            ).collect()
        kept = {(r.split, r.label): r.n for r in stats}
        duplicates = {
            "dropped": int(sum(r.dropped for r in stats)),
            "label_conflicts": int(sum(r.conflicts for r in stats)),
        }
        val_counts = {lab: int(icfg.val_fraction * n + 0.5) for (s, lab), n in kept.items() if s == "train"}
        classes = {
            "train": {lab: n - val_counts[lab] for (s, lab), n in kept.items() if s == "train"},
            "val": dict(val_counts),
            "test": {lab: n for (s, lab), n in kept.items() if s == "test"},
        }
        counts = {s: sum(classes[s].values()) for s in SPLITS}
        log.info("ingest: %d exact-duplicate images dropped (%d with conflicting labels); rows %s",
                 duplicates["dropped"], duplicates["label_conflicts"], counts)
        for split in SPLITS:
            if counts[split] < icfg.max_shards:
                raise InputError(
                    f"split {split} would hold {counts[split]} rows, fewer than ingest.max_shards="
                    f"{icfg.max_shards} row groups can be made of; add data or lower ingest.max_shards"
                )

        assigned = assign_val(deduped, val_counts, icfg.seed).persist(StorageLevel.MEMORY_AND_DISK)
        staging = new_staging_path(root)
        row_groups = {}
        for split in SPLITS:
            n_files = max(icfg.max_shards, math.ceil(counts[split] / icfg.rows_per_row_group))
            with SparkProgress(sc, f"ingest write {split}", cfg.spark.progress_interval_s):
                (assigned.where(F.col("split") == split)
                 .select("id", "image", F.col("label").cast("int").alias("label"))
                 .repartitionByRange(n_files, "id")
                 .sortWithinPartitions("id")
                 .write.parquet(split_path(staging, split)))
            row_groups[split] = count_row_groups(split_path(staging, split))
            if row_groups[split] < icfg.max_shards:
                raise RuntimeError(
                    f"wrote {row_groups[split]} row groups for {split}, fewer than max_shards={icfg.max_shards}"
                )
        elapsed = time.monotonic() - start
        manifest = {
            "schema_version": SCHEMA_VERSION,
            "created_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "code_version": _code_version(),
            "format": icfg.format,
            "seed": icfg.seed,
            "val_fraction": icfg.val_fraction,
            "max_shards": icfg.max_shards,
            "rows_parsed": total,
            "duplicates": duplicates,
            "splits": {
                s: {"rows": counts[s], "row_groups": row_groups[s],
                    "classes": {str(k): v for k, v in sorted(classes[s].items())}}
                for s in SPLITS
            },
            "inputs": inputs,
            "seconds": round(elapsed, 2),
        }
        storage.write_text(storage.join(staging, MANIFEST), json.dumps(manifest, indent=2))
        swap_into_place(fs, staging, root)
        staging = None
        log.info("ingest: wrote %s in %.1f s (%s rows/s)", root, elapsed, f"{total / max(elapsed, 1e-9):,.0f}")
        return manifest
    finally:
        if staging is not None and fs.exists(staging):
            fs.delete(staging)
        for df in (parsed, deduped, assigned):
            if df is not None:
                df.unpersist()


