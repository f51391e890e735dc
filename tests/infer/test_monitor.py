"""Monitoring of batch inference against the scoring version's reference, its history, the monitor
command, rejects as a signal, and the loop a team leaves on a schedule (drift -> labelled data ->
retrain -> promotion -> skip): a real MLflow server or SQLite store, real Spark, real Parquet inputs,
the console script in a subprocess."""

import json
from pathlib import Path

import mlflow
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from mlflow import MlflowClient

from pipeline.assess import drift
from pipeline.config import ModelConfig, PipelineConfig
from pipeline.infer.batch import batch_infer
from pipeline.monitor import decision, history
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


def _batch(path: Path, rows, rotate: bool = False, invert: bool = False) -> Path:
    images = [np.frombuffer(r[1], dtype=np.uint8).reshape(28, 28) for r in rows]
    if rotate:  # the same digits turned a quarter: same pixel values, shapes the model never saw
        images = [np.ascontiguousarray(np.rot90(i)) for i in images]
    if invert:  # black digits on white: a producer that changed its polarity
        images = [255 - i for i in images]
    table = pa.table({"id": [r[0] for r in rows], "image": [i.tobytes() for i in images],
                      "label": [r[2] for r in rows]})
    path.mkdir(parents=True)
    pq.write_table(table, str(path / "part-0.parquet"))
    return path


def test_monitor_figures_equal_a_direct_computation_on_the_same_rows(spark, monitored, sample_dataset, tmp_path):
    rows = read_split(sample_dataset[0], "val")
    source = _batch(tmp_path / "in", rows)
    summary = batch_infer(spark, _cfg(monitored, tmp_path, source))

    (run,) = history.read_runs(_cfg(monitored, tmp_path, source))
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


def test_a_stable_stream_stays_stable_and_a_shifted_one_drifts(spark, monitored, sample_dataset, tmp_path):
    cfg_of = lambda source: _cfg(monitored, tmp_path, source)  # noqa: E731
    val, test = read_split(sample_dataset[0], "val"), read_split(sample_dataset[0], "test")
    # digits of the same distribution (val and the reference's own test split): each run is called moderate
    # or drift with probability monitor.false_alarm at most; at 0.001 the three are all stable with
    # probability >= 0.997 (bench/drift_bench.py measures the rule's false alarms by batch size)
    stable = [val[:400], val[400:], test[:500]]
    for i, rows in enumerate(stable):
        cfg = cfg_of(_batch(tmp_path / f"stable-{i}", rows))
        cfg.monitor.false_alarm = 0.001
        summary = batch_infer(spark, cfg)
        assert summary["monitoring"]["verdict"] == "stable", summary["monitoring"]
    go, why = decision.evidence(cfg_of(tmp_path), "1", "20000101T000000Z")
    assert not go and "0 of the last 3 judged runs of champion version 1" in why

    for i in range(2):
        rotated = test[500 + 400 * i: 900 + 400 * i]
        summary = batch_infer(spark, cfg_of(_batch(tmp_path / f"rotated-{i}", rotated, rotate=True)))
        judged = summary["monitoring"]
        assert judged["verdict"] == "drift", judged
        assert judged["decided_by"] in ("class_psi", "confidence_psi", "entropy_psi")
        assert judged["pixel_psi"] < 0.1  # a rotation keeps every pixel value: only the label-free figures see it
        assert judged["mean_confidence"] < judged["reference_mean_confidence"]
        assert judged["decisive"] > judged["threshold"] >= judged["class_bound"]
    go, why = decision.evidence(cfg_of(tmp_path), "1", "20000101T000000Z")
    assert go and "2 of the last 5 judged runs of champion version 1" in why
    # another version's runs do not count: a new champion starts afresh
    assert not decision.evidence(cfg_of(tmp_path), "2", "20000101T000000Z")[0]

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
    # (the server is shared: a run another test's process was killed in may have no tags at all)
    mine = [r for r in runs if r.data.tags.get("monitor_run") in {x["monitor_run"] for x in history.read_runs(cfg_of(
        tmp_path))}]
    assert [r.data.tags["verdict"] for r in mine] == ["stable"] * 3 + ["drift"] * 2
    last = mine[-1]
    history_of = client.get_metric_history(last.info.run_id, "class_psi")
    assert [m.step for m in history_of] == [5]
    assert last.data.metrics["class_bound"] > 0 and last.data.metrics["reject_share"] == 0
    assert last.info.run_name.startswith("score-v1-400rows-drift")
    assert "verdict **drift**" in last.data.tags["mlflow.note.content"]
    assert {a.path for a in client.list_artifacts(last.info.run_id, "plots")} == {"plots/batch_vs_reference.png"}
    (dataset,) = last.inputs.dataset_inputs
    assert "rotated-1" in dataset.dataset.source and {t.key: t.value for t in dataset.tags}["rows"] == "400"


def test_a_batch_of_rejects_is_a_verdict_of_its_own(spark, monitored, tmp_path):
    # a producer switched to 32x32 images: every row is rejected, nothing is scored
    table = pa.table({"id": [str(i) for i in range(300)], "image": [bytes(1024)] * 300, "label": [1] * 300})
    source = tmp_path / "broken"
    source.mkdir()
    pq.write_table(table, str(source / "part-0.parquet"))
    cfg = _cfg(monitored, tmp_path, source)
    summary = batch_infer(spark, cfg)
    judged = summary["monitoring"]
    assert summary["rows_scored"] == 0 and summary["rejects"] == 300
    assert judged["verdict"] == "rejects" and judged["reject_share"] == 1.0
    assert "300 of 300 inputs rejected" in judged["description"]
    (run,) = history.read_runs(cfg)
    assert run["verdict"] == "rejects" and run["reject_share"] == 1.0
    shown = run_stage("monitor", cfg)
    assert "100.0%  rejects (300 of 300 inputs rejected" in shown


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
    (run,) = history.read_runs(cfg)
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
