"""The loop a team leaves on a schedule, as a user runs it: a champion; a stream of inverted digits
(a producer changed polarity) scored twice -> drift; retrain.when=drift without labelled data skips,
saying where labelled examples go; with labelled inverted digits under ingest.extra it retrains, the
new version is promoted and scores the inverted stream well; the next call skips. The console script
in subprocesses, a SQLite tracking store, real Spark and Parquet."""

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import mlflow
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from mlflow import MlflowClient

from pipeline.config import PipelineConfig
from pipeline.infer.batch import batch_infer
from pipeline.monitor import history
from tests.helpers import SAMPLE_DIR, read_split, register_champion


def _inverted(path: Path, rows, labelled: bool = True) -> Path:
    images = [(255 - np.frombuffer(r[1], dtype=np.uint8)).tobytes() for r in rows]
    columns = {"id": [f"inv-{r[0]}" for r in rows], "image": images}
    if labelled:
        columns["label"] = [r[2] for r in rows]
    path.mkdir(parents=True)
    pq.write_table(pa.table(columns), str(path / "part-0.parquet"))
    return path


def test_drift_labelled_data_retrain_promote_then_skip(spark, trained_weights, sample_dataset, tmp_path):
    cfg = PipelineConfig()
    cfg.mlflow.tracking_uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    cfg.mlflow.artifact_location = str(tmp_path / "artifacts")
    cfg.spark.progress_interval_s = 0
    cfg.infer.input_format = "parquet"
    cfg.infer.output = str(tmp_path / "predictions")
    cfg.monitor.path = str(tmp_path / "monitoring")
    register_champion(cfg.mlflow, trained_weights, sample_dataset[0])
    test, train = read_split(sample_dataset[0], "test"), read_split(sample_dataset[0], "train")

    for i in range(2):  # the stream: inverted test digits, 400 a run
        cfg.infer.input = str(_inverted(tmp_path / f"stream-{i}", test[400 * i: 400 * (i + 1)]))
        judged = batch_infer(spark, cfg)["monitoring"]
        assert judged["verdict"] == "drift" and judged["pixel_psi"] > 1, judged  # every pixel value moved

    env = dict(os.environ, SPARK_LOCAL_IP="127.0.0.1")
    common = ["spark.master=local[2]", "spark.progress_interval_s=0", f"mlflow.tracking_uri={cfg.mlflow.tracking_uri}",
              f"mlflow.artifact_location={cfg.mlflow.artifact_location}", f"monitor.path={cfg.monitor.path}",
              "retrain.when=drift", f"ingest.train={SAMPLE_DIR}/train-*", f"ingest.test={SAMPLE_DIR}/t10k-*",
              f"data.root={tmp_path / 'dataset'}", f"train.checkpoint_dir={tmp_path / 'checkpoints'}",
              f"infer.output={tmp_path / 'retrain-check'}"]
    binary = Path(sys.executable).parent / "mnist-pipeline"

    def retrain(*more: str) -> subprocess.CompletedProcess:
        done = subprocess.run([str(binary), "retrain", *common, *more], cwd=tmp_path, env=env, capture_output=True,
                              text=True, timeout=900)
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
        return done

    # drift, but nothing labelled to learn from: skipped, saying so and where labelled examples go
    labelled_dir = tmp_path / "labelled"
    extra = f"ingest.extra=[{{format: parquet, path: '{labelled_dir}'}}]"
    began = time.monotonic()
    skipped = retrain(extra)
    seconds = time.monotonic() - began
    assert "retrain: skipped (retrain.when=drift): 2 of the last 2 judged runs of champion version 1" in skipped.stdout
    assert "no labelled data newer than champion version 1's training data" in skipped.stdout
    assert not (tmp_path / "dataset").exists()  # nothing ingested, nothing trained
    print(f"skipped retrain.when=drift: {seconds:.1f} s from command to exit")

    # labelled inverted digits arrive (other digits than the stream's: the sample's train split)
    _inverted(labelled_dir, train[:3000])
    done = retrain(extra, "train.epochs=5", "train.num_proc=1")
    out = done.stdout
    assert "retrain (retrain.when=drift): 2 of the last 2 judged runs of champion version 1" in out
    assert "1 labelled file(s) under ingest.extra are new" in out
    assert re.search(r"model mnist-cnn version 2: test accuracy", out)
    assert "evaluate: version 2 promoted to @champion" in out, out
    client = MlflowClient(cfg.mlflow.tracking_uri)
    assert str(client.get_model_version_by_alias("mnist-cnn", "champion").version) == "2"
    # the extra rows are training data: in the manifest and the run's dataset inputs
    run = client.get_run(client.get_model_version("mnist-cnn", "2").run_id)
    manifest = mlflow.artifacts.load_dict(f"runs:/{run.info.run_id}/dataset/manifest.json")
    (extra_input,) = [i for i in manifest["inputs"] if i.get("extra") == 0]  # from ingest.extra[0]
    assert extra_input["rows"] == 3000 and extra_input["split"] == "train"
    assert manifest["splits"]["train"]["rows"] + manifest["splits"]["val"]["rows"] == 8000 + 3000
    assert any(d.dataset.name.endswith("extra-0") for d in run.inputs.dataset_inputs)
    # the retrain's check of its own test split is in the history, never counted as new data
    checks = [r for r in history.read_runs(cfg) if r["purpose"] == "retrain"]
    assert len(checks) == 1 and checks[0]["model_version"] == "2"

    # the retrain is in the history: the next decision counts only runs after it
    (record,) = [json.loads(p.read_text()) for p in (tmp_path / "monitoring" / "retrains").glob("*.json")]
    assert (record["status"], record["champion_version"], record["model_version"]) == ("promoted", "1", "2")

    # the next call: no judged run of the new champion since its promotion
    again = retrain(extra)
    assert "retrain: skipped (retrain.when=drift): 0 of the last 0 judged runs of champion version 2" in again.stdout

    # the new champion reads the inverted stream (digits it never saw, inverted or not)
    cfg.infer.input = str(_inverted(tmp_path / "stream-after", test[800:1600]))
    summary = batch_infer(spark, cfg)
    assert summary["model_version"] == "2" and summary["accuracy"] >= 0.9, summary["accuracy"]


def test_a_second_retrain_of_one_data_root_waits_then_skips_naming_the_holder(spark, tmp_path):
    from pipeline.io.fs import HadoopFS
    from pipeline.retrain import retrain_lock

    root = tmp_path / "dataset"
    cfg = PipelineConfig()
    cfg.data.root = str(root)
    holder = retrain_lock(HadoopFS(spark), cfg)  # the first retrain, between its ingest and its promotion
    holder.acquire()
    try:
        done = subprocess.run(
            [str(Path(sys.executable).parent / "mnist-pipeline"), "retrain", "spark.master=local[1]",
             "spark.progress_interval_s=0", f"data.root={root}", "retrain.lock_wait_s=2",
             f"mlflow.tracking_uri=sqlite:///{tmp_path / 'mlflow.db'}", f"ingest.train={SAMPLE_DIR}/train-*",
             f"ingest.test={SAMPLE_DIR}/t10k-*"],
            cwd=tmp_path, env=dict(os.environ, SPARK_LOCAL_IP="127.0.0.1"), capture_output=True, text=True,
            timeout=600)
    finally:
        holder.release()
    assert done.returncode == 0, done.stderr[-3000:]
    assert "retrain: skipped (another retrain is running)" in done.stdout
    assert f"has held its lock for over 2 s (retrain.lock_wait_s; holder {holder.token})" in done.stdout
    assert not root.exists()  # nothing ingested
