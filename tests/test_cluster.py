"""The spark-submit path end to end against a real Spark standalone cluster on loopback (a master and two
one-core workers): ingest, train with 2 Horovod ranks, evaluate/promote, batch inference, then training
again on tf_distribute, one TensorFlow worker on each Spark worker."""

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from mlflow import MlflowClient

from tests.helpers import SAMPLE_DIR
from tests.spark_cluster import SPARK_HOME, StandaloneCluster, spark_env

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    running = StandaloneCluster(tmp_path_factory.mktemp("spark-cluster")).start()
    yield running
    running.stop()


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    out = tmp_path_factory.mktemp("dist")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(out),
                    str(REPO)], check=True, capture_output=True, timeout=300)
    (built,) = out.glob("mnist_pipeline-*.whl")
    return built


def test_spark_submit_jobs_on_a_standalone_cluster(cluster, wheel, tmp_path):
    overrides = [
        f"ingest.train={SAMPLE_DIR}/train-*", f"ingest.test={SAMPLE_DIR}/t10k-*",
        f"data.root={tmp_path}/dataset", f"train.checkpoint_dir={tmp_path}/checkpoints",
        f"mlflow.tracking_uri=sqlite:///{tmp_path}/mlflow.db", f"mlflow.artifact_location={tmp_path}/artifacts",
        f"infer.output={tmp_path}/predictions", "train.num_proc=2", "train.epochs=1", "spark.progress_interval_s=0",
    ]

    def submit(job: str, *extra: str) -> subprocess.CompletedProcess:
        result = subprocess.run(
            [f"{SPARK_HOME}/bin/spark-submit", "--master", cluster.url, "--py-files", str(wheel),
             "--conf", "spark.driver.host=127.0.0.1", "--conf", f"spark.pyspark.python={sys.executable}",
             "--conf", "spark.executor.memory=1g", str(REPO / "jobs" / job), *overrides, *extra],
            cwd=tmp_path, env=spark_env(), capture_output=True, text=True, timeout=600)
        assert result.returncode == 0, f"{job} failed:\n{result.stdout[-2000:]}\n{result.stderr[-5000:]}"
        return result

    assert "train     7,200" in submit("ingest.py").stdout
    trained = submit("train.py").stdout
    assert "model mnist-cnn version 1: test accuracy" in trained
    assert "promoted to @champion" in submit("evaluate.py").stdout
    inferred = submit("batch_infer.py").stdout
    assert "infer: 2,000 inputs: 2,000 scored, 0 rejected" in inferred
    assert "monitoring: mnist-cnn version 1 scored 2,000 rows (0 rejects)" in inferred  # the test split: its own
    assert "verdict stable: " in inferred                                             # reference, unchanged

    summary = json.loads((tmp_path / "predictions" / "summary.json").read_text())
    assert summary["model_version"] == "1" and summary["rows_scored"] == 2000
    client = MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    assert str(client.get_model_version_by_alias("mnist-cnn", "champion").version) == "1"
    run = client.get_run(summary["run_id"])
    assert run.data.params["horovod.num_proc"] == "2"
    assert run.data.params["horovod.threads_per_rank"] == "1"  # spark.task.cpus on a cluster
    # the work ran on the cluster's executors, one application per Spark job (evaluate needs no Spark)
    apps = sorted(p.name for p in (cluster.folder / "work").iterdir())
    assert len(apps) == 3, apps
    executor_logs = list((cluster.folder / "work").glob("app-*/*/stderr"))
    assert len(executor_logs) >= 6  # an executor on each of the two workers, for each application

    # The same job on TensorFlow's own workers: a barrier stage of 2 tasks on the 2 one-core workers.
    retrained = submit("train.py", "train.backend=tf_distribute").stdout
    assert "model mnist-cnn version 2: test accuracy" in retrained
    tf_run = client.get_run(client.get_model_version("mnist-cnn", "2").run_id)
    assert tf_run.data.params["backend"] == "tf_distribute" and tf_run.data.params["horovod.num_proc"] == "2"
    (tf_app,) = set(p.name for p in (cluster.folder / "work").iterdir()) - set(apps)
    started = [log for log in (cluster.folder / "work" / tf_app).glob("*/stderr")
               if "Started server with target: grpc://" in log.read_text(errors="replace")]
    assert len(started) == 2, "each Spark worker's executor should run one TensorFlow worker"

    # the monitoring report, and retraining that reads it first: nothing drifted, so nothing is retrained
    shown = submit("monitor.py").stdout
    assert "last 1 of 1" in shown and shown.splitlines()[2].endswith("  stable")
    skipped = submit("retrain.py", "retrain.when=drift").stdout
    assert "retrain: skipped (retrain.when=drift): 0 of the last 1 judged runs of champion version 1" in skipped
    assert len(client.search_model_versions("name='mnist-cnn'")) == 2


def test_ingest_survives_a_lost_executor_with_identical_output(cluster, wheel, sample_arrays, spark, tmp_path):
    """An executor JVM is killed mid-ingest; Spark re-runs its tasks and the dataset is the same as a
    local ingest of the same files."""
    import os
    import signal
    import threading
    import time
    import urllib.request

    from bench import synth
    from pipeline.ingest.build import ingest
    from tests.helpers import make_config, read_split
    from tests.mlflow_server import free_port

    x, y = sample_arrays["train"]
    raw = tmp_path / "raw"
    synth.generate(x, y, 60_000, raw, prefix="train", per_file=5_000, seed=7)
    synth.generate(x, y, 2_000, raw, prefix="t10k", per_file=2_000, seed=8)
    overrides = [f"ingest.train={raw}/train-*", f"ingest.test={raw}/t10k-*", f"data.root={tmp_path}/cluster-ds",
                 "spark.progress_interval_s=1", "spark.conf.spark.sql.shuffle.partitions=8"]
    ui_port = free_port()
    ui = f"http://127.0.0.1:{ui_port}"
    work = cluster.folder / "work"
    earlier_apps = {p.name for p in work.iterdir()} if work.exists() else set()
    process = subprocess.Popen(
        [f"{SPARK_HOME}/bin/spark-submit", "--master", cluster.url, "--py-files", str(wheel),
         "--conf", "spark.driver.host=127.0.0.1", "--conf", f"spark.pyspark.python={sys.executable}",
         "--conf", "spark.executor.memory=1g", "--conf", f"spark.ui.port={ui_port}",
         str(REPO / "jobs" / "ingest.py"), *overrides],
        cwd=tmp_path, env=spark_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    killed = {}

    def this_apps_executor_pids() -> list[int]:
        """Executors of this test's application only (its app id, from the workers' work folders)."""
        apps = {p.name for p in work.iterdir()} - earlier_apps if work.exists() else set()
        if len(apps) != 1:
            return []
        (app_id,) = apps
        out = subprocess.run(["pgrep", "-f", f"CoarseGrainedExecutorBackend.*--app-id {app_id}"],
                             capture_output=True, text=True).stdout
        return [int(p) for p in out.split()]

    def tasks_running() -> bool:
        """True once the driver's status API shows tasks running on the executors (they are parsing)."""
        try:
            with urllib.request.urlopen(f"{ui}/api/v1/applications", timeout=2) as response:
                app = json.load(response)[0]["id"]
            with urllib.request.urlopen(f"{ui}/api/v1/applications/{app}/stages?status=active", timeout=2) as response:
                return any(stage["numActiveTasks"] > 0 for stage in json.load(response))
        except (OSError, ValueError, IndexError, KeyError):
            return False

    def kill_one_executor():
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and process.poll() is None:
            pids = this_apps_executor_pids()
            if len(pids) >= 2 and tasks_running():
                killed["while_running"] = process.poll() is None
                killed["pid"] = pids[0]
                os.kill(pids[0], signal.SIGKILL)
                return
            time.sleep(0.2)

    killer = threading.Thread(target=kill_one_executor, daemon=True)
    killer.start()
    stdout, stderr = process.communicate(timeout=600)
    killer.join(timeout=10)
    assert process.returncode == 0, stderr[-5000:]
    assert killed.get("while_running"), "no executor was killed while the job ran:\n" + stderr[-3000:]
    assert "train " in stdout
    worker_logs = "".join(p.read_text() for p in cluster.folder.glob("worker-*.log"))
    # the worker saw the executor die of the kill, and started a replacement (executor id 2)
    assert re.search(r"Executor app-\S+ finished with state EXITED message Command exited with code 137", worker_logs)
    assert re.search(r"Asked to launch executor app-\S+/2", worker_logs)

    ingest(spark, make_config(tmp_path / "local-ds", f"{raw}/train-*", f"{raw}/t10k-*", max_shards=8))
    for split in ("train", "val", "test"):
        assert read_split(tmp_path / "cluster-ds", split) == read_split(tmp_path / "local-ds", split)
