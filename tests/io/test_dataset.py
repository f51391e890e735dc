"""The output lock that serialises writers of one output: bounded waits, stale locks broken, and a
holder that keeps its lock fresh. Real files through Hadoop's local file system."""

import os
import threading
import time

import pytest

from pipeline.errors import PipelineError
from pipeline.io.dataset import output_lock
from pipeline.io.fs import HadoopFS

pytestmark = pytest.mark.slow  # needs the Spark JVM for Hadoop's FileSystem


def _acquire_in_thread(fs, root, **kwargs):
    outcome = {}

    def run():
        started = time.monotonic()
        try:
            with output_lock(fs, root, **kwargs):
                outcome["acquired_after"] = time.monotonic() - started
        except Exception as exc:
            outcome["error"], outcome["failed_after"] = exc, time.monotonic() - started

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, outcome


def test_a_live_holder_keeps_its_lock_and_a_waiter_gives_up_in_time(spark, tmp_path):
    fs, root = HadoopFS(spark), str(tmp_path / "out")
    with output_lock(fs, root, timeout_s=2.0, stale_s=0.4):
        time.sleep(0.8)  # longer than the stale age: only the holder's refreshes keep it from being broken
        thread, outcome = _acquire_in_thread(fs, root, timeout_s=1.0, stale_s=0.4)
        thread.join(timeout=10)
        assert not thread.is_alive()
    assert isinstance(outcome.get("error"), PipelineError), outcome
    assert "another writer has held" in str(outcome["error"]) and 1.0 <= outcome["failed_after"] < 3.0
    assert not os.path.exists(root + ".__lock")  # released on exit


def test_a_crashed_writers_lock_is_broken(spark, tmp_path):
    fs, root = HadoopFS(spark), str(tmp_path / "out")
    lock = root + ".__lock"
    with open(lock, "w") as handle:
        handle.write("12345@crashed-host")
    old = time.time() - 3600
    os.utime(lock, (old, old))
    thread, outcome = _acquire_in_thread(fs, root, timeout_s=5.0, stale_s=1.0)
    thread.join(timeout=10)
    assert outcome.get("acquired_after", 99) < 2.0, outcome
    assert sorted(os.listdir(tmp_path)) == []  # the stale lock and its claimed copy are gone


class FlakyStatusFS(HadoopFS):
    """Hadoop's local file system whose status call fails, as a flaky object store's can."""

    def modified_seconds_ago(self, path):
        raise OSError("status call failed")


def test_a_failing_status_call_still_honours_the_timeout(spark, tmp_path):
    fs, root = FlakyStatusFS(spark), str(tmp_path / "out")
    with open(root + ".__lock", "w") as handle:
        handle.write("held")
    thread, outcome = _acquire_in_thread(fs, root, timeout_s=1.0, stale_s=0.5)
    thread.join(timeout=10)
    assert not thread.is_alive(), "the lock loop spins past its deadline"
    assert isinstance(outcome.get("error"), PipelineError) and outcome["failed_after"] < 3.0


def test_the_stale_age_must_be_shorter_than_the_timeout(spark, tmp_path):
    with pytest.raises(ValueError, match="must be shorter than the wait timeout"):
        with output_lock(HadoopFS(spark), str(tmp_path / "out"), timeout_s=600, stale_s=1800):
            pass
