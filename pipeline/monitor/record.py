"""What a scoring run leaves besides its predictions: the version's reference it is judged against, its
MLflow run in the monitoring experiment (figures as metrics at step = the run's index in the history,
so the UI charts them over time, the verdict as a tag, a plot of the batch against the reference) and
its row in the history."""

from __future__ import annotations

import json
import logging

from pipeline.assess import drift
from pipeline.config import PipelineConfig
from pipeline.errors import PipelineError
from pipeline.monitor import history
from pipeline.monitor.verdict import describe, judge

log = logging.getLogger(__name__)


def experiment_name(cfg: PipelineConfig) -> str:
    return cfg.monitor.experiment or f"{cfg.mlflow.experiment}-monitoring"


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


def judge_and_draw(cfg: PipelineConfig, reference: dict | None, batch: dict, rejects: int):
    """The run's verdict (``verdict.judge``) and then its batch-against-reference plot (``plots.drift_figure``,
    PNG bytes), in a background thread: they need only the counts, so they are worked out while the
    outputs are written (a noise bound may be a simulation of a few hundredths of a second). ``(judged,
    plot)``: futures; ``plot`` is None, or its result is, when there is nothing to plot (no reference, no
    row scored, or a stable run: drawing it would cost more than the rest of the run's monitoring)."""
    from concurrent.futures import ThreadPoolExecutor

    def draw() -> bytes | None:
        from pipeline.assess import plots

        figures = judged.result()
        if figures["verdict"] == "stable":  # nothing to look at: the figures and profiles are logged all the same
            return None
        return plots.png(plots.drift_figure(reference, batch, figures))

    pool = ThreadPoolExecutor(1, thread_name_prefix="monitor-verdict")
    try:
        judged = pool.submit(judge, cfg, reference, batch, rejects)
        plot = pool.submit(draw) if reference is not None and batch["rows"] else None
        return judged, plot
    finally:
        pool.shutdown(wait=False)  # the thread ends with its two tasks; nobody waits for it but the caller


def log_mlflow_run(cfg: PipelineConfig, row: dict, reference: dict | None, batch: dict, index: int,
                   input_path: str, plot) -> str:
    """The run's MLflow run in the monitoring experiment; returns its id. ``plot``: ``judge_and_draw``'s
    plot future for this batch (None: nothing to plot)."""
    import dataclasses
    import os
    import tempfile

    import mlflow

    from pipeline.io.tracking import log_dataset, setup_experiment

    experiment_id = setup_experiment(dataclasses.replace(cfg.mlflow, experiment=experiment_name(cfg)))
    name = f"score-v{row['model_version']}-{row['rows']}rows-{row['verdict']}"
    with mlflow.start_run(experiment_id=experiment_id, run_name=name, nested=mlflow.active_run() is not None) as run:
        metrics = {k: row[k] for k in ("rows", "rejects", "reject_share", "accuracy", "mean_confidence", "mean_ink",
                                       *drift.FIGURES, *(drift.bound_name(f) for f in drift.FIGURES))
                   if row.get(k) is not None}
        mlflow.log_metrics(metrics, step=index)
        mlflow.set_tags({"verdict": row["verdict"], "purpose": row["purpose"], "decided_by": row["decided_by"] or "",
                         "model_name": row["model_name"], "model_version": row["model_version"],
                         "monitor_run": row["monitor_run"], "source": row["source"],
                         "mlflow.note.content": describe(row, markdown=True)})
        log_dataset(input_path, name=f"inference:{row['source'].rstrip('/').rsplit('/', 1)[-1]}",
                    digest=row["monitor_run"], rows=row["rows"] + row["rejects"], context="inference")
        mlflow.log_dict({"reference": reference, "batch": batch, "figures": row}, "monitoring/profiles.json")
        if plot is not None and plot.result() is not None:
            with tempfile.TemporaryDirectory() as folder:
                path = os.path.join(folder, "batch_vs_reference.png")
                with open(path, "wb") as f:
                    f.write(plot.result())
                mlflow.log_artifact(path, "plots")
        return run.info.run_id


def record(cfg: PipelineConfig, summary: dict, reference: dict | None, batch: dict, key: str, scored_at, plot,
           purpose: str = history.SCORE) -> dict:
    """The run's MLflow run and its row in the history, after its predictions are in place (``summary``:
    the run's summary with its ``monitoring`` figures; ``plot``: ``judge_and_draw``'s plot future); returns the
    run's monitoring figures as the summary shows them.

    Raises:
        PipelineError: the history or MLflow could not be written; the message says the predictions
            and the inference log are in place, so nothing scored is lost.
    """
    judged = summary["monitoring"]
    m = cfg.monitor
    row = {"monitor_run": key, "timestamp": scored_at, "model_name": cfg.mlflow.registered_model,
           "model_version": summary["model_version"], "source": summary["input"],
           "input_format": cfg.infer.input_format, "purpose": purpose, "rows": summary["rows_scored"],
           "rejects": summary["rejects"], "labelled_rows": summary["labelled_rows"], "psi_moderate": m.psi_moderate,
           "psi_drift": m.psi_drift, "false_alarm": m.false_alarm, "profile": json.dumps(batch, separators=(",", ":")),
           **{k: v for k, v in judged.items() if k != "monitor_run"}}
    try:
        index = history.count_runs(cfg) + 1
        row["mlflow_run_id"] = log_mlflow_run(cfg, row, reference, batch, index, summary["input"], plot)
        history.write_run(cfg, row)
    except Exception as exc:
        raise PipelineError(
            f"the predictions are in {summary['output']} and the inference log under {history.monitor_root(cfg)}, "
            f"but monitoring run {key} could not be recorded ({type(exc).__name__}: {str(exc).splitlines()[0]}); "
            "it is not in the drift history") from exc
    line = describe(row)
    log.info("monitoring: %s", line)  # the report shows it too
    return {**judged, "monitor_run": key, "mlflow_run_id": row["mlflow_run_id"], "index": index,
            "description": line}
