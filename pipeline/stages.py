"""The stages, in one place: the console script, the spark-submit jobs and the notebooks all dispatch here.

Each stage is one function of the package plus the summary it prints.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from pipeline.config import PipelineConfig
from pipeline.errors import PipelineError


@dataclass(frozen=True)
class Stage:
    help: str
    run: Callable  # (spark, cfg) -> result
    report: Callable  # (result, cfg) -> str
    needs_spark: bool = True
    # (cfg) -> (result, kwargs): asked before Spark starts; a result ends the stage there (it is reported),
    # else run gets kwargs. Cheap decisions (retrain.when=drift) cost no JVM and no model download.
    gate: Callable | None = None


def _ingest(spark, cfg):
    from pipeline.ingest.build import ingest

    return ingest(spark, cfg)


def _train(spark, cfg):
    from pipeline.train.driver import train

    return train(spark, cfg)


def _evaluate(spark, cfg):
    from pipeline.evaluate.promote import evaluate_and_promote

    return evaluate_and_promote(cfg)


def _infer(spark, cfg):
    from pipeline.infer.batch import batch_infer

    return batch_infer(spark, cfg)


def _monitor(spark, cfg):
    from pipeline.monitor.report import monitor

    return monitor(spark, cfg)


def _format_monitor(result, cfg):
    from pipeline.monitor.report import format_monitor

    return format_monitor(result, cfg)


def _retrain(spark, cfg, decision=None):
    from pipeline.retrain import run_pipeline

    return run_pipeline(spark, cfg, decision=decision)


def _retrain_gate(cfg):
    if cfg.retrain.when != "drift":
        return None, {}
    from pipeline.retrain import PipelineReport, decide

    decision = decide(cfg)
    if not decision.go:
        return PipelineReport(None, None, None, None, skipped=f"(retrain.when=drift): {decision.why}"), {}
    return None, {"decision": decision}


def _tune(spark, cfg):
    from pipeline.train.driver import train
    from pipeline.tune.study import tune

    return tune(spark, cfg, train)


def _lr_find(spark, cfg):
    from pipeline.train.lr_find import lr_find

    return lr_find(spark, cfg)


def _format_sweep(result, cfg):
    from pipeline.train.lr_find import format_sweep

    return format_sweep(result, cfg)


def _reports():
    from pipeline import reports

    return reports


STAGES: dict[str, Stage] = {
    "ingest": Stage("raw MNIST -> validated, split Parquet dataset + manifest", _ingest,
                    lambda r, cfg: _reports().format_manifest(r, cfg.data.root)),
    "train": Stage("Horovod-on-Spark training; logs to MLflow, registers the model", _train,
                   lambda r, cfg: _reports().format_training(r, cfg)),
    "evaluate": Stage("challenger vs champion on the test split; promote if better", _evaluate,
                      lambda r, cfg: _reports().format_decision(r, cfg), needs_spark=False),
    "infer": Stage("Spark batch inference with the champion (or a given version)", _infer,
                   lambda r, cfg: _reports().format_inference(r, cfg)),
    "monitor": Stage("the last monitored inference runs (drift against each version's reference) and the "
                     "drift-over-time plot", _monitor, _format_monitor, needs_spark=False),
    "retrain": Stage("the whole pipeline: ingest, train, evaluate/promote, infer; exit 0 promoted or kept", _retrain,
                     lambda r, cfg: _reports().format_pipeline(r, cfg), gate=_retrain_gate),
    "tune": Stage("hyperparameter search (Optuna) over the distributed training; nested MLflow runs, best YAML",
                  _tune, lambda r, cfg: _reports().format_tune(r, cfg)),
    "lr-find": Stage("learning-rate range test on the training ranks; plots loss vs rate, suggests a rate",
                     _lr_find, _format_sweep),
}
ALIASES = {"run": "retrain"}  # `mnist-pipeline run` is what scripts/run.sh calls


def _backend(stage: str, cfg: PipelineConfig) -> str | None:
    """The backend a stage will train with, for the version check: None where it does not train; with
    train.backend=auto, Horovod where it loads, else tf_distribute."""
    if stage not in ("train", "retrain", "tune", "lr-find"):
        return None
    from pipeline.train.backends import resolve_backend

    return resolve_backend(cfg.train.backend)


def run_stage(name: str, cfg: PipelineConfig, spark=None) -> str:
    """Runs one stage and returns its printable summary. ``spark``: the session to use (Databricks,
    tests); None builds one from ``cfg.spark`` for the stages that need it."""
    from pipeline.io import versions

    name = ALIASES.get(name, name)
    stage = STAGES.get(name)
    if stage is None:
        raise PipelineError(f"unknown stage {name!r}; expected one of {', '.join([*STAGES, *ALIASES])}")
    kwargs = {}
    if stage.gate is not None:
        versions.check(None)  # the package ranges (cheap); the training backend's check imports TensorFlow
        result, kwargs = stage.gate(cfg)
        if result is not None:
            return stage.report(result, cfg)
    versions.check(_backend(name, cfg))
    if spark is None and stage.needs_spark:
        from pipeline.io.spark import get_spark

        spark = get_spark(cfg.spark)
    return stage.report(stage.run(spark, cfg, **kwargs), cfg)
