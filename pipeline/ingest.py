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

import pandas as pd
from pyspark import StorageLevel
from pyspark.sql import DataFrame, SparkSession, Window
from pyspark.sql import functions as F

import pipeline
from pipeline import formats
from pipeline.config import PipelineConfig
from pipeline.dataset import (
    MANIFEST,
    SCHEMA_VERSION,
    SPLITS,
    count_row_groups,
    new_staging_path,
    split_path,
    swap_into_place,
)
from pipeline.download import download_mnist
from pipeline.errors import InputError
from pipeline.fs import HadoopFS, display_path, qualify
from pipeline.progress import SparkProgress

log = logging.getLogger(__name__)

PARSED_SCHEMA = (
    "kind string, role string, split string, source string, idx long, label int, image binary, "
    "sha256 string, nbytes long, nrows long, message string"
)
PARSED_COLUMNS = [part.split()[0] for part in PARSED_SCHEMA.split(", ")]
_IMAGES_TAG = "images-idx3"
_LABELS_TAG = "labels-idx1"


def plan_units(fs: HadoopFS, fmt: str, split: str, pattern: str, key: str | None = None) -> list[dict]:
    """Resolves an input pattern into parse units: rows of ``path, unit, split, role``.

    For IDX, files are paired by name: ``X-images-idx3-ubyte[.gz]`` with ``X-labels-idx1-ubyte[.gz]``.

    Raises:
        InputError: nothing matches, or an IDX file has no partner.
    """
    files = fs.glob_files(pattern)
    key = key or f"ingest.{split}"  # the config key the pattern came from, for messages
    if not files:
        raise InputError(f"no input files match {key}={pattern!r} (empty input)")
    for f in files:
        if f.size == 0:  # Spark's file sources skip empty files, so catch them here
            raise InputError(f"{display_path(f.path)}: file is empty; expected {fmt.upper()} data")
    if fmt != "idx":
        return [{"path": f.path, "unit": f.path, "split": split, "role": fmt} for f in files]
    units: dict[str, dict[str, str]] = {}
    for f in files:
        name = f.path.rsplit("/", 1)[-1]
        if _IMAGES_TAG in name:
            units.setdefault(f.path.replace(_IMAGES_TAG, "*"), {})["images"] = f.path
        elif _LABELS_TAG in name:
            units.setdefault(f.path.replace(_LABELS_TAG, "*"), {})["labels"] = f.path
        else:
            raise InputError(
                f"{display_path(f.path)}: matched by {key}={pattern!r} but is not an IDX images or labels file "
                f"(expected '{_IMAGES_TAG}' or '{_LABELS_TAG}' in the name)"
            )
    rows = []
    for unit, roles in sorted(units.items()):
        for role, partner in (("images", "labels"), ("labels", "images")):
            if role in roles and partner not in roles:
                tag = _LABELS_TAG if partner == "labels" else _IMAGES_TAG
                expected = roles[role].replace(_IMAGES_TAG if role == "images" else _LABELS_TAG, tag)
                raise InputError(
                    f"{display_path(roles[role])}: no matching {partner} file (expected {display_path(expected)})"
                )
        rows += [{"path": roles[r], "unit": unit, "split": split, "role": r} for r in ("images", "labels")]
    return rows


def _parse_unit_fn(fmt: str, csv_header: str, rows_parsed):
    """Returns the function applied to each unit's files on an executor."""

    def parse(pdf: pd.DataFrame) -> pd.DataFrame:
        import hashlib

        from pipeline import formats as fm
        from pipeline.errors import InputError as Err
        from pipeline.fs import display_path as display

        files = {row.role: row for row in pdf.itertuples(index=False)}
        meta = [
            {
                "kind": "file", "role": r.role, "split": r.split, "source": r.path,
                "sha256": hashlib.sha256(r.content).hexdigest(), "nbytes": len(r.content),
            }
            for r in files.values()
        ]
        any_row = next(iter(files.values()))
        try:
            if fmt == "idx":
                img, lab = files["images"], files["labels"]
                x, y = fm.parse_idx_pair(img.content, display(img.path), lab.content, display(lab.path))
                source = img.path
            elif fmt == "libsvm":
                x, y = fm.parse_libsvm(any_row.content, display(any_row.path))
                source = any_row.path
            else:
                x, y = fm.parse_csv(any_row.content, display(any_row.path), csv_header)
                source = any_row.path
        except Err as exc:
            error = {"kind": "error", "split": any_row.split, "source": any_row.path, "message": str(exc)}
            return pd.DataFrame(meta + [error], columns=PARSED_COLUMNS)
        for m in meta:
            m["nrows"] = len(y)
        rows_parsed.add(len(y))
        images = pd.DataFrame({
            "kind": "image",
            "split": any_row.split,
            "source": source,
            "idx": range(len(y)),
            "label": y.astype("int32"),
            "image": [row.tobytes() for row in x],
        })
        return pd.concat([pd.DataFrame(meta), images], ignore_index=True).reindex(columns=PARSED_COLUMNS)

    return parse


def parse_inputs(spark: SparkSession, fmt: str, units: list[dict], csv_header: str, rows_parsed) -> DataFrame:
    """Reads the planned files with Spark's binaryFile source and parses each unit on an executor."""
    plan = spark.createDataFrame(pd.DataFrame(units))
    raw = spark.read.format("binaryFile").load(sorted({u["path"] for u in units})).select("path", "content")
    joined = raw.join(F.broadcast(plan), "path")
    return joined.groupBy("unit").applyInPandas(_parse_unit_fn(fmt, csv_header, rows_parsed), PARSED_SCHEMA)


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
        cache = download_mnist(icfg.download, fs)
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
        fs.write_bytes(f"{staging}/{MANIFEST}", json.dumps(manifest, indent=2).encode("utf-8"))
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


__all__ = ["ingest", "plan_units", "drop_duplicates", "assign_val", "formats"]
