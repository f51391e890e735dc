"""The whole pipeline as one schedulable job: ingest -> train -> evaluate/promote -> batch inference.

Safe to re-run: ingest replaces its dataset atomically, an interrupted training resumes from its
checkpoint, promotion only ever re-points an alias, inference swaps its output in whole.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from pyspark.sql import SparkSession

from pipeline.config import PipelineConfig
from pipeline.errors import PipelineError
from pipeline.io.publish import LOCK_STALE_S, OutputLock

log = logging.getLogger(__name__)


@dataclass
class PipelineReport:
    manifest: dict | None
    training: object  # pipeline.train.driver.TrainResult
    decision: object  # pipeline.evaluate.promote.Decision
    inference: dict | None
    skipped: str | None = None  # nothing was done: why (retrain.when=drift said no, or another retrain runs)
    trigger: str | None = None  # retrain.when=drift said go: why


def run_pipeline(spark: SparkSession, cfg: PipelineConfig, infer: bool | None = None, decision=None) -> PipelineReport:
    """Runs every stage in order; any failure raises (a scheduler sees a non-zero exit).

    With ``retrain.when=drift`` it runs only when ``pipeline.monitor.decision`` says go (``decision``: that
    decision, made before Spark started; None: decide here), and records the retrain in the monitoring
    history, so the next decision counts only the runs after it. Otherwise it returns at once with
    ``skipped`` saying why (exit 0: nothing to do is not a failure).

    One retrain of a ``data.root`` at a time: a second waits up to ``retrain.lock_wait_s`` for the first,
    then returns ``skipped``, naming the holder.
    """
    from pipeline.io.fs import HadoopFS

    if cfg.retrain.when == "drift":
        if decision is None:
            decision = decide(cfg)
        if not decision.go:
            log.info("retraining skipped: %s", decision.why)
            return PipelineReport(None, None, None, None, skipped=f"(retrain.when=drift): {decision.why}")
        log.info("retraining: %s", decision.why)
    lock = retrain_lock(HadoopFS(spark), cfg)
    try:
        lock.acquire()
    except PipelineError:
        holder = lock.holder() or "unknown"
        why = (f"another retrain of data.root {cfg.data.root} has held its lock for over {cfg.retrain.lock_wait_s:g} s "
               f"(retrain.lock_wait_s; holder {holder}); this one did nothing. If no retrain is running, the lock is "
               f"given up {LOCK_STALE_S:.0f} s after its holder stopped")
        log.warning("retraining skipped: %s", why)
        return PipelineReport(None, None, None, None, skipped=f"(another retrain is running): {why}")
    try:
        return _run_locked(spark, cfg, infer, decision)
    finally:
        lock.release()


def _run_locked(spark: SparkSession, cfg: PipelineConfig, infer: bool | None, decision) -> PipelineReport:
    from pipeline.evaluate.promote import evaluate_and_promote
    from pipeline.infer.batch import batch_infer
    from pipeline.ingest.build import ingest
    from pipeline.monitor import history
    from pipeline.train.driver import train

    record = history.start_retrain(cfg, decision.champion_version, decision.why) if decision is not None else None
    try:
        manifest = ingest(spark, cfg)
        training = train(spark, cfg)
        promotion = evaluate_and_promote(cfg, version=training.model_version)
        inference = None
        if cfg.retrain.infer if infer is None else infer:
            if promotion.promote or promotion.champion_version:
                # scoring the dataset it just trained on is the retrain's own check, kept in the history and
                # never counted as new data; any other infer.input is new data like any scoring run's
                own = cfg.infer.input_format == "dataset" and cfg.infer.input in (None, cfg.data.root)
                inference = batch_infer(spark, cfg, purpose=history.RETRAIN_CHECK if own else history.SCORE)
            else:
                log.warning("no version holds @%s yet, so there is nothing to score with; batch inference skipped",
                            cfg.promote.champion_alias)
    except BaseException as exc:
        if record is not None:
            history.end_retrain(cfg, record, "failed", error=f"{type(exc).__name__}: {exc}"[:2000])
        raise
    if record is not None:
        history.end_retrain(cfg, record, "promoted" if promotion.promote else "kept",
                            model_version=str(training.model_version))
    return PipelineReport(manifest=manifest, training=training, decision=promotion, inference=inference,
                          trigger=decision.why if decision is not None else None)


def decide(cfg: PipelineConfig):
    """``retrain.when=drift``'s decision (``pipeline.monitor.decision``): no Spark, no model download."""
    from pipeline.monitor.decision import drift_decision

    return drift_decision(cfg)


def retrain_lock(fs, cfg: PipelineConfig):
    """The lock one retrain of ``data.root`` holds from its ingest to its promotion (beside the dataset's own
    swap lock, which ingest takes for its renames)."""
    return OutputLock(fs, f"{cfg.data.root.rstrip('/')}.__retrain", timeout_s=cfg.retrain.lock_wait_s,
                      may_give_up_first=True)
