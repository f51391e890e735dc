"""File-system operations through Hadoop's FileSystem API, so local, HDFS, S3 and DBFS paths all work.

Paths without a scheme are local and are made absolute against the driver's working directory.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import urlparse

if TYPE_CHECKING:  # the path helpers here serve code that starts no Spark (the retrain decision)
    from pyspark.sql import SparkSession


@dataclass(frozen=True)
class FileInfo:
    path: str  # fully qualified, as Spark's binaryFile source reports it
    size: int


def qualify(path: str) -> str:
    """Makes a scheme-less path absolute (``file:`` is implied); leaves URIs alone."""
    if urlparse(path).scheme and not os.path.isabs(path):
        return path
    return os.path.abspath(path)


def display_path(path: str) -> str:
    """A path as a user wrote it: ``file:/x/y`` shows as ``/x/y``; other URIs unchanged."""
    return path[5:] if path.startswith("file:/") and not path.startswith("file://") else path


def to_url(path: str) -> str:
    """A URL for pyarrow/petastorm: ``file:///abs/path`` for local paths, URIs unchanged."""
    q = qualify(path)
    return "file://" + q if q.startswith("/") else q


class HadoopFS:
    """Thin wrapper over ``org.apache.hadoop.fs.FileSystem`` for the driver."""

    def __init__(self, spark: SparkSession):
        self._jvm = spark.sparkContext._jvm
        self._conf = spark.sparkContext._jsc.hadoopConfiguration()

    def _path(self, path: str):
        return self._jvm.org.apache.hadoop.fs.Path(qualify(path))

    def _fs(self, jpath):
        return jpath.getFileSystem(self._conf)

    def glob_files(self, pattern: str) -> list[FileInfo]:
        """Files matching a path, directory (its files) or glob, sorted by path; [] when none."""
        jpath = self._path(pattern)
        fs = self._fs(jpath)
        statuses = fs.globStatus(jpath) or []
        out = []
        for status in statuses:
            if status.isDirectory():
                for child in fs.listStatus(status.getPath()):
                    name = child.getPath().getName()
                    if child.isFile() and not name.startswith((".", "_")):
                        out.append(FileInfo(child.getPath().toString(), child.getLen()))
            else:
                out.append(FileInfo(status.getPath().toString(), status.getLen()))
        return sorted(out, key=lambda f: f.path)

    def scan_files(self, path: str) -> tuple[int, list[str]]:
        """Walks a folder (recursively) or a glob as Spark's file sources do, skipping names that start
        with ``.`` or ``_``: (number of files, paths of the empty ones). Holds only the empty ones."""
        jpath = self._path(path)
        fs = self._fs(jpath)
        count, empty = 0, []
        for status in fs.globStatus(jpath) or []:
            if status.isDirectory():
                files = fs.listFiles(status.getPath(), True)
                while files.hasNext():
                    child = files.next()
                    relative = child.getPath().toUri().getPath()[len(status.getPath().toUri().getPath()):]
                    if any(part.startswith((".", "_")) for part in relative.split("/") if part):
                        continue
                    count += 1
                    if child.getLen() == 0:
                        empty.append(child.getPath().toString())
            elif not status.getPath().getName().startswith((".", "_")):
                count += 1
                if status.getLen() == 0:
                    empty.append(status.getPath().toString())
        return count, sorted(empty)

    def exists(self, path: str) -> bool:
        jpath = self._path(path)
        return bool(self._fs(jpath).exists(jpath))

    def mkdirs(self, path: str) -> None:
        jpath = self._path(path)
        self._fs(jpath).mkdirs(jpath)

    def delete(self, path: str) -> None:
        jpath = self._path(path)
        self._fs(jpath).delete(jpath, True)

    def rename(self, src: str, dst: str) -> None:
        """Renames ``src`` to ``dst``; ``dst`` must not exist (Hadoop would move src inside it)."""
        jsrc, jdst = self._path(src), self._path(dst)
        fs = self._fs(jsrc)
        if fs.exists(jdst):
            raise FileExistsError(f"cannot rename {src} to {dst}: the target exists")
        if not fs.rename(jsrc, jdst):
            raise OSError(f"renaming {src} to {dst} failed")

    def write_bytes(self, path: str, data: bytes) -> None:
        q = qualify(path)
        if q.startswith("/"):  # a local file: no Hadoop checksum (.crc) file beside it
            with open(q, "wb") as handle:
                handle.write(data)
            return
        jpath = self._path(path)
        stream = self._fs(jpath).create(jpath, True)
        try:
            stream.write(bytearray(data))
        finally:
            stream.close()

    def create_exclusive(self, path: str, text: str) -> bool:
        """Creates ``path`` only if it does not exist (atomically); False if it already exists."""
        q = qualify(path)
        if q.startswith("/"):
            try:
                fd = os.open(q, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                return False
            with os.fdopen(fd, "w") as handle:
                handle.write(text)
            return True
        jpath = self._path(path)
        try:
            stream = self._fs(jpath).create(jpath, False)
        except Exception as exc:  # py4j wraps FileAlreadyExistsException
            if "FileAlreadyExists" in str(exc) or "already exists" in str(exc):
                return False
            raise
        try:
            stream.write(bytearray(text.encode()))
        finally:
            stream.close()
        return True

    def read_text(self, path: str) -> str:
        """The text of a small file (a lock's content)."""
        q = qualify(path)
        if q.startswith("/"):
            with open(q) as handle:
                return handle.read()
        jpath = self._path(path)
        stream = self._fs(jpath).open(jpath)
        try:
            return bytes(self._jvm.org.apache.commons.io.IOUtils.toByteArray(stream)).decode()
        finally:
            stream.close()
