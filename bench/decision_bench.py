"""What a skipped ``retrain.when=drift`` costs, command to exit: ``mnist-pipeline retrain retrain.when=drift``
as a scheduler runs it, against a history of a few runs and of a year of hourly runs (8,760 files), beside
the cost of the SparkSession the decision no longer starts, measured in the same run.

    .venv/bin/python bench/decision_bench.py [--runs 8760] [--repeats 3]

A SQLite tracking store holds a champion (a registered version with a training manifest; no model is
downloaded by the decision, so none is logged); the history's newest runs are stable, so every call
skips. Prints the figures and writes bench/results/decision.json.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import write_results  # noqa: E402

os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")


def make_store(folder: Path, runs: int):
    import mlflow
    from mlflow import MlflowClient

    from pipeline.config import PipelineConfig
    from pipeline.io.tracking import setup_experiment
    from pipeline.monitor import history

    cfg = PipelineConfig()
    cfg.mlflow.tracking_uri = f"sqlite:///{folder / 'mlflow.db'}"
    cfg.mlflow.artifact_location = str(folder / "artifacts")
    cfg.monitor.path = str(folder / f"monitoring-{runs}")
    experiment = setup_experiment(cfg.mlflow)
    client = MlflowClient()
    if not client.search_registered_models("name='mnist-cnn'"):
        with mlflow.start_run(experiment_id=experiment) as run:
            mlflow.log_dict({"inputs": []}, "dataset/manifest.json")
        client.create_registered_model("mnist-cnn")
        version = client.create_model_version("mnist-cnn", f"{run.info.artifact_uri}/model", run.info.run_id).version
        client.set_registered_model_alias("mnist-cnn", "champion", version)
    start = dt.datetime.now(dt.UTC) - dt.timedelta(hours=runs)
    for i in range(runs):
        when = (start + dt.timedelta(hours=i)).replace(microsecond=0)
        history.write_run(cfg, {"monitor_run": f"{history.time_prefix(when)}-{i:06d}", "timestamp": when,
                                "model_name": "mnist-cnn", "model_version": "1", "source": "/in",
                                "input_format": "images", "purpose": "score", "rows": 500, "rejects": 0,
                                "verdict": "stable", "decisive": 0.02})
    return cfg


def timed_skip(cfg, tmp: Path) -> float:
    binary = Path(sys.executable).parent / "mnist-pipeline"
    began = time.monotonic()
    done = subprocess.run([str(binary), "retrain", "retrain.when=drift", f"mlflow.tracking_uri={cfg.mlflow.tracking_uri}",
                           f"monitor.path={cfg.monitor.path}"], cwd=tmp, capture_output=True, text=True, timeout=600)
    seconds = time.monotonic() - began
    if done.returncode != 0 or "retrain: skipped (retrain.when=drift)" not in done.stdout:
        sys.exit(f"the decision did not skip:\n{done.stdout}\n{done.stderr[-3000:]}")
    return seconds


def spark_start() -> float:
    from pipeline.config import SparkConfig
    from pipeline.io.spark import get_spark

    began = time.monotonic()
    spark = get_spark(SparkConfig(master="local[*]", progress_interval_s=0))
    seconds = time.monotonic() - began
    spark.stop()
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=8760, help="runs in the long history (a year of hourly runs)")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        short, long = make_store(folder, 10), make_store(folder, args.runs)
        figures = {"short": [], "long": []}
        for _ in range(args.repeats):  # interleaved
            figures["short"].append(timed_skip(short, folder))
            figures["long"].append(timed_skip(long, folder))
        jvm = spark_start()
    med = {k: statistics.median(v) for k, v in figures.items()}
    print(f"skipped retrain.when=drift, command to exit (median of {args.repeats}):")
    print(f"  history of 10 runs:          {med['short']:.2f} s  ({', '.join(f'{s:.2f}' for s in figures['short'])})")
    print(f"  history of {args.runs:,} runs:     {med['long']:.2f} s  ({', '.join(f'{s:.2f}' for s in figures['long'])})")
    print(f"  ratio long / short:          {med['long'] / med['short']:.2f}")
    print(f"  a SparkSession's start here: {jvm:.2f} s (what the decision no longer pays before deciding)")
    write_results("decision", {
        "what": "mnist-pipeline retrain retrain.when=drift that skips, command to exit, by history size; and the "
                "start of a local SparkSession in the same run",
        "command": "python bench/decision_bench.py " + " ".join(sys.argv[1:]),
        "repeats": args.repeats, "runs_long": args.runs, "seconds_short": figures["short"],
        "seconds_long": figures["long"], "median_short_s": med["short"], "median_long_s": med["long"],
        "ratio_long_short": med["long"] / med["short"], "spark_session_start_s": jvm})


if __name__ == "__main__":
    main()
