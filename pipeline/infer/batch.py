"""Batch inference in Spark: score images with the registered model through ``mlflow.pyfunc.spark_udf``.

Inputs (``infer.input_format``): a dataset split, raw IDX files, a Parquet table with an image column,
or a folder of PNG/JPEG images. Every row becomes either a prediction or a reject with its reason;
rows are never dropped silently, and a bad row never fails the job. Output, written beside and swapped
in: ``predictions/`` (Parquet or Delta), ``rejects/`` and ``summary.json``.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import time

import pandas as pd
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from pipeline.config import PipelineConfig
from pipeline.errors import InputError, PipelineError
from pipeline.io.dataset import count_row_groups, split_path, swap_into_place
from pipeline.io.fs import HadoopFS, display_path, qualify

log = logging.getLogger(__name__)

PREPARED_SCHEMA = "id string, pixels array<int>, label int, note string, reject_reason string"
PREPARED_COLUMNS = ["id", "pixels", "label", "note", "reject_reason"]


def _pixels_from_bytes_fn():
    def convert(batches):
        import numpy as np

        for pdf in batches:
            pixels, reasons = [], []
            for image in pdf["image"]:
                if image is None:
                    pixels.append(None)
                    reasons.append("image is missing (null)")
                    continue
                if isinstance(image, (bytes, bytearray)):
                    values = np.frombuffer(image, dtype=np.uint8)
                else:
                    values = np.asarray(image, dtype=np.float64)
                    if values.size and (values.min() < 0 or values.max() > 255):
                        pixels.append(None)
                        reasons.append(f"pixel values out of range {values.min():g}..{values.max():g}; expected 0-255")
                        continue
                if values.size != 784:
                    pixels.append(None)
                    reasons.append(f"image has {values.size} pixels; expected 784 (28x28)")
                    continue
                pixels.append(values.astype(np.int32).tolist())
                reasons.append(None)
            yield pd.DataFrame({"id": pdf["id"].astype(str), "pixels": pixels, "label": pdf["label"],
                                "note": None, "reject_reason": reasons}, columns=PREPARED_COLUMNS)

    return convert


def _decode_images_fn():
    def decode(batches):
        import io

        import numpy as np
        from PIL import Image

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
                        values = np.asarray(img, dtype=np.int32).reshape(-1).tolist()
                    rows.append((path, values, None, "; ".join(notes) or None, None))
                except Exception as exc:  # undecodable: a reject, not a failed job
                    rows.append((path, None, None, None, f"cannot decode image: {type(exc).__name__}: {exc}"))
            yield pd.DataFrame(rows, columns=PREPARED_COLUMNS)

    return decode


def load_input(spark: SparkSession, cfg: PipelineConfig) -> DataFrame:
    """The input as rows of ``id, pixels (784 ints or null), label, note, reject_reason``."""
    icfg = cfg.infer
    fs = HadoopFS(spark)
    fmt = icfg.input_format
    source = input_path(cfg)
    if fmt == "dataset":
        path = split_path(source, icfg.split)
        if not fs.exists(path):
            raise InputError(f"infer.input {source} has no split {icfg.split!r} ({path} is missing)")
        count_row_groups(path)  # every footer readable, or an error naming the damaged file
        raw = spark.read.parquet(path).select("id", "image", "label")
        return raw.mapInPandas(_pixels_from_bytes_fn(), PREPARED_SCHEMA)
    if fmt == "parquet":
        if not fs.glob_files(source):
            raise InputError(f"infer.input {source} matches no Parquet files")
        raw = spark.read.parquet(qualify(source))
        if icfg.image_column not in raw.columns:
            raise InputError(f"{source}: no column {icfg.image_column!r} (set infer.image_column); "
                             f"columns are {', '.join(raw.columns)}")
        image = F.col(icfg.image_column)
        ident = F.col(icfg.id_column).cast("string") if icfg.id_column in raw.columns else \
            F.xxhash64(image).cast("string")
        label = F.col(icfg.label_column).cast("int") if icfg.label_column and icfg.label_column in raw.columns \
            else F.lit(None).cast("int")
        return raw.select(ident.alias("id"), image.alias("image"), label.alias("label")) \
            .mapInPandas(_pixels_from_bytes_fn(), PREPARED_SCHEMA)
    if fmt == "images":
        if not fs.glob_files(source):
            raise InputError(f"infer.input {source} holds no files")
        raw = spark.read.format("binaryFile").option("recursiveFileLookup", "true").load(qualify(source))
        return raw.select("path", "content").mapInPandas(_decode_images_fn(), PREPARED_SCHEMA)
    # idx: the ingest parser, but a bad file becomes a reject instead of stopping the job
    from pipeline.sources.files import parse_inputs, plan_units

    units = plan_units(fs, "idx", "test", source, key="infer.input")
    parsed = parse_inputs(spark, "idx", units, "auto", spark.sparkContext.accumulator(0))
    images = parsed.where("kind = 'image'").select(
        F.concat_ws(":", "source", F.col("idx").cast("string")).alias("id"), "image", "label")
    errors = parsed.where("kind = 'error'").select(
        F.col("source").alias("id"), F.lit(None).cast("array<int>").alias("pixels"),
        F.lit(None).cast("int").alias("label"), F.lit(None).cast("string").alias("note"),
        F.col("message").alias("reject_reason"))
    return images.mapInPandas(_pixels_from_bytes_fn(), PREPARED_SCHEMA).unionByName(errors)


def input_path(cfg: PipelineConfig) -> str:
    """``infer.input``, or the pipeline's own dataset when it is not set."""
    return cfg.infer.input or cfg.data.root


def resolve_model(cfg: PipelineConfig):
    """(model_uri, ModelVersion) for ``infer.model_version`` or ``models:/NAME@alias``, with a clear error."""
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    from pipeline.io.tracking import setup_experiment

    setup_experiment(cfg.mlflow)
    client = MlflowClient()
    name = cfg.mlflow.registered_model
    try:
        if cfg.infer.model_version:
            version = client.get_model_version(name, cfg.infer.model_version)
        else:
            version = client.get_model_version_by_alias(name, cfg.infer.alias)
    except MlflowException as exc:
        what = f"version {cfg.infer.model_version}" if cfg.infer.model_version else f"alias {cfg.infer.alias!r}"
        raise PipelineError(
            f"registered model {name!r} has no {what} in {cfg.mlflow.tracking_uri} ({exc.error_code}); "
            f"promote a version first (`mnist-pipeline evaluate`), or name one with infer.model_version=N"
        ) from None
    return f"models:/{name}/{version.version}", version


def _write(df: DataFrame, path: str, fmt: str) -> None:
    if fmt == "delta":
        try:
            df.write.format("delta").mode("overwrite").save(path)
        except Exception as exc:
            if "delta" in str(exc).lower() and ("not found" in str(exc).lower() or "failed to find" in str(exc).lower()):
                raise PipelineError("infer.output_format is delta but Delta Lake is not available in this Spark "
                                    "session (Databricks has it; elsewhere add the delta-spark package)") from None
            raise
    else:
        df.write.parquet(path)


def batch_infer(spark: SparkSession, cfg: PipelineConfig) -> dict:
    """Scores ``infer.input`` and writes predictions, rejects and a summary; returns the summary."""
    import mlflow

    start = time.monotonic()
    prepared = load_input(spark, cfg)  # input problems first: they are the user's to fix, in seconds
    model_uri, version = resolve_model(cfg)
    out = qualify(cfg.infer.output).rstrip("/")
    fs = HadoopFS(spark)
    predict = mlflow.pyfunc.spark_udf(spark, model_uri, result_type="array<float>", env_manager="local")
    scored_at = dt.datetime.now(dt.UTC).replace(microsecond=0)
    probs = F.col("probabilities")
    predictions = (
        prepared.where(F.col("reject_reason").isNull())
        .withColumn("probabilities", predict(F.col("pixels").cast("array<float>")))
        .select(
            "id",
            F.expr("array_position(probabilities, array_max(probabilities)) - 1").cast("int").alias("predicted_label"),
            F.array_max(probs).alias("probability"),
            probs,
            "label",
            F.lit(cfg.mlflow.registered_model).alias("model_name"),
            F.lit(str(version.version)).alias("model_version"),
            F.lit(version.run_id).cast("string").alias("run_id"),
            F.lit(scored_at).cast("timestamp").alias("scored_at"),
            "note",
        )
    )
    rejects = prepared.where(F.col("reject_reason").isNotNull()).select(
        "id", "reject_reason", "note", F.lit(scored_at).cast("timestamp").alias("scored_at"))
    fmt = cfg.infer.output_format
    staging = f"{out}.__staging-{int(time.time() * 1000)}"
    try:
        _write(predictions, f"{staging}/predictions", fmt)
        _write(rejects, f"{staging}/rejects", fmt)
        reader = spark.read.format(fmt) if fmt == "delta" else spark.read.format("parquet")
        written = reader.load(f"{staging}/predictions")
        scored = written.count()
        n_rejects = reader.load(f"{staging}/rejects").count()
        histogram = {int(r.predicted_label): r["count"] for r in written.groupBy("predicted_label").count().collect()}
        labelled = written.where(F.col("label").isNotNull())
        n_labelled = labelled.count()
        correct = labelled.where(F.col("label") == F.col("predicted_label")).count() if n_labelled else 0
        seconds = time.monotonic() - start
        summary = {
            "model_uri": model_uri, "model_version": str(version.version), "run_id": version.run_id,
            "input": display_path(qualify(input_path(cfg))) if cfg.infer.input_format != "dataset"
            else display_path(split_path(input_path(cfg), cfg.infer.split)),
            "input_format": cfg.infer.input_format, "output": out, "output_format": fmt,
            "rows_scored": scored, "rejects": n_rejects, "seconds": round(seconds, 2),
            "rows_per_sec": round((scored + n_rejects) / max(seconds, 1e-9), 1),
            "predicted_histogram": {str(k): histogram.get(k, 0) for k in range(10)},
            "labelled_rows": n_labelled, "accuracy": (correct / n_labelled) if n_labelled else None,
            "scored_at": scored_at.isoformat(),
        }
        fs.write_bytes(f"{staging}/summary.json", json.dumps(summary, indent=2).encode())
        swap_into_place(fs, staging, out)
        staging = None
    finally:
        if staging is not None and fs.exists(staging):
            fs.delete(staging)
    log.info("batch inference: %d rows scored, %d rejects, %.0f rows/s -> %s", summary["rows_scored"],
             summary["rejects"], summary["rows_per_sec"], out)
    return summary
