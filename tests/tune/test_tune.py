"""`tune` and `lr-find` for real: Optuna on the driver, every trial a 2-rank Horovod training on Spark
local[2] over Gloo, MLflow's SQLite store, the study in SQLite. Traffic on 127.0.0.1 only."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import mlflow
import numpy as np
import optuna
import pytest
import yaml
from mlflow import MlflowClient
from optuna.trial import TrialState

from pipeline.config import load_config
from pipeline.train import checkpoints
from pipeline.train.driver import train
from pipeline.train.lr_find import lr_find
from pipeline.tune.study import tune
from tests.helpers import read_split, stop_process_group, train_config

pytestmark = pytest.mark.slow

BIN = Path(sys.executable).parent / "mnist-pipeline"
GOOD, HOPELESS = 3e-3, 1e-6  # learning rates: one learns within an epoch, the other does not move


def _tune_config(tmp_path, root, **tune_settings):
    cfg = train_config(tmp_path, root, f"sqlite:///{tmp_path / 'mlflow' / 'mlflow.db'}")
    cfg.tune.output = str(tmp_path / "tune")
    cfg.tune.epochs = 2
    for key, value in tune_settings.items():
        setattr(cfg.tune, key, value)
    return cfg


def _trials(cfg):
    from pipeline.tune.study import study_storage

    return optuna.load_study(study_name=cfg.tune.study, storage=study_storage(cfg)).get_trials()


def test_a_study_prunes_stops_ranks_logs_nested_runs_and_writes_settings_that_train(spark, sample_dataset, tmp_path):
    root, _ = sample_dataset
    cfg = _tune_config(tmp_path, root, study="prune", trials=4, sampler="random", pruner="threshold",
                       prune_threshold=0.5,
                       space={"optimizer.learning_rate": {"type": "categorical", "choices": [GOOD, HOPELESS]}})
    cfg.tune.epochs = 3  # a pruned trial's stop reaches the ranks within seconds: before the last epoch ends
    result = tune(spark, cfg, train)

    trials = _trials(cfg)
    assert len(trials) == 4
    # The pruner is set to prune below 0.5 val accuracy: the hopeless rate is pruned after its first
    # epoch, the good one completes; that holds trial by trial.
    for trial in trials:
        expected = TrialState.PRUNED if trial.params["optimizer.learning_rate"] == HOPELESS else TrialState.COMPLETE
        assert trial.state == expected, trial
    assert {t.state for t in trials} == {TrialState.PRUNED, TrialState.COMPLETE}

    client = MlflowClient(cfg.mlflow.tracking_uri)
    parent = client.get_run(result.parent_run_id)
    nested = client.search_runs([result.experiment_id], f"tags.mlflow.parentRunId = '{result.parent_run_id}'")
    assert len(nested) == 4
    # the study's summary agrees with what the tracking store recorded of each trial's run
    statuses = [run.info.status for run in nested]
    assert (result.complete, result.pruned, result.failed) == (statuses.count("FINISHED"), statuses.count("KILLED"), 0)
    assert result.complete + result.pruned == 4 and result.complete >= 1 and result.pruned >= 1
    for trial in trials:
        run = client.get_run(trial.user_attrs["mlflow_run_id"])
        assert run.data.tags["mlflow.parentRunId"] == result.parent_run_id
        assert run.data.tags["tune.trial"] == str(trial.number)
        assert float(run.data.params["optimizer.learning_rate"]) == trial.params["optimizer.learning_rate"]
        steps = [m.step for m in client.get_metric_history(run.info.run_id, "val_accuracy")]
        if trial.state == TrialState.PRUNED:
            # pruned after epoch 1, stopped in a later epoch (a short epoch 2 may end before the request
            # reaches the ranks): the cut-short epoch is not recorded, the run is KILLED, nothing registered
            assert run.info.status == "KILLED"
            assert steps[0] == 1 and steps == list(range(1, len(steps) + 1)) and len(steps) < 3
            assert run.data.tags["stopped_after_epoch"] == "1"
        else:
            assert run.info.status == "FINISHED"
            assert steps == [1, 2, 3]
            assert trial.value == pytest.approx(run.data.metrics["val_accuracy"])
    assert not list((tmp_path / "checkpoints").glob("*/state.json"))  # no run folder left behind
    assert not client.search_model_versions(f"name='{cfg.mlflow.registered_model}'")

    # The parent: best settings and value, the trials table, the plots.
    assert parent.data.tags["best.optimizer.learning_rate"] == str(GOOD)
    assert parent.data.metrics["best_val_accuracy"] == pytest.approx(result.best_value)
    artifacts = {a.path for a in client.list_artifacts(result.parent_run_id, "tune")}
    assert {"tune/trials.csv", "tune/best.yaml", "tune/optimization_history.png",
            "tune/parallel_coordinate.png"} <= artifacts
    table = Path(client.download_artifacts(result.parent_run_id, "tune/trials.csv", str(tmp_path))).read_text()
    assert len(table.strip().splitlines()) == 1 + 4

    # The best settings as a config file that `train -c` accepts.
    best = Path(result.best_config)
    assert yaml.safe_load(best.read_text()) == {"optimizer": {"learning_rate": GOOD}}
    trained_cfg = load_config([best])
    assert trained_cfg.optimizer.learning_rate == GOOD
    follow = train_config(tmp_path / "follow", root, cfg.mlflow.tracking_uri, epochs=1)
    follow.optimizer = trained_cfg.optimizer
    trained = train(spark, follow)
    assert trained.model_version == "1"
    assert float(client.get_run(trained.run_id).data.params["optimizer.learning_rate"]) == GOOD


def test_a_study_on_tf_distribute_prunes_and_completes_trials(spark, sample_dataset, tmp_path):
    """The same study on TensorFlow's own workers: the pruner stops a hopeless trial's workers after its
    first epoch, a good one runs to the end, each trial a nested run trained by tf_distribute."""
    root, _ = sample_dataset
    cfg = _tune_config(tmp_path, root, study="tf", trials=3, sampler="random", pruner="threshold", prune_threshold=0.5,
                       space={"optimizer.learning_rate": {"type": "categorical", "choices": [GOOD, HOPELESS]}})
    cfg.train.backend = "tf_distribute"
    result = tune(spark, cfg, train)

    trials = _trials(cfg)
    assert {t.params["optimizer.learning_rate"] for t in trials} == {GOOD, HOPELESS}
    client = MlflowClient(cfg.mlflow.tracking_uri)
    for trial in trials:
        expected = TrialState.PRUNED if trial.params["optimizer.learning_rate"] == HOPELESS else TrialState.COMPLETE
        assert trial.state == expected, trial
        run = client.get_run(trial.user_attrs["mlflow_run_id"])
        assert run.data.params["backend"] == "tf_distribute"
        assert run.info.status == ("KILLED" if expected == TrialState.PRUNED else "FINISHED")
    assert client.get_run(result.parent_run_id).data.tags["best.optimizer.learning_rate"] == str(GOOD)
    assert not list((tmp_path / "checkpoints").glob("*/state.json"))


def _wait_for(predicate, timeout_s, what):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}")


def test_a_killed_study_resumes_its_interrupted_trial_and_finishes(sample_dataset, tmp_path):
    root, _ = sample_dataset
    conf = tmp_path / "tune.yaml"
    conf.write_text(yaml.safe_dump({
        "spark": {"master": "local[2]", "progress_interval_s": 0},
        "data": {"root": str(root)},
        "train": {"num_proc": 2, "epochs": 1, "steps_per_epoch": 20, "checkpoint_dir": str(tmp_path / "ckpt")},
        "mlflow": {"tracking_uri": f"sqlite:///{tmp_path / 'mlflow' / 'mlflow.db'}",
                   "artifact_location": str(tmp_path / "artifacts"), "experiment": "tests"},
        "tune": {"study": "resume", "trials": 2, "epochs": 3, "sampler": "random", "pruner": "none",
                 "output": str(tmp_path / "tune"), "register_best": True,
                 "space": {"optimizer.learning_rate": {"type": "float", "low": 1e-3, "high": 3e-3, "log": True}}},
        "log": {"dir": str(tmp_path / "logs")},
    }))
    cfg = load_config([conf])
    env = dict(os.environ, SPARK_LOCAL_IP="127.0.0.1")
    command = [str(BIN), "tune", "-c", str(conf)]
    first = subprocess.Popen(command, cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                             start_new_session=True)
    try:
        def one_epoch_recorded():
            return any(checkpoints.read_epochs(str(d)) for d in (tmp_path / "ckpt").glob("*") if d.is_dir())

        _wait_for(one_epoch_recorded, 300, "the first trial's first epoch")
        os.killpg(first.pid, signal.SIGKILL)  # the whole study: driver, Spark, ranks
        first.wait(timeout=30)
    finally:
        stop_process_group(first)
    interrupted = _trials(cfg)
    assert [t.state for t in interrupted] == [TrialState.RUNNING]
    lr = interrupted[0].params["optimizer.learning_rate"]

    second = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600,
                            start_new_session=True)
    assert second.returncode == 0, second.stderr[-3000:]
    assert "trial 0 was interrupted" in second.stderr
    trials = _trials(cfg)
    assert [t.state for t in trials] == [TrialState.FAIL, TrialState.COMPLETE, TrialState.COMPLETE]
    assert trials[1].user_attrs["retry_of"] == 0
    assert trials[1].params["optimizer.learning_rate"] == lr  # the interrupted settings ran again first ...
    client = MlflowClient(cfg.mlflow.tracking_uri)
    retried = client.get_run(trials[1].user_attrs["mlflow_run_id"])
    assert retried.data.tags["resumed_from_epoch"] == "1"  # ... from the checkpoint the killed run left
    assert sorted(m.step for m in client.get_metric_history(retried.info.run_id, "loss")) == [1, 2, 3]
    assert "tune: study resume: 2 complete, 0 pruned, 1 failed" in second.stdout

    # register_best: the best settings trained with train.epochs and registered
    versions = client.search_model_versions(f"name='{cfg.mlflow.registered_model}'")
    assert len(versions) == 1
    best_run = client.get_run(versions[0].run_id)
    assert best_run.data.tags["tune.best_trial"] == str(max(trials[1:], key=lambda t: t.value).number)
    assert best_run.data.tags["mlflow.parentRunId"] == optuna.load_study(
        study_name="resume", storage=f"sqlite:///{tmp_path / 'mlflow' / 'optuna.db'}").user_attrs["mlflow_parent_run_id"]

    # The augmentation layers are in the logged model but inactive when it scores: two calls agree.
    mlflow.set_tracking_uri(cfg.mlflow.tracking_uri)
    model = mlflow.pyfunc.load_model(f"models:/{cfg.mlflow.registered_model}/1")
    images = np.stack([np.frombuffer(r[1], dtype=np.uint8).reshape(28, 28, 1)
                       for r in read_split(root, "test")[:64]]).astype(np.float32)
    first_call, second_call = np.asarray(model.predict(images)), np.asarray(model.predict(images))
    np.testing.assert_array_equal(first_call, second_call)


@pytest.mark.parametrize("backend", ["horovod", "tf_distribute"])
def test_lr_find_sweeps_stops_on_divergence_and_logs_a_plot(spark, sample_dataset, tmp_path, backend):
    root, _ = sample_dataset
    cfg = train_config(tmp_path, root, f"sqlite:///{tmp_path / 'mlflow.db'}", backend=backend)
    cfg.lr_find.steps = 40
    cfg.lr_find.max_learning_rate = 10.0  # Adam at rate 10 diverges: the sweep must stop before its end
    # Past a rate of about 0.2 the loss jumps, then may settle near chance (dead units) instead of growing
    # on: stop at half again the lowest smoothed loss, which every run here crossed
    cfg.lr_find.diverge_factor = 1.5
    sweep = lr_find(spark, cfg)

    assert sweep.ranks == 2
    assert sweep.rates[0] == pytest.approx(cfg.lr_find.min_learning_rate)
    assert sweep.diverged_at is not None and sweep.diverged_at < 40
    assert len(sweep.rates) == len(sweep.losses) == sweep.diverged_at
    assert sweep.rates[0] <= sweep.suggested <= sweep.rates[-1]
    assert sweep.suggested_setting == pytest.approx(sweep.suggested / 2)  # scale_by_ranks: the one-rank rate
    client = MlflowClient(cfg.mlflow.tracking_uri)
    run = client.search_runs([client.get_experiment_by_name("tests").experiment_id], "tags.`pipeline.kind` = 'lr-find'")[0]
    assert "lr_find.png" in {a.path for a in client.list_artifacts(run.info.run_id)}
    assert len(client.get_metric_history(run.info.run_id, "lr_find_loss")) == sweep.diverged_at
    assert float(run.data.tags["suggested_learning_rate"]) == pytest.approx(sweep.suggested_setting, rel=1e-2)
    assert run.data.tags["backend"] == backend
    assert not list((tmp_path / "checkpoints").glob("lr-find-*"))
