"""Builders for test inputs: real IDX, LIBSVM and CSV files made from real digits."""

from __future__ import annotations

import gzip
import hashlib
import os
import signal
import struct
import subprocess
import threading
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from pipeline.config import PipelineConfig
from pipeline.train import checkpoints

SAMPLE_DIR = Path(__file__).resolve().parent.parent / "data" / "mnist-sample"


def idx_images_bytes(images: np.ndarray, rows: int = 28, cols: int = 28, count: int | None = None,
                     magic: int = 0x00000803) -> bytes:
    n = len(images) if count is None else count
    return struct.pack(">IIII", magic, n, rows, cols) + np.asarray(images, dtype=np.uint8).tobytes()


def idx_labels_bytes(labels: np.ndarray, count: int | None = None, magic: int = 0x00000801) -> bytes:
    n = len(labels) if count is None else count
    return struct.pack(">II", magic, n) + np.asarray(labels, dtype=np.uint8).tobytes()


def write_idx_pair(folder: Path, prefix: str, images: np.ndarray, labels: np.ndarray, gz: bool = True) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    suffix = ".gz" if gz else ""
    for name, data in ((f"{prefix}-images-idx3-ubyte", idx_images_bytes(images)),
                       (f"{prefix}-labels-idx1-ubyte", idx_labels_bytes(labels))):
        (folder / (name + suffix)).write_bytes(gzip.compress(data, mtime=0) if gz else data)


def libsvm_text(images: np.ndarray, labels: np.ndarray) -> str:
    lines = []
    for img, lab in zip(images, labels):
        nz = np.flatnonzero(img)
        lines.append(" ".join([str(int(lab))] + [f"{i + 1}:{int(img[i])}" for i in nz]))
    return "\n".join(lines) + "\n"


def csv_text(images: np.ndarray, labels: np.ndarray, header: bool = True) -> str:
    lines = []
    if header:
        lines.append(",".join(["label"] + [f"pixel{i}" for i in range(784)]))
    for img, lab in zip(images, labels):
        lines.append(",".join([str(int(lab))] + [str(int(v)) for v in img]))
    return "\n".join(lines) + "\n"


def image_id(image: np.ndarray) -> str:
    return hashlib.sha256(np.asarray(image, dtype=np.uint8).tobytes()).hexdigest()[:32]


def read_split(root: Path, split: str) -> list[tuple[str, bytes, int]]:
    """All rows of a split, sorted by id, read with pyarrow (independent of the pipeline's reader)."""
    table = pq.read_table(str(root / split), columns=["id", "image", "label"])
    rows = zip(table.column("id").to_pylist(), table.column("image").to_pylist(), table.column("label").to_pylist())
    return sorted(rows)


def tree_snapshot(root: Path) -> dict[str, bytes]:
    """Every file under root with its bytes, to prove a dataset was left untouched."""
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def train_config(tmp_path, dataset_root, tracking_uri, **train) -> PipelineConfig:
    """A training config for tests: 2 ranks, 2 epochs, checkpoints and artifacts under tmp_path."""
    cfg = PipelineConfig()
    cfg.data.root = str(dataset_root)
    cfg.spark.progress_interval_s = 0
    cfg.train.num_proc = 2
    cfg.train.epochs = train.pop("epochs", 2)
    cfg.train.checkpoint_dir = str(tmp_path / "checkpoints")
    cfg.monitor.path = str(tmp_path / "monitoring")
    for key, value in train.items():
        setattr(cfg.train, key, value)
    cfg.mlflow.tracking_uri = tracking_uri
    cfg.mlflow.artifact_location = None if tracking_uri.startswith("http") else str(tmp_path / "artifacts")
    cfg.mlflow.experiment = "tests"
    return cfg


def stop_process_group(process: subprocess.Popen, timeout_s: float = 20) -> None:
    """Stops a server a test started in its own session: its process group, by its own pid."""
    try:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=timeout_s)
    except ProcessLookupError:
        pass
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)


def make_config(root: Path, train: str, test: str, fmt: str = "idx", **ingest) -> PipelineConfig:
    cfg = PipelineConfig()
    cfg.data.root = str(root)
    cfg.ingest.format = fmt
    cfg.ingest.train = train
    cfg.ingest.test = test
    cfg.ingest.max_shards = ingest.pop("max_shards", 2)
    for key, value in ingest.items():
        setattr(cfg.ingest, key, value)
    cfg.spark.progress_interval_s = 0
    return cfg


def small_idx_inputs(folder: Path, arrays) -> tuple[str, str]:
    write_idx_pair(folder, "train", *arrays["train"])
    write_idx_pair(folder, "t10k", *arrays["test"])
    return str(folder / "train-*"), str(folder / "t10k-*")


def when_epoch_done(checkpoint_root: Path, epoch: int, action, timeout_s: float = 300):
    """Runs ``action(run_dir)`` in a thread once rank 0 has recorded ``epoch``."""
    done = {}

    def watch():
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            for run_dir in checkpoint_root.glob("*"):
                records = checkpoints.read_epochs(str(run_dir)) if (run_dir / "epochs.jsonl").exists() else []
                if any(r["epoch"] >= epoch for r in records):
                    done["at"] = time.monotonic()
                    done["result"] = action(run_dir)
                    return
            time.sleep(0.2)

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    return thread, done


def register_champion(mlflow_cfg, weights, dataset_root) -> dict:
    """Registers the default CNN with ``weights`` as version 1 of 'mnist-cnn' holding @champion, the way
    training registers (``log_and_register`` with the reference of its test-split predictions); returns
    the reference."""
    import mlflow
    from mlflow import MlflowClient

    from pipeline.assess import drift
    from pipeline.assess.report import predict_test_split
    from pipeline.config import ModelConfig
    from pipeline.io.tracking import setup_experiment
    from pipeline.train.model import build_model
    from pipeline.train.registration import log_and_register

    experiment = setup_experiment(mlflow_cfg)
    model = build_model(ModelConfig())
    model.set_weights(weights)
    images, labels, probs = predict_test_split(model, str(dataset_root))
    reference = drift.profile(images, probs, labels)
    with mlflow.start_run(experiment_id=experiment) as run:
        version = log_and_register(model, images, mlflow_cfg, run.info.run_id, reference["correct"] / 2000, reference)
    MlflowClient().set_registered_model_alias("mnist-cnn", "champion", version)
    return reference
