"""Monitoring of batch inference against the scoring version's reference, its history, the monitor
command and retraining on drift: a real MLflow server, real Spark, real Parquet inputs."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import mlflow
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from mlflow import MlflowClient

from pipeline.assess import drift
from pipeline.config import ModelConfig, PipelineConfig
from pipeline.infer import monitor
from pipeline.infer.batch import batch_infer
from pipeline.stages import run_stage
from tests.helpers import read_split

REPO = Path(__file__).resolve().parents[2]
SAMPLE_DIR = REPO / "data" / "mnist-sample"


def _cfg(monitored, folder: Path, source: Path) -> PipelineConfig:
    cfg = PipelineConfig()
    cfg.mlflow = monitored[0]
    cfg.spark.progress_interval_s = 0
    cfg.infer.input_format = "parquet"
    cfg.infer.input = str(source)
    cfg.infer.output = str(folder / "predictions")
    cfg.monitor.path = str(folder / "monitoring")
    return cfg


def _batch(path: Path, rows, rotate: bool = False) -> Path:
    images = [np.frombuffer(r[1], dtype=np.uint8).reshape(28, 28) for r in rows]
    if rotate:  # the same digits turned a quarter: same pixel values, shapes the model never saw
        images = [np.ascontiguousarray(np.rot90(i)) for i in images]
    table = pa.table({"id": [r[0] for r in rows], "image": [i.tobytes() for i in images],
                      "label": [r[2] for r in rows]})
    path.mkdir(parents=True)
    pq.write_table(table, str(path / "part-0.parquet"))
    return path


def test_monitor_figures_equal_a_direct_computation_on_the_same_rows(spark, monitored, sample_dataset, tmp_path):
    rows = read_split(sample_dataset[0], "val")
    source = _batch(tmp_path / "in", rows)
    summary = batch_infer(spark, _cfg(monitored, tmp_path, source))

    (run,) = monitor.read_runs(_cfg(monitored, tmp_path, source))
    profile = json.loads(run["profile"])
    predictions = {r["id"]: r for r in pq.read_table(str(tmp_path / "predictions" / "predictions")).to_pylist()}
    images = np.stack([np.frombuffer(r[1], dtype=np.uint8).reshape(28, 28) for r in rows])
    probs = np.array([predictions[r[0]]["probabilities"] for r in rows], dtype=np.float32)
    direct = drift.profile(images, probs, np.array([r[2] for r in rows]))
    for key in ("rows", "classes", "confidence", "entropy", "pixels", "labelled", "correct"):
        assert profile[key] == direct[key], key
    assert profile["confidence_sum"] == pytest.approx(direct["confidence_sum"], rel=1e-6)
    assert profile["ink_sum"] == pytest.approx(direct["ink_sum"], rel=1e-9)
    expected = drift.compare(monitored[1], direct)
    for name in drift.FIGURES:
        assert run[name] == pytest.approx(expected[name], rel=1e-9, abs=1e-12)
        assert summary["monitoring"][name] == run[name]
    assert run["verdict"] == expected["verdict"] == "stable"
    assert run["rows"] == 800 and run["model_version"] == "1" and run["accuracy"] == pytest.approx(
        direct["correct"] / 800)

    # the inference log: one row per scored input, in the inference-log shape, in its run's folder
    logged = spark.read.parquet(str(tmp_path / "monitoring" / "inference_log"))
    assert set(logged.columns) >= {"timestamp", "model_id", "model_name", "model_version", "prediction",
                                   "probability", "label", "id", "source", "monitor_run"}
    assert logged.count() == 800 and logged.select("id").distinct().count() == 800
    assert {r.monitor_run for r in logged.select("monitor_run").distinct().collect()} == {run["monitor_run"]}
    assert logged.where("model_id = 'mnist-cnn/1'").count() == 800


def test_a_stable_stream_stays_stable_and_a_shifted_one_drifts_then_retraining_runs(spark, monitored, sample_dataset,
                                                                                    tmp_path):
    cfg_of = lambda source: _cfg(monitored, tmp_path, source)  # noqa: E731
    val, test = read_split(sample_dataset[0], "val"), read_split(sample_dataset[0], "test")
    stable = [val[:400], val[400:], test[:500]]
    for i, rows in enumerate(stable):
        summary = batch_infer(spark, cfg_of(_batch(tmp_path / f"stable-{i}", rows)))
        assert summary["monitoring"]["verdict"] == "stable", summary["monitoring"]
    go, why = monitor.drift_decision(cfg_of(tmp_path), "1")
    assert not go and "0 of the last 3 monitored runs of champion version 1 were drift" in why

    # retrain.when=drift with nothing drifting: exit 0, saying why, nothing trained
    env = dict(os.environ, SPARK_LOCAL_IP="127.0.0.1")
    common = ["spark.master=local[2]", "spark.progress_interval_s=0", f"mlflow.tracking_uri={monitored[0].tracking_uri}",
              f"monitor.path={tmp_path / 'monitoring'}", "retrain.when=drift", "train.epochs=1", "train.num_proc=1",
              f"ingest.train={SAMPLE_DIR}/train-*", f"ingest.test={SAMPLE_DIR}/t10k-*"]
    binary = Path(sys.executable).parent / "mnist-pipeline"
    skipped = subprocess.run([str(binary), "retrain", *common], cwd=tmp_path, env=env, capture_output=True,
                             text=True, timeout=600)
    assert skipped.returncode == 0, skipped.stderr[-3000:]
    assert "retrain: skipped (retrain.when=drift): 0 of the last 3 monitored runs" in skipped.stdout
    assert not (tmp_path / "data" / "datasets").exists()

    for i in range(2):
        rotated = test[500 + 400 * i: 900 + 400 * i]
        summary = batch_infer(spark, cfg_of(_batch(tmp_path / f"rotated-{i}", rotated, rotate=True)))
        judged = summary["monitoring"]
        assert judged["verdict"] == "drift", judged
        assert judged["decided_by"] in ("class_psi", "confidence_psi", "entropy_psi")
        assert judged["pixel_psi"] < 0.1  # a rotation keeps every pixel value: only the label-free figures see it
        assert judged["mean_confidence"] < judged["reference_mean_confidence"]
    go, why = monitor.drift_decision(cfg_of(tmp_path), "1")
    assert go and "2 of the last 5 monitored runs of champion version 1 were drift" in why
    # another version's runs do not count: a new champion starts afresh
    assert not monitor.drift_decision(cfg_of(tmp_path), "2")[0]

    # the monitor command: the runs as a table and the drift-over-time plot
    shown = run_stage("monitor", cfg_of(tmp_path))
    lines = shown.splitlines()
    assert "last 5 of 5" in lines[0]
    for line in lines[2:5]:
        assert line.endswith("  stable") and line.split()[3] == "1"  # version 1
    for line in lines[5:7]:
        assert "  drift (" in line
    plot = tmp_path / "monitoring" / "drift_over_time.png"
    assert plot.is_file() and plot.read_bytes()[:4] == b"\x89PNG"

    # each run is an MLflow run of the monitoring experiment: figures at step = its index, verdict, plot, input
    client = MlflowClient(monitored[0].tracking_uri)
    experiment = client.get_experiment_by_name("mnist-pipeline-monitoring")
    assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"
    runs = client.search_runs([experiment.experiment_id], order_by=["attributes.start_time ASC"])
    mine = [r for r in runs if r.data.tags["monitor_run"] in {x["monitor_run"] for x in monitor.read_runs(cfg_of(
        tmp_path))}]
    assert [r.data.tags["verdict"] for r in mine] == ["stable"] * 3 + ["drift"] * 2
    last = mine[-1]
    history = client.get_metric_history(last.info.run_id, "class_psi")
    assert [m.step for m in history] == [5]
    assert last.info.run_name.startswith("score-v1-400rows-drift")
    assert "verdict **drift**" in last.data.tags["mlflow.note.content"]
    assert {a.path for a in client.list_artifacts(last.info.run_id, "plots")} == {"plots/batch_vs_reference.png"}
    (dataset,) = last.inputs.dataset_inputs
    assert "rotated-1" in dataset.dataset.source and {t.key: t.value for t in dataset.tags}["rows"] == "400"

    # retrain.when=drift now retrains: ingest, train, evaluate, infer
    retrained = subprocess.run([str(binary), "retrain", *common], cwd=tmp_path, env=env, capture_output=True,
                               text=True, timeout=900)
    assert retrained.returncode == 0, retrained.stderr[-3000:]
    assert re.search(r"model mnist-cnn version \d+: test accuracy", retrained.stdout)
    assert "retrain (retrain.when=drift): 2 of the last 5 monitored runs of champion version 1 were drift" \
        in retrained.stdout


def test_a_version_without_a_reference_is_scored_and_said_so(spark, champion_without_reference, sample_dataset,
                                                              tmp_path):
    cfg = PipelineConfig()
    cfg.mlflow = champion_without_reference
    cfg.spark.progress_interval_s = 0
    cfg.data.root = str(sample_dataset[0])
    cfg.infer.output = str(tmp_path / "predictions")
    cfg.monitor.path = str(tmp_path / "monitoring")
    summary = batch_infer(spark, cfg)
    assert summary["rows_scored"] == 2000
    judged = summary["monitoring"]
    assert judged["verdict"] == "no_reference" and judged["class_psi"] is None
    assert "has no monitoring reference" in judged["description"]
    (run,) = monitor.read_runs(cfg)
    assert run["verdict"] == "no_reference" and run["rows"] == 2000


@pytest.fixture
def champion_without_reference(tmp_path, trained_weights):
    from pipeline.io.tracking import model_location, setup_experiment
    from pipeline.train.model import build_model

    cfg = PipelineConfig()
    cfg.mlflow.tracking_uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    cfg.mlflow.artifact_location = str(tmp_path / "artifacts")
    experiment = setup_experiment(cfg.mlflow)
    model = build_model(ModelConfig())
    model.set_weights(trained_weights)
    example = np.zeros((2, 28, 28, 1), dtype=np.float32)
    with mlflow.start_run(experiment_id=experiment):
        info = mlflow.tensorflow.log_model(model, **model_location(), registered_model_name="mnist-cnn",
                                           signature=mlflow.models.infer_signature(example, model.predict(example)))
    MlflowClient().set_registered_model_alias("mnist-cnn", "champion", info.registered_model_version)
    return cfg.mlflow
