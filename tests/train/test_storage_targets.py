"""Training on the storage users really have: checkpoints on S3 (a real S3-compatible server on
loopback), and paths proven from the driver and from a Spark task before any rank starts."""

import time

import pytest
from mlflow import MlflowClient

from pipeline.errors import PreflightError, TrainingError
from pipeline.io import storage
from pipeline.train import checkpoints
from pipeline.train.callbacks import FAIL_AFTER_EPOCH_ENV
from pipeline.train.driver import train
from pipeline.train.preflight import probe_from_task
from tests.helpers import train_config


# Horovod's launcher thread reports the cancelled Spark job of the failed run; that is the drill, not a fault.
@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
def test_checkpoints_on_s3_survive_a_failed_rank_and_the_run_resumes_from_them(spark, sample_dataset, s3, tmp_path,
                                                                              monkeypatch):
    bucket = s3.create_bucket("checkpoints")
    cfg = train_config(tmp_path, sample_dataset[0], f"sqlite:///{tmp_path / 'mlflow.db'}", epochs=2)
    cfg.train.checkpoint_dir = f"{bucket}/mnist"
    monkeypatch.setenv(FAIL_AFTER_EPOCH_ENV, "1")
    with pytest.raises(TrainingError, match=r"failed after epoch 1 of 2: .*\nrank 0 failed with:\n(    .*\n)*"
                                            r"    RuntimeError: MNIST_PIPELINE_FAIL_AFTER_EPOCH=1.*\n"
                                            r"The checkpoint is kept in s3://checkpoints/mnist/"):
        train(spark, cfg)
    (key,) = storage.list_names(f"{bucket}/mnist")
    run_dir = f"{bucket}/mnist/{key}"
    saved = checkpoints.read_state(run_dir)
    assert saved.completed_epoch == 1 and saved.checkpoint == "ckpt-1"
    assert storage.list_names(f"{run_dir}/ckpt-1") == ["ckpt.data-00000-of-00001", "ckpt.index"]
    assert "rank-0.error" in storage.list_names(run_dir)

    monkeypatch.delenv(FAIL_AFTER_EPOCH_ENV)
    result = train(spark, cfg)
    assert result.start_epoch == 1 and result.start_weights_digest == saved.weights_digest
    assert [e["epoch"] for e in result.epochs] == [1, 2]
    assert MlflowClient(cfg.mlflow.tracking_uri).get_model_version(cfg.mlflow.registered_model, result.model_version)
    assert storage.list_names(f"{bucket}/mnist") == []  # registered: the run folder is gone


@pytest.mark.parametrize("checkpoint_dir, message", [
    ("ftp://archive/ckpt", r"train\.checkpoint_dir=ftp://archive/ckpt \(ftp\) is not usable from the driver: "
                           r".*scheme 'ftp' is not supported.*use a local path, hdfs://, s3://"),
    ("hdfs://127.0.0.1:9/ckpt", r"train\.checkpoint_dir=hdfs://127\.0\.0\.1:9/ckpt \(hdfs\) is not usable from the "
                                r"driver: .*set CLASSPATH .* and ARROW_LIBHDFS_DIR"),
])
def test_preflight_refuses_a_checkpoint_dir_it_cannot_write_in_seconds(spark, sample_dataset, tmp_path, checkpoint_dir,
                                                                       message):
    cfg = train_config(tmp_path, sample_dataset[0], f"sqlite:///{tmp_path / 'mlflow.db'}")
    cfg.train.checkpoint_dir = checkpoint_dir
    started = time.monotonic()
    with pytest.raises(PreflightError, match=message):
        train(spark, cfg)
    assert time.monotonic() - started < 30
    assert not (tmp_path / "mlflow.db").exists()  # no run was started


def test_preflight_refuses_a_checkpoint_dir_under_a_file(spark, sample_dataset, tmp_path):
    (tmp_path / "not-a-folder").write_text("x")
    cfg = train_config(tmp_path, sample_dataset[0], f"sqlite:///{tmp_path / 'mlflow.db'}")
    cfg.train.checkpoint_dir = str(tmp_path / "not-a-folder" / "ckpt")
    with pytest.raises(PreflightError, match=r"train\.checkpoint_dir=.*not-a-folder/ckpt \(local\) is not usable from "
                                             r"the driver: .*; the folder must exist or be creatable, writable"):
        train(spark, cfg)


def test_the_task_side_probe_names_what_a_spark_task_cannot_reach(spark, sample_dataset, tmp_path):
    root = str(sample_dataset[0])
    ok = spark.sparkContext.parallelize([0], 1).map(lambda _: probe_from_task(str(tmp_path / "ck"), root)).first()
    assert ok is None
    missing = str(tmp_path / "no-dataset")
    problem = spark.sparkContext.parallelize([0], 1).map(
        lambda _: probe_from_task(str(tmp_path / "ck"), missing)).first()
    assert problem.startswith(f"data.root={missing} (local) is not usable from a Spark task on ")
