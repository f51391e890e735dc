"""The whole pipeline as one schedulable job: ingest -> train -> evaluate/promote -> batch inference.

Safe to re-run: ingest replaces its dataset atomically, an interrupted training resumes from its
checkpoint, promotion only ever re-points an alias, inference swaps its output in whole.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from pyspark.sql import SparkSession

from pipeline.config import PipelineConfig

log = logging.getLogger(__name__)


@dataclass
class PipelineReport:
    manifest: dict | None
    training: object  # pipeline.train.driver.TrainResult
    decision: object  # pipeline.evaluate.promote.Decision
    inference: dict | None
    skipped: str | None = None  # retrain.when=drift and the monitoring history did not ask for it: why
    trigger: str | None = None  # retrain.when=drift and it did: why


def run_pipeline(spark: SparkSession, cfg: PipelineConfig, infer: bool | None = None) -> PipelineReport:
    """Runs every stage in order; any failure raises (a scheduler sees a non-zero exit).

    With ``retrain.when=drift`` it first reads the champion's monitoring history and, unless
    ``retrain.drift_runs`` of its last ``retrain.window_runs`` runs were drift, returns at once with
    ``skipped`` saying why (exit 0: nothing to do is not a failure).
    """
    from pipeline.evaluate.promote import evaluate_and_promote
    from pipeline.infer.batch import batch_infer
    from pipeline.ingest.build import ingest
    from pipeline.train.driver import train

    if cfg.retrain.when == "drift":
        go, why = _drift_says(cfg)
        if not go:
            log.info("retraining skipped: %s", why)
            return PipelineReport(None, None, None, None, skipped=why)
        log.info("retraining: %s", why)
    trigger = why if cfg.retrain.when == "drift" else None
    manifest = ingest(spark, cfg)
    training = train(spark, cfg)
    decision = evaluate_and_promote(cfg, version=training.model_version)
    inference = None
    if cfg.retrain.infer if infer is None else infer:
        if decision.promote or decision.champion_version:
            inference = batch_infer(spark, cfg)
        else:
            log.warning("no version holds @%s yet, so there is nothing to score with; batch inference skipped",
                        cfg.promote.champion_alias)
    return PipelineReport(manifest=manifest, training=training, decision=decision, inference=inference,
                          trigger=trigger)


def _drift_says(cfg: PipelineConfig) -> tuple[bool, str]:
    from mlflow import MlflowClient

    from pipeline.infer.monitor import drift_decision
    from pipeline.io.tracking import alias_version, setup_experiment

    setup_experiment(cfg.mlflow)
    champion = alias_version(MlflowClient(), cfg.mlflow.registered_model, cfg.promote.champion_alias)
    return drift_decision(cfg, champion)
