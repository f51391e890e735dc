"""What the Databricks notebooks call: widgets -> config -> one stage function -> a printable report.

Each notebook declares its widgets (named after config keys), then makes one call here. The same
stage functions back the CLI and the spark-submit jobs.
"""

from __future__ import annotations

import shlex

from pipeline.config import PipelineConfig, load_config


def config_from_widgets(dbutils, keys: list[str]) -> PipelineConfig:
    """Builds the config from the ``conf`` widget (comma-separated YAML files), one widget per config key
    (an empty widget keeps the file's value) and the ``overrides`` widget (space-separated key=value)."""
    files = [f.strip() for f in dbutils.widgets.get("conf").split(",") if f.strip()]
    overrides = [f"{key}={dbutils.widgets.get(key)}" for key in keys if dbutils.widgets.get(key).strip()]
    overrides += shlex.split(dbutils.widgets.get("overrides"))
    return load_config(files, overrides)


def run_stage(spark, stage: str, cfg: PipelineConfig) -> str:
    """Runs ``ingest``, ``train``, ``evaluate``, ``infer`` or ``retrain`` and returns its report."""
    from pipeline import cli

    if stage == "ingest":
        from pipeline.ingest.build import ingest

        return cli.format_manifest(ingest(spark, cfg), cfg.data.root)
    if stage == "train":
        from pipeline.train.driver import train

        return cli.format_training(train(spark, cfg), cfg)
    if stage == "evaluate":
        from pipeline.evaluate.promote import evaluate_and_promote

        return cli.format_decision(evaluate_and_promote(cfg), cfg)
    if stage == "infer":
        from pipeline.infer.batch import batch_infer

        return cli.format_inference(batch_infer(spark, cfg))
    if stage == "retrain":
        from pipeline.retrain import run_pipeline

        report = run_pipeline(spark, cfg)
        parts = [cli.format_manifest(report.manifest, cfg.data.root), cli.format_training(report.training, cfg),
                 cli.format_decision(report.decision, cfg)]
        if report.inference is not None:
            parts.append(cli.format_inference(report.inference))
        return "\n".join(parts)
    raise ValueError(f"unknown stage {stage!r}; expected ingest, train, evaluate, infer or retrain")
