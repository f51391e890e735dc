"""Distributed training on the driver's side: preflight, launch Horovod on Spark, track in MLflow.

Only the driver talks to MLflow. Ranks write per-epoch records and checkpoints to the run folder
(``pipeline.checkpoints``); the driver tails the records while training runs, logging each epoch as
it completes, then evaluates the final model on the test split, logs plots and registers the model.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import threading
import time
from dataclasses import dataclass

import numpy as np
from pyspark.sql import SparkSession

from pipeline.config import PipelineConfig
from pipeline.errors import InputError, PreflightError, TrainingError
from pipeline.io.dataset import SPLITS, count_row_groups, read_manifest, split_path
from pipeline.io.fs import HadoopFS, qualify
from pipeline.io.tracking import check_tracking, setup_experiment
from pipeline.train import checkpoints
from pipeline.train.worker import TrainJob, train_on_rank

log = logging.getLogger(__name__)


@dataclass
class Preflight:
    num_proc: int
    manifest: dict
    threads_per_rank: int


@dataclass
class TrainResult:
    run_id: str
    model_name: str
    model_version: str
    test_accuracy: float
    epochs: list[dict]
    start_epoch: int
    shard_ids: dict[int, list[str]] | None = None
    start_weights_digest: str | None = None


def preflight(spark: SparkSession, cfg: PipelineConfig) -> Preflight:
    """Checks, in seconds, what would otherwise fail after Horovod's start timeout."""
    sc = spark.sparkContext
    slots = sc.defaultParallelism // int(sc.getConf().get("spark.task.cpus", "1"))
    try:
        manifest = read_manifest(HadoopFS(spark), cfg.data.root)
    except InputError as exc:
        raise PreflightError(str(exc)) from None
    try:
        row_groups = {split: count_row_groups(split_path(cfg.data.root, split)) for split in SPLITS}
    except InputError as exc:
        raise PreflightError(str(exc)) from None
    num_proc = cfg.train.num_proc
    if num_proc is None:
        num_proc = max(1, min(slots, *row_groups.values()))
        if num_proc < slots:
            log.info("train.num_proc not set: %d ranks (the fewest row groups of a split; Spark has %d slots)",
                     num_proc, slots)
    if num_proc > slots:
        raise PreflightError(
            f"train.num_proc={num_proc} but Spark has {slots} task slots (spark.default.parallelism / spark.task.cpus); "
            "each Horovod rank needs its own slot: lower train.num_proc or add executors/cores"
        )
    for split, groups in row_groups.items():
        if groups < num_proc:
            raise PreflightError(
                f"split {split} of {cfg.data.root} has {groups} Parquet row groups but train.num_proc={num_proc} ranks "
                f"each need one; re-run ingest with ingest.max_shards>={num_proc} or lower train.num_proc"
            )
    check_tracking(cfg.mlflow)
    threads = cfg.train.threads_per_rank
    if threads is None:
        master = sc.master or ""
        threads = max(1, (os.cpu_count() or 1) // num_proc) if master.startswith("local") else \
            int(sc.getConf().get("spark.task.cpus", "1"))
    return Preflight(num_proc=num_proc, manifest=manifest, threads_per_rank=threads)


def _run_identity(cfg: PipelineConfig, num_proc: int, manifest: dict) -> dict:
    t = cfg.train
    return {
        "model": dataclasses.asdict(cfg.model),
        "optimizer": dataclasses.asdict(cfg.optimizer),
        "train": {k: getattr(t, k) for k in ("batch_size", "epochs", "steps_per_epoch", "validation_steps", "seed",
                                             "shuffle_buffer",
                                             "early_stopping_patience")},
        "num_proc": num_proc,
        "dataset": {"root": qualify(cfg.data.root), "created_at": manifest["created_at"]},
    }


def _package_versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for name in ("pyspark", "tensorflow", "tf-keras", "horovod", "petastorm", "pyarrow", "mlflow", "mnist-pipeline"):
        try:
            out[f"version.{name}"] = version(name)
        except PackageNotFoundError:
            out[f"version.{name}"] = "not installed"
    return out


class EpochTailer:
    """Prints each epoch record and logs it to MLflow as rank 0 writes it.

    A tracking server that is away does not stop training: the record stays on disk and is logged
    later (``_log_missing_epochs``).
    """

    def __init__(self, client, run_id: str, run_dir: str, epochs: int, interval_s: float = 2.0):
        self._client, self._run_id, self._run_dir, self._epochs = client, run_id, run_dir, epochs
        self._interval = interval_s
        self._logged = self._printed = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="epoch-tailer", daemon=True)

    def start(self, already_logged: int) -> None:
        self._logged = self._printed = already_logged
        self._thread.start()

    def stop(self) -> list[dict]:
        self._stop.set()
        self._thread.join(timeout=60)
        self._poll_quietly()
        return checkpoints.read_epochs(self._run_dir)

    def _loop(self) -> None:
        while not self._stop.wait(self._interval):
            self._poll_quietly()

    def _poll_quietly(self) -> None:
        try:
            self.poll()
        except Exception as exc:  # keep training going; what is not logged now is logged at the end
            log.warning("epoch records not logged to MLflow yet: %s", _first_line(exc))

    def poll(self) -> None:
        from mlflow.entities import Metric

        for record in checkpoints.read_epochs(self._run_dir):
            step = record["epoch"]
            if step > self._printed:
                log.info(
                    "epoch %d/%d: loss %.4f acc %.4f | val_loss %.4f val_acc %.4f | lr %.2e | %.0f img/s "
                    "(%.0f per rank) | %.1f s", step, self._epochs, record["loss"], record["accuracy"],
                    record["val_loss"], record["val_accuracy"], record["learning_rate"], record["images_per_sec"],
                    record["images_per_sec_per_rank"], record["epoch_seconds"])
                self._printed = step
            if step > self._logged:
                now = int(time.time() * 1000)
                self._client.log_batch(self._run_id, metrics=[Metric(k, float(v), now, step)
                                                              for k, v in record.items() if k != "epoch"])
                self._logged = step


def evaluate_on_test(model, dataset_root: str, batch_size: int = 512):
    """Predicts the whole test split on the driver: (images, labels, probabilities)."""
    from pipeline.io.reader import open_split

    images, labels, probs = [], [], []
    with open_split(dataset_root, "test", batch_size) as ds:
        for image, label in ds:
            images.append(image.numpy())
            labels.append(label.numpy())
            probs.append(model.predict_on_batch(image))
    return np.concatenate(images), np.concatenate(labels), np.concatenate(probs)


def train(spark: SparkSession, cfg: PipelineConfig) -> TrainResult:
    """Trains with Horovod on Spark and registers the model. Resumes an unfinished identical run.

    Raises:
        PreflightError: dataset, cluster or tracking store not ready (before any rank starts).
        TrainingError: a rank failed; the checkpoint of the last completed epoch is kept.
    """
    import mlflow
    from mlflow import MlflowClient

    pre = preflight(spark, cfg)
    n = pre.num_proc
    manifest = pre.manifest
    train_rows, val_rows = manifest["splits"]["train"]["rows"], manifest["splits"]["val"]["rows"]
    batch = cfg.train.batch_size
    # Horovod: every rank runs the same number of steps, however uneven the shards, so allreduce never waits.
    steps_per_epoch = cfg.train.steps_per_epoch or max(1, math.ceil(train_rows / (batch * n)))
    val_steps = cfg.train.validation_steps or max(1, math.ceil(val_rows / (batch * n)))

    key = checkpoints.run_key(_run_identity(cfg, n, manifest))
    run_dir = f"{qualify(cfg.train.checkpoint_dir).rstrip('/')}/{key}"
    state = checkpoints.read_state(run_dir) if cfg.train.resume else None
    experiment_id = setup_experiment(cfg.mlflow)
    client = MlflowClient()
    resume_run = None
    if state and state.mlflow_run_id and state.completed_epoch > 0:
        try:
            resume_run = client.get_run(state.mlflow_run_id)
        except Exception:
            log.warning("run %s of the checkpoint is not in %s; starting over in a new MLflow run",
                        state.mlflow_run_id, cfg.mlflow.tracking_uri)
    if state is None or resume_run is None:
        state = checkpoints.RunState(run_key=key)
    start_epoch = state.completed_epoch
    trained_already = start_epoch >= cfg.train.epochs and bool(state.extra.get("final_weights"))

    run = mlflow.start_run(run_id=resume_run.info.run_id if resume_run else None, experiment_id=experiment_id,
                           run_name=None if resume_run else cfg.mlflow.run_name)
    run_id = run.info.run_id
    try:
        state.mlflow_run_id = run_id
        checkpoints.write_state(run_dir, state)
        if resume_run is None:
            params = {**cfg.flat(), **_package_versions(), "horovod.num_proc": n,
                      "horovod.threads_per_rank": pre.threads_per_rank, "horovod.steps_per_epoch": steps_per_epoch,
                      "dataset.created_at": manifest["created_at"], "dataset.code_version": manifest["code_version"],
                      "run_key": key}
            params.update({f"dataset.{s}.rows": manifest["splits"][s]["rows"] for s in SPLITS})
            params["dataset.duplicates_dropped"] = manifest["duplicates"]["dropped"]
            mlflow.log_params({k: ("null" if v is None else str(v))[:6000] for k, v in params.items()})
            mlflow.log_text(cfg.to_yaml(), "config/effective_config.yaml")
            mlflow.log_dict(manifest, "dataset/manifest.json")
        elif trained_already:
            log.info("run %s finished training earlier but was not logged; logging it now (no retraining)", run_id)
        else:
            log.info("resuming run %s after epoch %d of %d (checkpoint %s/%s)", run_id, start_epoch,
                     cfg.train.epochs, run_dir, state.checkpoint)
        mlflow.set_tag("resumed_from_epoch", str(start_epoch))

        if trained_already:
            weights = checkpoints.read_weights(run_dir, state.extra["final_weights"])
            epochs = checkpoints.read_epochs(run_dir)
            _log_missing_epochs(client, run_id, epochs)
            rank0 = {"start_epoch": start_epoch, "start_weights_digest": checkpoints.weights_digest(weights)}
            results, wall = [rank0], 0.0
        else:
            job = TrainJob(cfg=cfg, dataset_root=qualify(cfg.data.root), run_dir=run_dir, ranks=n,
                           steps_per_epoch=steps_per_epoch, val_steps=val_steps,
                           threads_per_rank=pre.threads_per_rank, start_epoch=start_epoch,
                           checkpoint=state.checkpoint if start_epoch else None)
            log.info("training: %d ranks x %d threads, %d steps/epoch of %d per rank, epochs %d-%d, run dir %s",
                     n, pre.threads_per_rank, steps_per_epoch, batch, start_epoch + 1, cfg.train.epochs, run_dir)
            results, epochs, wall = _run_ranks(cfg, job, client, run_id, state)
            rank0 = next(r for r in results if r and r["rank"] == 0)
            weights = rank0["weights"]
            # Keep the result before anything else can fail: a re-run logs it instead of training again.
            state = checkpoints.read_state(run_dir) or state
            state.extra["final_weights"] = checkpoints.write_weights(run_dir, weights)
            checkpoints.write_state(run_dir, state)
            _log_missing_epochs(client, run_id, epochs)

        from pipeline.train.model import build_model

        model = build_model(cfg.model)
        model.set_weights(weights)
        result = _log_evaluation_and_model(cfg, model, run_id, epochs, wall)
        result.start_epoch = rank0["start_epoch"]
        result.start_weights_digest = rank0["start_weights_digest"]
        if cfg.train.report_shards:
            result.shard_ids = {r["rank"]: r["shard_ids"] for r in results}
        mlflow.end_run("FINISHED")
    except BaseException as exc:
        try:
            mlflow.end_run("FAILED")
        except Exception:  # the tracking server may be the thing that failed
            log.warning("could not mark MLflow run %s as FAILED", run_id)
        if isinstance(exc, TrainingError) or not _is_tracking_failure(exc):
            raise
        saved = checkpoints.read_state(run_dir)
        if saved and saved.extra.get("final_weights"):
            raise TrainingError(
                f"training finished, but logging to MLflow at {cfg.mlflow.tracking_uri} failed: {_first_line(exc)}\n"
                f"The trained weights and checkpoints are kept in {run_dir}. Bring the tracking server back and run "
                "the same command again: it logs and registers this model without training again."
            ) from exc
        raise TrainingError(
            f"MLflow at {cfg.mlflow.tracking_uri} failed: {_first_line(exc)}\nCheckpoints are kept in {run_dir}; "
            "bring the tracking server back and run the same command again to resume."
        ) from exc
    import tensorflow as tf

    tf.io.gfile.rmtree(run_dir)  # the model is registered; a later identical run starts afresh
    return result


def _run_ranks(cfg: PipelineConfig, job: TrainJob, client, run_id: str, state) -> tuple[list, list[dict], float]:
    """Launches the ranks and tails their epoch records; a lost rank becomes a TrainingError naming it."""
    import horovod.spark

    tailer = EpochTailer(client, run_id, job.run_dir, cfg.train.epochs)
    tailer.start(already_logged=job.start_epoch)
    env = dict(os.environ, TF_USE_LEGACY_KERAS="1", TF_CPP_MIN_LOG_LEVEL="2")
    started = time.monotonic()
    try:
        results = horovod.spark.run(
            train_on_rank, args=(job,), num_proc=job.ranks, use_gloo=True, env=env, verbose=0,
            nics=set(cfg.train.nics) or None, start_timeout=cfg.train.start_timeout_s,
        )
    except Exception as exc:
        tailer.stop()
        done = (checkpoints.read_state(job.run_dir) or state).completed_epoch
        raise TrainingError(
            f"distributed training failed after epoch {done} of {cfg.train.epochs}: {_describe_failure(exc)}\n"
            f"The checkpoint is kept in {job.run_dir}; run the same command again to resume from epoch {done + 1}."
        ) from exc
    return results, tailer.stop(), time.monotonic() - started


def _describe_failure(exc: BaseException) -> str:
    """Names the lost rank when Horovod reports one ("Process name: 1 / Exit code: -9")."""
    import re
    import signal

    text = "\n".join(str(e) for e in _chain(exc))
    match = re.search(r"Process name: (\S+)\s+Exit code: (-?\d+)", text)
    if not match:
        return _first_line(exc)
    rank, code = match.group(1), int(match.group(2))
    how = f"exit code {code}"
    signum = -code if code < 0 else code - 128 if code > 128 else None
    if signum:
        try:
            how += f", killed by signal {signum} ({signal.Signals(signum).name})"
        except ValueError:
            pass
    return f"rank {rank} was lost ({how}); Horovod stopped the other ranks"


def _chain(exc: BaseException):
    while exc is not None:
        yield exc
        exc = exc.__cause__ or exc.__context__


def _is_tracking_failure(exc: BaseException) -> bool:
    from mlflow.exceptions import MlflowException

    return any(isinstance(e, (MlflowException, ConnectionError, OSError)) or "requests.exceptions" in type(e).__module__
               for e in _chain(exc))


def _log_missing_epochs(client, run_id: str, epochs: list[dict]) -> None:
    """Logs the epoch records the tailer could not (tracking server away during training)."""
    from mlflow.entities import Metric

    logged = {m.step for m in client.get_metric_history(run_id, "loss")}
    now = int(time.time() * 1000)
    for record in epochs:
        if record["epoch"] not in logged:
            client.log_batch(run_id, metrics=[Metric(k, float(v), now, record["epoch"])
                                              for k, v in record.items() if k != "epoch"])


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def _log_evaluation_and_model(cfg: PipelineConfig, model, run_id: str, epochs: list[dict], wall: float) -> TrainResult:
    import mlflow
    from mlflow import MlflowClient
    from mlflow.models import infer_signature

    from pipeline.evaluate import metrics, plots

    images, labels, probs = evaluate_on_test(model, qualify(cfg.data.root))
    predicted = probs.argmax(axis=1)
    matrix = metrics.confusion_matrix(labels, predicted)
    acc = metrics.accuracy(matrix)
    scores = metrics.per_class_scores(matrix)
    test_metrics = {"test_accuracy": acc, "train_wall_seconds": wall}
    for c, s in scores.items():
        for name in ("precision", "recall", "f1"):
            test_metrics[f"test_{name}_{c}"] = s[name]
    mlflow.log_metrics(test_metrics)
    mlflow.log_dict({"confusion_matrix": matrix.tolist(), "per_class": scores, "accuracy": acc},
                    "evaluation/test_metrics.json")
    if epochs:
        mlflow.log_figure(plots.learning_curves(epochs), "plots/learning_curves.png")
    mlflow.log_figure(plots.confusion_matrix_figure(matrix), "plots/confusion_matrix.png")
    mlflow.log_figure(plots.misclassified_grid(images, labels, predicted, probs.max(axis=1),
                                               cfg.train.misclassified_examples), "plots/misclassified.png")
    import matplotlib.pyplot as plt

    plt.close("all")
    example = images[:5].astype(np.float32)
    signature = infer_signature(example, model.predict(example, verbose=0))
    info = mlflow.tensorflow.log_model(model, name="model", signature=signature, input_example=example,
                                       registered_model_name=cfg.mlflow.registered_model)
    version = str(info.registered_model_version)
    client = MlflowClient()
    client.set_model_version_tag(cfg.mlflow.registered_model, version, "test_accuracy", f"{acc:.4f}")
    client.set_model_version_tag(cfg.mlflow.registered_model, version, "run_id", run_id)
    log.info("test accuracy %.4f; registered %s version %s", acc, cfg.mlflow.registered_model, version)
    return TrainResult(run_id=run_id, model_name=cfg.mlflow.registered_model, model_version=version,
                       test_accuracy=acc, epochs=epochs, start_epoch=0)
