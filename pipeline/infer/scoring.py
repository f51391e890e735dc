"""Scoring on the executors: Arrow batches in, class probabilities out, the model loaded once per Python worker.

The model's files are downloaded from the registry once, on the driver, and shipped to the executors
with ``SparkContext.addFile`` (executors need no tracking credentials). Each Spark Python worker loads
the model the first time it scores and keeps it for every later task and batch. Images go from the Arrow
binary column's data buffer to one numpy batch with ``np.frombuffer``: no Python object per image.
Rows that cannot be scored (a missing image, a size other than 784 bytes, a reason set by the input
stage) come out with their ``reject_reason`` in the same pass.
"""

from __future__ import annotations

import os

import numpy as np
import pyarrow as pa

from pipeline.infer.inputs import MISSING_IMAGE, WRONG_SIZE

PIXELS = 784
SCORED_SCHEMA = ("id string, label int, predicted_label int, probability float, probabilities array<float>, "
                 "note string, reject_reason string")
# With monitoring on, each scored row also carries its bins (``pipeline.assess.drift``), so the batch's
# profile is one Spark aggregation over the rows already scored: no second pass, no rows collected.
# The pixel-intensity histogram is summed only, so each Arrow batch puts its own total on its first
# scored row (null elsewhere): the same sums for a sixteenth of the work and of the cached data.
PIXEL_COLUMNS = [f"px{b}" for b in range(16)]
STATS_SCHEMA = "conf_bin int, entropy_bin int, ink double, " + ", ".join(f"{c} bigint" for c in PIXEL_COLUMNS)


def scored_schema(with_stats: bool) -> str:
    return f"{SCORED_SCHEMA}, {STATS_SCHEMA}" if with_stats else SCORED_SCHEMA

_loaded: dict[str, object] = {}  # model folder -> model, for the life of this Python worker


def load_model_once(model_dir: str):
    """The model in ``model_dir`` (an MLflow model folder), loaded once per process.

    Before TensorFlow first loads here: the task's GPUs only (when Spark assigned some), and as many
    TensorFlow threads as the task has CPUs, so concurrent tasks do not oversubscribe the executor.
    """
    if model_dir in _loaded:
        return _loaded[model_dir]
    os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    from pipeline.io.gpus import use_task_gpus

    use_task_gpus()
    import tensorflow as tf

    threads = _task_cpus()
    try:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(1)
    except RuntimeError:  # TensorFlow already started in this process (threads are fixed by then)
        pass
    import mlflow.pyfunc

    model = mlflow.pyfunc.load_model(model_dir)
    _loaded.clear()  # one model per worker: a new model replaces the old one
    _loaded[model_dir] = model
    return model


def model_folder(unpacked: str) -> str:
    """The MLflow model folder (the one holding ``MLmodel``) inside an unpacked model archive."""
    for folder, _, files in os.walk(unpacked):
        if "MLmodel" in files:
            return folder
    raise FileNotFoundError(f"no MLmodel file under {unpacked}")


def _task_cpus() -> int:
    try:
        from pyspark import TaskContext

        context = TaskContext.get()
        if context is not None:
            return max(1, int(context.cpus()))
    except Exception:
        pass
    return max(1, os.cpu_count() or 1)


def score_batch(model, batch: pa.RecordBatch, batch_size: int = 2048, with_stats: bool = False) -> pa.RecordBatch:
    """Scores one Arrow batch of ``id, image (binary), label, note, reject_reason``; ``with_stats``: with the
    monitoring bins of each scored row (``STATS_SCHEMA``, null for a reject)."""
    n = batch.num_rows
    images = batch.column("image")
    if images.type == pa.large_binary():
        images = images.cast(pa.binary())
    offsets = np.frombuffer(images.buffers()[1], dtype=np.int32, count=n + 1, offset=images.offset * 4)
    lengths = np.diff(offsets)
    missing = np.asarray(images.is_null().to_numpy(zero_copy_only=False), dtype=bool)
    preset = batch.column("reject_reason")
    rejected_before = np.asarray(preset.is_valid().to_numpy(zero_copy_only=False), dtype=bool)
    ok = ~missing & ~rejected_before & (lengths == PIXELS)

    probs = np.zeros((n, 10), dtype=np.float32)
    rows = np.flatnonzero(ok)
    pixels = np.zeros((0, 28, 28, 1), dtype=np.uint8)
    if rows.size:
        data = np.frombuffer(images.buffers()[2], dtype=np.uint8) if images.buffers()[2] is not None else None
        if rows.size == n and offsets[-1] - offsets[0] == n * PIXELS:  # the common case: one contiguous buffer
            pixels = data[offsets[0]:offsets[-1]].reshape(n, 28, 28, 1)
        else:
            pixels = data[offsets[rows][:, None] + np.arange(PIXELS)].reshape(-1, 28, 28, 1)
        inputs = pixels.astype(np.float32)
        for start in range(0, rows.size, batch_size):
            chunk = slice(start, start + batch_size)
            probs[rows[chunk]] = np.asarray(_predict(model, inputs[chunk]), dtype=np.float32)

    reasons = preset.to_pylist()
    notes = batch.column("note").to_pylist()
    for i in np.flatnonzero(~ok & ~rejected_before):
        if missing[i]:
            reasons[i] = MISSING_IMAGE
        else:
            reasons[i], notes[i] = WRONG_SIZE, f"{int(lengths[i])} pixels"
    mask = pa.array(~ok)
    list_offsets = pa.array(np.arange(0, 10 * n + 1, 10, dtype=np.int32))
    probabilities = pa.ListArray.from_arrays(list_offsets, pa.array(probs.reshape(-1)), mask=mask)
    columns = [batch.column("id"), batch.column("label").cast(pa.int32()),
               pa.array(probs.argmax(axis=1).astype(np.int32), mask=~ok),
               pa.array(probs.max(axis=1), mask=~ok), probabilities,
               pa.array(notes, pa.string()), pa.array(reasons, pa.string())]
    names = ["id", "label", "predicted_label", "probability", "probabilities", "note", "reject_reason"]
    if with_stats:
        columns += _stats_columns(probs, rows, pixels, ~ok)
        names += ["conf_bin", "entropy_bin", "ink", *PIXEL_COLUMNS]
    return pa.RecordBatch.from_arrays(columns, names=names)


def _stats_columns(probs: np.ndarray, rows: np.ndarray, pixels: np.ndarray, rejected: np.ndarray) -> list:
    """Each scored row's confidence and entropy bins and ink (null for a reject), and the batch's pixel
    counts per intensity bin on its first scored row (null on every other row)."""
    from pipeline.assess import drift

    n = len(probs)
    conf = np.zeros(n, np.int32)
    ent = np.zeros(n, np.int32)
    ink = np.zeros(n, np.float64)
    totals = np.zeros(drift.PIXEL_BINS, np.int64)
    carrier = np.ones(n, bool)  # True: null
    if rows.size:
        scored = probs[rows]
        conf[rows] = drift.confidence_bins(scored.max(axis=1))
        ent[rows] = drift.entropy_bins(scored)
        ink[rows] = drift.ink(pixels)
        totals = drift.pixel_totals(pixels)
        carrier[rows[0]] = False
    rejected = rejected if rejected.any() else None
    return [pa.array(conf, mask=rejected), pa.array(ent, mask=rejected), pa.array(ink, mask=rejected),
            *(pa.array(np.full(n, totals[b], np.int64), mask=carrier) for b in range(drift.PIXEL_BINS))]


def _predict(model, pixels: np.ndarray):
    """A pyfunc model (what the registry serves) or a Keras model (tests, benchmarks)."""
    if hasattr(model, "predict_on_batch"):
        return model.predict_on_batch(pixels)
    return model.predict(pixels)


def scorer(model_name: str, rows_done=None, with_stats: bool = False):
    """The function ``mapInArrow`` runs on each partition: loads the shipped model once, scores every batch
    (``with_stats``: with each row's monitoring bins, ``scored_schema(True)``)."""

    def score(batches):
        from pyspark import SparkFiles

        model = load_model_once(model_folder(SparkFiles.get(model_name)))
        for batch in batches:
            out = score_batch(model, batch, with_stats=with_stats)
            if rows_done is not None:
                rows_done.add(batch.num_rows)
            yield out

    return score
