"""Incremental scoring: every file that arrived in ``infer.input`` since the last run, exactly once.

A Structured Streaming query over the folder (``binaryFile`` for images and IDX, ``parquet`` for
tables) with ``trigger(availableNow=True)``: each run takes every file not yet in its checkpoint
(``infer.checkpoint``), scores it in micro-batches (``infer.max_files_per_trigger`` files each; all of
them in one by default) and stops. The model is resolved and shipped once per run, so a moved
``@champion`` is picked up by the next run, never in the middle of one; each Python worker loads it
once and keeps it for every micro-batch.

Each micro-batch ``N`` writes, under ``infer.output``:

- ``predictions/batch_id=N/`` and ``rejects/batch_id=N/``, each moved into place whole, with the model
  version on every row;
- its rows in the monitoring inference log and its run in the monitoring history (monitoring runs per
  micro-batch: with the default of one micro-batch per run, that is per run);
- ``_batches/N.json``, last: the micro-batch is done.

Spark records a micro-batch's files before it runs and commits it after ``foreachBatch`` returns. A
run killed in between replays the same micro-batch next time: one whose ``_batches/N.json`` exists was
finished and is skipped; anything else of it (a folder moved in before the kill) is deleted and the
micro-batch is scored again. So no file is lost and none is scored twice.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import time

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from pipeline.config import PipelineConfig
from pipeline.errors import InputError
from pipeline.infer.inputs import INVALID_IDX, PREPARED_SCHEMA, idx_rows, image_rows, input_path, parquet_rows
from pipeline.io import storage
from pipeline.io.fs import HadoopFS, display_path, qualify
from pipeline.io.spark import run_together

log = logging.getLogger(__name__)

BINARY_FILE_SCHEMA = "path string, modificationTime timestamp, length long, content binary"  # Spark's binaryFile


def checkpoint_path(cfg: PipelineConfig) -> str:
    return qualify(cfg.infer.checkpoint or f"{cfg.infer.output.rstrip('/')}/_checkpoint").rstrip("/")


def _stream(spark: SparkSession, fs: HadoopFS, cfg: PipelineConfig, source: str) -> DataFrame | None:
    """The streaming DataFrame over the input folder; None for a Parquet folder with no file yet (its
    schema comes from the files)."""
    reader = spark.readStream
    if cfg.infer.max_files_per_trigger:
        reader = reader.option("maxFilesPerTrigger", cfg.infer.max_files_per_trigger)
    fmt = cfg.infer.input_format
    if fmt == "parquet":
        if not fs.glob_files(f"{source}/*"):
            return None
        return reader.schema(spark.read.parquet(source).schema).parquet(source)
    reader = reader.format("binaryFile").schema(BINARY_FILE_SCHEMA).option("recursiveFileLookup", "true")
    if fmt == "idx":  # a pair is scored when its images file arrives (its labels file must be there by then)
        reader = reader.option("pathGlobFilter", "*images-idx3*")
    return reader.load(source)


def _prepared(spark: SparkSession, fs: HadoopFS, cfg: PipelineConfig, batch: DataFrame, source: str) -> DataFrame:
    fmt = cfg.infer.input_format
    if fmt == "parquet":
        return parquet_rows(batch, cfg, source)
    if fmt == "images":
        return image_rows(batch)
    from pipeline.sources.files import _IMAGES_TAG, plan_units

    units, bad = [], []
    for row in batch.select("path").collect():  # file names only: a micro-batch's files, never its rows
        try:
            units += plan_units(fs, "idx", "test", row.path.replace(_IMAGES_TAG, "*"), key="infer.input")
        except InputError as exc:  # an images file without its labels file: a reject, the others are scored
            bad.append((row.path, None, None, str(exc), INVALID_IDX))
    rows = idx_rows(spark, units) if units else spark.createDataFrame([], PREPARED_SCHEMA)
    return rows.unionByName(spark.createDataFrame(bad, PREPARED_SCHEMA)) if bad else rows


def score_new_files(spark: SparkSession, cfg: PipelineConfig) -> dict:
    """Scores the files that arrived since the last run and returns the run's summary."""
    from pyspark import StorageLevel

    from pipeline.infer import measure
    from pipeline.infer.batch import _summary, resolve_model, ship_model
    from pipeline.infer.scoring import scored_schema, scorer
    from pipeline.monitor import history, record

    start = time.monotonic()
    fs = HadoopFS(spark)
    source = qualify(input_path(cfg)).rstrip("/")
    if not fs.exists(source):
        raise InputError(f"infer.input {display_path(source)} does not exist; expected the folder new files "
                         "arrive in (infer.mode=incremental)")
    model_uri, version = resolve_model(cfg)  # once: the whole run scores with this version
    watch = cfg.monitor.enabled
    reference = record.reference_of(model_uri) if watch else None
    out = qualify(cfg.infer.output).rstrip("/")
    _refuse_batch_output(out)
    stream_id = hashlib.sha256(out.encode()).hexdigest()[:8]
    done: list[dict] = []
    failures: list[BaseException] = []

    def process(batch: DataFrame, batch_id: int) -> None:
        try:
            score_micro_batch(batch, batch_id)
        except BaseException as exc:  # Spark wraps it in a StreamingQueryException: keep the original
            failures.append(exc)
            raise

    def score_micro_batch(batch: DataFrame, batch_id: int) -> None:
        marker = f"{out}/_batches/{batch_id}.json"
        if fs.exists(marker):
            log.info("micro-batch %d was scored by an earlier run (killed before Spark committed it); skipped",
                     batch_id)
            return
        suffix = f"s{stream_id}b{batch_id}"
        _forget_partial(fs, cfg, out, batch_id, suffix)
        scored_at = dt.datetime.now(dt.UTC).replace(microsecond=0)
        key = f"{history.time_prefix(scored_at)}-{suffix}"
        began = time.monotonic()
        rows = _prepared(spark, fs, cfg, batch, source)
        model_name = ship_model(spark, model_uri, version)  # once per application and version (a run with no new file: never)
        scored = rows.mapInArrow(scorer(model_name, None, with_stats=watch), scored_schema(watch)) \
            .persist(StorageLevel.MEMORY_AND_DISK)
        try:
            predictions = scored.where(F.col("reject_reason").isNull()).select(
                "id", "predicted_label", "probability", "probabilities", "label",
                F.lit(cfg.mlflow.registered_model).alias("model_name"),
                F.lit(str(version.version)).alias("model_version"),
                F.lit(version.run_id).cast("string").alias("run_id"),
                F.lit(scored_at).cast("timestamp").alias("scored_at"), "note")
            rejects = scored.where(F.col("reject_reason").isNotNull()).select(
                "id", "reject_reason", "note", F.lit(str(version.version)).alias("model_version"),
                F.lit(scored_at).cast("timestamp").alias("scored_at"))
            # the aggregation scores every row into the cache; the outputs are written from it together
            # (as in batch inference), while the monitoring plot is drawn from the counts
            keys, aggs = measure.count_columns(watch)
            counts = scored.groupBy(*keys).agg(*aggs).collect()
            writes = [lambda: _write_whole(fs, predictions, f"{out}/predictions", f"batch_id={batch_id}"),
                      lambda: _write_whole(fs, rejects, f"{out}/rejects", f"batch_id={batch_id}")]
            if watch:
                profile = measure.profile_from_counts(counts)
                verdict, plot = record.judge_and_draw(cfg, reference, profile, measure.rejects_of(counts))
                writes.append(lambda: _write_whole(fs, measure.inference_log(predictions, display_path(source)),
                                                   f"{history.monitor_root(cfg)}/inference_log", f"monitor_run={key}"))
            run_together(*writes)
            if watch:
                judged = verdict.result()
        finally:
            scored.unpersist()
        summary = _summary(cfg, counts, None, model_uri, version, out, "parquet", scored_at,
                           time.monotonic() - began)
        summary["batch_id"] = batch_id
        if watch:
            summary["monitoring"] = {"monitor_run": key, **judged}
            summary["monitoring"] = record.record(cfg, summary, reference, profile, key, scored_at, plot)
        storage.write_text(marker, json.dumps(summary, indent=2))
        done.append(summary)
        log.info("incremental: micro-batch %d: %d rows scored, %d rejects, %.0f rows/s", batch_id,
                 summary["rows_scored"], summary["rejects"], summary["rows_per_sec"])

    stream = _stream(spark, fs, cfg, source)
    if stream is not None:
        query = (stream.writeStream.foreachBatch(process).trigger(availableNow=True)
                 .option("checkpointLocation", checkpoint_path(cfg)).queryName(f"mnist-incremental-{stream_id}")
                 .start())
        try:
            query.awaitTermination()
        except Exception as exc:
            if failures:
                raise failures[0] from exc
            raise
    result = _run_summary(cfg, done, model_uri, version, source, out, time.monotonic() - start)
    storage.write_text(storage.join(out, "summary.json"), json.dumps(result, indent=2))
    log.info("incremental scoring: %d micro-batches, %d rows scored, %d rejects -> %s", result["micro_batches"],
             result["rows_scored"], result["rejects"], out)
    return result


def _refuse_batch_output(out: str) -> None:
    """An output batch inference wrote is replaced whole by each batch run: never append to one."""
    path = storage.join(out, "summary.json")
    if storage.exists(path) and json.loads(storage.read_text(path)).get("mode") != "incremental":
        raise InputError(f"infer.output {display_path(out)} holds the output of a batch inference (infer.mode=batch),"
                         " which the next batch run replaces whole; expected a folder of its own for "
                         "infer.mode=incremental")


def _write_whole(fs: HadoopFS, df: DataFrame, parent: str, name: str) -> None:
    """Writes ``df`` beside ``parent/name`` and moves it in (readers skip the ``_staging-`` folder)."""
    staging = f"{parent}/_staging-{name}"
    if fs.exists(staging):
        fs.delete(staging)
    df.write.parquet(staging)
    fs.rename(staging, f"{parent}/{name}")


def _forget_partial(fs: HadoopFS, cfg: PipelineConfig, out: str, batch_id: int, suffix: str) -> None:
    """Deletes what an earlier, killed attempt of this micro-batch left (it is scored again whole)."""
    from pipeline.monitor import history

    leftovers = [f"{out}/predictions/batch_id={batch_id}", f"{out}/rejects/batch_id={batch_id}"]
    root = history.monitor_root(cfg)
    leftovers += [f.path for f in fs.glob_files(f"{root}/inference_log/monitor_run=*-{suffix}")]
    leftovers += [f.path for f in fs.glob_files(f"{root}/runs/*-{suffix}.parquet")]
    for path in leftovers:
        if fs.exists(path):
            log.info("removing %s, left by an attempt of micro-batch %d that did not finish", display_path(path),
                     batch_id)
            fs.delete(path)


def _run_summary(cfg: PipelineConfig, done: list[dict], model_uri: str, version, source: str, out: str,
                 seconds: float) -> dict:
    scored = sum(d["rows_scored"] for d in done)
    rejects = sum(d["rejects"] for d in done)
    labelled = sum(d["labelled_rows"] for d in done)
    correct = sum(round(d["accuracy"] * d["labelled_rows"]) for d in done if d["accuracy"] is not None)
    histogram = {str(k): sum(d["predicted_histogram"][str(k)] for d in done) for k in range(10)}
    return {"mode": "incremental", "model_uri": model_uri, "model_version": str(version.version),
            "run_id": version.run_id, "input": display_path(source), "input_format": cfg.infer.input_format,
            "output": out, "output_format": "parquet", "checkpoint": checkpoint_path(cfg),
            "micro_batches": len(done), "batch_ids": [d["batch_id"] for d in done],
            "inputs": scored + rejects, "rows_scored": scored, "rejects": rejects, "seconds": round(seconds, 2),
            "rows_per_sec": round((scored + rejects) / max(seconds, 1e-9), 1), "predicted_histogram": histogram,
            "labelled_rows": labelled, "accuracy": correct / labelled if labelled else None,
            "monitoring": done[-1].get("monitoring") if done else None,
            "verdicts": [d["monitoring"]["verdict"] for d in done if d.get("monitoring")],
            "scored_at": dt.datetime.now(dt.UTC).replace(microsecond=0).isoformat()}
