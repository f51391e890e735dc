"""Shared by the monitoring and incremental-scoring tests: a tracking server with a champion that has
a monitoring reference."""

import mlflow
import pytest
from mlflow import MlflowClient

from pipeline.assess import drift
from pipeline.config import ModelConfig, PipelineConfig
from tests.mlflow_server import MlflowServer


@pytest.fixture(scope="package")
def monitored(tmp_path_factory, trained_weights, sample_dataset):
    """A tracking server whose model 'mnist-cnn' version 1 holds @champion, registered the way training
    registers (``log_and_register`` with the reference of its test-split predictions)."""
    from pipeline.assess.report import predict_test_split
    from pipeline.io.tracking import setup_experiment
    from pipeline.train.model import build_model
    from pipeline.train.registration import log_and_register

    folder = tmp_path_factory.mktemp("monitor-registry")
    server = MlflowServer(folder / "server").start()
    cfg = PipelineConfig()
    cfg.mlflow.tracking_uri = server.uri
    cfg.mlflow.artifact_location = None
    experiment = setup_experiment(cfg.mlflow)
    model = build_model(ModelConfig())
    model.set_weights(trained_weights)
    images, labels, probs = predict_test_split(model, str(sample_dataset[0]))
    reference = drift.profile(images, probs, labels)
    with mlflow.start_run(experiment_id=experiment) as run:
        version = log_and_register(model, images, cfg.mlflow, run.info.run_id, reference["correct"] / 2000, reference)
    MlflowClient().set_registered_model_alias("mnist-cnn", "champion", version)
    yield cfg.mlflow, reference, folder
    server.stop()
