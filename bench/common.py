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

    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for noisy in ("py4j", "petastorm", "pyarrow"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
