"""The output lock that serialises writers of one output, and the swap it guards: real files through
Hadoop's local file system, real threads contending for them."""

import os
import threading
import time

import pytest

from pipeline.errors import PipelineError
from pipeline.io import publish
from pipeline.io.fs import HadoopFS
from pipeline.io.publish import LockLost, OutputLock, output_lock, swap_into_place

pytestmark = pytest.mark.slow  # needs the Spark JVM for Hadoop's FileSystem


def _in_thread(target):
    outcome = {}

    def run():
        started = time.monotonic()
        try:
            outcome["value"] = target()
            outcome["after"] = time.monotonic() - started
        except Exception as exc:
            outcome["error"], outcome["after"] = exc, time.monotonic() - started

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, outcome


def _acquire(fs, root, **kwargs):
    def take():
        with output_lock(fs, root, **kwargs):
            return True
    return _in_thread(take)


def test_a_live_holder_keeps_its_lock_and_a_waiter_gives_up_in_time(spark, tmp_path):
    fs, root = HadoopFS(spark), str(tmp_path / "out")
    with output_lock(fs, root, timeout_s=2.0, stale_s=0.4):
        time.sleep(0.8)  # longer than the stale age: only the holder's refreshes keep it from being broken
        thread, outcome = _acquire(fs, root, timeout_s=1.0, stale_s=0.4)
        thread.join(timeout=10)
        assert not thread.is_alive()
    assert isinstance(outcome.get("error"), PipelineError), outcome
    assert "another writer has held" in str(outcome["error"]) and 1.0 <= outcome["after"] < 3.0
    (generation,) = (tmp_path / ".out.__lock").iterdir()
    assert generation.read_text().startswith("released")  # released on exit
    thread, outcome = _acquire(fs, root, timeout_s=1.0, stale_s=0.4)  # and taken at once by the next writer
    thread.join(timeout=10)
    assert outcome.get("value") and outcome["after"] < 0.5, outcome


def test_a_live_lock_with_an_old_modification_time_is_not_broken(spark, tmp_path):
    """Clock skew between nodes: the holder's file times say "an hour ago" the whole time. Staleness is
    judged by the waiter's own clock watching the lock's refresh counter, so the waiter keeps waiting."""
    fs, root = HadoopFS(spark), str(tmp_path / "out")
    folder = str(tmp_path / ".out.__lock")
    released = threading.Event()

    def skew():
        while not released.is_set():
            for name in os.listdir(folder) if os.path.isdir(folder) else []:
                old = time.time() - 3600
                try:
                    os.utime(os.path.join(folder, name), (old, old))
                except FileNotFoundError:
                    pass
            time.sleep(0.02)

    with output_lock(fs, root, timeout_s=5.0, stale_s=0.4):
        skewer = threading.Thread(target=skew, daemon=True)
        skewer.start()
        thread, outcome = _acquire(fs, root, timeout_s=5.0, stale_s=0.4)
        time.sleep(1.5)  # well past the stale age
        assert thread.is_alive() and not outcome, "a live lock was broken"
    released.set()
    thread.join(timeout=10)
    assert outcome.get("value"), outcome


def test_a_crashed_writers_lock_is_broken_by_exactly_one_of_many_waiters(spark, tmp_path):
    fs, root = HadoopFS(spark), str(tmp_path / "out")
    folder = tmp_path / ".out.__lock"
    folder.mkdir()
    (folder / "000007").write_text("dead-writer-token 41")  # never refreshed again
    inside, most, done = [0], [0], []
    guard = threading.Lock()

    def write():
        with output_lock(fs, root, timeout_s=20.0, stale_s=0.5):
            with guard:
                inside[0] += 1
                most[0] = max(most[0], inside[0])
            time.sleep(0.3)
            with guard:
                inside[0] -= 1
            done.append(1)
        return True

    threads = [_in_thread(write) for _ in range(4)]
    for thread, _ in threads:
        thread.join(timeout=30)
    assert [o.get("value") for _, o in threads] == [True] * 4, [o for _, o in threads]
    assert most[0] == 1 and len(done) == 4
    (last,) = os.listdir(folder)  # the older generations are gone
    assert int(last) == 7 + 4 and (folder / last).read_text().startswith("released")


class HangingRefreshFS(HadoopFS):
    """Hadoop's local file system whose writes hang while ``hang`` is set: a holder paused longer than
    the stale age (a stop-the-world pause, a hung store call)."""

    hang = threading.Event()

    def write_bytes(self, path, data):
        while self.hang.is_set():
            time.sleep(0.05)
        super().write_bytes(path, data)


def test_a_holder_that_lost_its_lock_renames_nothing_and_leaves_the_new_holders_lock(spark, tmp_path):
    slow, fs, root = HangingRefreshFS(spark), HadoopFS(spark), str(tmp_path / "out")
    paused = OutputLock(slow, root, timeout_s=10.0, stale_s=0.4)
    HangingRefreshFS.hang.set()
    try:
        paused.acquire()
        thread, outcome = _in_thread(lambda: OutputLock(fs, root, timeout_s=10.0, stale_s=0.4))
        thread.join()
        taker = outcome["value"]
        taker.acquire()  # breaks the paused holder's lock: its counter stopped moving
    finally:
        HangingRefreshFS.hang.clear()
    with pytest.raises(LockLost, match=r"lost the lock .*\.out\.__lock \(generation 2 replaced 1\)"):
        paused.check()
    paused.release()  # must not release the new holder's generation
    assert taker.holds()
    taker.release()
    assert (tmp_path / ".out.__lock" / "000002").read_text().startswith(f"released by {taker.token}")


def test_two_writers_with_overlapping_swaps_always_leave_one_writers_complete_output(spark, tmp_path, monkeypatch):
    """Would fail without the lock: the two swaps' renames interleave (a second writer in _swap at once,
    a rename onto an existing target, or a mix of two outputs)."""
    fs, root = HadoopFS(spark), str(tmp_path / "out")
    real_swap, inside, most, outputs = publish._swap, [0], [0], []
    guard = threading.Lock()

    def slow_swap(*args):
        with guard:
            inside[0] += 1
            most[0] = max(most[0], inside[0])
        try:
            time.sleep(0.05)  # a long critical section: the other writer is surely waiting by now
            real_swap(*args)
            outputs.append({open(os.path.join(root, p)).read() for p in os.listdir(root)})
        finally:
            with guard:
                inside[0] -= 1

    monkeypatch.setattr(publish, "_swap", slow_swap)

    def writer(name):
        def run():
            for k in range(8):
                staging = publish.new_staging_path(root)
                os.makedirs(staging)
                for part in range(4):
                    with open(os.path.join(staging, f"part-{part}"), "w") as handle:
                        handle.write(f"{name}-{k}")
                swap_into_place(fs, staging, root)
            return True
        return run

    threads = [_in_thread(writer(name)) for name in ("a", "b")]
    for thread, _ in threads:
        thread.join(timeout=120)
    assert [o.get("value") for _, o in threads] == [True, True], [o for _, o in threads]
    assert most[0] == 1 and len(outputs) == 16
    assert all(len(seen) == 1 for seen in outputs), outputs  # after every swap: one writer's output, whole
    assert len(os.listdir(root)) == 4
    assert sorted(os.listdir(tmp_path)) == [".out.__lock", "out"]  # no staging or old folder left behind


def test_the_stale_age_must_be_shorter_than_the_timeout(spark, tmp_path):
    with pytest.raises(ValueError, match="must be shorter than the wait timeout"):
        with output_lock(HadoopFS(spark), str(tmp_path / "out"), timeout_s=600, stale_s=1800):
            pass
