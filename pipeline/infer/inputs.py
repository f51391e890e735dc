"""Inference inputs: each input kind becomes rows of ``id, image, label, note, reject_reason``, where
``image`` is 784 raw bytes (row-major 28x28), as in the dataset contract.

Every input row (or file, for a folder of images) becomes exactly one row here: scorable, or a reject.
``reject_reason`` is stable text to group by ("wrong image size", "cannot decode image: ..."); the
details of one row (its size, its values, the parser's message) go to ``note``. The functions that run
on the executors are module-level, so Spark's Python workers import this package to run them.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from pipeline.config import PipelineConfig
from pipeline.errors import InputError
from pipeline.io.dataset import count_row_groups, split_path
from pipeline.io.fs import HadoopFS, qualify
from pipeline.sources.pixels import (  # noqa: F401 (the reject reasons are inference's too)
    NOT_FINITE,
    NOT_INTEGER,
    OUT_OF_RANGE,
    OUT_OF_UNIT_RANGE,
    WIDE_MODES,
    pixel_problem,
)

PREPARED_SCHEMA = "id string, image binary, label int, note string, reject_reason string"
PREPARED_COLUMNS = ["id", "image", "label", "note", "reject_reason"]

MISSING_IMAGE = "image is missing (null)"
WRONG_SIZE = "wrong image size; expected 784 pixels (28x28)"
NOT_NUMBERS = "pixel values not numbers"
BAD_LABEL = "label is not an integer 0-9"
EMPTY_FILE = "file is empty (0 bytes)"
NOT_AN_IMAGE = "cannot decode image: not an image format Pillow reads"
CORRUPT_IMAGE = "cannot decode image: truncated or corrupt image data"
INVALID_IDX = "invalid IDX file"


def _no_note():
    return F.lit(None).cast("string").alias("note"), F.lit(None).cast("string").alias("reject_reason")


@dataclass
class PreparedInput:
    rows: DataFrame
    inputs: int | None  # inputs seen, counted independently of the rows (None: count the rows)


def pixel_bytes(values, scale: str = "0-255") -> tuple[bytes | None, str | None, str | None]:
    """784 pixel values -> ``(image bytes, None, None)``, or ``(None, reject_reason, note)``.

    Values that break ``pixel_problem``'s rule are a reject, never clipped or truncated into a darker
    image; with ``scale`` "0-1" they are scaled to 0-255 and rounded.
    """
    import numpy as np

    try:
        values = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError):  # strings, nested lists, a null inside the array
        return None, NOT_NUMBERS, "values that are not numbers"
    problem = pixel_problem(values, scale)
    if problem:
        return None, *problem
    if values.size != 784:
        return None, WRONG_SIZE, f"{values.size} pixels"
    if scale == "0-1":
        values = np.rint(values * 255)
    return values.astype(np.uint8).tobytes(), None, None


def bytes_from_pixel_arrays(scale: str = "0-255"):
    """Executor side: rows of ``id, image (an array of 784 pixel values), label, bad_label`` -> prepared
    rows (``pixel_bytes`` decides each image)."""

    def convert(batches):
        for pdf in batches:
            images, reasons, notes = [], [], []
            for values, bad_label in zip(pdf["image"], pdf["bad_label"]):
                if values is None:
                    image, reason, note = None, MISSING_IMAGE, None
                elif bad_label is not None:
                    image, reason, note = None, BAD_LABEL, bad_label
                else:
                    image, reason, note = pixel_bytes(values, scale)
                images.append(image)
                reasons.append(reason)
                notes.append(note)
            yield pd.DataFrame({"id": pdf["id"].astype(str), "image": images, "label": pdf["label"],
                                "note": notes, "reject_reason": reasons}, columns=PREPARED_COLUMNS)

    return convert


def decode_image_files(batches):
    """Executor side: rows of ``path, content`` (PNG, JPEG, ...) -> prepared rows, grayscale 28x28."""
    import io

    import numpy as np
    from PIL import Image, UnidentifiedImageError

    for pdf in batches:
        rows = []
        for path, content in zip(pdf["path"], pdf["content"]):
            try:
                with Image.open(io.BytesIO(content)) as img:
                    img.load()
                    notes = []
                    if img.mode in WIDE_MODES:  # 16-bit or float pixels: convert("L") would clip them
                        wide = np.asarray(img, dtype=np.float64)
                        problem = pixel_problem(wide)
                        if problem:
                            rows.append((path, None, None, f"{img.mode} image: {problem[1]}", problem[0]))
                            continue
                        notes.append(f"read {img.mode} pixels as 8-bit")
                        img = Image.fromarray(wide.astype(np.uint8), mode="L")
                    if img.mode != "L":
                        notes.append(f"converted {img.mode} to grayscale")
                        img = img.convert("L")
                    if img.size != (28, 28):
                        notes.append(f"resized {img.size[0]}x{img.size[1]} to 28x28")
                        img = img.resize((28, 28), Image.BILINEAR)
                    image = np.asarray(img, dtype=np.uint8).tobytes()
                rows.append((path, image, None, "; ".join(notes) or None, None))
            except UnidentifiedImageError:
                rows.append((path, None, None, None, NOT_AN_IMAGE))
            except Exception as exc:  # truncated or corrupt data: a reject, not a failed job
                rows.append((path, None, None, type(exc).__name__, CORRUPT_IMAGE))
        yield pd.DataFrame(rows, columns=PREPARED_COLUMNS)


def input_path(cfg: PipelineConfig) -> str:
    """``infer.input``, or the pipeline's own dataset when it is not set."""
    return cfg.infer.input or cfg.data.root


def _from_dataset(spark: SparkSession, fs: HadoopFS, cfg: PipelineConfig, source: str) -> PreparedInput:
    path = split_path(source, cfg.infer.split)
    if not fs.exists(path):
        raise InputError(f"infer.input {source} has no split {cfg.infer.split!r} ({path} is missing)")
    count_row_groups(path)  # every footer readable, or an error naming the damaged file
    raw = spark.read.parquet(path).select("id", "image", "label", *_no_note())
    return PreparedInput(raw, None)


def _from_parquet(spark: SparkSession, fs: HadoopFS, cfg: PipelineConfig, source: str) -> PreparedInput:
    if not fs.glob_files(source):
        raise InputError(f"infer.input {source} matches no Parquet files")
    return PreparedInput(parquet_rows(spark.read.parquet(qualify(source)), cfg, source), None)


def parquet_rows(raw: DataFrame, cfg: PipelineConfig, source: str) -> DataFrame:
    """Prepared rows of a Parquet table (``raw``: a batch or a micro-batch of it)."""
    icfg = cfg.infer
    if icfg.image_column not in raw.columns:
        raise InputError(f"{source}: no column {icfg.image_column!r} (set infer.image_column); "
                         f"columns are {', '.join(raw.columns)}")
    image = F.col(icfg.image_column)
    ident = F.col(icfg.id_column).cast("string") if icfg.id_column in raw.columns else F.xxhash64(image).cast("string")
    label, bad_label = _label_columns(raw, icfg.label_column)
    rows = raw.select(ident.alias("id"), image.alias("image"), label.alias("label"), bad_label.alias("bad_label"))
    if isinstance(raw.schema[icfg.image_column].dataType, T.BinaryType):  # scored as it is, no Python pass
        if icfg.pixel_scale != "0-255":
            raise InputError(f"{source}: column {icfg.image_column!r} holds bytes (0-255) but infer.pixel_scale is "
                             f"{icfg.pixel_scale}; set infer.pixel_scale=0-255")
        reason = F.when(F.col("image").isNotNull() & F.col("bad_label").isNotNull(), F.lit(BAD_LABEL))
        return rows.select("id", "image", "label", F.col("bad_label").alias("note"),
                           reason.cast("string").alias("reject_reason"))
    return rows.mapInPandas(bytes_from_pixel_arrays(icfg.pixel_scale), PREPARED_SCHEMA)


def _label_columns(raw: DataFrame, name: str | None):
    """``(label, bad_label)``: the label as an int where it is an integer 0-9, null otherwise; a note for a
    label that is present but is not an integer 0-9 (NaN, 3.5, 12, "seven"), so that row is a reject and
    never counted against a truncated label."""
    if not name or name not in raw.columns:
        return F.lit(None).cast("int"), F.lit(None).cast("string")
    value = F.col(name).cast("double")
    ok = value.isNotNull() & ~F.isnan(value) & (value == F.floor(value)) & value.between(0, 9)
    bad = F.when(F.col(name).isNotNull() & ~ok,
                 F.concat(F.lit("label "), F.coalesce(F.col(name).cast("string"), F.lit("?"))))
    return F.when(ok, value.cast("int")), bad


def _from_images(spark: SparkSession, fs: HadoopFS, cfg: PipelineConfig, source: str) -> PreparedInput:
    listed, empty = fs.scan_files(source)
    if not listed:
        raise InputError(f"infer.input {source} holds no files")
    raw = spark.read.format("binaryFile").option("recursiveFileLookup", "true").load(qualify(source))
    rows = image_rows(raw)
    if empty:  # Spark's file sources skip empty files: they are rejects here, not silently gone
        rows = rows.unionByName(spark.createDataFrame(
            [(path, None, None, None, EMPTY_FILE) for path in empty], PREPARED_SCHEMA))
    return PreparedInput(rows, listed)


def image_rows(raw: DataFrame) -> DataFrame:
    """Prepared rows of ``binaryFile`` rows (a batch or a micro-batch of an images folder)."""
    return raw.select("path", "content").mapInPandas(decode_image_files, PREPARED_SCHEMA)


def _from_idx(spark: SparkSession, fs: HadoopFS, cfg: PipelineConfig, source: str) -> PreparedInput:
    from pipeline.sources.files import plan_units

    return PreparedInput(idx_rows(spark, plan_units(fs, "idx", "test", source, key="infer.input")), None)


def idx_rows(spark: SparkSession, units: list[dict]) -> DataFrame:
    """Prepared rows of IDX parse units: the shared source parser; a bad file becomes a reject instead of
    stopping the job."""
    from pipeline.sources.files import parse_inputs

    parsed = parse_inputs(spark, "idx", units, "auto", spark.sparkContext.accumulator(0))
    images = parsed.where("kind = 'image'").select(
        F.concat_ws(":", "source", F.col("idx").cast("string")).alias("id"), "image", "label", *_no_note())
    errors = parsed.where("kind = 'error'").select(
        F.col("source").alias("id"), F.lit(None).cast("binary").alias("image"),
        F.lit(None).cast("int").alias("label"), F.col("message").alias("note"),
        F.lit(INVALID_IDX).alias("reject_reason"))
    return images.unionByName(errors)


LOADERS = {"dataset": _from_dataset, "idx": _from_idx, "parquet": _from_parquet, "images": _from_images}


def load_input(spark: SparkSession, cfg: PipelineConfig) -> PreparedInput:
    """The input as rows of ``id, image (784 bytes, or null), label, note, reject_reason``.

    Raises:
        InputError: the input does not exist or has not the expected shape (names the key and path).
    """
    return LOADERS[cfg.infer.input_format](spark, HadoopFS(spark), cfg, input_path(cfg))
