"""Ingest: raw MNIST files -> validated, de-duplicated, split, shard-ready Parquet + manifest.

Parsing runs on the executors (an IDX pair per task, record ranges of a big raw pair, parts of a big
gzip pair, or one text file) and stages the images as Parquet in id order. Tasks that each own an id
range decide which copy of a repeated image is kept and count the rows per class
(``pipeline.ingest.decide``); the driver cuts the val split and the file ranges from those counts;
tasks that own id ranges again write the three splits (``pipeline.ingest.write``). No shuffle carries
an image (docs/architecture.md, "Ingest"). The driver holds per-file metadata, counts per class and
val-hash bucket, the rows of one bucket per class, and one boundary id per output file.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import math
import posixpath
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from pyspark.sql import DataFrame, SparkSession, Window
from pyspark.sql import functions as F

import pipeline
from pipeline.config import PipelineConfig
from pipeline.errors import InputError
from pipeline.ingest.decide import DECIDED_SCHEMA, STATS_SCHEMA, bucket_rows, decide_task_fn, id_ranges, repeated_keys
from pipeline.ingest.download import download_mnist
from pipeline.ingest.write import (
    KEY_IDX_BITS,
    KEY_LABEL_BITS,
    KEY_SRC_BITS,
    WRITE_RESULT_SCHEMA,
    plan_write_tasks,
    write_task_fn,
)
from pipeline.io import storage
from pipeline.io.dataset import (
    MANIFEST,
    SCHEMA_VERSION,
    SPLITS,
    count_row_groups,
    parquet_files,
    split_path,
)
from pipeline.io.fs import HadoopFS, qualify
from pipeline.io.progress import SparkProgress
from pipeline.io.publish import new_staging_path, swap_into_place
from pipeline.sources.files import STAGED_SCHEMA, check_all_read, parse_inputs, plan_units

log = logging.getLogger(__name__)

# Ids and images are unique: a dictionary would only be built to be thrown away, and min/max statistics
# of 784-byte images are of no use (ids keep theirs, truncated to 16 characters, still valid bounds).
# Measured on 432,000 rows: the write took 3.9 s instead of 6.3 s.
_PARQUET_OPTIONS = {"parquet.enable.dictionary": "false", "parquet.statistics.truncate.length": "16",
                    "parquet.columnindex.truncate.length": "16"}
# Up to this many repeated images, their ids and kept copies' keys (about 50 bytes each) are sent
# whole to every task; more are joined by a shuffle.
_BROADCAST_DUPLICATES = 200_000


# A row's copy key: lower is preferred. The test copy first (so test never leaks into train), then
# the first by source file (its position among the sorted input paths) and index; the label rides
# in the low bits, so the kept copy's split and label come back from one long.
_KEY_SRC_BITS, _KEY_IDX_BITS, _KEY_LABEL_BITS = KEY_SRC_BITS, KEY_IDX_BITS, KEY_LABEL_BITS


def copy_key():
    """The copy key of rows of ``split, src, idx, label`` (a non-negative long)."""
    not_test = F.when(F.col("split") == "test", F.lit(0)).otherwise(F.lit(1)).cast("long")
    return (F.shiftleft(not_test, _KEY_SRC_BITS + _KEY_IDX_BITS + _KEY_LABEL_BITS)
            + F.shiftleft(F.col("src").cast("long"), _KEY_IDX_BITS + _KEY_LABEL_BITS)
            + F.shiftleft(F.col("idx"), _KEY_LABEL_BITS) + F.col("label").cast("long"))


def keep_one_per_image(rows: DataFrame) -> DataFrame:
    """Which copy of each distinct image is kept, decided on narrow rows (no image bytes): the copy
    with the lowest ``copy_key`` (the test copy if there is one, else the first by source file and
    index). The definition, in Spark: ingest decides with the id-range tasks of ``pipeline.ingest.decide``,
    which a test holds equal to this.

    Takes rows of ``id, split, src, idx, label, vh``; returns one row per id: the kept copy's
    ``split``, ``label`` and ``key``, ``copies``, ``conflict`` (the copies do not all have one
    label) and the id's val hash ``vh``."""
    grouped = rows.groupBy("id").agg(
        F.min(copy_key()).alias("key"),
        F.min("vh").alias("vh"),  # a function of the id: the same for every copy
        F.count(F.lit(1)).alias("copies"),
        (F.min("label") != F.max("label")).alias("conflict"),
    )
    first_bit = _KEY_SRC_BITS + _KEY_IDX_BITS + _KEY_LABEL_BITS
    return grouped.select(
        "id",
        F.when(F.shiftright("key", first_bit) == 0, F.lit("test")).otherwise(F.lit("train")).alias("split"),
        (F.col("key") % (1 << _KEY_LABEL_BITS)).cast("int").alias("label"),
        "key", "copies", "conflict", "vh",
    )


def val_hash(seed: int):
    """The val hash of an id: Spark's ``xxhash64(id, seed)``. The parse tasks compute it in Python
    (``pipeline.sources.hashing.spark_xxhash64_id_seed``) and stage it as ``vh``; this is the definition,
    held equal to theirs by a test, so that a dataset's val rows stay the same across versions."""
    return F.xxhash64("id", F.lit(seed))


# The train rows' val hashes are counted in buckets per class (with the other counts, in one
# aggregation); each class's threshold is then found among the rows of one bucket without sorting the
# class. Up to 1,024 buckets (the top 10 bits of the hash: this shift), fewer for fewer rows, so that
# the counts stay few (each costs the driver a row) while a bucket holds about 64 rows of its class.
_VAL_BUCKET_SHIFT = 54


def val_bucket_shift(rows: int) -> int:
    """The shift of ``val_bucket`` for ``rows`` images: 16 to 1,024 buckets per class."""
    return 64 - min(10, max(4, math.ceil(math.log2(max(rows, 1) / 640))))


def val_bucket(shift: int = _VAL_BUCKET_SHIFT):
    """The bucket of a row's val hash ``vh``: its top ``64 - shift`` bits, in the order of the hash."""
    return F.shiftright(F.col("vh"), shift)


def val_thresholds(decided: str, val_counts: dict[int, int], histogram: dict[tuple[int, int], int],
                   shift: int = _VAL_BUCKET_SHIFT) -> dict[int, tuple[int, str]]:
    """Per class, the last train row moved to val: ``val_counts[label]`` train rows of each class go
    to val, the first by a seeded hash of the id (then the id), so the choice is the same on every
    run and independent of partitioning. ``histogram`` holds the train rows per ``(label,
    val_bucket(shift))``; the rows of each class's boundary bucket come to the driver and are ranked there,
    from ``decided``, the folder of the decided files (``pipeline.ingest.decide``), read here with
    pyarrow (no Spark job).
    Returns ``{label: (hash, id)}`` of each class's last val row."""
    cut: dict[int, tuple[int, int]] = {}  # label -> (bucket, rank of the last val row within it)
    buckets: dict[int, list[int]] = {}
    for lb, b in histogram:
        buckets.setdefault(lb, []).append(b)
    for lab, n in val_counts.items():
        seen = 0
        for bucket in sorted(buckets.get(lab, ())):
            if n > 0 and seen + histogram[lab, bucket] >= n:
                cut[lab] = (bucket, n - seen)
                break
            seen += histogram[lab, bucket]
    if not cut:
        return {}
    rows: dict[int, list[tuple[int, str]]] = {lab: [] for lab in cut}
    for lab, h, ident in bucket_rows(decided, {lab: b for lab, (b, _) in cut.items()}, shift):
        rows[lab].append((h, ident))
    return {lab: sorted(rows[lab])[rank - 1] for lab, (_, rank) in cut.items()}


def final_split(thresholds: dict[int, tuple[int, str]]):
    """The split column with val carved out of train by ``val_thresholds``' answer (rows with ``vh``)."""
    h, ident, label = F.col("vh"), F.col("id"), F.col("label")
    is_val = F.lit(False)
    for lab, (th, th_id) in sorted(thresholds.items()):
        is_val = is_val | ((label == lab) & ((h < F.lit(th)) | ((h == F.lit(th)) & (ident <= F.lit(th_id)))))
    return F.when((F.col("split") == "train") & is_val, F.lit("val")).otherwise(F.col("split"))


# A split with at least this many rows per file is cut at evenly spaced id values: ids are the leading
# 128 bits of SHA-256, uniform over distinct images, so each file gets its share to within a few per
# cent and an empty file has a probability below e^-256. Smaller splits are ranked exactly.
_SPACED_MIN_ROWS_PER_FILE = 256


def shard_bounds(final, files: dict[str, int], counts: dict[str, int]) -> dict[str, list[str]]:
    """Per split, the first id of each file after the first, so that each of its ``files[split]``
    files holds about an equal share of its rows, in id order: evenly spaced id values where the split
    is large, else the exact ranks of ids (a job over the narrow rows ``id, split`` that
    ``final(those splits)`` returns; it may leave out rows of other splits)."""
    bounds: dict[str, list[str]] = {}
    ranked_splits = []
    for split, f in files.items():
        if counts[split] >= _SPACED_MIN_ROWS_PER_FILE * f:
            bounds[split] = [format(b * (1 << 128) // f, "032x") for b in range(1, f)]
        else:
            ranked_splits.append(split)
    if not ranked_splits:
        return bounds
    starts = {s: sorted({-(-b * counts[s] // files[s]) for b in range(1, files[s])}) for s in ranked_splits}
    ranked = (final(ranked_splits).where(F.col("split").isin(ranked_splits))
              .withColumn("r", F.row_number().over(Window.partitionBy("split").orderBy("id")) - 1))
    wanted = F.lit(False)
    for split, ranks in starts.items():
        if ranks:
            wanted = wanted | ((F.col("split") == split) & F.col("r").isin(ranks))
    found: dict[str, list] = {s: [] for s in ranked_splits}
    for row in ranked.where(wanted).select("split", "r", "id").collect():
        found[row.split].append((row.r, row.id))
    bounds.update({s: [i for _, i in sorted(v)] for s, v in found.items()})
    return bounds


def _spark_int_hash(value: int) -> int:
    """Spark's ``hash()`` of an int column: Murmur3 x86_32 of the 4-byte int with seed 42 (Spark's
    ``Murmur3_x86_32.hashInt``), as a signed 32-bit int."""
    m = 0xFFFFFFFF

    def rotl(x: int, r: int) -> int:
        return ((x << r) | (x >> (32 - r))) & m

    k = rotl((value & m) * 0xCC9E2D51 & m, 15) * 0x1B873593 & m
    h = (rotl(42 ^ k, 13) * 5 + 0xE6546B64) & m
    h ^= 4
    h ^= h >> 16
    h = h * 0x85EBCA6B & m
    h ^= h >> 13
    h = h * 0xC2B2AE35 & m
    h ^= h >> 16
    return h - (1 << 32) if h & 0x80000000 else h


def _partition_keys(n: int) -> list[int]:
    """For each partition p of ``n``, the smallest int that ``repartition(n, col)`` sends to p: Spark
    takes ``pmod(hash(col), n)``, computed here with the same hash (no Spark job)."""
    keys: dict[int, int] = {}
    k = 0
    while len(keys) < n:
        keys.setdefault(_spark_int_hash(k) % n, k)
        k += 1
    return [keys[p] for p in range(n)]


def _bucket_key(bounds: list[str], keys: list[int]):
    """A binary search over sorted ``bounds`` as a Spark expression: ``keys[i]`` for ids in bucket i."""
    if not bounds:
        return F.lit(keys[0])
    m = len(bounds) // 2
    return F.when(F.col("id") < F.lit(bounds[m]), _bucket_key(bounds[:m], keys[:m + 1])).otherwise(
        _bucket_key(bounds[m + 1:], keys[m + 1:]))


# Rows per partition of the de-duplication's narrow rows (about 60 bytes a row).
_DEDUPE_PARTITION_ROWS = 2_000_000
# The images go from the staged files to their output files without a shuffle (pipeline/ingest/write.py)
# when the kept copies of repeated images fit in a broadcast (_BROADCAST_DUPLICATES); else through one
# Spark shuffle (_write_shuffled).
# The write gets about one task per this many rows (at least one per core: each wave of Python tasks
# costs about 0.1 s here, however little they do), which bounds what one task's Python worker holds:
# the rows of its id range, of every split, and on to the end of the last file it writes.
_WRITE_TASK_ROWS = 65_536


# The decisions get about one task per this many rows (at least one per core); a task holds its
# range's narrow rows, about 100 bytes each.
_DECIDE_TASK_ROWS = 262_144


def _staged_files(staged: str) -> list[str]:
    return [storage.join(staged, posixpath.basename(f)) for f in parquet_files(staged)[1]]


def _decide_by_id_range(spark: SparkSession, staged: str, out: str, total: int, shift: int) -> list[tuple]:
    """Writes ``keep_one_per_image``'s rows under ``out`` and returns the counts per ``(split, label,
    val bucket)``, from one job of id-range tasks (``pipeline.ingest.decide``) whose counts Spark sums."""
    sc = spark.sparkContext
    tasks = max(sc.defaultParallelism, math.ceil(total / _DECIDE_TASK_ROWS))
    fn = decide_task_fn(id_ranges(tasks), _staged_files(staged), out, shift)
    counts = ("kept", "dropped", "repeated", "conflicts")
    stats = (spark.range(0, tasks, 1, tasks).select(F.col("id").cast("int").alias("task"))
             .mapInArrow(fn, STATS_SCHEMA).groupBy("split", "label", "bucket")
             .agg(*(F.sum(c).alias(c) for c in counts)).collect())
    return [tuple(r) for r in stats]


def _write_direct(spark: SparkSession, staged: str, out: str, files: dict[str, int], bounds: dict[str, list[str]],
                  counts: dict[str, int], thresholds: dict[int, tuple[int, str]],
                  kept_keys: dict[str, int]) -> None:
    """Writes the three splits under ``out/split=<name>/`` with one Spark job of write tasks, each
    reading its id range from the staged files (``pipeline.ingest.write``)."""
    sc = spark.sparkContext
    staged_files = _staged_files(staged)
    tasks = max(sc.defaultParallelism, math.ceil(sum(counts.values()) / _WRITE_TASK_ROWS))
    plan = plan_write_tasks(files, bounds, id_ranges(tasks))
    duplicates = sc.broadcast(kept_keys) if kept_keys else None
    try:
        fn = write_task_fn(plan, staged_files, out, thresholds, duplicates)
        written = (spark.range(0, len(plan), 1, len(plan)).select(F.col("id").cast("int").alias("task"))
                   .mapInArrow(fn, WRITE_RESULT_SCHEMA).collect())
    finally:
        if duplicates is not None:
            duplicates.unpersist()
    for split in SPLITS:
        rows = sum(int(r.rows) for r in written if r.split == split)
        if rows != counts[split]:  # the Python decisions must agree with Spark's counts
            raise RuntimeError(f"ingest wrote {rows} rows for {split}, expected {counts[split]}")


def _set_sql_conf(spark: SparkSession, values: dict[str, str | None]) -> dict[str, str | None]:
    """Sets session SQL settings (None unsets one); returns their previous values, to restore."""
    before = {key: spark.conf.get(key, None) for key in values}
    for key, value in values.items():
        if value is None:
            spark.conf.unset(key)
        else:
            spark.conf.set(key, value)
    return before


def _code_version() -> str:
    """The package version, and the commit when the package runs from a git checkout of this project
    (``<checkout>/pipeline`` beside ``<checkout>/.git``). An installed wheel (site-packages) is never
    asked: git there would find no repository, or an unrelated one above it."""
    checkout = Path(pipeline.__file__).resolve().parent.parent
    if not ((checkout / ".git").exists() and (checkout / "setup.py").is_file()):
        return pipeline.__version__
    try:
        sha = subprocess.run(["git", "-C", str(checkout), "rev-parse", "--short", "HEAD"],
                             capture_output=True, text=True, timeout=5, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return pipeline.__version__
    return f"{pipeline.__version__}+g{sha}"


@dataclass
class SplitPlan:
    """What the decided counts make of the splits (``plan_splits``)."""

    counts: dict[str, int]  # rows per split
    classes: dict[str, dict[int, int]]  # rows per split and label
    val_counts: dict[int, int]  # train rows per label moved to val
    histogram: dict[tuple[int, int], int]  # train rows per (label, val bucket)
    duplicates: dict[str, int]  # dropped copies, label conflicts
    repeated: int  # distinct images that occur more than once
    files: dict[str, int]  # Parquet files (row groups) per split


def plan_splits(stats: list[tuple], val_fraction: float, max_shards: int, rows_per_row_group: int) -> SplitPlan:
    """The splits' sizes from the decisions' counts, rows of ``(split, label, val bucket, kept, dropped,
    repeated, conflicts)``: ``round(val_fraction * n)`` train rows of each class go to val.

    Raises:
        InputError: a split would hold fewer rows than ``max_shards`` row groups need.
    """
    kept: dict[tuple[str, int], int] = {}
    for split, label, _, n, *_ in stats:
        kept[split, label] = kept.get((split, label), 0) + n
    val_counts = {lab: int(val_fraction * n + 0.5) for (s, lab), n in kept.items() if s == "train"}
    classes = {
        "train": {lab: n - val_counts[lab] for (s, lab), n in kept.items() if s == "train"},
        "val": dict(val_counts),
        "test": {lab: n for (s, lab), n in kept.items() if s == "test"},
    }
    counts = {s: sum(classes[s].values()) for s in SPLITS}
    for split in SPLITS:
        if counts[split] < max_shards:
            raise InputError(f"split {split} would hold {counts[split]} rows, fewer than ingest.max_shards="
                             f"{max_shards} row groups can be made of; add data or lower ingest.max_shards")
    return SplitPlan(
        counts=counts, classes=classes, val_counts=val_counts,
        histogram={(label, b): n for split, label, b, n, *_ in stats if split == "train"},
        duplicates={"dropped": sum(r[4] for r in stats), "label_conflicts": sum(r[6] for r in stats)},
        repeated=sum(r[5] for r in stats),
        files={s: max(max_shards, math.ceil(counts[s] / rows_per_row_group)) for s in SPLITS},
    )


def build_manifest(cfg: PipelineConfig, plan: SplitPlan, row_groups: dict[str, int], inputs: list[dict],
                   rows_parsed: int, seconds: float) -> dict:
    """The dataset's ``manifest.json``."""
    icfg = cfg.ingest
    return {
        "schema_version": SCHEMA_VERSION,
        "created_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "code_version": _code_version(),
        "format": icfg.format,
        "seed": icfg.seed,
        "val_fraction": icfg.val_fraction,
        "max_shards": icfg.max_shards,
        "rows_parsed": rows_parsed,
        "duplicates": plan.duplicates,
        "splits": {
            s: {"rows": plan.counts[s], "row_groups": row_groups[s],
                "classes": {str(k): v for k, v in sorted(plan.classes[s].items())}}
            for s in SPLITS
        },
        "inputs": inputs,  # every file read; a file of ingest.extra[i] has "extra": i
        "extra": [dict(entry) for entry in icfg.extra],
        "seconds": round(seconds, 2),
    }


# Task and source numbers of each group of inputs staged together (the base sources, then each
# ingest.extra group) start at a multiple of this: staged file names and copy keys never collide, and
# the base sources' copies of a repeated image come first.
_GROUP_STRIDE = 1_000_000


def _parse(spark: SparkSession, cfg: PipelineConfig, fmt: str, units: list[dict], staged: str,
           extra_groups: list[tuple[int, str, list[dict]]] = (), extra_own: list[tuple[int, dict]] = ()):
    """Parses every unit on the executors into Parquet files under ``staged``; returns ``(inputs, rows)``:
    the input files' rows for the manifest and the number of images parsed. ``extra_groups``: the
    ``ingest.extra`` entries in a base format, as ``(index, format, units)``; ``extra_own``: the ``parquet`` and
    ``images`` entries, as ``(index, entry)`` (``pipeline.sources.labelled``).

    Raises:
        InputError: any bad file (all of them named at once), or a file that was not read.
    """
    from functools import reduce

    from pipeline.sources import labelled

    icfg, sc = cfg.ingest, spark.sparkContext
    rows_parsed = sc.accumulator(0)
    # Each parse task writes its images, with their ids, to a Parquet file of its own under the
    # staging folder; only the per-file rows (checksums, counts, errors) come back to the driver.
    frames = [parse_inputs(spark, fmt, units, icfg.csv_header, rows_parsed, icfg.records_per_task, staged,
                           seed=icfg.seed)]
    extra_units = []
    for g, (i, extra_fmt, group) in enumerate(extra_groups, 1):
        frames.append(parse_inputs(spark, extra_fmt, group, icfg.csv_header, rows_parsed, icfg.records_per_task,
                                   staged, seed=icfg.seed, first=g * _GROUP_STRIDE))
        extra_units += [{**u, "extra": i} for u in group]
    if extra_own:
        first = (len(extra_groups) + 1) * _GROUP_STRIDE
        tasks = labelled.plan_tasks(list(extra_own), first, first)
        if tasks:
            frames.append(labelled.parse_tasks(spark, tasks, staged, rows_parsed, icfg.seed))
        extra_units += [{"path": f[0], "role": f"extra-{t['format']}", "extra": t["extra"]}
                        for t in tasks for f in t["files"]]
    parsed = reduce(lambda a, b: a.unionByName(b), frames)
    with SparkProgress(sc, "ingest parse", cfg.spark.progress_interval_s, lambda: rows_parsed.value) as prog:
        meta = parsed.drop("image").collect()
    errors = sorted({m.message for m in meta if m.kind == "error"})
    if errors:
        more = f" (and {len(errors) - 10} more)" if len(errors) > 10 else ""
        raise InputError("invalid input, nothing written:\n  " + "\n  ".join(errors[:10]) + more)
    check_all_read(units + extra_units, meta)
    extra_of = {u["path"]: u["extra"] for u in extra_units}
    inputs = sorted(
        ({"path": m.source, "split": m.split, "sha256": m.sha256, "bytes": m.nbytes, "rows": m.nrows,
          **({"extra": extra_of[m.source]} if m.source in extra_of else {})}
         for m in meta if m.kind == "file"),
        key=lambda d: d["path"],
    )
    total = sum(int(m.nrows) for m in meta if m.kind == "file" and m.role != "labels")
    log.info("ingest: parsed %s rows from %d files in %.1f s (%s rows/s)", f"{total:,}", len(inputs),
             prog.elapsed, f"{total / max(prog.elapsed, 1e-9):,.0f}")
    return inputs, total


def _write_shuffled(spark: SparkSession, staged: str, decided: str, out: str, plan: SplitPlan,
                    thresholds: dict[int, tuple[int, str]], bounds: dict[str, list[str]]) -> None:
    """Writes the three splits under ``out/split=<name>/`` through one Spark shuffle: the way when the
    repeated images are too many to broadcast their kept copies' keys (``_BROADCAST_DUPLICATES``)."""
    images = spark.read.schema(STAGED_SCHEMA).parquet(staged)
    if plan.repeated:  # some images occur more than once: keep only the chosen copy's row
        kept_keys = (spark.read.schema(DECIDED_SCHEMA).parquet(decided).where(F.col("copies") > 1)
                     .select("id", F.col("key").alias("kept_key")))
        images = (images.join(kept_keys, "id", "left")
                  .where(F.col("kept_key").isNull() | (F.col("kept_key") == copy_key()))
                  .drop("kept_key"))
    files = plan.files
    keys = _partition_keys(sum(files.values()))
    # each split's files get consecutive partitions, in id order; one shuffle writes all three
    offsets = {s: sum(files[t] for t in SPLITS[:i]) for i, s in enumerate(SPLITS)}
    key = F.lit(keys[0])
    for s in reversed(SPLITS):
        key = F.when(F.col("split") == s, _bucket_key(bounds[s], keys[offsets[s]:offsets[s] + files[s]])).otherwise(key)
    (images.select("id", "image", F.col("label").cast("int").alias("label"), final_split(thresholds).alias("split"))
     .withColumn("_key", key)
     .repartition(sum(files.values()), "_key")
     .sortWithinPartitions("split", "id")
     .drop("_key")
     .write.options(**_PARQUET_OPTIONS).partitionBy("split").parquet(out))


def ingest(spark: SparkSession, cfg: PipelineConfig) -> dict:
    """Runs the ingest stage and returns the manifest it wrote: parse (``_parse``), decide which copies
    are kept and count (``_decide_by_id_range``), size the splits (``plan_splits``), pick the val rows
    and the files' id ranges, write the files, swap the dataset in.

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
    extra_groups, extra_own = [], []
    for i, entry in enumerate(icfg.extra):  # labelled data that arrived later: more train input
        if entry["format"] in ("parquet", "images"):
            extra_own.append((i, entry))
        else:
            extra_groups.append((i, entry["format"], plan_units(fs, entry["format"], "train", entry["path"],
                                                                key=f"ingest.extra[{i}]")))
    if len(icfg.extra) > 60:  # each group of inputs numbers its sources from its own multiple of _GROUP_STRIDE
        raise InputError(f"ingest.extra has {len(icfg.extra)} entries; one ingest takes at most 60: name folders or "
                         "globs that hold several files instead")
    sources = sum(u["role"] != "labels" for u in units)
    if sources >= 1 << _KEY_SRC_BITS:  # the copy key holds a source's number in _KEY_SRC_BITS bits
        raise InputError(f"ingest.train and ingest.test match {sources:,} image files; one ingest takes at most "
                         f"{(1 << _KEY_SRC_BITS) - 1:,}: ingest fewer, larger files")
    log.info("ingest: %d %s input files -> %s", len(units), fmt, root)

    sc = spark.sparkContext
    start = time.monotonic()
    staging = new_staging_path(root)
    staged, decided, all_rows = (storage.join(staging, name) for name in ("parsed", "decided", "rows"))
    saved_conf = None
    try:
        inputs, total = _parse(spark, cfg, fmt, units, staged, extra_groups, extra_own)
        # De-duplication, the val split and the file ranges are decided on narrow rows (id, split, label,
        # copy key: about 50 bytes), by tasks that each own an id range; the images are read once more,
        # by the write's tasks, by id range too: no shuffle carries them.
        # The decisions' shuffles get as many partitions as their narrow rows need, set here rather than
        # by adaptive execution, which splits each query into a job per shuffle and keeps a cached
        # aggregation at spark.sql.shuffle.partitions tiny tasks. Restored when ingest ends.
        parts = max(sc.defaultParallelism, math.ceil(total / _DEDUPE_PARTITION_ROWS))
        saved_conf = _set_sql_conf(spark, {"spark.sql.adaptive.enabled": "false",
                                           "spark.sql.shuffle.partitions": str(parts)})
        shift = val_bucket_shift(total)
        with SparkProgress(sc, "ingest dedupe", cfg.spark.progress_interval_s) as dedupe_prog:
            stats = _decide_by_id_range(spark, staged, decided, total, shift)
        plan = plan_splits(stats, icfg.val_fraction, icfg.max_shards, icfg.rows_per_row_group)
        log.info("ingest: %d exact-duplicate images dropped (%d with conflicting labels) in %.1f s; rows %s",
                 plan.duplicates["dropped"], plan.duplicates["label_conflicts"], dedupe_prog.elapsed, plan.counts)

        with SparkProgress(sc, "ingest split", cfg.spark.progress_interval_s) as split_prog:
            thresholds = val_thresholds(decided, plan.val_counts, plan.histogram, shift)

            def final(splits):
                # the input splits these come from first (val: train), so the reader skips the rest by
                # its statistics (the decided files are in split order): a small test split of 1M rows
                # took 1.4 s to rank over every row
                sources = sorted({"test" if s == "test" else "train" for s in splits})
                return (spark.read.schema(DECIDED_SCHEMA).parquet(decided).where(F.col("split").isin(sources))
                        .select("id", final_split(thresholds).alias("split")))

            bounds = shard_bounds(final, plan.files, plan.counts)
        log.info("ingest: val rows and file ranges decided in %.1f s", split_prog.elapsed)

        with SparkProgress(sc, "ingest write", cfg.spark.progress_interval_s) as write_prog:
            if plan.repeated <= _BROADCAST_DUPLICATES:
                kept_keys = repeated_keys(decided) if plan.repeated else {}
                _write_direct(spark, staged, all_rows, plan.files, bounds, plan.counts, thresholds, kept_keys)
                how = "read by id range from the staged files"
            else:
                _write_shuffled(spark, staged, decided, all_rows, plan, thresholds, bounds)
                how = "shuffled to their files"
        log.info("ingest: %s rows %s, sorted and written in %.1f s", f"{sum(plan.counts.values()):,}", how,
                 write_prog.elapsed)
        row_groups = {}
        for split in SPLITS:
            fs.rename(f"{all_rows}/split={split}", split_path(staging, split))
            row_groups[split] = count_row_groups(split_path(staging, split))
            if row_groups[split] < icfg.max_shards:
                raise RuntimeError(
                    f"wrote {row_groups[split]} row groups for {split}, fewer than max_shards={icfg.max_shards}"
                )
        for scratch in (all_rows, staged, decided):  # the dataset is the splits and the manifest, nothing else
            fs.delete(scratch)
        elapsed = time.monotonic() - start
        manifest = build_manifest(cfg, plan, row_groups, inputs, total, elapsed)
        storage.write_text(storage.join(staging, MANIFEST), json.dumps(manifest, indent=2))
        swap_into_place(fs, staging, root)
        staging = None
        log.info("ingest: wrote %s in %.1f s (%s rows/s)", root, elapsed, f"{total / max(elapsed, 1e-9):,.0f}")
        return manifest
    finally:
        if staging is not None and fs.exists(staging):
            fs.delete(staging)
        if saved_conf is not None:
            _set_sql_conf(spark, saved_conf)
