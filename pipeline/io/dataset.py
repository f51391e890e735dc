"""The dataset contract between ingest and the later stages.

A dataset root holds Parquet directories ``train/``, ``val/`` and ``test/`` (rows: ``id`` string,
``image`` 784 raw uint8 bytes row-major 28x28, ``label`` int 0-9) and ``manifest.json``. A root is
replaced atomically: the new dataset is written beside it and swapped in by renames.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import time
import uuid

import pyarrow
import pyarrow.fs
import pyarrow.parquet as pq

from pipeline.errors import InputError, PipelineError
from pipeline.io.fs import HadoopFS, qualify, to_url

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1
SPLITS = ("train", "val", "test")
MANIFEST = "manifest.json"


def split_path(root: str, split: str) -> str:
    return f"{qualify(root).rstrip('/')}/{split}"


def read_manifest(fs: HadoopFS, root: str) -> dict:
    """Reads ``manifest.json`` of a dataset root; ``InputError`` if there is no dataset there."""
    path = f"{qualify(root).rstrip('/')}/{MANIFEST}"
    if not fs.exists(path):
        raise InputError(f"no dataset at {root}: {MANIFEST} is missing; run `mnist-pipeline ingest` first")
    manifest = json.loads(fs.read_bytes(path).decode("utf-8"))
    if manifest.get("schema_version") != SCHEMA_VERSION:
        raise InputError(
            f"dataset at {root} has schema_version {manifest.get('schema_version')}, "
            f"expected {SCHEMA_VERSION}; re-run ingest"
        )
    return manifest


def count_row_groups(path: str) -> int:
    """Row groups over all Parquet files of a split directory, reading every file's footer.

    Raises:
        InputError: a file is not readable Parquet (truncated, overwritten, not Parquet at all);
            the message names it.
    """
    filesystem, base = pyarrow.fs.FileSystem.from_uri(to_url(path))
    infos = filesystem.get_file_info(pyarrow.fs.FileSelector(base))
    total = 0
    for info in infos:
        name = info.base_name
        if info.type == pyarrow.fs.FileType.File and name.endswith(".parquet") and not name.startswith(("_", ".")):
            try:
                with filesystem.open_input_file(info.path) as handle:
                    total += pq.ParquetFile(handle).metadata.num_row_groups
            except (pyarrow.ArrowException, OSError) as exc:
                raise InputError(
                    f"{info.path}: not a readable Parquet file ({exc}); the dataset is damaged, re-run ingest to rebuild it"
                ) from None
    return total


def new_staging_path(root: str) -> str:
    return f"{qualify(root).rstrip('/')}.__staging-{uuid.uuid4().hex[:12]}"


@contextlib.contextmanager
def output_lock(fs: HadoopFS, root: str, timeout_s: float = 600, stale_s: float = 1800):
    """Serialises writers of one output (``<root>.__lock``, created atomically) for the short swap.

    A lock older than ``stale_s`` is taken to be left by a crashed writer and broken.
    """
    lock = f"{qualify(root).rstrip('/')}.__lock"
    deadline = time.monotonic() + timeout_s
    while not fs.create_exclusive(lock, f"{os.getpid()}@{socket.gethostname()}"):
        try:
            if fs.modified_seconds_ago(lock) > stale_s:
                log.warning("breaking the stale lock %s", lock)
                fs.delete(lock)
                continue
        except Exception:
            continue  # the holder released it meanwhile
        if time.monotonic() > deadline:
            raise PipelineError(f"another writer has held {lock} for over {timeout_s:.0f} s; if none is running, "
                                "delete that file and run again")
        time.sleep(0.2)
    try:
        yield
    finally:
        fs.delete(lock)


def swap_into_place(fs: HadoopFS, staging: str, root: str) -> None:
    """Replaces ``root`` by ``staging`` with renames, one writer at a time; on failure the previous root is
    restored. Two runs racing on one output leave the complete output of whichever swapped last."""
    with output_lock(fs, root):
        _swap(fs, staging, qualify(root).rstrip("/"))


def _swap(fs: HadoopFS, staging: str, root: str) -> None:
    old = f"{root}.__old-{uuid.uuid4().hex[:12]}"
    had_old = fs.exists(root)
    if had_old:
        fs.rename(root, old)
    try:
        fs.rename(staging, root)
    except Exception:
        if had_old and not fs.exists(root):
            fs.rename(old, root)
        raise
    if had_old:
        fs.delete(old)
