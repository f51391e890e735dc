"""The dataset contract between ingest and the later stages.

A dataset root holds Parquet directories ``train/``, ``val/`` and ``test/`` (rows: ``id`` string,
``image`` 784 raw uint8 bytes row-major 28x28, ``label`` int 0-9) and ``manifest.json``. A root is
replaced atomically: the new dataset is written beside it and swapped in by renames
(``pipeline.io.publish``).
"""

from __future__ import annotations

import json

import pyarrow
import pyarrow.fs
import pyarrow.parquet as pq

from pipeline.errors import InputError
from pipeline.io.fs import qualify, to_url

SCHEMA_VERSION = 1
SPLITS = ("train", "val", "test")
MANIFEST = "manifest.json"


def split_path(root: str, split: str) -> str:
    return f"{qualify(root).rstrip('/')}/{split}"


def read_manifest(root: str) -> dict:
    """Reads ``manifest.json`` of a dataset root; ``InputError`` if there is no dataset there."""
    from pipeline.io import storage

    path = storage.join(qualify(root), MANIFEST)
    if not storage.exists(path):
        raise InputError(f"no dataset at {root}: {MANIFEST} is missing; run `mnist-pipeline ingest` first")
    manifest = json.loads(storage.read_text(path))
    if manifest.get("schema_version") != SCHEMA_VERSION:
        raise InputError(
            f"dataset at {root} has schema_version {manifest.get('schema_version')}, "
            f"expected {SCHEMA_VERSION}; re-run ingest"
        )
    return manifest


def parquet_files(path: str) -> tuple[pyarrow.fs.FileSystem, list[str]]:
    """The Parquet files of a folder (not ``_``/``.`` files), in name order, with their file system."""
    filesystem, base = pyarrow.fs.FileSystem.from_uri(to_url(path))
    return filesystem, sorted(
        i.path for i in filesystem.get_file_info(pyarrow.fs.FileSelector(base))
        if i.type == pyarrow.fs.FileType.File and i.base_name.endswith(".parquet")
        and not i.base_name.startswith(("_", ".")))


def parquet_footers(path: str):
    """``(file, footer metadata)`` of each Parquet file of a folder, in name order.

    Raises:
        InputError: a file is not readable Parquet (truncated, overwritten, not Parquet at all);
            the message names it.
    """
    filesystem, files = parquet_files(path)
    for f in files:
        try:
            with filesystem.open_input_file(f) as handle:
                meta = pq.ParquetFile(handle).metadata
        except (pyarrow.ArrowException, OSError) as exc:
            raise InputError(
                f"{f}: not a readable Parquet file ({exc}); the dataset is damaged, re-run ingest to rebuild it"
            ) from None
        yield f, meta


def count_row_groups(path: str) -> int:
    """Row groups over all Parquet files of a split directory, reading every file's footer.

    Raises:
        InputError: a damaged file, named (``parquet_footers``).
    """
    return sum(meta.num_row_groups for _, meta in parquet_footers(path))
