"""MLflow on the driver: tracking URI and experiment set-up, and the reachability check."""

from __future__ import annotations

import os
import urllib.error
import urllib.request
from pathlib import Path

from pipeline.config import MlflowConfig
from pipeline.errors import PipelineError, PreflightError


def check_tracking(cfg: MlflowConfig, timeout_s: float = 5.0) -> None:
    """Fails in seconds, with what to change, when the tracking store cannot be reached."""
    uri = cfg.tracking_uri
    if uri.startswith(("http://", "https://")):
        try:
            with urllib.request.urlopen(uri.rstrip("/") + "/health", timeout=timeout_s) as response:
                if response.status != 200:
                    raise OSError(f"HTTP {response.status}")
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise PreflightError(
                f"the MLflow tracking server at {uri} does not answer ({reason}); start it "
                "(e.g. `mlflow server --host 127.0.0.1 --port 5000`) or point mlflow.tracking_uri elsewhere"
            ) from None
    elif uri.startswith("sqlite:///"):
        folder = Path(uri.removeprefix("sqlite:///")).parent
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise PreflightError(f"mlflow.tracking_uri {uri}: cannot create {folder} ({exc})") from None
    elif uri == "databricks" or uri.startswith("databricks://"):
        if not (os.environ.get("DATABRICKS_HOST") or os.environ.get("DATABRICKS_RUNTIME_VERSION")
                or Path("~/.databrickscfg").expanduser().exists()):
            raise PreflightError(
                f"mlflow.tracking_uri is {uri} but no Databricks credentials were found; set DATABRICKS_HOST and "
                "DATABRICKS_TOKEN, or run on Databricks"
            )


def set_tracking(cfg: MlflowConfig) -> None:
    """Points MLflow at the configured tracking store and registry (nothing is created)."""
    import mlflow

    # MLflow's client retries with exponential back-off (minutes when a server is down); bound it.
    os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] = str(cfg.http_retries)
    os.environ["MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR"] = "1"
    os.environ["MLFLOW_HTTP_REQUEST_TIMEOUT"] = str(cfg.http_timeout_s)
    mlflow.set_tracking_uri(cfg.tracking_uri)
    if cfg.registry_uri:
        mlflow.set_registry_uri(cfg.registry_uri)


def setup_experiment(cfg: MlflowConfig) -> str:
    """Points MLflow at the configured store and returns the experiment id (created if missing)."""
    import mlflow

    set_tracking(cfg)
    experiment = mlflow.get_experiment_by_name(cfg.experiment)
    if experiment is not None:
        if experiment.tags.get(EXPERIMENT_KIND_TAG) is None:
            mark_model_training(experiment.experiment_id)
        return experiment.experiment_id
    location = None
    if cfg.artifact_location:
        location = cfg.artifact_location
        if "://" not in location and not location.startswith("dbfs:"):
            location = Path(location).resolve().as_uri()
    experiment_id = mlflow.create_experiment(cfg.experiment, artifact_location=location)
    mark_model_training(experiment_id)
    return experiment_id


# MLflow 3's UI opens an experiment in its GenAI view (traces, prompts) unless the experiment says it is
# model development; older versions keep the tag as a plain experiment tag. A user's own choice stays.
EXPERIMENT_KIND_TAG = "mlflow.experimentKind"
MODEL_TRAINING_KIND = "custom_model_development"


def mark_model_training(experiment_id: str) -> None:
    from mlflow import MlflowClient

    MlflowClient().set_experiment_tag(experiment_id, EXPERIMENT_KIND_TAG, MODEL_TRAINING_KIND)


def log_dataset(path: str, name: str, digest: str, rows: int, context: str, **tags: str) -> None:
    """Logs ``path`` as a dataset input of the active run (the run page's Datasets section): its source,
    ``name``, ``digest`` and row count, in ``context`` (training, validation, test, inference)."""
    import warnings

    import mlflow
    from mlflow.data.meta_dataset import MetaDataset

    source = _dataset_source(path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        dataset = MetaDataset(source=source, name=name, digest=digest[:36])
    mlflow.log_input(dataset, context=context, tags={"rows": str(rows), **{k: str(v) for k, v in tags.items()}})


def _dataset_source(path: str):
    """MLflow's source for ``path`` (local, HDFS, S3, ...); a URI MLflow has no resolver for (dbfs:, gs:,
    abfss:) is kept as a plain URI source."""
    import warnings

    from mlflow.data.http_dataset_source import HTTPDatasetSource
    from mlflow.exceptions import MlflowException

    try:
        from mlflow.data.dataset_source_registry import resolve_dataset_source

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return resolve_dataset_source(path)
    except MlflowException:
        return HTTPDatasetSource(url=path)


def model_location(name: str = "model") -> dict[str, str]:
    """The keyword that names a logged model: ``name`` in MLflow 3, ``artifact_path`` in MLflow 2 (which
    Databricks Runtime 15.4 LTS ML ships)."""
    import inspect

    import mlflow.tensorflow

    return {"name": name} if "name" in inspect.signature(mlflow.tensorflow.log_model).parameters \
        else {"artifact_path": name}


class TrackingError(PipelineError):
    """The tracking store could not be asked (server error, timeout, permission): not the same as "absent"."""


class RegistryError(TrackingError):
    """The model registry could not be asked (server error, timeout, permission): not the same as "absent"."""


def is_not_found(exc: BaseException) -> bool:
    """True only when MLflow answered that the thing asked for does not exist (RESOURCE_DOES_NOT_EXIST /
    NOT_FOUND, from every store); a server error, a timeout or a permission error is not "absent"."""
    return getattr(exc, "error_code", "") in ("RESOURCE_DOES_NOT_EXIST", "NOT_FOUND")


def _failure(what: str, failure: BaseException, error=TrackingError) -> PipelineError:
    lines = str(failure).strip().splitlines()
    return error(f"could not look up {what}: {lines[0] if lines else type(failure).__name__}")


def existing_run(client, run_id: str):
    """The MLflow run ``run_id``, or None only when the store says it does not exist (or it was deleted).

    Raises:
        TrackingError: any other failure of the lookup (the caller must not take it as "gone").
    """
    try:
        run = client.get_run(run_id)
    except Exception as exc:
        if is_not_found(exc):
            return None
        raise _failure(f"MLflow run {run_id}", exc) from exc
    return None if run.info.lifecycle_stage == "deleted" else run


def model_version(client, name: str, version: str):
    """Version ``version`` of registered model ``name``, or None only when the registry says it does not exist.

    Raises:
        RegistryError: any other failure of the lookup.
    """
    try:
        return client.get_model_version(name, version)
    except Exception as exc:
        if is_not_found(exc):
            return None
        raise _failure(f"version {version} of {name}", exc, RegistryError) from exc


def alias_version(client, name: str, alias: str) -> str | None:
    """The version of ``name`` holding ``alias``; None only when the registry says the alias does not exist.

    Raises:
        RegistryError: any other failure of the lookup.
    """
    try:
        return str(client.get_model_version_by_alias(name, alias).version)
    except Exception as exc:
        if _is_missing_alias(exc, alias):
            return None
        raise _failure(f"@{alias} of {name}", exc, RegistryError) from exc


def _is_missing_alias(exc, alias: str) -> bool:
    # The registry says "Registered model alias champion not found." (INVALID_PARAMETER_VALUE, OSS store)
    # or RESOURCE_DOES_NOT_EXIST / NOT_FOUND (REST stores, Unity Catalog).
    if is_not_found(exc):
        return True
    code, text = getattr(exc, "error_code", ""), str(exc).lower()
    return code == "INVALID_PARAMETER_VALUE" and f"alias {alias.lower()} not found" in text
