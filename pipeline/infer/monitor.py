"""Monitoring of batch inference: each run against the scoring version's reference, kept as a history.

Under ``monitor.path``:

- ``inference_log/`` one row per scored input, in the shape Databricks' inference-log monitors read
  (``timestamp, model_id, model_name, model_version, prediction, probability, label, id, source``), one
  folder ``monitor_run=<key>`` per run, moved into place whole (Spark skips the ``_staging-`` folders);
- ``runs/`` one Parquet file per run, ``<key>.parquet``, one row: rows, rejects, the drift figures, the
  verdict and the figure that decided it, the MLflow run. Written last: a run is in the history once
  everything else of it is.

Each run is also an MLflow run in the monitoring experiment (``monitor.experiment``): the figures as
metrics at step = the run's index in the history, so the UI charts them over time, the verdict as a tag,
and a plot of the batch against the reference.
"""

from __future__ import annotations

import datetime as dt
import io
import logging
import uuid

from pipeline.assess import drift
from pipeline.config import PipelineConfig
from pipeline.errors import PipelineError
from pipeline.io import storage
from pipeline.io.fs import qualify

log = logging.getLogger(__name__)

NO_REFERENCE = "no_reference"
TOO_FEW_ROWS = "too_few_rows"
RUN_COLUMNS = ("monitor_run", "timestamp", "model_name", "model_version", "source", "input_format", "rows",
               "rejects", "labelled_rows", "accuracy", "mean_confidence", "mean_ink", *drift.FIGURES,
               "reference_accuracy", "reference_mean_confidence", "reference_mean_ink", "verdict", "decided_by",
               "decisive", "psi_moderate", "psi_drift", "mlflow_run_id", "profile")


def monitor_root(cfg: PipelineConfig) -> str:
    return qualify(cfg.monitor.path).rstrip("/")


def experiment_name(cfg: PipelineConfig) -> str:
    return cfg.monitor.experiment or f"{cfg.mlflow.experiment}-monitoring"


def new_key(now: dt.datetime) -> str:
    """A run's key: sorts by time, unique across concurrent runs."""
    return f"{now.strftime('%Y%m%dT%H%M%SZ')}-{uuid.uuid4().hex[:6]}"


def reference_of(model_uri: str) -> dict | None:
    """The monitoring reference the model at ``model_uri`` was registered with (its MLmodel metadata);
    None when it has none (registered before monitoring existed).

    Raises:
        PipelineError: the model's MLmodel file could not be read, or holds something that is not a
            reference (names the model and what is wrong).
    """
    from mlflow.models import get_model_info

    try:
        metadata = get_model_info(model_uri).metadata or {}
    except Exception as exc:
        raise PipelineError(f"could not read the MLmodel file of {model_uri} for its monitoring reference "
                            f"({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})") from exc
    value = metadata.get(drift.REFERENCE_KEY)
    if value is None:
        return None
    try:
        return drift.check_profile(value, f"{drift.REFERENCE_KEY} in the MLmodel metadata of {model_uri}")
    except ValueError as exc:
        raise PipelineError(str(exc)) from None


# The Spark side: the batch's profile from the scored rows, in the aggregation that counts them.

def count_columns(with_stats: bool):
    """The group-by keys and aggregates of the one aggregation over the scored rows."""
    from pyspark.sql import functions as F

    from pipeline.infer.scoring import PIXEL_COLUMNS

    keys = [F.col("reject_reason").isNull().alias("ok"), "predicted_label",
            F.col("label").isNotNull().alias("labelled"),
            (F.col("label") == F.col("predicted_label")).alias("correct")]
    aggs = [F.count(F.lit(1)).alias("count")]
    if with_stats:
        keys += ["conf_bin", "entropy_bin"]
        aggs += [F.sum("probability").alias("confidence_sum"), F.sum("ink").alias("ink_sum"),
                 *(F.sum(c).alias(c) for c in PIXEL_COLUMNS)]
    return keys, aggs


def profile_from_counts(counts) -> dict:
    """The batch's profile from the aggregation's rows (``count_columns(True)``), rejects left out."""
    from pipeline.infer.scoring import PIXEL_COLUMNS

    p = drift.empty_profile()
    for r in counts:
        if not r.ok:
            continue
        n = r["count"]
        p["rows"] += n
        p["classes"][int(r.predicted_label)] += n
        p["confidence"][int(r.conf_bin)] += n
        p["entropy"][int(r.entropy_bin)] += n
        for b, c in enumerate(PIXEL_COLUMNS):  # null: no row of this group carried its Arrow batch's totals
            p["pixels"][b] += int(r[c] or 0)
        p["confidence_sum"] += float(r.confidence_sum)
        p["ink_sum"] += float(r.ink_sum)
        if r.labelled:
            p["labelled"] += n
            p["correct"] += n if r.correct else 0
    return p


def judge(cfg: PipelineConfig, reference: dict | None, batch: dict) -> dict:
    """The drift figures and verdict of a batch; without a reference (or without a scored row) the verdict
    is ``no_reference`` / ``stable`` with the figures left empty, and the summary says why."""
    mine = drift.summary(batch)
    empty = {name: None for name in drift.FIGURES}
    if reference is None:
        return {**empty, "mean_confidence": mine["mean_confidence"], "mean_ink": mine["mean_ink"],
                "accuracy": mine["accuracy"], "reference_accuracy": None, "reference_mean_confidence": None,
                "reference_mean_ink": None, "verdict": NO_REFERENCE, "decided_by": None, "decisive": None}
    if not batch["rows"]:
        theirs = drift.summary(reference)
        return {**empty, "mean_confidence": None, "mean_ink": None, "accuracy": None,
                "reference_accuracy": theirs["accuracy"], "reference_mean_confidence": theirs["mean_confidence"],
                "reference_mean_ink": theirs["mean_ink"], "verdict": TOO_FEW_ROWS,
                "decided_by": f"0 rows < monitor.min_rows {cfg.monitor.min_rows}", "decisive": None}
    judged = drift.compare(reference, batch, cfg.monitor.psi_moderate, cfg.monitor.psi_drift)
    if batch["rows"] < cfg.monitor.min_rows:
        judged.update(verdict=TOO_FEW_ROWS, decided_by=f"{batch['rows']} rows < monitor.min_rows {cfg.monitor.min_rows}")
    return judged


def inference_log(predictions, source: str):
    """The scored rows in the inference-log shape (``predictions``: the rows ``batch_infer`` writes)."""
    from pyspark.sql import functions as F

    return predictions.select(
        F.col("scored_at").alias("timestamp"),
        F.concat_ws("/", "model_name", "model_version").alias("model_id"),
        "model_name", "model_version", F.col("predicted_label").alias("prediction"), "probability", "label",
        "id", F.lit(source).alias("source"))


# The history.

def read_runs(cfg: PipelineConfig) -> list[dict]:
    """Every monitored run under ``monitor.path``, oldest first; [] when there is no history yet.

    Raises:
        PipelineError: a run file that cannot be read (names it); a history that is there is never
            taken as empty.
    """
    import pyarrow.parquet as pq

    folder = storage.join(monitor_root(cfg), "runs")
    fs, files = _run_files(folder)
    rows = []
    for info in files:
        try:
            rows.extend(pq.read_table(info.path, filesystem=fs).to_pylist())
        except Exception as exc:
            raise PipelineError(f"monitoring history {storage.join(folder, info.base_name)} cannot be read "
                                f"({type(exc).__name__}: {exc}); move it away to go on without it") from exc
    return sorted(rows, key=lambda r: (r["timestamp"], r["monitor_run"]))


def count_runs(cfg: PipelineConfig) -> int:
    """How many runs the history holds (its files listed, none read: a run's index costs the same after a
    year of runs)."""
    return len(_run_files(storage.join(monitor_root(cfg), "runs"))[1])


def _run_files(folder: str):
    """(filesystem, the history's run files), none when there is no history yet."""
    import pyarrow.fs as pafs

    fs, path = storage.resolve(folder)
    if fs.get_file_info(path).type == pafs.FileType.NotFound:
        return fs, []
    return fs, [info for info in fs.get_file_info(pafs.FileSelector(path))
                if info.base_name.endswith(".parquet") and not info.base_name.startswith(("_", "."))]


def write_run(cfg: PipelineConfig, row: dict) -> str:
    """Adds one run to the history (its own file, written whole); returns the file's path."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.Table.from_pylist([{c: row.get(c) for c in RUN_COLUMNS}], schema=_RUN_SCHEMA)
    buffer = io.BytesIO()
    pq.write_table(table, buffer)
    path = storage.join(monitor_root(cfg), "runs", f"{row['monitor_run']}.parquet")
    storage.write_bytes(path, buffer.getvalue())
    return path


def _run_schema():
    import pyarrow as pa

    types = {"timestamp": pa.timestamp("s", tz="UTC"), "rows": pa.int64(), "rejects": pa.int64(),
             "labelled_rows": pa.int64()}
    floats = {"accuracy", "mean_confidence", "mean_ink", *drift.FIGURES, "reference_accuracy",
              "reference_mean_confidence", "reference_mean_ink", "decisive", "psi_moderate", "psi_drift"}
    return pa.schema([(c, types.get(c, pa.float64() if c in floats else pa.string())) for c in RUN_COLUMNS])


_RUN_SCHEMA = _run_schema()


# MLflow.

def render_plot(reference: dict | None, batch: dict, judged: dict):
    """The batch-against-reference plot (``plots.drift_figure``) as PNG bytes, drawn in a background thread:
    it needs only the counts, so it is drawn while the outputs are written. A future of the bytes; None
    when there is nothing to plot (no reference, or no row scored)."""
    from concurrent.futures import ThreadPoolExecutor

    if reference is None or not batch["rows"]:
        return None

    def draw() -> bytes:
        from pipeline.assess import plots

        return plots.png(plots.drift_figure(reference, batch, judged))

    pool = ThreadPoolExecutor(1, thread_name_prefix="monitor-plot")
    try:
        return pool.submit(draw)
    finally:
        pool.shutdown(wait=False)  # the thread ends with its one task; nobody waits for it but the caller


def log_mlflow_run(cfg: PipelineConfig, row: dict, reference: dict | None, batch: dict, index: int,
                   input_path: str, plot) -> str:
    """The run's MLflow run in the monitoring experiment; returns its id. ``plot``: ``render_plot``'s
    future for this batch (None: nothing to plot)."""
    import dataclasses
    import os
    import tempfile

    import mlflow

    from pipeline.io.tracking import log_dataset, setup_experiment

    experiment_id = setup_experiment(dataclasses.replace(cfg.mlflow, experiment=experiment_name(cfg)))
    name = f"score-v{row['model_version']}-{row['rows']}rows-{row['verdict']}"
    with mlflow.start_run(experiment_id=experiment_id, run_name=name, nested=mlflow.active_run() is not None) as run:
        metrics = {k: row[k] for k in ("rows", "rejects", "accuracy", "mean_confidence", "mean_ink", *drift.FIGURES)
                   if row.get(k) is not None}
        mlflow.log_metrics(metrics, step=index)
        mlflow.set_tags({"verdict": row["verdict"], "decided_by": row["decided_by"] or "",
                         "model_name": row["model_name"], "model_version": row["model_version"],
                         "monitor_run": row["monitor_run"], "source": row["source"],
                         "mlflow.note.content": describe(row)})
        log_dataset(input_path, name=f"inference:{row['source'].rstrip('/').rsplit('/', 1)[-1]}",
                    digest=row["monitor_run"], rows=row["rows"] + row["rejects"], context="inference")
        mlflow.log_dict({"reference": reference, "batch": batch, "figures": row}, "monitoring/profiles.json")
        if plot is not None:
            with tempfile.TemporaryDirectory() as folder:
                path = os.path.join(folder, "batch_vs_reference.png")
                with open(path, "wb") as f:
                    f.write(plot.result())
                mlflow.log_artifact(path, "plots")
        return run.info.run_id


def describe(row: dict) -> str:
    """One paragraph on a run, for the MLflow run's description and the log."""
    if row["verdict"] == NO_REFERENCE:
        judged = (f"version {row['model_version']} has no monitoring reference (registered before monitoring), "
                  "so no drift figures")
    elif row["decisive"] is None:
        judged = "no rows were scored, so nothing to compare"
    elif row["verdict"] == TOO_FEW_ROWS:
        judged = (f"verdict too_few_rows ({row['decided_by']}): largest PSI {row['decisive']:.3f}, not judged, "
                  "since sampling noise alone moves PSI by about (bins - 1) / rows")
    else:
        judged = (f"verdict **{row['verdict']}**: largest PSI {row['decided_by']} = {row['decisive']:.3f} "
                  f"(moderate from {row['psi_moderate']:g}, drift above {row['psi_drift']:g})")
    accuracy = f"; accuracy {row['accuracy']:.4f}" if row.get("accuracy") is not None else ""
    confidence = (f"; mean top-class probability {row['mean_confidence']:.3f}"
                  if row.get("mean_confidence") is not None else "")
    if row.get("reference_mean_confidence") is not None and row.get("mean_confidence") is not None:
        confidence += f" (reference {row['reference_mean_confidence']:.3f})"
    return (f"{row['model_name']} version {row['model_version']} scored {row['rows']:,} rows "
            f"({row['rejects']:,} rejects) of {row['source']}: {judged}{confidence}{accuracy}.")


# mnist-pipeline monitor

def monitor(spark, cfg: PipelineConfig) -> dict:
    """The last ``monitor.last`` runs, and the drift-over-time plot written beside the history."""
    runs = read_runs(cfg)
    plot = None
    if runs:
        import matplotlib.pyplot as plt

        from pipeline.assess import plots

        fig = plots.drift_over_time(runs, cfg.monitor.psi_moderate, cfg.monitor.psi_drift)
        image = plots.png(fig)
        plt.close("all")
        plot = storage.join(monitor_root(cfg), "drift_over_time.png")
        storage.write_bytes(plot, image)
    return {"runs": runs[-cfg.monitor.last:], "total": len(runs), "plot": plot, "root": monitor_root(cfg)}


def format_monitor(result: dict, cfg: PipelineConfig) -> str:
    if not result["total"]:
        return f"no monitored inference runs under {result['root']} yet (batch inference adds one per run)"
    lines = [f"monitored inference runs under {result['root']}: last {len(result['runs'])} of {result['total']}",
             f"{'time (UTC)':<20} {'rows':>8} {'version':>7} {'class':>7} {'conf':>7} {'entropy':>7} {'pixels':>7} "
             f"{'mean p':>7} {'accuracy':>8}  verdict"]

    def fig(value, width=7, digits=3):
        return f"{value:>{width}.{digits}f}" if value is not None else f"{'-':>{width}}"

    for r in result["runs"]:
        when = r["timestamp"].strftime("%Y-%m-%d %H:%M:%S") if r["timestamp"] else "?"
        lines.append(f"{when:<20} {r['rows']:>8,} {r['model_version']:>7} {fig(r['class_psi'])} "
                     f"{fig(r['confidence_psi'])} {fig(r['entropy_psi'])} {fig(r['pixel_psi'])} "
                     f"{fig(r['mean_confidence'])} {fig(r['accuracy'], 8, 4)}  {r['verdict']}"
                     + (f" ({r['decided_by']})" if r["verdict"] in ("moderate", "drift") else ""))
    lines.append(f"PSI of predicted classes, confidence, entropy and pixel histograms against the version's reference; "
                 f"stable < {cfg.monitor.psi_moderate:g} <= moderate <= {cfg.monitor.psi_drift:g} < drift")
    lines.append(f"drift over time: {result['plot']}")
    return "\n".join(lines)


# retrain.when=drift

def drift_decision(cfg: PipelineConfig, champion_version: str | None) -> tuple[bool, str]:
    """(retrain?, why): whether ``retrain.drift_runs`` of the champion's last ``retrain.window_runs``
    monitored runs were drift. Runs of other versions do not count: a new champion starts afresh."""
    r = cfg.retrain
    if champion_version is None:
        return True, f"no version holds @{cfg.promote.champion_alias}, so there is no champion to keep"
    runs = [x for x in read_runs(cfg) if x["model_name"] == cfg.mlflow.registered_model
            and x["model_version"] == str(champion_version)]
    window = runs[-r.window_runs:]
    drifted = [x for x in window if x["verdict"] == "drift"]
    figures = ", ".join(x["verdict"] + (f" {x['decided_by']}={x['decisive']:.2f}"
                                        if x["verdict"] in ("moderate", "drift") else "") for x in window) or "none"
    what = (f"{len(drifted)} of the last {len(window)} monitored runs of champion version {champion_version} were "
            f"drift (retrain.when=drift needs {r.drift_runs} of the last {r.window_runs}; runs: {figures})")
    return len(drifted) >= r.drift_runs, what
