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

PREPARED_SCHEMA = "id string, image binary, label int, note string, reject_reason string"
PREPARED_COLUMNS = ["id", "image", "label", "note", "reject_reason"]

MISSING_IMAGE = "image is missing (null)"
WRONG_SIZE = "wrong image size; expected 784 pixels (28x28)"
OUT_OF_RANGE = "pixel values out of range; expected 0-255"
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


def bytes_from_pixel_arrays(batches):
    """Executor side: rows of ``id, image (an array of 784 values 0-255), label`` -> prepared rows."""
    import numpy as np

    for pdf in batches:
        images, reasons, notes = [], [], []
        for values in pdf["image"]:
            reason = note = image = None
            if values is None:
                reason = MISSING_IMAGE
            else:
                values = np.asarray(values, dtype=np.float64)
                if values.size and (values.min() < 0 or values.max() > 255):
                    reason, note = OUT_OF_RANGE, f"values {values.min():g}..{values.max():g}"
                elif values.size != 784:
                    reason, note = WRONG_SIZE, f"{values.size} pixels"
                else:
                    image = values.astype(np.uint8).tobytes()
            images.append(image)
            reasons.append(reason)
            notes.append(note)
        yield pd.DataFrame({"id": pdf["id"].astype(str), "image": images, "label": pdf["label"],
                            "note": notes, "reject_reason": reasons}, columns=PREPARED_COLUMNS)


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
    icfg = cfg.infer
    if not fs.glob_files(source):
        raise InputError(f"infer.input {source} matches no Parquet files")
    raw = spark.read.parquet(qualify(source))
    if icfg.image_column not in raw.columns:
        raise InputError(f"{source}: no column {icfg.image_column!r} (set infer.image_column); "
                         f"columns are {', '.join(raw.columns)}")
    image = F.col(icfg.image_column)
    ident = F.col(icfg.id_column).cast("string") if icfg.id_column in raw.columns else F.xxhash64(image).cast("string")
    label = F.col(icfg.label_column).cast("int") if icfg.label_column and icfg.label_column in raw.columns \
        else F.lit(None).cast("int")
    rows = raw.select(ident.alias("id"), image.alias("image"), label.alias("label"))
    if isinstance(raw.schema[icfg.image_column].dataType, T.BinaryType):  # scored as it is, no Python pass
        return PreparedInput(rows.select("*", *_no_note()), None)
    return PreparedInput(rows.mapInPandas(bytes_from_pixel_arrays, PREPARED_SCHEMA), None)


def _from_images(spark: SparkSession, fs: HadoopFS, cfg: PipelineConfig, source: str) -> PreparedInput:
    listed, empty = fs.scan_files(source)
    if not listed:
        raise InputError(f"infer.input {source} holds no files")
    raw = spark.read.format("binaryFile").option("recursiveFileLookup", "true").load(qualify(source))
    rows = raw.select("path", "content").mapInPandas(decode_image_files, PREPARED_SCHEMA)
    if empty:  # Spark's file sources skip empty files: they are rejects here, not silently gone
        rows = rows.unionByName(spark.createDataFrame(
            [(path, None, None, None, EMPTY_FILE) for path in empty], PREPARED_SCHEMA))
    return PreparedInput(rows, listed)


def _from_idx(spark: SparkSession, fs: HadoopFS, cfg: PipelineConfig, source: str) -> PreparedInput:
    # the shared source parser; a bad file becomes a reject instead of stopping the job
    from pipeline.sources.files import parse_inputs, plan_units

    units = plan_units(fs, "idx", "test", source, key="infer.input")
    parsed = parse_inputs(spark, "idx", units, "auto", spark.sparkContext.accumulator(0))
    images = parsed.where("kind = 'image'").select(
        F.concat_ws(":", "source", F.col("idx").cast("string")).alias("id"), "image", "label", *_no_note())
    errors = parsed.where("kind = 'error'").select(
        F.col("source").alias("id"), F.lit(None).cast("binary").alias("image"),
        F.lit(None).cast("int").alias("label"), F.col("message").alias("note"),
        F.lit(INVALID_IDX).alias("reject_reason"))
    return PreparedInput(images.unionByName(errors), None)


LOADERS = {"dataset": _from_dataset, "idx": _from_idx, "parquet": _from_parquet, "images": _from_images}


def load_input(spark: SparkSession, cfg: PipelineConfig) -> PreparedInput:
    """The input as rows of ``id, image (784 bytes, or null), label, note, reject_reason``.

    Raises:
        InputError: the input does not exist or has not the expected shape (names the key and path).
    """
    return LOADERS[cfg.infer.input_format](spark, HadoopFS(spark), cfg, input_path(cfg))
