"""A training run's folder on shared storage: checkpoints, per-epoch records and resume state.

Layout of ``<train.checkpoint_dir>/<run key>/``:
  ``state.json``     run key, MLflow run id, last completed epoch, checkpoint prefix, weights digest
  ``epochs.jsonl``   one line of rank-averaged metrics per completed epoch (the driver tails it)
  ``ckpt-<epoch>*``  TensorFlow checkpoint of model and optimizer after that epoch (rank 0 writes)

Uses ``tf.io.gfile`` so local paths, HDFS and object stores work the same for ranks and driver.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field

RUN_STATE = "state.json"
EPOCHS = "epochs.jsonl"


@dataclass
class RunState:
    run_key: str
    mlflow_run_id: str | None = None
    completed_epoch: int = 0
    checkpoint: str | None = None  # prefix, relative to the run folder
    weights_digest: str | None = None
    extra: dict = field(default_factory=dict)


def run_key(identity: dict) -> str:
    """A stable key for "the same run": a digest of everything that makes a run what it is."""
    return hashlib.sha256(json.dumps(identity, sort_keys=True, default=str).encode()).hexdigest()[:16]


def weights_digest(weights) -> str:
    digest = hashlib.sha256()
    for w in weights:
        digest.update(w.tobytes())
    return digest.hexdigest()[:16]


def read_state(run_dir: str) -> RunState | None:
    import tensorflow as tf

    path = f"{run_dir}/{RUN_STATE}"
    if not tf.io.gfile.exists(path):
        return None
    with tf.io.gfile.GFile(path, "r") as handle:
        return RunState(**json.load(handle))


def write_state(run_dir: str, state: RunState) -> None:
    """Writes ``state.json`` beside, then renames over the old one, so a crash never leaves half a file."""
    import tensorflow as tf

    tf.io.gfile.makedirs(run_dir)
    tmp = f"{run_dir}/{RUN_STATE}.tmp"
    with tf.io.gfile.GFile(tmp, "w") as handle:
        json.dump(state.__dict__, handle, indent=2)
    tf.io.gfile.rename(tmp, f"{run_dir}/{RUN_STATE}", overwrite=True)


def append_epoch(run_dir: str, record: dict) -> None:
    import tensorflow as tf

    path = f"{run_dir}/{EPOCHS}"
    lines = read_epochs(run_dir)
    lines = [r for r in lines if r["epoch"] < record["epoch"]] + [record]
    tmp = path + ".tmp"
    with tf.io.gfile.GFile(tmp, "w") as handle:
        handle.write("".join(json.dumps(r) + "\n" for r in lines))
    tf.io.gfile.rename(tmp, path, overwrite=True)


def read_epochs(run_dir: str) -> list[dict]:
    import tensorflow as tf

    path = f"{run_dir}/{EPOCHS}"
    if not tf.io.gfile.exists(path):
        return []
    with tf.io.gfile.GFile(path, "r") as handle:
        return [json.loads(line) for line in handle if line.strip()]


def write_weights(run_dir: str, weights) -> str:
    """Saves the final weights (numpy arrays) beside the checkpoints; returns the file name."""
    import io

    import numpy as np
    import tensorflow as tf

    buffer = io.BytesIO()
    np.savez(buffer, *weights)
    name = "final-weights.npz"
    with tf.io.gfile.GFile(f"{run_dir}/{name}.tmp", "wb") as handle:
        handle.write(buffer.getvalue())
    tf.io.gfile.rename(f"{run_dir}/{name}.tmp", f"{run_dir}/{name}", overwrite=True)
    return name


def read_weights(run_dir: str, name: str) -> list:
    import io

    import numpy as np
    import tensorflow as tf

    with tf.io.gfile.GFile(f"{run_dir}/{name}", "rb") as handle:
        data = np.load(io.BytesIO(handle.read()))
        return [data[f"arr_{i}"] for i in range(len(data.files))]
