"""What the Databricks notebooks call: widgets -> config -> one stage (``pipeline.stages``) -> a printable report.

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
    from pipeline import stages

    return stages.run_stage(stage, cfg, spark=spark)
