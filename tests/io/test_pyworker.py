"""The Python-worker fix (pipeline/io/pyworker.py) is active in Spark's workers and nowhere else."""

import sys
import zipimport

import pytest

from pipeline.io.pyworker import in_spark_worker


def _worker_state(_):
    import zipimport as zi

    import pipeline  # noqa: F401  (what a worker imports when it runs one of the package's functions)
    from pipeline.io.pyworker import in_spark_worker as inside

    return inside(), bool(getattr(zi.zipimporter.invalidate_caches, "_skips_unchanged", False))


def test_not_active_in_this_process():
    assert not in_spark_worker()
    assert not getattr(zipimport.zipimporter.invalidate_caches, "_skips_unchanged", False)


@pytest.mark.skipif(not (3, 10) <= sys.version_info[:2] < (3, 12), reason="only Python 3.10 and 3.11 need it")
def test_active_in_spark_python_workers(spark):
    assert set(spark.sparkContext.parallelize(range(4), 4).map(_worker_state).collect()) == {(True, True)}


def test_an_archive_is_reread_when_it_changes_and_only_then(tmp_path, monkeypatch):
    import os
    import zipfile

    from pipeline.io import pyworker

    archive = tmp_path / "mods.zip"
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("first_mod.py", "X = 1\n")
    importer = zipimport.zipimporter(str(archive))
    monkeypatch.setattr(zipimport.zipimporter, "invalidate_caches", zipimport.zipimporter.invalidate_caches)
    pyworker.reread_zips_only_when_changed()
    rereads = []
    original = zipimport._read_directory if hasattr(zipimport, "_read_directory") else None
    if original is not None:
        monkeypatch.setattr(zipimport, "_read_directory", lambda path: rereads.append(path) or original(path))
    importer.invalidate_caches()
    importer.invalidate_caches()  # unchanged: not read again
    if original is not None and sys.version_info[:2] < (3, 12):
        assert len(rereads) == 1
    with zipfile.ZipFile(archive, "a") as z:
        z.writestr("second_mod.py", "Y = 2\n")
    os.utime(archive, ns=(1, 1))  # a different modification time even on a coarse clock
    importer.invalidate_caches()
    assert importer.find_spec("second_mod") is not None
