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

WARM_WAIT_S = 120  # the longest inference waits for the workers' warm-up before it starts anyway


@dataclass
class PipelineReport:
    manifest: dict
    training: object  # pipeline.train.driver.TrainResult
    decision: object  # pipeline.evaluate.promote.Decision
    inference: dict | None


def run_pipeline(spark: SparkSession, cfg: PipelineConfig, infer: bool | None = None) -> PipelineReport:
    """Runs every stage in order; any failure raises (a scheduler sees a non-zero exit)."""
    from pipeline.evaluate.promote import evaluate_and_promote
    from pipeline.infer.batch import batch_infer, warm_scoring_workers
    from pipeline.ingest.build import ingest
    from pipeline.train.driver import train

    infer = cfg.retrain.infer if infer is None else infer
    manifest = ingest(spark, cfg)
    # Inference follows: its Python workers import TensorFlow while the driver evaluates and promotes.
    warming: list = []
    training = train(spark, cfg, on_trained=(lambda: warming.append(warm_scoring_workers(spark))) if infer else None)
    decision = evaluate_and_promote(cfg, version=training.model_version)
    inference = None
    if infer:
        for warm_up in warming:  # inference's tasks then reuse the warm workers instead of starting more
            warm_up.wait(WARM_WAIT_S)
        if decision.promote or decision.champion_version:
            inference = batch_infer(spark, cfg)
        else:
            log.warning("no version holds @%s yet, so there is nothing to score with; batch inference skipped",
                        cfg.promote.champion_alias)
    return PipelineReport(manifest=manifest, training=training, decision=decision, inference=inference)
