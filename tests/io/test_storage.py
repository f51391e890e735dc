"""The storage layer for what Python reads and writes outside Spark: local, Databricks-style and S3 paths
(a real S3-compatible server on loopback), writes published whole, clear errors for what cannot open."""

import os

import pytest

from pipeline.io import storage


def test_local_paths_round_trip_and_publish_whole(tmp_path):
    target = str(tmp_path / "a" / "b" / "state.json")
    storage.write_text(target, "one")
    storage.write_text(target, "two")
    assert storage.read_text(target) == "two" and storage.exists(target)
    assert os.listdir(tmp_path / "a" / "b") == ["state.json"]  # no temporary file left beside it
    assert storage.read_text("file://" + target) == "two"
    storage.delete(str(tmp_path / "a"))
    assert not storage.exists(target) and storage.list_names(str(tmp_path / "a")) == []


def test_databricks_paths_are_posix_paths():
    assert storage.split_uri("dbfs:/mnt/x/ckpt") == ("", "/dbfs/mnt/x/ckpt")
    assert storage.split_uri("dbfs:///mnt/x") == ("", "/dbfs/mnt/x")
    assert storage.split_uri("/Volumes/ml/mnist/data") == ("", "/Volumes/ml/mnist/data")
    assert storage.split_uri("s3a://bucket/k") == ("s3a", "s3a://bucket/k")


def test_a_scheme_nothing_can_open_says_what_to_use():
    with pytest.raises(storage.StorageError, match=r"ftp://host/x: scheme 'ftp' is not supported; use a local path, "
                                                   r"hdfs://, s3://, s3a://, gs:// or dbfs:/"):
        storage.write_text("ftp://host/x", "x")


def test_hdfs_without_libhdfs_says_what_every_node_needs():
    with pytest.raises(storage.StorageError, match=r"hdfs://127\.0\.0\.1:9/ckpt: cannot open the hdfs file system "
                                                   r"\(.*\); set CLASSPATH .* and ARROW_LIBHDFS_DIR"):
        storage.exists("hdfs://127.0.0.1:9/ckpt")


def test_s3_and_s3a_paths_round_trip_through_a_real_server(s3, tmp_path):
    bucket = s3.create_bucket("storage-test")
    storage.write_bytes(f"{bucket}/run/state.json", b"{}")
    assert storage.read_bytes("s3a://storage-test/run/state.json") == b"{}"
    (tmp_path / "ckpt").mkdir()
    (tmp_path / "ckpt" / "ckpt.index").write_bytes(b"index")
    (tmp_path / "ckpt" / "ckpt.data-00000-of-00001").write_bytes(os.urandom(3000))
    storage.upload_dir(str(tmp_path / "ckpt"), f"{bucket}/run/ckpt-1")
    assert storage.list_names(f"{bucket}/run") == ["ckpt-1", "state.json"]
    storage.download_dir(f"{bucket}/run/ckpt-1", str(tmp_path / "back"))
    assert sorted(os.listdir(tmp_path / "back")) == ["ckpt.data-00000-of-00001", "ckpt.index"]
    assert (tmp_path / "back" / "ckpt.data-00000-of-00001").read_bytes() == \
        (tmp_path / "ckpt" / "ckpt.data-00000-of-00001").read_bytes()
    storage.delete(f"{bucket}/run")
    assert not storage.exists(f"{bucket}/run/state.json")


def test_bytes_are_bytes_whatever_the_name(s3, tmp_path):
    """pyarrow (de)compresses by file extension unless told not to: a .gz file must round-trip as stored."""
    import gzip

    payload = gzip.compress(b"idx bytes")
    bucket = s3.create_bucket("gz-test")
    for path in (str(tmp_path / "train-images-idx3-ubyte.gz"), f"{bucket}/cache/train-images-idx3-ubyte.gz"):
        storage.write_bytes(path, payload)
        assert storage.read_bytes(path) == payload
    assert (tmp_path / "train-images-idx3-ubyte.gz").read_bytes() == payload
