"""The driver's tailer of epoch records: what the tuner's callback raises surfaces as itself."""

import logging

import pytest
from mlflow import MlflowClient

from pipeline.train import checkpoints
from pipeline.train.tailer import EpochTailer


def _record(epoch):
    return {"epoch": epoch, "loss": 1.0 / epoch, "accuracy": 0.5, "val_loss": 1.0, "val_accuracy": 0.5,
            "learning_rate": 1e-3, "images_per_sec": 100.0, "images_per_sec_per_rank": 50.0, "epoch_seconds": 1.0}


@pytest.fixture
def run(tmp_path):
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    experiment = client.create_experiment("tailer", artifact_location=(tmp_path / "artifacts").as_uri())
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    return client, client.create_run(experiment).info.run_id, str(run_dir)


def test_an_error_of_the_epoch_judge_stops_the_ranks_and_surfaces_as_itself(run, caplog):
    client, run_id, run_dir = run

    def judge(record):
        raise ValueError("the study's database is locked")

    tailer = EpochTailer(client, run_id, run_dir, epochs=3, interval_s=3600, on_record=judge)
    tailer.start(already_logged=0)
    checkpoints.append_epoch(run_dir, _record(1))
    with caplog.at_level(logging.INFO, logger="pipeline"):
        with pytest.raises(ValueError, match="the study's database is locked"):
            tailer.stop()
    assert checkpoints.stop_requested(run_dir)  # the ranks do not train on while nobody judges them
    assert "not logged to MLflow" not in caplog.text
    assert [m.step for m in client.get_metric_history(run_id, "loss")] == [1]  # the record is still logged


def test_a_judge_that_says_stop_stops_after_that_epoch(run):
    client, run_id, run_dir = run
    tailer = EpochTailer(client, run_id, run_dir, epochs=3, interval_s=3600, on_record=lambda r: r["epoch"] == 2)
    tailer.start(already_logged=0)
    for epoch in (1, 2):
        checkpoints.append_epoch(run_dir, _record(epoch))
    assert [r["epoch"] for r in tailer.stop()] == [1, 2]
    assert tailer.stopped_after == 2 and tailer.error is None and checkpoints.stop_requested(run_dir)
