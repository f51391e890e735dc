"""Incremental scoring of an incoming folder: files arriving between runs, a killed run, a re-run and a
replayed micro-batch, with every row counted."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import mlflow
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from mlflow import MlflowClient
from PIL import Image

from pipeline.config import PipelineConfig
from pipeline.errors import InputError, PipelineError
from pipeline.infer.batch import batch_infer
from pipeline.monitor import history
from tests.helpers import read_split


def _cfg(monitored, tmp_path: Path, fmt: str = "parquet") -> PipelineConfig:
    cfg = PipelineConfig()
    cfg.mlflow = monitored[0]
    cfg.spark.progress_interval_s = 0
    cfg.infer.mode = "incremental"
    cfg.infer.input_format = fmt
    cfg.infer.input = str(tmp_path / "incoming")
    cfg.infer.output = str(tmp_path / "scored")
    cfg.infer.max_files_per_trigger = 1
    cfg.monitor.path = str(tmp_path / "monitoring")
    cfg.monitor.min_rows = 100  # judge the 100-row micro-batches
    # clean test digits: a run is called moderate or drift with probability monitor.false_alarm at most, so
    # at 0.001 three micro-batches are all stable with probability >= 0.997 (bench/drift_bench.py measures it)
    cfg.monitor.false_alarm = 0.001
    return cfg


def _arrive(folder: Path, name: str, rows) -> None:
    """A file lands whole (written beside, then renamed), as a well-behaved producer delivers it."""
    folder.mkdir(parents=True, exist_ok=True)
    table = pa.table({"id": [r[0] for r in rows], "image": [r[1] for r in rows], "label": [r[2] for r in rows]})
    pq.write_table(table, str(folder / f".{name}.tmp"))
    os.rename(folder / f".{name}.tmp", folder / f"{name}.parquet")


def _scored(spark, tmp_path: Path):
    rows = spark.read.parquet(str(tmp_path / "scored" / "predictions")).select("id", "model_version", "batch_id")
    return {(r.id, r.model_version, r.batch_id) for r in rows.collect()}, rows.count()


def test_each_run_scores_only_new_files_exactly_once_and_picks_up_a_moved_champion(spark, monitored, sample_dataset,
                                                                                     tmp_path):
    test = read_split(sample_dataset[0], "test")
    incoming = tmp_path / "incoming"
    for i in range(3):
        _arrive(incoming, f"part-{i}", test[100 * i: 100 * (i + 1)])
    cfg = _cfg(monitored, tmp_path)
    first = batch_infer(spark, cfg)
    assert (first["micro_batches"], first["batch_ids"], first["rows_scored"]) == (3, [0, 1, 2], 300)
    assert first["model_version"] == "1" and first["verdicts"] == ["stable"] * 3
    assert first["accuracy"] is not None
    rows, count = _scored(spark, tmp_path)
    assert count == len({r[0] for r in rows}) == 300 and {r[1] for r in rows} == {"1"}
    assert len(history.read_runs(cfg)) == 3  # monitoring runs per micro-batch

    # a new version takes @champion between runs: the next run scores with it, the rows say which
    client = MlflowClient(monitored[0].tracking_uri)
    v1 = client.get_model_version("mnist-cnn", "1")
    v2 = mlflow.register_model(v1.source, "mnist-cnn")
    client.set_registered_model_alias("mnist-cnn", "champion", v2.version)
    try:
        for i in range(3, 5):
            _arrive(incoming, f"part-{i}", test[100 * i: 100 * (i + 1)])
        second = batch_infer(spark, cfg)
        assert (second["micro_batches"], second["batch_ids"], second["rows_scored"]) == (2, [3, 4], 200)
        rows, count = _scored(spark, tmp_path)
        assert count == len({r[0] for r in rows}) == 500
        assert {r[1] for r in rows if r[2] >= 3} == {v2.version} and {r[1] for r in rows if r[2] < 3} == {"1"}

        nothing = batch_infer(spark, cfg)
        assert nothing["micro_batches"] == 0 and nothing["rows_scored"] == 0
        assert _scored(spark, tmp_path)[1] == 500

        # Spark did not record micro-batch 4 as committed (a kill after it was written): the next run
        # replays it, finds it finished and skips it; one that had not finished is scored again, once
        commits = tmp_path / "scored" / "_checkpoint" / "commits"
        _uncommit(commits, 4)
        replay = batch_infer(spark, cfg)
        assert replay["micro_batches"] == 0 and _scored(spark, tmp_path)[1] == 500
        _uncommit(commits, 4)
        (tmp_path / "scored" / "_batches" / "4.json").unlink()
        again = batch_infer(spark, cfg)
        assert again["batch_ids"] == [4] and again["rows_scored"] == 100
        rows, count = _scored(spark, tmp_path)
        assert count == len({r[0] for r in rows}) == 500
        assert len(history.read_runs(cfg)) == 5  # the replayed micro-batch's earlier monitoring run was replaced
    finally:
        client.set_registered_model_alias("mnist-cnn", "champion", "1")


def _uncommit(commits: Path, batch_id: int) -> None:
    """As if Spark had never written micro-batch ``batch_id``'s commit (the file and its checksum)."""
    (commits / str(batch_id)).unlink()
    (commits / f".{batch_id}.crc").unlink(missing_ok=True)


def test_a_killed_run_loses_no_file_and_scores_none_twice(monitored, sample_dataset, tmp_path):
    test = read_split(sample_dataset[0], "test")
    incoming = tmp_path / "incoming"
    for i in range(6):
        _arrive(incoming, f"part-{i}", test[100 * i: 100 * (i + 1)])
    cfg = _cfg(monitored, tmp_path)
    args = ["infer", "spark.master=local[2]", "spark.progress_interval_s=0",
            f"mlflow.tracking_uri={cfg.mlflow.tracking_uri}", "infer.mode=incremental", "infer.input_format=parquet",
            f"infer.input={incoming}", f"infer.output={cfg.infer.output}", "infer.max_files_per_trigger=1",
            f"monitor.path={cfg.monitor.path}", "monitor.min_rows=100"]
    binary = Path(sys.executable).parent / "mnist-pipeline"
    env = dict(os.environ, SPARK_LOCAL_IP="127.0.0.1")
    run = subprocess.Popen([str(binary), *args], cwd=tmp_path, env=env, stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL, start_new_session=True)
    batches = tmp_path / "scored" / "_batches"
    deadline = time.monotonic() + 300
    try:
        while not (batches / "1.json").exists():  # two micro-batches done, four to go
            assert run.poll() is None, "the run ended before it could be killed"
            assert time.monotonic() < deadline, "no micro-batch finished in 300 s"
            time.sleep(0.2)
        time.sleep(1.5)  # into the middle of the next one
        os.killpg(run.pid, signal.SIGKILL)
        run.wait(timeout=30)
    finally:
        if run.poll() is None:
            os.killpg(run.pid, signal.SIGKILL)
            run.wait(timeout=30)
    finished = sorted(int(p.stem) for p in batches.glob("*.json"))
    assert finished == list(range(len(finished))) and 2 <= len(finished) < 6

    rerun = subprocess.run([str(binary), *args], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    summary = json.loads((tmp_path / "scored" / "summary.json").read_text())
    assert summary["batch_ids"] == list(range(len(finished), 6))  # the rest, the one cut short included
    assert summary["rows_scored"] == 100 * (6 - len(finished))
    table = pq.read_table(str(tmp_path / "scored" / "predictions")).to_pylist()
    assert len(table) == 600 == len({r["id"] for r in table})  # every row once
    assert {r["id"] for r in table} == {r[0] for r in test[:600]}
    folders = sorted(p.name for p in (tmp_path / "scored" / "predictions").iterdir() if not p.name.startswith("_"))
    assert folders == [f"batch_id={i}" for i in range(6)]
    assert len(history.read_runs(cfg)) == 6


def test_images_and_idx_folders_and_what_is_refused(spark, monitored, sample_dataset, small_arrays, tmp_path):
    from tests.helpers import write_idx_pair

    images, labels = small_arrays["test"]
    pictures = tmp_path / "incoming"
    pictures.mkdir()
    for i in range(5):
        Image.fromarray(images[i].reshape(28, 28)).save(pictures / f"digit-{i}.png")
    (pictures / "broken.png").write_bytes(b"not a png")
    cfg = _cfg(monitored, tmp_path, "images")
    cfg.infer.max_files_per_trigger = None
    summary = batch_infer(spark, cfg)
    assert (summary["micro_batches"], summary["rows_scored"], summary["rejects"]) == (1, 5, 1)

    idx_cfg = _cfg(monitored, tmp_path / "idx", "idx")
    write_idx_pair(tmp_path / "idx" / "incoming", "a", images[:30], labels[:30])
    first = batch_infer(spark, idx_cfg)
    assert (first["rows_scored"], first["labelled_rows"]) == (30, 30)
    write_idx_pair(tmp_path / "idx" / "incoming", "b", images[30:50], labels[30:50])
    (tmp_path / "idx" / "incoming" / "c-images-idx3-ubyte.gz").write_bytes(
        (tmp_path / "idx" / "incoming" / "b-images-idx3-ubyte.gz").read_bytes())  # its labels never came
    second = batch_infer(spark, idx_cfg)
    assert (second["rows_scored"], second["rejects"]) == (20, 1)

    # an incremental output is never replaced by a batch run, nor a batch output appended to
    batch = _cfg(monitored, tmp_path, "images")
    batch.infer.mode = "batch"
    with pytest.raises(PipelineError, match="holds incremental scoring's output and checkpoint"):
        batch_infer(spark, batch)
    other = _cfg(monitored, tmp_path / "other", "images")
    other.infer.input = str(pictures)
    other.infer.mode = "batch"
    batch_infer(spark, other)
    other.infer.mode = "incremental"
    with pytest.raises(InputError, match="holds the output of a batch inference"):
        batch_infer(spark, other)
    missing = _cfg(monitored, tmp_path / "nowhere")
    with pytest.raises(InputError, match="does not exist; expected the folder new files arrive in"):
        batch_infer(spark, missing)
