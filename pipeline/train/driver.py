"""Distributed training, the driver's side: preflight, launch Horovod on Spark, track in MLflow.

Only the driver talks to MLflow. Ranks (``pipeline.train.worker``) write per-epoch records and
checkpoints to the run folder (``pipeline.train.checkpoints``); the driver tails the records while
training runs (``pipeline.train.tailer``), then evaluates the final model on the test split
(``pipeline.assess.report``) and registers it (``pipeline.train.registration``).
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import threading
import time
from dataclasses import dataclass

from pyspark.sql import SparkSession

from pipeline.config import PipelineConfig, TrainConfig
from pipeline.errors import TrainingError
from pipeline.io import storage
from pipeline.io.dataset import SPLITS
from pipeline.io.fs import qualify
from pipeline.io.tracking import setup_experiment
from pipeline.train import checkpoints
from pipeline.train.devices import core_ranges
from pipeline.train.failures import (
    describe_failure,
    describe_tf_failure,
    first_line,
    is_tracking_failure,
    lost_to_signal,
    stalled_tf_workers,
)
from pipeline.train.preflight import preflight
from pipeline.train.tailer import EpochTailer, log_missing_epochs
from pipeline.train.worker import RankJob, train_on_rank

log = logging.getLogger(__name__)
# Outside the "pipeline" logger tree, so the console (pipeline.io.console) shows none of it: log file only.
_log_file_only = logging.getLogger("mnist_pipeline.details")


def _import_evaluation_modules() -> None:
    """Imports what evaluating and logging the model needs (TensorFlow, Keras, MLflow's TensorFlow flavour,
    plotting): about 3 s of start-up that otherwise falls between the ranks' end and the evaluation."""
    try:
        import mlflow.tensorflow  # noqa: F401

        import pipeline.assess.report  # noqa: F401
        import pipeline.train.model  # noqa: F401
    except Exception:  # the main thread imports them again and reports what is wrong
        log.debug("importing the evaluation modules ahead failed", exc_info=True)


def _prepare_evaluation() -> None:
    """Starts ``_import_evaluation_modules`` in the background (once per process) while the ranks train.

    Called when the first epoch record lands, not before: Horovod forks the driver while it launches
    the ranks (its check that Gloo is built), and a fork taken while another thread is importing
    TensorFlow leaves the child waiting forever on that import's lock."""
    global _evaluation_imports
    with _evaluation_imports_lock:
        if _evaluation_imports is None:
            _evaluation_imports = threading.Thread(target=_import_evaluation_modules, name="import-for-evaluation",
                                                   daemon=True)
            _evaluation_imports.start()


_evaluation_imports: threading.Thread | None = None
_evaluation_imports_lock = threading.Lock()


def _finish_evaluation_imports() -> None:
    """Waits for the background imports before this thread imports the same modules: two threads
    importing TensorFlow and tf_keras at once can each hold a module lock the other needs, and Python
    then hands one of them a half-initialised ``tensorflow`` (``No module named 'tensorflow.compat'``)."""
    with _evaluation_imports_lock:
        thread = _evaluation_imports
    if thread is not None:
        thread.join()


@dataclass
class TrainResult:
    run_id: str
    model_name: str
    model_version: str | None  # None: not registered (a tuning trial)
    test_accuracy: float | None  # None: not evaluated (a tuning trial)
    epochs: list[dict]
    start_epoch: int
    shard_ids: dict[int, list[str]] | None = None
    start_weights_digest: str | None = None
    experiment_id: str | None = None
    fit: str | None = None  # over/under-fitting diagnosis of the epoch records
    stopped_after_epoch: int | None = None  # the caller's on_epoch stopped the ranks after this epoch
    # the cores each rank was bound to (a rank's None: not bound); None when this call trained nothing
    rank_cores: dict[int, list[int] | None] | None = None
    backend: str | None = None  # horovod | tf_distribute: what trained (train.backend resolved)


def _run_identity(cfg: PipelineConfig, num_proc: int, manifest: dict, backend: str = "horovod") -> dict:
    t = cfg.train
    identity = {
        "model": dataclasses.asdict(cfg.model),
        "optimizer": dataclasses.asdict(cfg.optimizer),
        "train": {k: getattr(t, k) for k in ("batch_size", "epochs", "steps_per_epoch", "validation_steps", "seed",
                                             "shuffle_buffer", "cache_in_memory", "cache_max_mb",
                                             "early_stopping_patience")},
        "num_proc": num_proc,
        "dataset": {"root": qualify(cfg.data.root), "created_at": manifest["created_at"]},
    }
    if backend != "horovod":  # a checkpoint holds the optimizer as its backend built it
        identity["backend"] = backend
    return identity


def _package_versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for name in ("pyspark", "tensorflow", "tf-keras", "horovod", "petastorm", "pyarrow", "mlflow", "mnist-pipeline"):
        try:
            out[f"version.{name}"] = version(name)
        except PackageNotFoundError:
            out[f"version.{name}"] = "not installed"
    return out


def train(spark: SparkSession, cfg: PipelineConfig, *, on_epoch=None, register: bool = True,
          tags: dict[str, str] | None = None) -> TrainResult:
    """Trains with Horovod on Spark and registers the model. Resumes an unfinished identical run.

    Args:
        on_epoch: called with each epoch record while the ranks train; returning True stops every rank
            together within a few batches (the run ends KILLED, nothing is registered). Tuning uses it to prune.
        register: False logs the run's params and epoch metrics only: no test evaluation, no model.
        tags: set on the MLflow run. The run is nested under the active run when there is one.

    Raises:
        PreflightError: dataset, cluster or tracking store not ready (before any rank starts).
        TrainingError: a rank failed, or the tracking server went away; the checkpoints are kept.
    """
    import mlflow
    from mlflow import MlflowClient

    from pipeline.train.backends import resolve_backend

    backend = resolve_backend(cfg.train.backend)
    pre = preflight(spark, cfg)
    n, manifest = pre.num_proc, pre.manifest
    train_rows, val_rows = manifest["splits"]["train"]["rows"], manifest["splits"]["val"]["rows"]
    batch = cfg.train.batch_size
    # Horovod: every rank runs the same number of steps, however uneven the shards, so allreduce never waits.
    steps_per_epoch = cfg.train.steps_per_epoch or max(1, math.ceil(train_rows / (batch * n)))
    val_steps = cfg.train.validation_steps or max(1, math.ceil(val_rows / (batch * n)))
    in_memory, shard_mb = shards_in_memory(cfg.train, train_rows, val_rows, n, steps_per_epoch)

    key = checkpoints.run_key(_run_identity(cfg, n, manifest, backend))
    run_dir = f"{qualify(cfg.train.checkpoint_dir).rstrip('/')}/{key}"
    experiment_id = setup_experiment(cfg.mlflow)
    client = MlflowClient()
    state, resume_run = _resume_point(cfg, client, run_dir, key)
    start_epoch = state.completed_epoch
    trained_already = finished_training(state)

    run_name = cfg.mlflow.run_name or (f"train-{_dataset_name(cfg)}-{backend}-{n}ranks-{cfg.train.epochs}ep")
    run = mlflow.start_run(run_id=resume_run.info.run_id if resume_run else None, experiment_id=experiment_id,
                           run_name=None if resume_run else run_name,
                           nested=mlflow.active_run() is not None, log_system_metrics=True)
    run_id = run.info.run_id
    stopped_after = None
    try:
        if tags:
            mlflow.set_tags(tags)
        state.mlflow_run_id = run_id
        checkpoints.write_state(run_dir, state)
        if resume_run is None:
            _log_run_params(cfg, pre, steps_per_epoch, key, in_memory, backend)
            _log_datasets(cfg, manifest)
        elif trained_already:
            log.info("run %s finished training earlier but was not logged; logging it now (no retraining)", run_id)
        else:
            log.info("resuming run %s after epoch %d of %d (checkpoint %s/%s)", run_id, start_epoch,
                     cfg.train.epochs, run_dir, state.checkpoint)
        mlflow.set_tag("resumed_from_epoch", str(start_epoch))

        if trained_already:
            weights = checkpoints.read_weights(run_dir, state.extra["final_weights"])
            epochs = checkpoints.read_epochs(run_dir)
            rank0 = {"start_epoch": start_epoch, "start_weights_digest": checkpoints.weights_digest(weights)}
            results, wall = [rank0], 0.0
            rank_cores, cores_tag = None, state.extra.get("rank_cores")
        else:
            job = RankJob(model=cfg.model, optimizer=cfg.optimizer, train=cfg.train,
                          dataset_root=qualify(cfg.data.root), run_dir=run_dir, ranks=n,
                          steps_per_epoch=steps_per_epoch, val_steps=val_steps,
                          threads_per_rank=pre.threads_per_rank, in_memory=in_memory, start_epoch=start_epoch,
                          checkpoint=state.checkpoint if start_epoch else None, stoppable=on_epoch is not None)
            log.info("training (%s): %d ranks x %d threads, %d steps/epoch of %d per rank, epochs %d-%d, shards %s "
                     "(%.0f MB a rank), run dir %s", backend, n, pre.threads_per_rank, steps_per_epoch, batch, start_epoch + 1,
                     cfg.train.epochs, "in memory" if in_memory else "streamed", shard_mb, run_dir)
            def on_record(record) -> bool:
                if register:
                    _prepare_evaluation()
                return bool(on_epoch is not None and on_epoch(record))

            results, epochs, wall, stopped_after = _run_ranks(spark, cfg, job, client, run_id, state, on_record,
                                                              backend)
            log.info("ranks finished: %.1f s of training, %d epoch records", wall, len(epochs))
            rank_cores = {r["rank"]: r.get("cores") for r in results if r}
            cores_tag = describe_rank_cores(rank_cores)
            log.info("ranks' cores (train.bind_cores=%s): %s", cfg.train.bind_cores, cores_tag)
            rank0 = next(r for r in results if r and r["rank"] == 0)
            weights = rank0["weights"]
            if register and stopped_after is None:
                # Keep the result before anything else can fail: a re-run logs it instead of training again.
                state = checkpoints.read_state(run_dir) or state
                state.extra["final_weights"] = checkpoints.write_weights(run_dir, weights)
                state.extra["rank_cores"] = cores_tag
                checkpoints.write_state(run_dir, state)
        if cores_tag:
            mlflow.set_tag("horovod.rank_cores", cores_tag)
        log_missing_epochs(client, run_id, epochs, run_dir)

        _finish_evaluation_imports()
        if stopped_after is not None or not register:
            result = _unregistered_result(cfg, run_id, epochs, stopped_after)
        else:
            from pipeline.train.model import build_model

            model = build_model(cfg.model)
            model.set_weights(weights)
            result = _evaluate_and_register(cfg, model, run_id, epochs, wall)
        result.start_epoch = rank0["start_epoch"]
        result.start_weights_digest = rank0["start_weights_digest"]
        result.experiment_id = experiment_id
        if cfg.train.report_shards:
            result.shard_ids = {r["rank"]: r["shard_ids"] for r in results}
        result.rank_cores = rank_cores
        result.backend = backend
        mlflow.end_run("KILLED" if stopped_after is not None else "FINISHED")
    except BaseException as exc:
        try:
            mlflow.end_run("FAILED")
        except Exception:  # the tracking server may be the thing that failed
            log.warning("could not mark MLflow run %s as FAILED", run_id)
        if isinstance(exc, TrainingError) or not is_tracking_failure(exc, cfg.mlflow.tracking_uri):
            raise
        raise _tracking_outage(exc, cfg, run_dir) from exc
    storage.delete(run_dir)  # the model is registered (or the run was stopped); a later identical run starts afresh
    return result


def _describe(cfg: PipelineConfig, run_id: str, version: str, accuracy: float, fit: str, epochs: list[dict]) -> None:
    """The run's and the model version's description: what was trained, how well, the fit verdict
    (evaluation adds its promotion decision)."""
    from mlflow import MlflowClient

    last = epochs[-1] if epochs else {}
    val = f", val accuracy {last['val_accuracy']:.4f}" if "val_accuracy" in last else ""
    text = (f"{cfg.model.conv_filters} conv / {cfg.model.dense_units} dense CNN, {cfg.optimizer.name} at "
            f"{cfg.optimizer.learning_rate:g}, {len(epochs)} epochs on {_dataset_name(cfg)}{val}; "
            f"**test accuracy {accuracy:.4f}**; fit: {fit}. Registered as {cfg.mlflow.registered_model} "
            f"version {version}.")
    client = MlflowClient()
    client.set_tag(run_id, "mlflow.note.content", text)
    client.update_model_version(cfg.mlflow.registered_model, version, description=text)


def describe_rank_cores(rank_cores: dict[int, list[int] | None]) -> str:
    """The run's ``horovod.rank_cores`` tag: ``rank 0: 0-3; rank 1: 4-7``, or ``not bound``."""
    if all(cores is None for cores in rank_cores.values()):
        return "not bound"
    return "; ".join(f"rank {r}: {core_ranges(cores) if cores else 'not bound'}"
                     for r, cores in sorted(rank_cores.items()))


def _unregistered_result(cfg: PipelineConfig, run_id: str, epochs: list[dict], stopped_after: int | None):
    import mlflow

    from pipeline.assess.fit import diagnose

    fit = diagnose(epochs) if epochs else None
    if fit:
        mlflow.set_tag("fit_diagnosis", fit)
    if stopped_after is not None:
        mlflow.set_tag("stopped_after_epoch", str(stopped_after))
    return TrainResult(run_id=run_id, model_name=cfg.mlflow.registered_model, model_version=None, test_accuracy=None,
                       epochs=epochs, start_epoch=0, fit=fit, stopped_after_epoch=stopped_after)


def _resume_point(cfg: PipelineConfig, client, run_dir: str, key: str):
    """(run state, MLflow run to resume or None): an unfinished identical run continues where it stopped.

    Only a run the tracking store says does not exist (or was deleted) starts over. Any other failure
    to look it up stops here, with the checkpoint and its epochs kept for the next attempt.
    """
    from pipeline.io.tracking import TrackingError, existing_run

    state = checkpoints.read_state(run_dir) if cfg.train.resume else None
    resume_run = None
    if state and state.mlflow_run_id and state.completed_epoch > 0:
        try:
            resume_run = existing_run(client, state.mlflow_run_id)
        except TrackingError as exc:
            raise TrainingError(
                f"{exc}\nThe checkpoint in {run_dir} (epoch {state.completed_epoch} of {cfg.train.epochs}) is kept; "
                "run the same command again once the tracking store answers, and it resumes in that run."
            ) from exc
        if resume_run is None:
            log.warning("run %s of the checkpoint does not exist in %s (deleted?); starting over in a new MLflow run",
                        state.mlflow_run_id, cfg.mlflow.tracking_uri)
    if state is None or resume_run is None:
        state = checkpoints.RunState(run_key=key)
    return state, resume_run


def finished_training(state) -> bool:
    """Whether the run's ranks already finished (all epochs, or stopped early by ``train.early_stopping_patience``):
    its final weights are kept only then, so a re-run logs them instead of training again."""
    return bool(state.extra.get("final_weights"))


def shards_in_memory(t: TrainConfig, train_rows: int, val_rows: int, ranks: int,
                     steps_per_epoch: int) -> tuple[bool, float]:
    """Whether each rank holds its train and val shards in memory, and their size in MB per rank.

    ``auto`` holds them when they fit in ``train.cache_max_mb`` and training reads the train shard
    at least twice over (a run that reads each row at most once, such as a few capped epochs over a huge
    split, would only pay for loading it): from the second pass on, a rank then spends no CPU on
    reading and decoding Parquet, which on a rank with one or two cores competes with training
    itself (docs/benchmarks.md, training)."""
    from pipeline.io.reader import ROW_BYTES_IN_MEMORY

    shard = math.ceil(train_rows / ranks)
    mb = (shard + math.ceil(val_rows / ranks)) * ROW_BYTES_IN_MEMORY / 1e6
    if t.cache_in_memory == "auto":
        return mb <= t.cache_max_mb and t.epochs * steps_per_epoch * t.batch_size >= 2 * shard, mb
    return t.cache_in_memory == "always", mb


def _log_run_params(cfg: PipelineConfig, pre, steps_per_epoch: int, key: str, in_memory: bool,
                    backend: str = "horovod") -> None:
    import mlflow

    manifest = pre.manifest
    params = {**cfg.flat(), **_package_versions(), "horovod.num_proc": pre.num_proc,
              "horovod.threads_per_rank": pre.threads_per_rank, "horovod.steps_per_epoch": steps_per_epoch,
              "horovod.shards_in_memory": in_memory,
              "dataset.created_at": manifest["created_at"], "dataset.code_version": manifest["code_version"],
              "run_key": key, "backend": backend}
    params.update({f"dataset.{s}.rows": manifest["splits"][s]["rows"] for s in SPLITS})
    params["dataset.duplicates_dropped"] = manifest["duplicates"]["dropped"]
    mlflow.log_params({k: ("null" if v is None else str(v))[:6000] for k, v in params.items()})
    mlflow.log_text(cfg.to_yaml(), "config/effective_config.yaml")
    mlflow.log_dict(manifest, "dataset/manifest.json")


def _dataset_name(cfg: PipelineConfig) -> str:
    return qualify(cfg.data.root).rstrip("/").rsplit("/", 1)[-1]


def _log_datasets(cfg: PipelineConfig, manifest: dict) -> None:
    """The three splits as the run's dataset inputs (the run page's Datasets section): path, a digest of
    the manifest (so a re-ingest shows as a new dataset), row counts."""
    import hashlib
    import json

    from pipeline.io.dataset import split_path
    from pipeline.io.tracking import log_dataset

    root = qualify(cfg.data.root)
    digest = hashlib.sha256(json.dumps(manifest, sort_keys=True).encode()).hexdigest()
    for split, context in (("train", "training"), ("val", "validation"), ("test", "test")):
        log_dataset(split_path(root, split), name=f"{_dataset_name(cfg)}/{split}",
                    digest=hashlib.sha256(f"{digest}:{split}".encode()).hexdigest()[:16],
                    rows=manifest["splits"][split]["rows"], context=context, manifest_created_at=manifest["created_at"])
    # labelled data that arrived later (ingest.extra): one input each, so the run page shows what was added
    for i, entry in enumerate(manifest.get("extra", [])):
        files = [f for f in manifest["inputs"] if f.get("extra") == i]
        log_dataset(entry["path"], name=f"{_dataset_name(cfg)}/extra-{i}",
                    digest=hashlib.sha256("".join(f["sha256"] for f in files).encode()).hexdigest()[:16],
                    rows=sum(f["rows"] for f in files), context="training", format=entry["format"],
                    files=str(len(files)))


def _tracking_outage(exc: BaseException, cfg: PipelineConfig, run_dir: str) -> TrainingError:
    saved = checkpoints.read_state(run_dir)
    if saved and saved.extra.get("final_weights"):
        return TrainingError(
            f"training finished, but logging to MLflow at {cfg.mlflow.tracking_uri} failed: {first_line(exc)}\n"
            f"The trained weights and checkpoints are kept in {run_dir}. Bring the tracking server back and run "
            "the same command again: it logs and registers this model without training again."
        )
    return TrainingError(
        f"MLflow at {cfg.mlflow.tracking_uri} failed: {first_line(exc)}\nCheckpoints are kept in {run_dir}; "
        "bring the tracking server back and run the same command again to resume."
    )


# Variables a rank never needs: ranks do not talk to MLflow or Databricks, so their credentials stay on the driver.
_DRIVER_ONLY_ENV = ("MLFLOW_", "DATABRICKS_TOKEN", "DATABRICKS_CLIENT_SECRET", "DATABRICKS_PASSWORD")


def rank_environment(environ: dict[str, str]) -> dict[str, str]:
    """The environment Horovod starts the ranks with: the driver's, less tracking credentials."""
    env = {k: v for k, v in environ.items() if not k.startswith(_DRIVER_ONLY_ENV)}
    env.update(TF_USE_LEGACY_KERAS="1", TF_CPP_MIN_LOG_LEVEL="3")
    return env


def _run_ranks(spark, cfg: PipelineConfig, job: RankJob, client, run_id: str, state, on_epoch=None,
               backend: str = "horovod"):
    """Launches the ranks and tails their epoch records; a lost rank becomes a TrainingError naming it.

    Returns (the ranks' results, the epoch records, seconds, the epoch after which on_epoch stopped the
    ranks or None)."""
    for stale in checkpoints.read_rank_errors(job.run_dir):  # from an earlier attempt
        storage.delete(storage.join(job.run_dir, f"rank-{stale}.error"))
    if checkpoints.stop_requested(job.run_dir):
        storage.delete(storage.join(job.run_dir, checkpoints.STOP))
    tailer = EpochTailer(client, run_id, job.run_dir, cfg.train.epochs, on_record=on_epoch)
    tailer.start(already_logged=job.start_epoch)
    started = time.monotonic()
    try:
        if backend == "tf_distribute":
            results = launch_tf_workers(spark, job, job.ranks, job.run_dir)
        else:
            results = launch_ranks(train_on_rank, job, job.ranks, job.run_dir, cfg)
    except Exception as exc:
        tailer.stop(raise_error=False)
        if isinstance(exc, TrainingError):
            done = (checkpoints.read_state(job.run_dir) or state).completed_epoch
            raise TrainingError(
                f"distributed training failed after epoch {done} of {cfg.train.epochs}: {exc}\n"
                f"The checkpoint is kept in {job.run_dir}; run the same command again to resume from epoch {done + 1}."
            ) from exc.__cause__
        raise
    epochs = tailer.stop()
    return results, epochs, time.monotonic() - started, tailer.stopped_after


def launch_ranks(fn, job, ranks: int, run_dir: str, cfg: PipelineConfig) -> list:
    """``horovod.spark.run(fn, job)`` on ``ranks`` Spark tasks over Gloo, with the ranks' environment.
    A failure is a ``TrainingError`` saying which rank failed and why (from ``rank-<r>.error``)."""
    import horovod.spark

    try:
        return horovod.spark.run(
            fn, args=(job,), num_proc=ranks, use_gloo=True, env=rank_environment(dict(os.environ)), verbose=0,
            nics=set(cfg.train.nics) or None, start_timeout=cfg.train.start_timeout_s,
        )
    except Exception as exc:
        raise TrainingError(f"{describe_failure(exc)}{_rank_errors(run_dir, exc)}") from exc


def launch_tf_workers(spark, job, ranks: int, run_dir: str) -> list:
    """``ranks`` workers of ``MultiWorkerMirroredStrategy`` in one Spark barrier stage
    (``pipeline.train.tf_worker``). A failure is a ``TrainingError`` naming the worker and why."""
    from pipeline.train.tf_worker import barrier_task

    task = barrier_task(job, rank_environment(dict(os.environ)))
    sc = spark.sparkContext
    sc.setJobDescription(f"tf_distribute training: {ranks} workers")
    try:
        return sc.parallelize(range(ranks), ranks).barrier().mapPartitions(task).collect()
    except Exception as exc:
        stalled = _stalled(run_dir, ranks, job.train.collective_timeout_s)
        if stalled:
            raise TrainingError(f"{stalled}; Spark stopped the other workers") from exc
        raise TrainingError(f"{describe_tf_failure(exc)}{_rank_errors(run_dir, exc)}") from exc
    finally:
        sc.setJobDescription(None)


def _stalled(run_dir: str, ranks: int, timeout_s: float) -> str | None:
    """The tf_distribute worker that stopped responding, if the others' errors say so; their tracebacks
    (the timeout each saw) then go to the log file only."""
    try:
        errors = checkpoints.read_rank_errors(run_dir)
    except Exception:  # the run folder may be what failed
        return None
    stalled = stalled_tf_workers(errors, ranks, timeout_s)
    if stalled:
        for rank, text in sorted(errors.items()):
            _log_file_only.info("worker %d stopped waiting for a stalled worker:\n%s", rank, text.strip())
    return stalled


def _rank_errors(run_dir: str, exc: BaseException, lines: int = 8) -> str:
    """The end of the failed rank's traceback (``rank-<r>.error``), so nobody has to find executor logs.

    When one rank fails, Horovod shuts down and the other ranks fail too ("Horovod has been shut down");
    Horovod may even name one of those as the first to exit. Only the ranks that failed for a reason of
    their own are shown. The others' collateral tracebacks go to the log file only: a rank lost to a
    signal leaves no error of its own, and ``describe_failure`` has already named it and the signal."""
    try:
        errors = checkpoints.read_rank_errors(run_dir)
    except Exception:  # the run folder may be what failed
        return ""
    lost = lost_to_signal(exc)
    # A rank lost to a signal is the cause: what the others raised then (Horovod shut down, a Gloo
    # connection closed in an allreduce) is collateral, whatever its text.
    own = {} if lost is not None else {r: text for r, text in errors.items() if "Horovod has been shut down" not in text}
    for rank, text in sorted(errors.items()):
        if rank not in own:
            _log_file_only.info("rank %d stopped because another rank was lost:\n%s", rank, text.strip())
    parts = []
    for rank, text in sorted(own.items()):
        tail = "\n".join("    " + line for line in text.strip().splitlines()[-lines:])
        parts.append(f"\nrank {rank} failed with:\n{tail}")
    return "".join(parts)


def _evaluate_and_register(cfg: PipelineConfig, model, run_id: str, epochs: list[dict], wall: float) -> TrainResult:
    import mlflow

    from pipeline.assess import drift
    from pipeline.assess.fit import diagnose
    from pipeline.assess.report import log_test_report, predict_test_split
    from pipeline.train.registration import log_and_register

    marks = [time.monotonic()]
    images, labels, probs = predict_test_split(model, qualify(cfg.data.root))
    marks.append(time.monotonic())
    report = log_test_report(images, labels, probs, epochs, cfg.train.misclassified_examples,
                             extra_metrics={"train_wall_seconds": wall})
    fit = diagnose(epochs)
    mlflow.set_tag("fit_diagnosis", fit)
    marks.append(time.monotonic())
    reference = drift.profile(images, probs, labels)  # from the same predictions as the test metrics
    version = log_and_register(model, images, cfg.mlflow, run_id, report.accuracy, reference)
    _describe(cfg, run_id, version, report.accuracy, fit, epochs)
    marks.append(time.monotonic())
    log.info("after training: test split predicted in %.1f s, metrics and plots logged in %.1f s, model logged and "
             "registered in %.1f s", *(b - a for a, b in zip(marks, marks[1:])))
    return TrainResult(run_id=run_id, model_name=cfg.mlflow.registered_model, model_version=version,
                       test_accuracy=report.accuracy, epochs=epochs, start_epoch=0, fit=fit)
