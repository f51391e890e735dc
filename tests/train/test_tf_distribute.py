"""train.backend=tf_distribute: TensorFlow's MultiWorkerMirroredStrategy in a Spark barrier stage of 2
tasks on local[2], the same training contract as Horovod (shards, records, checkpoints, resume in the
same MLflow run, registration), and a worker killed mid-run named within seconds."""

import os
import re
import signal
import time

import numpy as np
import pytest
from mlflow import MlflowClient

from pipeline.errors import TrainingError
from pipeline.train import checkpoints
from pipeline.train.backends import resolve_backend
from pipeline.train.driver import train
from pipeline.train.failures import describe_tf_failure
from pipeline.train.tf_worker import exit_description
from tests.helpers import read_split, train_config, when_epoch_done


def test_auto_picks_horovod_where_it_loads():
    import horovod.tensorflow  # noqa: F401  (it loads on this machine: scripts/setup.sh builds it)

    assert resolve_backend("auto") == "horovod"
    assert resolve_backend("tf_distribute") == "tf_distribute"


def test_a_lost_worker_is_named_with_its_signal():
    assert exit_description(1, -9) == "tf_distribute worker 1 was lost (exit code -9, killed by signal 9 (SIGKILL))"
    assert exit_description(0, 1) == ("tf_distribute worker 0 failed (exit code 1); its traceback is in "
                                      "rank-0.error")
    spark_report = RuntimeError("Job aborted due to stage failure: ... RuntimeError: tf_distribute worker 1 was lost "
                                "(exit code -9, killed by signal 9 (SIGKILL))\n\tat org.apache.spark...")
    assert describe_tf_failure(spark_report) == ("tf_distribute worker 1 was lost (exit code -9, killed by signal 9 "
                                                 "(SIGKILL)); Spark stopped the other workers")


@pytest.mark.slow
def test_two_workers_train_track_and_register(spark, sample_dataset, tmp_path):
    root, _ = sample_dataset
    cfg = train_config(tmp_path, root, f"sqlite:///{tmp_path / 'mlflow.db'}", report_shards=True,
                       backend="tf_distribute")
    result = train(spark, cfg)
    assert result.backend == "tf_distribute" and result.model_version == "1"
    shards = result.shard_ids
    assert shards[0] and shards[1] and not set(shards[0]) & set(shards[1])
    assert sorted(shards[0] + shards[1]) == [r[0] for r in read_split(root, "train")]
    assert result.test_accuracy >= 0.90
    assert [e["epoch"] for e in result.epochs] == [1, 2]
    if sorted(os.sched_getaffinity(0)) == [0, 1]:  # 2 workers fill these 2 cores: each binds its own
        assert result.rank_cores == {0: [0], 1: [1]}
    run = MlflowClient(cfg.mlflow.tracking_uri).get_run(result.run_id)
    assert run.data.params["backend"] == "tf_distribute" and run.data.params["horovod.num_proc"] == "2"
    history = MlflowClient(cfg.mlflow.tracking_uri).get_metric_history(result.run_id, "val_accuracy")
    assert sorted(m.step for m in history) == [1, 2]
    assert not list((tmp_path / "checkpoints").glob("*/state.json"))  # registered: the run folder is gone


@pytest.mark.slow
def test_a_killed_worker_is_named_and_the_run_resumes(spark, sample_dataset, tmp_path):
    root, _ = sample_dataset
    cfg = train_config(tmp_path, root, f"sqlite:///{tmp_path / 'mlflow.db'}", epochs=3, backend="tf_distribute")

    def kill_worker_1(run_dir):  # epoch 1 is recorded: the workers are into epoch 2
        pid = int((run_dir / "rank-1.pid").read_text().split()[0])
        os.kill(pid, signal.SIGKILL)
        return pid

    thread, done = when_epoch_done(tmp_path / "checkpoints", 1, kill_worker_1)
    with pytest.raises(TrainingError, match=r"tf_distribute worker 1 was lost \(exit code -9, killed by signal 9 "
                                            r"\(SIGKILL\)\)") as info:
        train(spark, cfg)
    thread.join()
    print(f"\nworker 1 (pid {done['result']}) killed; training failed {time.monotonic() - done['at']:.1f} s later")
    (run_dir,) = (tmp_path / "checkpoints").iterdir()
    saved = checkpoints.read_state(str(run_dir))
    assert saved.completed_epoch >= 1 and (run_dir / saved.checkpoint / "ckpt.index").exists()
    assert f"resume from epoch {saved.completed_epoch + 1}" in str(info.value)
    assert "rank 0 failed with" not in str(info.value)  # the survivor's collective error is collateral

    result = train(spark, cfg)
    assert result.run_id == saved.mlflow_run_id  # the same MLflow run goes on
    assert result.start_epoch == saved.completed_epoch
    assert result.start_weights_digest == saved.weights_digest
    assert [e["epoch"] for e in result.epochs] == [1, 2, 3]
    assert np.isfinite(result.test_accuracy)


@pytest.mark.slow
def test_a_worker_that_hangs_alive_is_named_after_the_collective_timeout(spark, sample_dataset, tmp_path):
    """Worker 1 is stopped (SIGSTOP: alive, holding its sockets, doing nothing) after epoch 1: TensorFlow
    misses its heartbeats, worker 0's collective is aborted, and the error names worker 1, not the worker
    that noticed."""
    root, _ = sample_dataset
    cfg = train_config(tmp_path, root, f"sqlite:///{tmp_path / 'mlflow.db'}", epochs=3, backend="tf_distribute",
                       collective_timeout_s=15)

    def stop_worker_1(run_dir):
        pid = int((run_dir / "rank-1.pid").read_text().split()[0])
        os.kill(pid, signal.SIGSTOP)
        return pid

    thread, done = when_epoch_done(tmp_path / "checkpoints", 1, stop_worker_1)
    try:
        with pytest.raises(TrainingError) as info:
            train(spark, cfg)
    finally:
        thread.join()
        try:  # Spark's kill of task 1 takes its worker process with it; make sure of it
            os.kill(done["result"], signal.SIGKILL)
        except (ProcessLookupError, KeyError, TypeError):
            pass
    message = str(info.value)
    print(f"\nworker 1 stopped; training failed {time.monotonic() - done['at']:.1f} s later:\n{message}")
    assert "tf_distribute worker 1 stopped responding: worker 0's heartbeat to it timed out" in message, message
    assert "resume from epoch 2" in message and "rank 0 failed with" not in message
    assert time.monotonic() - done["at"] < 15 + 60


@pytest.mark.slow
def test_a_worker_stuck_in_its_own_code_is_named_after_the_collective_timeout(spark, sample_dataset, tmp_path,
                                                                              monkeypatch):
    """Worker 1 hangs in Python after epoch 1 while its process and TensorFlow's threads stay alive
    (heartbeats go on): worker 0's next collective gives up after train.collective_timeout_s, and the
    error names worker 1, the one that did not time out."""
    from pipeline.train.callbacks import HANG_AFTER_EPOCH_ENV

    root, _ = sample_dataset
    cfg = train_config(tmp_path, root, f"sqlite:///{tmp_path / 'mlflow.db'}", epochs=3, backend="tf_distribute",
                       collective_timeout_s=15)
    monkeypatch.setenv(HANG_AFTER_EPOCH_ENV, "1:1")
    started = time.monotonic()
    with pytest.raises(TrainingError) as info:
        train(spark, cfg)
    message = str(info.value)
    print(f"\nfailed after {time.monotonic() - started:.1f} s:\n{message}")
    assert re.search(r"tf_distribute worker 1 stopped responding: worker 0 waited 15 s for it in a collective "
                     r"\(train\.collective_timeout_s\)", message), message
    assert "rank 0 failed with" not in message  # the worker that noticed is not the cause
