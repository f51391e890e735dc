"""A per-task cost of Spark's Python workers on Python 3.10 and 3.11, removed.

Before every task, a PySpark worker calls ``importlib.invalidate_caches()``. On Python 3.10 and 3.11
that makes each zip archive on ``sys.path`` re-read its whole central directory at once
(python/cpython#103200; Python 3.12 made it lazy). A Spark 3.5 worker's path holds ``pyspark.zip``
and the ``spark-core`` jar (about 15 MB, thousands of entries), so every Python task, however
small, spends 60-100 ms of CPU there before it starts (measured: 20 trivial tasks on 2 cores, 1.3 s
instead of 0.3 s). Spark removed the call for tasks that do not need it in 4.1 (SPARK-54744).

``speed_up_worker()`` runs when this package is imported inside a Spark Python worker (a process
forked by ``pyspark.daemon``), that is, when a worker first runs one of this package's functions. It
makes a zip importer's ``invalidate_caches`` re-read its archive only when the archive changed on
disk (modification time or size), which is what invalidation is for. Nothing changes elsewhere: not
in the driver, the Horovod ranks or a notebook, nor on Python 3.12+.
"""

from __future__ import annotations

import os
import sys


def in_spark_worker() -> bool:
    main = sys.modules.get("__main__")
    spec = getattr(main, "__spec__", None)
    return getattr(spec, "name", None) == "pyspark.daemon"


def speed_up_worker() -> bool:
    """Installs the change described above inside a Spark worker on Python 3.10/3.11; True if it did."""
    if not (3, 10) <= sys.version_info[:2] < (3, 12) or not in_spark_worker():
        return False
    reread_zips_only_when_changed()
    return True


def reread_zips_only_when_changed() -> None:
    """Makes ``zipimporter.invalidate_caches`` re-read an archive only if it changed on disk."""
    import zipimport

    importer = zipimport.zipimporter
    if getattr(importer.invalidate_caches, "_skips_unchanged", False):
        return
    reread = importer.invalidate_caches

    def invalidate_caches(self):
        try:
            stat = os.stat(self.archive)
            seen = (stat.st_mtime_ns, stat.st_size)
        except OSError:
            seen = None
        if seen is not None and getattr(self, "_seen_on_disk", None) == seen:
            return
        reread(self)
        self._seen_on_disk = seen

    invalidate_caches._skips_unchanged = True
    importer.invalidate_caches = invalidate_caches
