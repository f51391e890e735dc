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
    manifest: dict
    training: object  # pipeline.train.driver.TrainResult
    decision: object  # pipeline.evaluate.promote.Decision
    inference: dict | None


def run_pipeline(spark: SparkSession, cfg: PipelineConfig, infer: bool | None = None) -> PipelineReport:
    """Runs every stage in order; any failure raises (a scheduler sees a non-zero exit)."""
    from pipeline.evaluate.promote import evaluate_and_promote
    from pipeline.infer.batch import batch_infer
    from pipeline.ingest.build import ingest
    from pipeline.train.driver import train

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
    return PipelineReport(manifest=manifest, training=training, decision=decision, inference=inference)
