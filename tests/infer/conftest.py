"""Shared by the monitoring and incremental-scoring tests: a tracking server with a champion that has
a monitoring reference."""

import pytest

from pipeline.config import PipelineConfig
from tests.helpers import register_champion
from tests.mlflow_server import MlflowServer


@pytest.fixture(scope="package")
def monitored(tmp_path_factory, trained_weights, sample_dataset):
    """A tracking server whose model 'mnist-cnn' version 1 holds @champion, registered the way training
    registers (``log_and_register`` with the reference of its test-split predictions)."""
    folder = tmp_path_factory.mktemp("monitor-registry")
    server = MlflowServer(folder / "server").start()
    cfg = PipelineConfig()
    cfg.mlflow.tracking_uri = server.uri
    cfg.mlflow.artifact_location = None
    reference = register_champion(cfg.mlflow, trained_weights, sample_dataset[0])
    yield cfg.mlflow, reference, folder
    server.stop()

