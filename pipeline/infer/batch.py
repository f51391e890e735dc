"""Batch inference in Spark: score images with a registered model (``pipeline.infer.scoring``).

Inputs (``infer.input_format``, ``pipeline.infer.inputs``): a dataset split, raw IDX files, a Parquet table with an image column,
or a folder of PNG/JPEG images. Every row becomes either a prediction or a reject with its reason;
rows are never dropped silently, and a bad row never fails the job. Output, written beside and swapped
in: ``predictions/`` (Parquet or Delta), ``rejects/`` and ``summary.json``.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import time

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from pipeline.config import PipelineConfig
from pipeline.errors import PipelineError
from pipeline.infer.inputs import input_path, load_input
from pipeline.io import storage
from pipeline.io.dataset import split_path
from pipeline.io.fs import HadoopFS, display_path, qualify
from pipeline.io.publish import swap_into_place
from pipeline.io.spark import run_together

log = logging.getLogger(__name__)

def resolve_model(cfg: PipelineConfig):
    """(model_uri, ModelVersion) for ``infer.model_version`` or ``models:/NAME@<promote.champion_alias>``.

    Raises:
        PipelineError: the registry says there is no such version or alias (promote one first).
        RegistryError: the registry could not be asked (server error, timeout, permission); that is not
            "no champion", and the message says which.
    """
    from mlflow import MlflowClient

    from pipeline.io.tracking import alias_version, model_version, setup_experiment

    setup_experiment(cfg.mlflow)
    client = MlflowClient()
    name, alias = cfg.mlflow.registered_model, cfg.promote.champion_alias
    number = cfg.infer.model_version or alias_version(client, name, alias)
    version = model_version(client, name, number) if number is not None else None
    if version is None:
        what = f"version {cfg.infer.model_version}" if cfg.infer.model_version else f"alias {alias!r}"
        raise PipelineError(
            f"registered model {name!r} has no {what} in {cfg.mlflow.tracking_uri}; promote a version first "
            "(`mnist-pipeline evaluate`), or name one with infer.model_version=N"
        )
    return f"models:/{name}/{version.version}", version


def _alias_exists(cfg: PipelineConfig) -> bool:
    from mlflow import MlflowClient

    from pipeline.io.tracking import alias_version, setup_experiment

    setup_experiment(cfg.mlflow)
    return alias_version(MlflowClient(), cfg.mlflow.registered_model, cfg.promote.champion_alias) is not None


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


def batch_infer(spark: SparkSession, cfg: PipelineConfig, purpose: str = "score") -> dict | None:
    """Scores ``infer.input`` and writes predictions, rejects and a summary; returns the summary.

    None, with nothing written, when ``infer.skip_without_champion`` is set and no version holds the alias.
    ``purpose``: ``score`` (new data), or ``retrain`` for a retrain's check of its own test split, which
    the monitoring history keeps but ``retrain.when=drift`` does not count.
    """
    if cfg.infer.skip_without_champion and not cfg.infer.model_version and not _alias_exists(cfg):
        log.warning("no version of %s holds @%s yet, so there is nothing to score with; inference skipped",
                    cfg.mlflow.registered_model, cfg.promote.champion_alias)
        return None
    if cfg.infer.mode == "incremental":
        from pipeline.infer.incremental import score_new_files

        return score_new_files(spark, cfg)
    _refuse_incremental_output(cfg)

    from pyspark import StorageLevel

    from pipeline.infer import measure
    from pipeline.infer.scoring import scored_schema, scorer
    from pipeline.io.progress import SparkProgress
    from pipeline.monitor import history, record

    start = time.monotonic()
    source = load_input(spark, cfg)  # input problems first: they are the user's to fix, in seconds
    model_uri, version = resolve_model(cfg)
    watch = cfg.monitor.enabled
    reference = record.reference_of(model_uri) if watch else None
    out = qualify(cfg.infer.output).rstrip("/")
    fs = HadoopFS(spark)
    sc = spark.sparkContext
    scored_at = dt.datetime.now(dt.UTC).replace(microsecond=0)
    key = history.new_key(scored_at)
    shown_input = _input_shown(cfg)
    log_dir = f"{history.monitor_root(cfg)}/inference_log"
    log_staging = f"{log_dir}/_staging-{key}"  # Spark's readers skip folders starting with _
    rows_done = sc.accumulator(0)
    model_name = ship_model(spark, model_uri, version)
    # One pass over the input: the aggregation that counts the summary (and sums the batch's profile)
    # scores or rejects every row, with its monitoring bins, into the cache; then the outputs and the
    # inference log are written from it together, while the monitoring plot is drawn from the counts.
    scored = source.rows.mapInArrow(scorer(model_name, rows_done, with_stats=watch), scored_schema(watch)) \
        .persist(StorageLevel.MEMORY_AND_DISK)
    predictions = scored.where(F.col("reject_reason").isNull()).select(
        "id", "predicted_label", "probability", "probabilities", "label",
        F.lit(cfg.mlflow.registered_model).alias("model_name"),
        F.lit(str(version.version)).alias("model_version"),
        F.lit(version.run_id).cast("string").alias("run_id"),
        F.lit(scored_at).cast("timestamp").alias("scored_at"),
        "note",
    )
    rejects = scored.where(F.col("reject_reason").isNotNull()).select(
        "id", "reject_reason", "note", F.lit(scored_at).cast("timestamp").alias("scored_at"))
    fmt = cfg.infer.output_format
    staging = f"{out}.__staging-{int(time.time() * 1000)}"
    try:
        with SparkProgress(sc, "infer", cfg.spark.progress_interval_s, lambda: rows_done.value):
            keys, aggs = measure.count_columns(watch)
            counts = scored.groupBy(*keys).agg(*aggs).collect()
            writes = [lambda: _write(predictions, f"{staging}/predictions", fmt),
                      lambda: _write(rejects, f"{staging}/rejects", fmt)]
            if watch:
                batch = measure.profile_from_counts(counts)
                verdict, plot = record.judge_and_draw(cfg, reference, batch, measure.rejects_of(counts))
                writes.append(lambda: measure.inference_log(predictions, shown_input).write.parquet(log_staging))
            run_together(*writes)
            if watch:
                judged = verdict.result()
        summary = _summary(cfg, counts, source.inputs, model_uri, version, out, fmt, scored_at,
                           time.monotonic() - start)
        if watch:
            summary["monitoring"] = {"monitor_run": key, **judged}
        storage.write_text(storage.join(staging, "summary.json"), json.dumps(summary, indent=2))
        swap_into_place(fs, staging, out)
        staging = None
        if watch:
            fs.rename(log_staging, f"{log_dir}/monitor_run={key}")
            log_staging = None
    finally:
        scored.unpersist()
        for folder in (staging, log_staging if watch else None):
            if folder is not None and fs.exists(folder):
                fs.delete(folder)
    log.info("batch inference: %d rows scored, %d rejects, %.0f rows/s -> %s", summary["rows_scored"],
             summary["rejects"], summary["rows_per_sec"], out)
    if watch:
        summary["monitoring"] = record.record(cfg, summary, reference, batch, key, scored_at, plot, purpose)
    return summary


def _refuse_incremental_output(cfg: PipelineConfig) -> None:
    """A batch run replaces its output whole: never the output (and checkpoint) of incremental scoring."""
    path = storage.join(qualify(cfg.infer.output).rstrip("/"), "summary.json")
    if storage.exists(path) and json.loads(storage.read_text(path)).get("mode") == "incremental":
        raise PipelineError(f"infer.output {display_path(cfg.infer.output)} holds incremental scoring's output and "
                            "checkpoint, which a batch run would replace; expected another infer.output, or "
                            "infer.mode=incremental")


def _input_shown(cfg: PipelineConfig) -> str:
    if cfg.infer.input_format == "dataset":
        return display_path(split_path(input_path(cfg), cfg.infer.split))
    return display_path(qualify(input_path(cfg)))


# Model archives shipped to this application's executors, by application and model version: a version's
# files never change, so each is downloaded and shipped once per application, and kept until this process
# exits. Spark re-offers every archive it was ever given to each executor that starts later (or a local
# executor's next task, for one it had not fetched), so a shipped archive must outlive the run. A version
# is known by its registry, source and run, never by its URI alone: "models:/mnist-cnn/1" of one tracking
# store is not version 1 of another store the same process uses.
_shipped: dict[tuple[str, ...], str] = {}
_ship_folder: list[str] = []


def ship_model(spark: SparkSession, model_uri: str, version) -> str:
    """Downloads the model's files once, on the driver, and ships them to every executor as an archive
    (Spark unpacks it there; a plain folder cannot be shipped to a cluster); returns the name executors
    find it under (``SparkFiles.get``). Executors need no registry access. ``version`` is the
    ``ModelVersion`` that ``model_uri`` resolved to."""
    import atexit
    import shutil
    import tempfile
    import uuid

    import mlflow

    key = (spark.sparkContext.applicationId, mlflow.get_registry_uri(), model_uri, str(version.source),
           str(version.run_id))
    if key in _shipped:
        return _shipped[key]
    if not _ship_folder:
        _ship_folder.append(tempfile.mkdtemp(prefix="mnist-pipeline-models-"))
        atexit.register(shutil.rmtree, _ship_folder[0], True)
    name = f"model-{uuid.uuid4().hex[:12]}"
    folder = os.path.join(_ship_folder[0], name)
    os.makedirs(folder)
    mlflow.artifacts.download_artifacts(artifact_uri=model_uri, dst_path=folder)
    archive = shutil.make_archive(os.path.join(_ship_folder[0], name), "zip", root_dir=folder)
    shutil.rmtree(folder, ignore_errors=True)
    spark.sparkContext.addArchive(archive)
    _shipped[key] = os.path.basename(archive)
    return _shipped[key]


def _summary(cfg: PipelineConfig, counts, inputs: int | None, model_uri: str, version, out: str, fmt: str,
             scored_at, seconds: float) -> dict:
    scored = sum(r["count"] for r in counts if r.ok)
    n_rejects = sum(r["count"] for r in counts if not r.ok)
    histogram = {k: 0 for k in range(10)}
    for r in counts:
        if r.ok:
            histogram[int(r.predicted_label)] += r["count"]
    n_labelled = sum(r["count"] for r in counts if r.ok and r.labelled)
    correct = sum(r["count"] for r in counts if r.ok and r.labelled and r.correct)
    inputs = inputs if inputs is not None else scored + n_rejects
    if inputs != scored + n_rejects:
        log.warning("%d inputs seen but %d scored and %d rejected: %d unaccounted for", inputs, scored, n_rejects,
                    inputs - scored - n_rejects)
    return {
        "model_uri": model_uri, "model_version": str(version.version), "run_id": version.run_id,
        "input": _input_shown(cfg),
        "input_format": cfg.infer.input_format, "output": out, "output_format": fmt,
        "inputs": inputs, "rows_scored": scored, "rejects": n_rejects, "seconds": round(seconds, 2),
        "rows_per_sec": round((scored + n_rejects) / max(seconds, 1e-9), 1),
        "predicted_histogram": {str(k): v for k, v in histogram.items()},
        "labelled_rows": n_labelled, "accuracy": (correct / n_labelled) if n_labelled else None,
        "scored_at": scored_at.isoformat(),
    }
