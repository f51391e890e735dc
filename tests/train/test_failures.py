"""Saying what failed: only a remote tracking server's outage is reported as one; everything else keeps
its own message. And ranks are shipped only what they need (no tracking URI, no credentials)."""

import pickle

import pytest
import requests

from pipeline.errors import InputError
from pipeline.train.failures import describe_failure, is_tracking_failure
from tests.mlflow_server import free_port

SERVER = "http://127.0.0.1:5000"
LOCAL = "sqlite:///data/mlflow/mlflow.db"


def _raised(make):
    try:
        make()
    except Exception as exc:
        return exc
    raise AssertionError("nothing was raised")


def _chained(outer, inner):
    def make():
        try:
            raise inner
        except Exception as exc:
            raise outer from exc
    return _raised(make)


@pytest.mark.parametrize("exc", [
    OSError(28, "No space left on device"),
    PermissionError(13, "Permission denied: 'data/checkpoints/abc/ckpt-1.index'"),
    _chained(InputError("part-3.parquet: not a readable Parquet file"), OSError("Invalid: Parquet magic bytes")),
    _chained(RuntimeError("checkpoint write failed"), FileNotFoundError(2, "No such file or directory")),
    ConnectionRefusedError(111, "Connection refused"),  # not from the tracking client: an HDFS datanode, say
], ids=["disk-full", "permission", "broken-dataset", "missing-folder", "other-connection"])
def test_local_failures_are_not_tracking_failures(exc):
    assert not is_tracking_failure(exc, SERVER)
    assert not is_tracking_failure(exc, LOCAL)


def test_a_real_unreachable_tracking_server_is_a_tracking_failure(monkeypatch):
    from mlflow import MlflowClient

    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    uri = f"http://127.0.0.1:{free_port()}"
    exc = _raised(lambda: MlflowClient(uri).get_experiment("0"))
    assert is_tracking_failure(exc, uri)
    assert is_tracking_failure(_chained(RuntimeError("log_batch failed"), requests.exceptions.ConnectionError()), uri)
    assert not is_tracking_failure(exc, LOCAL)  # a local store has no server to bring back


def test_an_answer_that_is_not_an_outage_is_not_a_tracking_failure():
    from mlflow.exceptions import MlflowException
    from mlflow.protos.databricks_pb2 import RESOURCE_DOES_NOT_EXIST

    missing = MlflowException("Run 'abc' not found", error_code=RESOURCE_DOES_NOT_EXIST)
    assert not is_tracking_failure(missing, SERVER)
    assert is_tracking_failure(MlflowException("API request to endpoint /api/2.0/mlflow/runs/log-batch failed with "
                                               "error code 503 != 200"), SERVER)
    assert not is_tracking_failure(MlflowException("API request to endpoint /api/2.0/mlflow/runs/get failed with "
                                                   "error code 403 != 200"), SERVER)


def test_a_lost_rank_is_named():
    exc = RuntimeError("Horovod detected that one or more processes exited with non-zero status\n"
                       "Process name: 1\nExit code: -9")
    assert describe_failure(exc) == "rank 1 was lost (exit code -9, killed by signal 9 (SIGKILL)); Horovod stopped " \
                                    "the other ranks"


@pytest.mark.slow
def test_ranks_are_shipped_no_tracking_uri_or_credentials(spark, sample_dataset, tmp_path, monkeypatch):
    """What the driver really hands Horovod (the job and the ranks' environment), caught at
    ``horovod.spark.run``: a tracking URI or credential added anywhere on the way fails here."""
    import horovod.spark

    from pipeline.errors import TrainingError
    from pipeline.train.driver import train
    from tests.helpers import train_config

    store = tmp_path / "s3cret-store"
    store.mkdir()
    cfg = train_config(tmp_path, sample_dataset[0], f"sqlite:///{store / 'mlflow.db'}", epochs=1)
    for name, value in (("MLFLOW_TRACKING_TOKEN", "s3cret-token"), ("MLFLOW_TRACKING_URI", cfg.mlflow.tracking_uri),
                        ("DATABRICKS_TOKEN", "dapi-s3cret"), ("AWS_ACCESS_KEY_ID", "kept")):
        monkeypatch.setenv(name, value)
    shipped = {}

    def horovod_run(fn, args, env, **kwargs):
        shipped.update(job=pickle.dumps(args), env=env)
        raise RuntimeError("caught before any rank started")

    monkeypatch.setattr(horovod.spark, "run", horovod_run)
    with pytest.raises(TrainingError, match="caught before any rank started"):
        train(spark, cfg)
    assert b"s3cret" not in shipped["job"] and str(store).encode() not in shipped["job"]
    env = shipped["env"]
    assert not {"MLFLOW_TRACKING_TOKEN", "MLFLOW_TRACKING_URI", "DATABRICKS_TOKEN"} & set(env)
    assert not any("s3cret" in value for value in env.values())
    assert env["AWS_ACCESS_KEY_ID"] == "kept" and env["TF_USE_LEGACY_KERAS"] == "1"


COLLATERAL = ("Traceback (most recent call last):\n  File \"worker.py\", line 9, in fit\n"
              "horovod.common.exceptions.HorovodInternalError: Horovod has been shut down. This was caused by an "
              "exception on one of the ranks or an attempt to allreduce ...\n")
OWN = "Traceback (most recent call last):\n  File \"worker.py\", line 5, in load\nOSError: disk on fire\n"


def test_a_rank_lost_to_a_signal_is_named_without_the_others_collateral_traceback(tmp_path, caplog):
    from pipeline.train.driver import _rank_errors

    (tmp_path / "rank-0.error").write_text(COLLATERAL)  # the survivor, stopped by Horovod; rank 1 left nothing
    exc = RuntimeError("Horovod detected that one or more processes exited with non-zero status\n"
                       "Process name: 1\nExit code: -9")
    with caplog.at_level("INFO", logger="mnist_pipeline.details"):
        shown = describe_failure(exc) + _rank_errors(str(tmp_path), exc)
    assert shown == "rank 1 was lost (exit code -9, killed by signal 9 (SIGKILL)); Horovod stopped the other ranks"
    assert "Horovod has been shut down" in caplog.text  # kept for the log file
    assert not any(r.name.startswith("pipeline") for r in caplog.records)  # which the console never shows

    # the survivor's error can be any collateral text, such as a Gloo connection closed in an allreduce
    (tmp_path / "rank-0.error").write_text("Traceback (most recent call last):\n  ...\ntensorflow.python.framework."
                                           "errors_impl.UnknownError: Graph execution error: HorovodAllreduce ...\n")
    assert _rank_errors(str(tmp_path), exc) == ""

    (tmp_path / "rank-0.error").write_text(COLLATERAL)
    (tmp_path / "rank-1.error").write_text(OWN)  # a rank that failed for a reason of its own is shown
    shown = _rank_errors(str(tmp_path), RuntimeError("Process name: 0\nExit code: 1"))
    assert shown.startswith("\nrank 1 failed with:\n") and "OSError: disk on fire" in shown
    assert "rank 0" not in shown and "shut down" not in shown


def test_a_run_that_stopped_early_counts_as_finished():
    from pipeline.train.checkpoints import RunState
    from pipeline.train.driver import finished_training

    stopped_early = RunState(run_key="k", completed_epoch=7, extra={"final_weights": "final-weights.npz"})
    assert finished_training(stopped_early)  # 7 of 20 epochs, then early stopping: no training on the re-run
    assert not finished_training(RunState(run_key="k", completed_epoch=7))  # a crash after epoch 7: resume


def test_a_stalled_tf_distribute_worker_is_named_not_the_one_that_noticed():
    from pipeline.train.failures import stalled_tf_workers

    heartbeat = ("Collective ops is aborted by: Error reported from /job:worker/task:1: Task /job:worker/replica:0/"
                 "task:1 heartbeat timeout. This indicates that the remote task has failed")
    assert stalled_tf_workers({0: heartbeat}, 2, 600) == (
        "tf_distribute worker 1 stopped responding: worker 0's heartbeat to it timed out (its process is alive but "
        "stopped, or its host is unreachable)")
    timeout = "DeadlineExceededError: ... Collective has timed out during execution. [Op:CollectiveReduceV2]"
    assert stalled_tf_workers({0: timeout, 2: timeout}, 3, 15) == (
        "tf_distribute worker 1 stopped responding: workers 0, 2 waited 15 s for it in a collective "
        "(train.collective_timeout_s)")
    assert stalled_tf_workers({0: timeout, 1: timeout}, 2, 15) is None  # nobody silent: no culprit to name
    assert stalled_tf_workers({0: "ValueError: bad input"}, 2, 15) is None
