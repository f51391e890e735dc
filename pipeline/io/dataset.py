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
import threading
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


def new_staging_path(root: str) -> str:
    return f"{qualify(root).rstrip('/')}.__staging-{uuid.uuid4().hex[:12]}"


# A writer holds an output's lock only for the swap (renames), and refreshes it while it holds it, so a
# lock that has not been refreshed for LOCK_STALE_S was left by a crashed writer. Waiters give up after
# LOCK_TIMEOUT_S, which is longer than the stale age: a crashed writer's lock is always broken in time.
LOCK_STALE_S = 60.0
LOCK_TIMEOUT_S = 600.0


@contextlib.contextmanager
def output_lock(fs: HadoopFS, root: str, timeout_s: float = LOCK_TIMEOUT_S, stale_s: float = LOCK_STALE_S):
    """Serialises writers of one output (``<root>.__lock``, created atomically) for the short swap.

    The holder refreshes the lock every ``stale_s / 4`` seconds; a lock not refreshed for ``stale_s`` is
    broken (renamed away first, so of several waiters exactly one breaks it).

    Raises:
        PipelineError: the lock was held by a live writer for ``timeout_s``.
    """
    if stale_s >= timeout_s:
        raise ValueError(f"lock stale age {stale_s} s must be shorter than the wait timeout {timeout_s} s")
    lock = f"{qualify(root).rstrip('/')}.__lock"
    owner = f"{os.getpid()}@{socket.gethostname()}"
    deadline = time.monotonic() + timeout_s
    while not fs.create_exclusive(lock, owner):
        try:
            age = fs.modified_seconds_ago(lock)
        except Exception as exc:  # released meanwhile, or the status call failed: wait and try again
            log.debug("could not read the age of %s: %s", lock, exc)
            age = None
        if age is not None and age > stale_s:
            _break_stale_lock(fs, lock, age)
        elif time.monotonic() > deadline:
            raise PipelineError(f"another writer has held {lock} for over {timeout_s:.0f} s; if none is running, "
                                "delete that file and run again")
        else:
            time.sleep(0.2)
    stop = threading.Event()
    refresher = threading.Thread(target=_refresh_lock, args=(fs, lock, owner, stale_s / 4, stop),
                                 name="output-lock-refresh", daemon=True)
    refresher.start()
    try:
        yield
    finally:
        stop.set()
        refresher.join()
        fs.delete(lock)


def _refresh_lock(fs: HadoopFS, lock: str, owner: str, every_s: float, stop: threading.Event) -> None:
    while not stop.wait(every_s):
        try:
            fs.write_bytes(lock, owner.encode())
        except Exception as exc:  # best effort: a missed refresh only lets a waiter break the lock sooner
            log.warning("could not refresh %s: %s", lock, exc)


def _break_stale_lock(fs: HadoopFS, lock: str, age: float) -> None:
    claimed = f"{lock}.stale-{uuid.uuid4().hex[:12]}"
    try:
        fs.rename(lock, claimed)
    except Exception:  # another waiter broke it first, or its holder released it
        return
    log.warning("broke the stale lock %s (not refreshed for %.0f s; its writer is gone)", lock, age)
    fs.delete(claimed)


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
