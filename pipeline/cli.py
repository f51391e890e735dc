"""The ``mnist-pipeline`` console script: one sub-command per stage, all over the same functions.

    mnist-pipeline run      [-c conf/cluster.yaml ...] [section.key=value ...]   # every stage, in order
    mnist-pipeline retrain  [-c ...] [section.key=value ...]   # the same, for schedulers
    mnist-pipeline ingest | train | evaluate | infer  [-c ...] [section.key=value ...]
    mnist-pipeline config [-c ...] [section.key=value ...]   # print the effective config
"""

from __future__ import annotations

import argparse
import logging
import sys

from pipeline.config import PipelineConfig, load_config
from pipeline.errors import PipelineError

log = logging.getLogger("pipeline")


def _parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "-c", "--conf", action="append", default=[], metavar="FILE",
        help="YAML config applied over the defaults (conf/base.yaml shows them); repeatable, later wins",
    )
    common.add_argument("overrides", nargs="*", metavar="section.key=value", help="override any config key")
    parser = argparse.ArgumentParser(prog="mnist-pipeline", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("ingest", parents=[common], help="raw MNIST -> validated, split Parquet dataset + manifest")
    sub.add_parser("train", parents=[common], help="Horovod-on-Spark training; logs to MLflow, registers the model")
    sub.add_parser("evaluate", parents=[common], help="challenger vs champion on the test split; promote if better")
    sub.add_parser("infer", parents=[common], help="Spark batch inference with the champion (or a given version)")
    sub.add_parser("run", parents=[common], help="the whole pipeline: ingest, train, evaluate/promote, infer")
    sub.add_parser("retrain", parents=[common], help="the same as run, for schedulers: exit 0 promoted or kept")
    sub.add_parser("config", parents=[common], help="print the effective config as YAML")
    return parser


def setup_logging() -> None:
    logging.basicConfig(
        level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    for noisy in ("py4j", "petastorm", "pyarrow"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def format_manifest(manifest: dict, root: str) -> str:
    """A human summary of an ingest manifest: rows, class balance and row groups per split."""
    lines = [f"dataset {root}  (schema v{manifest['schema_version']}, seed {manifest['seed']})"]
    lines.append(f"  rows parsed {manifest['rows_parsed']:,}; exact duplicates dropped "
                 f"{manifest['duplicates']['dropped']:,} ({manifest['duplicates']['label_conflicts']} with conflicting labels)")
    lines.append(f"  {'split':6} {'rows':>8} {'row groups':>11}  class balance (% per digit 0-9)")
    for split, info in manifest["splits"].items():
        total = max(info["rows"], 1)
        balance = " ".join(f"{100 * info['classes'].get(str(d), 0) / total:4.1f}" for d in range(10))
        lines.append(f"  {split:6} {info['rows']:>8,} {info['row_groups']:>11}  {balance}")
    lines.append(f"  took {manifest['seconds']:.1f} s")
    return "\n".join(lines)


def run_ingest(cfg: PipelineConfig) -> int:
    from pipeline.ingest.build import ingest
    from pipeline.io.spark import get_spark

    spark = get_spark(cfg.spark)
    manifest = ingest(spark, cfg)
    print(format_manifest(manifest, cfg.data.root))
    return 0


def format_training(result, cfg: PipelineConfig) -> str:
    uri = cfg.mlflow.tracking_uri
    lines = [
        f"model {result.model_name} version {result.model_version}: test accuracy {result.test_accuracy:.4f} "
        f"after {len(result.epochs)} epochs (MLflow run {result.run_id})",
        f"  open the MLflow UI on these results: .venv/bin/mlflow ui --backend-store-uri {uri} --host 127.0.0.1 "
        "--port 5000  (then http://127.0.0.1:5000)",
    ]
    return "\n".join(lines)


def run_train(cfg: PipelineConfig) -> int:
    from pipeline.io.spark import get_spark
    from pipeline.train.driver import train

    result = train(get_spark(cfg.spark), cfg)
    print(format_training(result, cfg))
    return 0


def format_decision(decision, cfg: PipelineConfig) -> str:
    verdict = "promoted to" if decision.promote else "not promoted; the champion stays"
    champion = f" (champion was version {decision.champion_version})" if decision.champion_version else ""
    alias = cfg.promote.champion_alias
    return (f"evaluate: version {decision.version} {verdict} @{alias}{champion}: {decision.reason}")


def format_inference(summary: dict) -> str:
    accuracy = f", accuracy {summary['accuracy']:.4f} on {summary['labelled_rows']:,} labelled rows" \
        if summary["accuracy"] is not None else ""
    histogram = " ".join(f"{k}:{v}" for k, v in summary["predicted_histogram"].items())
    return (f"infer: {summary['rows_scored']:,} rows scored, {summary['rejects']:,} rejects, "
            f"{summary['rows_per_sec']:,.0f} rows/s{accuracy}\n"
            f"  predicted classes {histogram}\n"
            f"  model {summary['model_uri']} -> {summary['output']}")


def run_evaluate(cfg: PipelineConfig) -> int:
    from pipeline.evaluate.promote import evaluate_and_promote

    print(format_decision(evaluate_and_promote(cfg), cfg))
    return 0


def run_infer(cfg: PipelineConfig) -> int:
    from pipeline.infer.batch import batch_infer
    from pipeline.io.spark import get_spark

    print(format_inference(batch_infer(get_spark(cfg.spark), cfg)))
    return 0


def run_all(cfg: PipelineConfig) -> int:
    from pipeline.io.spark import get_spark
    from pipeline.retrain import run_pipeline

    report = run_pipeline(get_spark(cfg.spark), cfg)
    print(format_manifest(report.manifest, cfg.data.root))
    print(format_training(report.training, cfg))
    print(format_decision(report.decision, cfg))
    if report.inference is not None:
        print(format_inference(report.inference))
    elif cfg.retrain.infer:
        print(f"infer: skipped, no version holds @{cfg.promote.champion_alias} yet")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    setup_logging()
    try:
        cfg = load_config(args.conf, args.overrides)
        if args.command == "config":
            print(cfg.to_yaml(), end="")
            return 0
        if args.command == "ingest":
            return run_ingest(cfg)
        if args.command == "train":
            return run_train(cfg)
        if args.command == "evaluate":
            return run_evaluate(cfg)
        if args.command == "infer":
            return run_infer(cfg)
        if args.command in ("run", "retrain"):
            return run_all(cfg)
    except PipelineError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 2


if __name__ == "__main__":
    sys.exit(main())
