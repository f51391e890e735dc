"""The monitoring history under ``monitor.path``:

- ``inference_log/`` one row per scored input, in the shape Databricks' inference-log monitors read
  (``timestamp, model_id, model_name, model_version, prediction, probability, label, id, source``), one
  folder ``monitor_run=<key>`` per run, moved into place whole (Spark skips the ``_staging-`` folders);
- ``runs/`` one Parquet file per run, ``<key>.parquet``, one row: rows, rejects, the drift figures and
  their noise bounds, the verdict and what decided it, the MLflow run. Written last: a run is in the
  history once everything else of it is;
- ``retrains/`` one JSON file per retrain that ``retrain.when=drift`` decided, ``<key>.json``: when, for
  which champion and why, then how it ended. The next decision counts only runs after the last one.

A key starts with its UTC time (``20261207T101500Z-...``), so names sort by time and a reader that
wants the newest runs lists the folder and reads from the end, never every file.
"""

from __future__ import annotations

import datetime as dt
import io
import json
import uuid
from collections.abc import Iterator

from pipeline.assess import drift
from pipeline.config import PipelineConfig
from pipeline.errors import PipelineError
from pipeline.io import storage
from pipeline.io.fs import qualify

# purpose of a run: "score" (new data) or "retrain" (the retrain's own check of its test split, which is
# no evidence about new data and never counts towards retrain.when=drift)
SCORE, RETRAIN_CHECK = "score", "retrain"
RUN_COLUMNS = ("monitor_run", "timestamp", "model_name", "model_version", "source", "input_format", "purpose",
               "rows", "rejects", "reject_share", "labelled_rows", "accuracy", "mean_confidence", "mean_ink",
               *drift.FIGURES, *(drift.bound_name(f) for f in drift.FIGURES), "reference_accuracy",
               "reference_mean_confidence", "reference_mean_ink", "verdict", "decided_by", "decisive", "threshold",
               "psi_moderate", "psi_drift", "false_alarm", "mlflow_run_id", "profile")


def monitor_root(cfg: PipelineConfig) -> str:
    return qualify(cfg.monitor.path).rstrip("/")


def new_key(now: dt.datetime) -> str:
    """A run's key: sorts by time, unique across concurrent runs."""
    return f"{time_prefix(now)}-{uuid.uuid4().hex[:6]}"


def time_prefix(when: dt.datetime) -> str:
    """The time part of a key (UTC, second resolution)."""
    return when.astimezone(dt.UTC).strftime("%Y%m%dT%H%M%SZ")


# Runs.

def read_runs(cfg: PipelineConfig) -> list[dict]:
    """Every monitored run under ``monitor.path``, oldest first; [] when there is no history yet.

    Raises:
        PipelineError: a run file that cannot be read (names it); a history that is there is never
            taken as empty.
    """
    return sorted(newest_runs(cfg), key=lambda r: (r["timestamp"], r["monitor_run"]))


def newest_runs(cfg: PipelineConfig, since: str | None = None) -> Iterator[dict]:
    """The runs newest first, read one file at a time as the caller asks for them; with ``since`` (a key's
    time prefix) only runs of that second or later. Stop iterating and no further file is read.

    Raises:
        PipelineError: a run file that cannot be read (names it).
    """
    import pyarrow.parquet as pq

    folder = storage.join(monitor_root(cfg), "runs")
    fs, files = _files(folder, ".parquet")
    for info in sorted(files, key=lambda f: f.base_name, reverse=True):
        if since is not None and info.base_name[:len(since)] < since:
            return
        try:
            rows = pq.read_table(info.path, filesystem=fs).to_pylist()
        except Exception as exc:
            raise PipelineError(f"monitoring history {storage.join(folder, info.base_name)} cannot be read "
                                f"({type(exc).__name__}: {exc}); move it away to go on without it") from exc
        for row in rows:
            yield {c: row.get(c) for c in RUN_COLUMNS}  # a run written before a column existed has it as None


def count_runs(cfg: PipelineConfig) -> int:
    """How many runs the history holds (its files listed, none read: a run's index costs the same after a
    year of runs)."""
    return len(_files(storage.join(monitor_root(cfg), "runs"), ".parquet")[1])


def _files(folder: str, suffix: str):
    """(filesystem, the folder's files ending in ``suffix``), none when the folder does not exist yet."""
    import pyarrow.fs as pafs

    fs, path = storage.resolve(folder)
    if fs.get_file_info(path).type == pafs.FileType.NotFound:
        return fs, []
    return fs, [info for info in fs.get_file_info(pafs.FileSelector(path))
                if info.base_name.endswith(suffix) and not info.base_name.startswith(("_", "."))]


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
    floats = {"accuracy", "mean_confidence", "mean_ink", "reject_share", *drift.FIGURES,
              *(drift.bound_name(f) for f in drift.FIGURES), "reference_accuracy", "reference_mean_confidence",
              "reference_mean_ink", "decisive", "threshold", "psi_moderate", "psi_drift", "false_alarm"}
    return pa.schema([(c, types.get(c, pa.float64() if c in floats else pa.string())) for c in RUN_COLUMNS])


_RUN_SCHEMA = _run_schema()


# Retrain decisions.

def start_retrain(cfg: PipelineConfig, champion_version: str | None, why: str) -> dict:
    """Records a retrain that ``retrain.when=drift`` decided, before it starts; returns the record."""
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    record = {"key": new_key(now), "timestamp": now.isoformat(), "champion_version": champion_version,
              "why": why, "status": "started"}
    _write_retrain(cfg, record)
    return record


def end_retrain(cfg: PipelineConfig, record: dict, status: str, **details) -> None:
    """Says how a recorded retrain ended: ``promoted``, ``kept`` (the challenger was not promoted) or
    ``failed`` (then the next decision still sees the evidence it acted on)."""
    _write_retrain(cfg, {**record, **details, "status": status,
                         "ended": dt.datetime.now(dt.UTC).replace(microsecond=0).isoformat()})


def _write_retrain(cfg: PipelineConfig, record: dict) -> None:
    storage.write_text(storage.join(monitor_root(cfg), "retrains", f"{record['key']}.json"),
                       json.dumps(record, indent=2))


def last_retrain(cfg: PipelineConfig) -> dict | None:
    """The newest retrain that ended (promoted or kept), None when there is none: one retrain started
    and never ended (killed) or failed does not consume the evidence it acted on.

    Raises:
        PipelineError: a record that cannot be read (names it).
    """
    folder = storage.join(monitor_root(cfg), "retrains")
    fs, files = _files(folder, ".json")
    for info in sorted(files, key=lambda f: f.base_name, reverse=True):
        try:
            with fs.open_input_stream(info.path) as f:
                record = json.loads(f.read())
        except Exception as exc:
            raise PipelineError(f"retrain record {storage.join(folder, info.base_name)} cannot be read "
                                f"({type(exc).__name__}: {exc}); move it away to go on without it") from exc
        if record.get("status") in ("promoted", "kept"):
            return record
    return None
