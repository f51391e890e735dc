"""One storage layer for what Python reads and writes outside Spark: checkpoints, epoch records, run
state, the manifest, the inference summary, the download cache and the preflight probes.

It opens the schemes the configs advertise, with the same semantics on the driver and on the ranks:

  ``/abs/path``, ``rel/path``, ``file:///x``   local (pyarrow's LocalFileSystem)
  ``/Volumes/...``, ``/dbfs/...``             Databricks: POSIX paths on the cluster's nodes
  ``dbfs:/x``                                 Databricks: the same file as ``/dbfs/x``
  ``hdfs://namenode:port/x``, ``hdfs:///x``   HDFS through libhdfs (pyarrow's HadoopFileSystem, as Petastorm);
                                              needs ``CLASSPATH`` (``hadoop classpath --glob``) and
                                              ``ARROW_LIBHDFS_DIR`` on every node
  ``s3://bucket/x``, ``s3a://bucket/x``       S3 (pyarrow's S3FileSystem); credentials from the standard AWS
                                              variables or profile, ``AWS_ENDPOINT_URL`` for S3-compatible stores
  ``gs://bucket/x``                           Google Cloud Storage (pyarrow's GcsFileSystem)

Spark-side reads and writes (Parquet datasets, predictions) keep going through Spark.

Publishing is write-then-move: a file is written beside its final name and moved into place (on S3 a
single PUT is already all-or-nothing). A checkpoint is a folder that is complete before the run state
that names it is written, so resume never picks a half-written one.
"""

from __future__ import annotations

import os
import posixpath
import shutil
import tempfile
import uuid
from functools import lru_cache
from urllib.parse import urlparse

import pyarrow
import pyarrow.fs as pafs

from pipeline.errors import PipelineError

LOCAL_SCHEMES = ("", "file")
S3_SCHEMES = ("s3", "s3a", "s3n")


class StorageError(PipelineError):
    """A path cannot be opened, read or written; the message names the path and what to configure."""


def split_uri(path: str) -> tuple[str, str]:
    """(scheme, rest) of a path as the configs write it; ``dbfs:/x`` is the local ``/dbfs/x``."""
    if path.startswith("dbfs:"):
        return "", "/dbfs/" + path[len("dbfs:"):].lstrip("/")
    parsed = urlparse(path)
    if len(parsed.scheme) <= 1:  # no scheme (a Windows drive letter is not one either)
        return "", os.path.abspath(path)
    if parsed.scheme == "file":
        return "", parsed.path
    return parsed.scheme, path


def _s3_filesystem() -> pafs.S3FileSystem:
    endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
    kwargs = {}
    if endpoint:
        parsed = urlparse(endpoint)
        kwargs = {"endpoint_override": parsed.netloc or parsed.path, "scheme": parsed.scheme or "https"}
    region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
    if region:
        kwargs["region"] = region
    return pafs.S3FileSystem(**kwargs)


@lru_cache(maxsize=16)
def _filesystem(scheme: str, netloc: str) -> pafs.FileSystem:
    if scheme in LOCAL_SCHEMES:
        return pafs.LocalFileSystem()
    if scheme in S3_SCHEMES:
        return _s3_filesystem()
    if scheme == "hdfs":
        host, _, port = netloc.partition(":")
        return pafs.HadoopFileSystem(host or "default", int(port or 0))
    if scheme == "gs":
        return pafs.GcsFileSystem()
    raise StorageError(f"scheme {scheme!r} is not supported")


_HOW_TO = {
    "hdfs": "set CLASSPATH (`hadoop classpath --glob`) and ARROW_LIBHDFS_DIR (the folder of libhdfs.so) on the "
            "driver and every worker",
    "s3": "set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY (or an AWS profile or instance role), AWS_REGION, and "
          "AWS_ENDPOINT_URL for an S3-compatible store",
    "gs": "set GOOGLE_APPLICATION_CREDENTIALS",
}


def how_to_configure(path: str) -> str:
    """What a scheme needs on every node, for error messages."""
    scheme, _ = split_uri(path)
    scheme = "s3" if scheme in S3_SCHEMES else scheme
    if scheme in LOCAL_SCHEMES:
        return "the folder must exist or be creatable, writable, and reachable at the same path from every node"
    return _HOW_TO.get(scheme, "use a local path, hdfs://, s3://, s3a://, gs:// or dbfs:/")


def resolve(path: str) -> tuple[pafs.FileSystem, str]:
    """(pyarrow file system, path inside it) for a path as the configs write it."""
    scheme, rest = split_uri(path)
    if scheme in LOCAL_SCHEMES:
        return _filesystem("", ""), rest
    parsed = urlparse(rest)
    try:
        fs = _filesystem(scheme, parsed.netloc)
    except StorageError:
        raise StorageError(f"{path}: scheme {scheme!r} is not supported; {how_to_configure(path)}") from None
    except (OSError, pyarrow.ArrowException) as exc:
        raise StorageError(f"{path}: cannot open the {scheme} file system ({exc}); {how_to_configure(path)}") from None
    if scheme in S3_SCHEMES or scheme == "gs":
        return fs, (parsed.netloc + parsed.path).rstrip("/") or parsed.netloc
    return fs, parsed.path


def join(base: str, *parts: str) -> str:
    return "/".join([base.rstrip("/"), *[p.strip("/") for p in parts]])


def exists(path: str) -> bool:
    fs, p = resolve(path)
    return fs.get_file_info(p).type != pafs.FileType.NotFound


def makedirs(path: str) -> None:
    fs, p = resolve(path)
    fs.create_dir(p, recursive=True)


def read_bytes(path: str) -> bytes:
    fs, p = resolve(path)
    with fs.open_input_stream(p, compression=None) as handle:
        return handle.read()


def read_text(path: str) -> str:
    return read_bytes(path).decode("utf-8")


def write_bytes(path: str, data: bytes) -> None:
    """Writes ``path`` whole or not at all: beside it first, then moved into place (object stores: one PUT)."""
    fs, p = resolve(path)
    parent = posixpath.dirname(p)
    if parent:
        fs.create_dir(parent, recursive=True)
    if isinstance(fs, (pafs.S3FileSystem, pafs.GcsFileSystem)):
        with fs.open_output_stream(p, compression=None) as handle:
            handle.write(data)
        return
    tmp = f"{p}.tmp-{uuid.uuid4().hex[:8]}"
    with fs.open_output_stream(tmp, compression=None) as handle:
        handle.write(data)
    fs.move(tmp, p)


def write_text(path: str, text: str) -> None:
    write_bytes(path, text.encode("utf-8"))


def delete(path: str) -> None:
    """Deletes a file or a folder with everything in it; nothing if it does not exist."""
    fs, p = resolve(path)
    info = fs.get_file_info(p)
    if info.type == pafs.FileType.Directory:
        fs.delete_dir(p)
    elif info.type == pafs.FileType.File:
        fs.delete_file(p)


def list_names(path: str) -> list[str]:
    fs, p = resolve(path)
    if fs.get_file_info(p).type == pafs.FileType.NotFound:
        return []
    return sorted(info.base_name for info in fs.get_file_info(pafs.FileSelector(p)))


def upload_dir(local_dir: str, path: str) -> None:
    """Copies the files of a local folder (not recursive) to ``path`` (a folder)."""
    for name in sorted(os.listdir(local_dir)):
        with open(os.path.join(local_dir, name), "rb") as handle:
            write_bytes(join(path, name), handle.read())


def download_dir(path: str, local_dir: str) -> None:
    """Copies the files of folder ``path`` into a local folder."""
    os.makedirs(local_dir, exist_ok=True)
    for name in list_names(path):
        with open(os.path.join(local_dir, name), "wb") as handle:
            handle.write(read_bytes(join(path, name)))


class LocalStaging:
    """A local temporary folder for what TensorFlow must write to a local path, removed on exit."""

    def __enter__(self) -> str:
        self._dir = tempfile.mkdtemp(prefix="mnist-pipeline-")
        return self._dir

    def __exit__(self, *exc) -> None:
        shutil.rmtree(self._dir, ignore_errors=True)


def list_files(pattern: str) -> list[tuple[str, int]]:
    """``(path, bytes)`` of every file that ``pattern`` names, sorted: a file, a folder (every file under it,
    recursively) or a glob of files and folders (``*``, ``?``, ``[...]``). Names starting with ``_`` or ``.``
    are skipped below a folder, as Spark's file sources skip them. Paths keep the pattern's scheme (local
    ones are absolute), so every function here opens them. [] when nothing matches.

    Raises:
        StorageError: the file system cannot be opened; any other failure of the listing is raised as it is.
    """
    import fnmatch

    from pipeline.io.fs import qualify

    qualified = qualify(pattern)
    scheme, _ = split_uri(qualified)
    # resolve() gives S3 and GCS paths with their bucket, HDFS paths without their name node
    prefix = ("" if scheme in LOCAL_SCHEMES else f"hdfs://{urlparse(qualified).netloc}" if scheme == "hdfs"
              else f"{scheme}://")
    fs, p = resolve(qualified)
    p = p.rstrip("/") or "/"
    if not any(c in p for c in "*?["):
        info = fs.get_file_info(p)
        if info.type == pafs.FileType.File:
            return [(prefix + p, info.size)]
        if info.type == pafs.FileType.NotFound:
            return []
        base, wanted = p, None
    else:
        head = p[:min(p.index(c) for c in "*?[" if c in p)]
        base, wanted = head.rsplit("/", 1)[0] or "/", p
        if fs.get_file_info(base).type == pafs.FileType.NotFound:
            return []
    found = []
    for info in fs.get_file_info(pafs.FileSelector(base, recursive=True)):
        if info.type != pafs.FileType.File:
            continue
        inside = info.path[len(base):].lstrip("/")
        if any(part.startswith(("_", ".")) for part in inside.split("/")):
            continue
        if wanted is None or fnmatch.fnmatchcase(info.path, wanted) or fnmatch.fnmatchcase(info.path, wanted + "/*"):
            found.append((prefix + info.path, info.size))
    return sorted(found)
