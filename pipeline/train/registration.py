"""Logging the trained model to MLflow with its signature, and registering it."""

from __future__ import annotations

import logging

import numpy as np

from pipeline.config import MlflowConfig

log = logging.getLogger(__name__)

# What loading the model imports (what MLflow's own inference finds for this model, measured): named
# here, pinned to the installed versions, because MLflow's inference loads the model again in a
# subprocess to find them, which took 7 of the 8 seconds of logging the model.
SERVING_DISTRIBUTIONS = ("tensorflow", "tf-keras", "numpy", "scipy", "cloudpickle")


def serving_requirements() -> list[str]:
    """``name==version`` of each installed distribution of ``SERVING_DISTRIBUTIONS`` (MLflow adds itself)."""
    from importlib.metadata import PackageNotFoundError, version

    pins = []
    for dist in SERVING_DISTRIBUTIONS:
        try:
            pins.append(f"{dist}=={version(dist)}")
        except PackageNotFoundError:
            continue
    return pins


def log_and_register(model, example_images: np.ndarray, cfg: MlflowConfig, run_id: str, test_accuracy: float,
                     reference: dict | None = None) -> str:
    """Logs ``model`` to the active run and registers it as ``cfg.registered_model``; returns the version.

    The version is tagged with its test accuracy, its run id and, given ``reference`` (the profile of
    its test-split predictions), that reference: every later inference with this version compares its
    batch against it, wherever it runs (the tag travels with the version; the artifact stays with the run).
    """
    import json

    import mlflow
    from mlflow import MlflowClient
    from mlflow.models import infer_signature

    from pipeline.assess.drift import REFERENCE_ARTIFACT, REFERENCE_TAG
    from pipeline.io.tracking import model_location

    if reference is not None:
        mlflow.log_dict(reference, REFERENCE_ARTIFACT)
    example = example_images[:5].astype(np.float32)
    signature = infer_signature(example, model.predict(example, verbose=0))
    info = mlflow.tensorflow.log_model(model, **model_location(), signature=signature, input_example=example,
                                       pip_requirements=serving_requirements())
    # Registered in its own call: MLflow 2's ModelInfo (Databricks 15.4 LTS ML) has no registered version.
    version = str(mlflow.register_model(info.model_uri, cfg.registered_model).version)
    client = MlflowClient()
    client.set_model_version_tag(cfg.registered_model, version, "test_accuracy", f"{test_accuracy:.4f}")
    client.set_model_version_tag(cfg.registered_model, version, "run_id", run_id)
    if reference is not None:
        client.set_model_version_tag(cfg.registered_model, version, REFERENCE_TAG,
                                     json.dumps(reference, separators=(",", ":")))
    log.info("test accuracy %.4f; registered %s version %s", test_accuracy, cfg.registered_model, version)
    return version
