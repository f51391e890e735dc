"""A training run's folder on shared storage: checkpoints, per-epoch records and resume state.

Layout of ``<train.checkpoint_dir>/<run key>/``:
  ``state.json``          run key, MLflow run id, last completed epoch, checkpoint folder, weights digest
  ``epochs.jsonl``        one line of rank-averaged metrics per completed epoch (the driver tails it)
  ``ckpt-<epoch>/``       TensorFlow checkpoint of model and optimizer after that epoch (rank 0 writes)
  ``final-weights.npz``   the trained weights, kept until the model is registered
  ``rank-<r>.pid``        which process is which rank; ``rank-<r>.error`` the traceback of a rank that failed
  ``stop``                the driver asks the ranks to stop (a pruned tuning trial)

Everything goes through ``pipeline.io.storage``, so local paths, HDFS, S3 and Databricks paths work the
same for ranks and driver. TensorFlow writes a checkpoint to a local folder; it is then copied into
``ckpt-<epoch>/``, and only after that does ``state.json`` name it: resume never picks a half checkpoint.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
from dataclasses import dataclass, field

from pipeline.io import storage

RUN_STATE = "state.json"
EPOCHS = "epochs.jsonl"
FINAL_WEIGHTS = "final-weights.npz"
STOP = "stop"
_CKPT_NAME = "ckpt"  # TensorFlow's prefix inside a checkpoint folder


@dataclass
class RunState:
    run_key: str
    mlflow_run_id: str | None = None
    completed_epoch: int = 0
    checkpoint: str | None = None  # folder, relative to the run folder
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
    path = storage.join(run_dir, RUN_STATE)
    if not storage.exists(path):
        return None
    return RunState(**json.loads(storage.read_text(path)))


def write_state(run_dir: str, state: RunState) -> None:
    """Publishes ``state.json`` whole (written beside, then moved; one PUT on object stores)."""
    storage.write_text(storage.join(run_dir, RUN_STATE), json.dumps(state.__dict__, indent=2))


def append_epoch(run_dir: str, record: dict) -> None:
    lines = [r for r in read_epochs(run_dir) if r["epoch"] < record["epoch"]] + [record]
    storage.write_text(storage.join(run_dir, EPOCHS), "".join(json.dumps(r) + "\n" for r in lines))


def read_epochs(run_dir: str) -> list[dict]:
    path = storage.join(run_dir, EPOCHS)
    if not storage.exists(path):
        return []
    return [json.loads(line) for line in storage.read_text(path).splitlines() if line.strip()]


RESOURCES = "resources"  # rank-<r>.jsonl: each rank's own CPU and memory per epoch


def append_resources(run_dir: str, rank: int, record: dict) -> None:
    path = storage.join(run_dir, RESOURCES, f"rank-{rank}.jsonl")
    lines = [r for r in _read_lines(path) if r["epoch"] < record["epoch"]] + [record]
    storage.write_text(path, "".join(json.dumps(r) + "\n" for r in lines))


def read_resources(run_dir: str) -> list[dict]:
    """Every rank's resource records (``rank``, ``epoch``, figures), ordered by epoch then rank."""
    folder = storage.join(run_dir, RESOURCES)
    records = [r for name in storage.list_names(folder) if name.endswith(".jsonl")
               for r in _read_lines(storage.join(folder, name))]
    return sorted(records, key=lambda r: (r["epoch"], r["rank"]))


def _read_lines(path: str) -> list[dict]:
    if not storage.exists(path):
        return []
    return [json.loads(line) for line in storage.read_text(path).splitlines() if line.strip()]


def save_checkpoint(checkpoint, run_dir: str, epoch: int) -> str:
    """Writes a ``tf.train.Checkpoint`` as ``ckpt-<epoch>/`` of the run folder; returns that folder's name."""
    name = f"ckpt-{epoch}"
    with storage.LocalStaging() as tmp:
        checkpoint.write(f"{tmp}/{_CKPT_NAME}")
        storage.upload_dir(tmp, storage.join(run_dir, name))
    return name


def prune_checkpoints(run_dir: str, newest: int, keep: int) -> list[str]:
    """Deletes the ``ckpt-<epoch>/`` folders older than the newest ``keep`` (call once ``state.json``
    names the newest); returns the names deleted."""
    old = [name for name in storage.list_names(run_dir)
           if name.startswith("ckpt-") and name[5:].isdigit() and int(name[5:]) <= newest - keep]
    for name in old:
        storage.delete(storage.join(run_dir, name))
    return old


def discard_checkpoint(checkpoint) -> None:
    """Writes a ``tf.train.Checkpoint`` to a local folder and deletes it: what a non-chief worker of
    ``tf_distribute`` does when the chief saves, since the write may take part in collectives."""
    with storage.LocalStaging() as tmp:
        checkpoint.write(f"{tmp}/{_CKPT_NAME}")


@contextlib.contextmanager
def local_checkpoint(run_dir: str, name: str):
    """A local copy of checkpoint folder ``name``: yields the prefix ``tf.train.Checkpoint.restore`` takes."""
    with storage.LocalStaging() as tmp:
        storage.download_dir(storage.join(run_dir, name), tmp)
        yield f"{tmp}/{_CKPT_NAME}"


def write_weights(run_dir: str, weights) -> str:
    """Saves the final weights (numpy arrays) beside the checkpoints; returns the file name."""
    import numpy as np

    buffer = io.BytesIO()
    np.savez(buffer, *weights)
    storage.write_bytes(storage.join(run_dir, FINAL_WEIGHTS), buffer.getvalue())
    return FINAL_WEIGHTS


def read_weights(run_dir: str, name: str) -> list:
    import numpy as np

    data = np.load(io.BytesIO(storage.read_bytes(storage.join(run_dir, name))))
    return [data[f"arr_{i}"] for i in range(len(data.files))]


def write_rank_error(run_dir: str, rank: int, text: str) -> None:
    storage.write_text(storage.join(run_dir, f"rank-{rank}.error"), text)


def read_rank_errors(run_dir: str) -> dict[int, str]:
    """Tracebacks the ranks left when they failed, by rank."""
    out = {}
    for name in storage.list_names(run_dir):
        if name.startswith("rank-") and name.endswith(".error"):
            out[int(name[5:-6])] = storage.read_text(storage.join(run_dir, name))
    return out


def request_stop(run_dir: str) -> None:
    """Asks the ranks of a running training to stop together (they look every few batches)."""
    storage.write_text(storage.join(run_dir, STOP), "stop\n")


def stop_requested(run_dir: str) -> bool:
    return storage.exists(storage.join(run_dir, STOP))
