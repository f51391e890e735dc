"""Larger MNIST-style data for scale tests: shifted and rotated copies of real digits, as many IDX files.

Each copy is a real digit rotated by a random angle and shifted by a random offset, so copies are new
images (not exact duplicates) with the label of their source.
"""

from __future__ import annotations

import gzip
import logging
import struct
import time
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)


def transformed_copies(images: np.ndarray, rng: np.random.Generator, max_shift: int = 2,
                       max_degrees: float = 15.0) -> np.ndarray:
    """One shifted + rotated copy of each ``(n, 784)`` uint8 image."""
    from PIL import Image

    out = np.empty_like(images)
    angles = rng.uniform(-max_degrees, max_degrees, size=len(images))
    shifts = rng.integers(-max_shift, max_shift + 1, size=(len(images), 2))
    for i, image in enumerate(images):
        rotated = Image.fromarray(image.reshape(28, 28)).rotate(float(angles[i]), resample=Image.BILINEAR)
        out[i] = np.roll(np.asarray(rotated), tuple(shifts[i]), axis=(0, 1)).reshape(784)
    return out


def write_idx_files(images: np.ndarray, labels: np.ndarray, folder: Path, prefix: str, per_file: int) -> list[Path]:
    """Writes ``<prefix>-NNNNN-images-idx3-ubyte.gz`` / ``...-labels-idx1-ubyte.gz`` pairs of ``per_file`` rows."""
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for part, start in enumerate(range(0, len(images), per_file)):
        x, y = images[start:start + per_file], labels[start:start + per_file]
        for kind, payload in (("images-idx3", struct.pack(">IIII", 0x803, len(x), 28, 28) + x.tobytes()),
                              ("labels-idx1", struct.pack(">II", 0x801, len(y)) + y.tobytes())):
            path = folder / f"{prefix}-{part:05d}-{kind}-ubyte.gz"
            path.write_bytes(gzip.compress(payload, compresslevel=1, mtime=0))
            written.append(path)
    return written


def generate(source_images: np.ndarray, source_labels: np.ndarray, n: int, folder: Path, prefix: str = "train",
             per_file: int = 10_000, seed: int = 0) -> int:
    """Writes ``n`` transformed copies of the source digits as IDX files; returns the rows written."""
    rng = np.random.default_rng(seed)
    start = time.monotonic()
    chunks_x, chunks_y, made = [], [], 0
    part = 0
    while made < n:
        take = min(per_file, n - made)
        idx = rng.integers(0, len(source_images), size=take)
        chunks_x.append(transformed_copies(source_images[idx], rng))
        chunks_y.append(source_labels[idx])
        made += take
        if sum(len(c) for c in chunks_x) >= per_file or made == n:
            write_idx_files(np.concatenate(chunks_x), np.concatenate(chunks_y), folder, f"{prefix}-{part:04d}", per_file)
            chunks_x, chunks_y = [], []
            part += 1
            log.info("generated %s of %s images (%.0f/s)", f"{made:,}", f"{n:,}", made / (time.monotonic() - start))
    return made


SAMPLE = Path(__file__).resolve().parent.parent / "data" / "mnist-sample"


def sample_digits() -> tuple[np.ndarray, np.ndarray]:
    """The embedded sample's train digits, ``(n, 784)`` uint8 images and their labels: the sources."""
    from pipeline.sources import formats

    return formats.parse_idx_pair((SAMPLE / "train-images-idx3-ubyte.gz").read_bytes(), "train",
                                  (SAMPLE / "train-labels-idx1-ubyte.gz").read_bytes(), "train")


def synthetic_input(n: int, folder: Path, test: int = 10_000, seed: int = 1) -> Path:
    """``n`` train and ``test`` test images made from the sample as gzipped IDX files under ``folder``
    (``train-*`` and ``t10k-*``, 10,000 images a file), the input of a benchmark at any size."""
    x, y = sample_digits()
    generate(x, y, n, folder, prefix="train", seed=seed)
    generate(x, y, test, folder, prefix="t10k", seed=seed + 1)
    return folder
