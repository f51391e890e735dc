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

    The version is tagged with its test accuracy and run id. Given ``reference`` (the profile of its
    test-split predictions, ``pipeline.assess.drift``), the reference goes into the model's own MLmodel
    file (its ``metadata``), so it travels with every copy of the version, whatever registry or runtime
    holds it, and every later inference with this version compares its batch against it; it is also a
    run artifact, and its headline figures are version tags.
    """
    import mlflow
    from mlflow import MlflowClient
    from mlflow.models import infer_signature

    from pipeline.assess import drift
    from pipeline.io.tracking import model_location

    extra = {}
    if reference is not None:
        mlflow.log_dict(reference, drift.REFERENCE_ARTIFACT)
        extra["metadata"] = {drift.REFERENCE_KEY: reference}
    example = example_images[:5].astype(np.float32)
    signature = infer_signature(example, model.predict(example, verbose=0))
    info = mlflow.tensorflow.log_model(model, **model_location(), signature=signature, input_example=example,
                                       pip_requirements=serving_requirements(), **extra)
    # Registered in its own call: MLflow 2's ModelInfo (Databricks 15.4 LTS ML) has no registered version.
    version = str(mlflow.register_model(info.model_uri, cfg.registered_model).version)
    client = MlflowClient()
    tags = {"test_accuracy": f"{test_accuracy:.4f}", "run_id": run_id}
    if reference is not None:
        headline = drift.summary(reference)
        tags.update({"reference.rows": str(headline["rows"]),
                     "reference.mean_confidence": f"{headline['mean_confidence']:.4f}"})
    for key, value in tags.items():
        client.set_model_version_tag(cfg.registered_model, version, key, value)
    log.info("test accuracy %.4f; registered %s version %s", test_accuracy, cfg.registered_model, version)
    return version
