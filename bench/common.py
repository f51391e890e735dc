"""What the benchmark scripts share: the Fashion-MNIST input check and reading a split into memory."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")


def require_idx_input(folder: Path) -> None:
    """Exits with how to get the data when ``folder`` lacks the canonical IDX files."""
    if not (folder / "train-images-idx3-ubyte.gz").is_file():
        sys.exit(f"{folder} has no train-images-idx3-ubyte.gz; install it with: apt-get install dataset-fashion-mnist")


def load_split(root: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    """A dataset split in memory: float32 images ``(n, 28, 28, 1)`` (raw 0-255) and int32 labels."""
    table = pq.read_table(str(root / split), columns=["image", "label"])
    images = np.frombuffer(b"".join(table.column("image").to_pylist()), dtype=np.uint8).reshape(-1, 28, 28, 1)
    return images.astype(np.float32), np.asarray(table.column("label").to_pylist(), dtype=np.int32)


def setup_logging() -> None:
    """Progress lines on stderr, as the console script shows them in verbose mode."""
    import logging

    from pipeline.io.console import QUIET_LOGGERS, drop_py4j_retry

    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for handler in logging.getLogger().handlers:
        handler.addFilter(drop_py4j_retry)
    for noisy in QUIET_LOGGERS:
        logging.getLogger(noisy).setLevel(logging.WARNING)


def machine() -> dict:
    """Where a figure came from: machine, cores, memory and the versions that matter."""
    import datetime as dt
    import os
    import platform
    from importlib.metadata import PackageNotFoundError, version

    def ver(name):
        try:
            return version(name)
        except PackageNotFoundError:
            return None

    memory = None
    if os.path.exists("/proc/meminfo"):
        with open("/proc/meminfo") as handle:
            memory = round(int(handle.readline().split()[1]) / 2**20, 1)
    cpu = platform.processor() or platform.machine()
    if os.path.exists("/proc/cpuinfo"):
        with open("/proc/cpuinfo") as handle:
            names = [line.split(":", 1)[1].strip() for line in handle if line.startswith("model name")]
        cpu = names[0] if names else cpu
    return {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"), "cpu": cpu, "cores": os.cpu_count(),
        "memory_gib": memory, "python": platform.python_version(),
        "versions": {n: ver(n) for n in ("pyspark", "tensorflow", "horovod", "petastorm", "pyarrow", "mlflow")},
    }


def write_results(name: str, figures: dict) -> Path:
    """Writes ``bench/results/<name>.json``: the machine, then the figures."""
    import json

    out = Path(__file__).resolve().parent / "results" / f"{name}.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps({"machine": machine(), **figures}, indent=2) + "\n")
    return out
