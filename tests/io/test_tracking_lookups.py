"""Absent or failed: only the tracking store's own "does not exist" means a run, a version or an alias
is gone. A store that answers an error (HTTP 503 from a real proxy in front of a real ``mlflow server``)
stops the caller with that cause, and nothing is replaced, discarded or reported as missing."""

import mlflow
import numpy as np
import pytest
from mlflow import MlflowClient

from pipeline.config import ModelConfig, PipelineConfig
from pipeline.errors import PipelineError, TrainingError
from pipeline.io.tracking import RegistryError, TrackingError, existing_run, model_location, setup_experiment
from pipeline.train import checkpoints

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    from tests.mlflow_server import MlflowServer

    server = MlflowServer(tmp_path_factory.mktemp("server")).start()
    try:
        cfg = PipelineConfig()
        cfg.mlflow.tracking_uri, cfg.mlflow.artifact_location = server.uri, None
        cfg.mlflow.registered_model, cfg.mlflow.http_retries = "lookup-test", 0
        experiment = setup_experiment(cfg.mlflow)
        from pipeline.train.model import build_model

        model = build_model(ModelConfig(conv_filters=[4], dense_units=[8]))
        with mlflow.start_run(experiment_id=experiment) as run:
            example = np.zeros((1, 28, 28, 1), dtype=np.float32)
            mlflow.tensorflow.log_model(model, **model_location(), registered_model_name="lookup-test",
                                        signature=mlflow.models.infer_signature(example, model.predict(example)))
        MlflowClient(server.uri).set_registered_model_alias("lookup-test", "champion", "1")
        yield server, cfg, run.info.run_id
    finally:
        server.stop()


def test_a_run_lookup_tells_absent_from_failed(server):
    from tests.mlflow_server import FaultyProxy

    srv, cfg, run_id = server
    client = MlflowClient(srv.uri)
    assert existing_run(client, run_id).info.run_id == run_id
    assert existing_run(client, "0" * 32) is None  # the store says: no such run
    deleted = client.create_run(client.get_experiment_by_name(cfg.mlflow.experiment).experiment_id).info.run_id
    client.delete_run(deleted)
    assert existing_run(client, deleted) is None
    with FaultyProxy(srv.uri, fail_path="/runs/get") as proxy:
        with pytest.raises(TrackingError, match=rf"could not look up MLflow run {run_id}: .*503"):
            existing_run(MlflowClient(proxy.uri), run_id)
        assert proxy.failed >= 1


def test_resume_keeps_the_checkpoint_when_the_run_lookup_fails(server, tmp_path):
    from pipeline.train.driver import _resume_point
    from tests.mlflow_server import FaultyProxy

    srv, cfg, run_id = server
    run_dir = str(tmp_path / "run")
    saved = checkpoints.RunState(run_key="k", mlflow_run_id=run_id, completed_epoch=3, checkpoint="ckpt-3")
    checkpoints.write_state(run_dir, saved)
    cfg.train.epochs = 5
    with FaultyProxy(srv.uri, fail_path="/runs/get") as proxy:
        with pytest.raises(TrainingError, match=r"could not look up MLflow run .*503.*\nThe checkpoint in .* "
                                                r"\(epoch 3 of 5\) is kept"):
            _resume_point(cfg, MlflowClient(proxy.uri), run_dir, "k")
    assert checkpoints.read_state(run_dir) == saved  # nothing discarded
    state, run = _resume_point(cfg, MlflowClient(srv.uri), run_dir, "k")  # the store answers: resume there
    assert run.info.run_id == run_id and state.completed_epoch == 3
    checkpoints.write_state(run_dir, checkpoints.RunState(run_key="k", mlflow_run_id="0" * 32, completed_epoch=3))
    state, run = _resume_point(cfg, MlflowClient(srv.uri), run_dir, "k")  # the run really is gone: start over
    assert run is None and state.completed_epoch == 0


def test_inference_says_registry_failure_not_no_champion(server):
    from pipeline.infer.batch import resolve_model
    from tests.mlflow_server import FaultyProxy

    srv, cfg, _ = server
    cfg.mlflow.tracking_uri = srv.uri
    assert resolve_model(cfg)[0] == "models:/lookup-test/1"
    cfg.promote.champion_alias = "nobody"
    with pytest.raises(PipelineError, match=r"has no alias 'nobody' .*promote a version first"):
        resolve_model(cfg)
    cfg.promote.champion_alias, cfg.infer.model_version = "champion", "7"
    with pytest.raises(PipelineError, match=r"has no version 7 .*promote a version first"):
        resolve_model(cfg)
    cfg.infer.model_version = None
    with FaultyProxy(srv.uri, fail_path="/registered-models/alias") as proxy:
        cfg.mlflow.tracking_uri = proxy.uri
        with pytest.raises(RegistryError, match=r"could not look up @champion of lookup-test: .*503") as err:
            resolve_model(cfg)
        assert "promote a version first" not in str(err.value)
    with FaultyProxy(srv.uri, fail_path="/model-versions/get") as proxy:
        cfg.mlflow.tracking_uri, cfg.infer.model_version = proxy.uri, "1"
        with pytest.raises(RegistryError, match=r"could not look up version 1 of lookup-test: .*503"):
            resolve_model(cfg)
    cfg.infer.model_version = None
