"""Publishing an output: written beside it under a staging name, then swapped in by renames, one writer
at a time.

The lock that serialises the writers of one output needs no clock shared between nodes and no
compare-and-swap from the store, only an atomic "create if absent" (Hadoop's ``create(overwrite=false)``,
``O_EXCL`` locally):

- The lock is a folder ``.<output name>.__lock/`` beside the output, of numbered generations (``000001``, ``000002``, ...). The
  highest generation is the lock; its file holds its holder's token and a refresh counter, or
  ``released``. A generation is taken by creating its file, so each number has exactly one holder.
- The holder rewrites its generation (token and counter + 1) every ``stale_s / 4`` seconds.
- A waiter takes generation n+1 when generation n says ``released``, or when n's content has not
  changed for ``stale_s`` seconds of the waiter's own monotonic clock (its holder is gone). It never
  compares a file's modification time with its own clock, so clock skew between nodes cannot make a
  live lock look stale. Of several waiters that saw n go stale, only the one that creates n+1 holds
  it; the others see n+1 live and wait. Breaking a lock never renames or deletes the current
  generation, so a waiter with an old view cannot take a lock another waiter has just taken.
- The holder checks its generation is still the highest and still its own before each rename of the
  swap and at release, which writes ``released`` only into its own generation. A holder that lost its
  lock (paused longer than ``stale_s``) stops with an error instead of renaming over another writer.
- Taking generation n+1 deletes the older ones; one small file stays in the lock folder between
  writes (a deleted folder would let numbering start again at 1 beside a waiter that is about to
  take n+1).
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
import time
import uuid

from pipeline.errors import PipelineError
from pipeline.io.fs import HadoopFS, qualify

log = logging.getLogger(__name__)

# A writer holds an output's lock only for the swap (renames) and refreshes it while it holds it, so a
# lock whose content has not changed for LOCK_STALE_S was left by a crashed writer. Waiters give up after
# LOCK_TIMEOUT_S, which is longer than the stale age: a crashed writer's lock is always broken in time.
LOCK_STALE_S = 60.0
LOCK_TIMEOUT_S = 600.0
RELEASED = "released"


def lock_folder(root: str) -> str:
    """``<parent>/.<name>.__lock``: beside the output, on its file system, and hidden (a leading dot), so
    listings and Spark's file sources skip it."""
    parent, _, name = qualify(root).rstrip("/").rpartition("/")
    return f"{parent}/.{name}.__lock"


def new_staging_path(root: str) -> str:
    return f"{qualify(root).rstrip('/')}.__staging-{uuid.uuid4().hex[:12]}"


class LockLost(PipelineError):
    """This writer's lock was taken over (it was not refreshed for the stale age); nothing more is renamed."""


class OutputLock:
    """The lock of one output; see the module's docstring for the protocol."""

    def __init__(self, fs: HadoopFS, root: str, timeout_s: float = LOCK_TIMEOUT_S, stale_s: float = LOCK_STALE_S,
                 poll_s: float = 0.2, may_give_up_first: bool = False):
        # may_give_up_first: a waiter that would rather skip its work than wait out a crashed holder
        # (a scheduled retrain) may wait less than the stale age
        if stale_s >= timeout_s and not may_give_up_first:
            raise ValueError(f"lock stale age {stale_s} s must be shorter than the wait timeout {timeout_s} s")
        self.fs, self.folder = fs, lock_folder(root)
        self.timeout_s, self.stale_s, self.poll_s = timeout_s, stale_s, poll_s
        self.token = f"{uuid.uuid4().hex}:{os.getpid()}@{socket.gethostname()}"
        self.generation: int | None = None
        self.lost: str | None = None
        self._counter = 0
        self._stop = threading.Event()
        self._refresher: threading.Thread | None = None

    def _path(self, generation: int) -> str:
        return f"{self.folder}/{generation:06d}"

    def _generations(self) -> list[int]:
        return sorted(int(os.path.basename(f.path)) for f in self.fs.glob_files(self.folder)
                      if os.path.basename(f.path).isdigit())

    def _content(self, generation: int) -> str | None:
        try:
            return self.fs.read_text(self._path(generation))
        except Exception as exc:  # taken and cleaned up meanwhile, or a failed read: look again
            log.debug("could not read lock generation %d of %s: %s", generation, self.folder, exc)
            return None

    def acquire(self) -> None:
        """Waits for the lock; raises ``PipelineError`` when a live writer held it for ``timeout_s``."""
        deadline = time.monotonic() + self.timeout_s
        seen, since = None, time.monotonic()
        while True:
            generations = self._generations()
            current = generations[-1] if generations else 0
            content = self._content(current) if current else RELEASED
            if content is not None and content.startswith(RELEASED):
                if self._take(current + 1, generations):
                    return
                continue  # another waiter took it first
            if (current, content) != seen:
                seen, since = (current, content), time.monotonic()
            elif time.monotonic() - since > self.stale_s:
                log.warning("breaking the lock %s: generation %d has not changed for %.0f s (its writer is gone)",
                            self.folder, current, time.monotonic() - since)
                if self._take(current + 1, generations):
                    return
                continue
            if time.monotonic() > deadline:
                raise PipelineError(f"another writer has held {self.folder} for over {self.timeout_s:.0f} s; if "
                                    "none is running, delete that folder and run again")
            time.sleep(self.poll_s)

    def holder(self) -> str | None:
        """The current holder's token (``uuid:pid@host``), None when the lock is free or unreadable."""
        generations = self._generations()
        content = self._content(generations[-1]) if generations else None
        if not content or content.startswith(RELEASED):
            return None
        return content.rsplit(" ", 1)[0]

    def _take(self, generation: int, older: list[int]) -> bool:
        self.fs.mkdirs(self.folder)
        if not self.fs.create_exclusive(self._path(generation), f"{self.token} 0"):
            return False
        self.generation = generation
        for stale in older:  # nobody can take an older generation again: only the highest counts
            with contextlib.suppress(Exception):
                self.fs.delete(self._path(stale))
        self._refresher = threading.Thread(target=self._refresh, name="output-lock-refresh", daemon=True)
        self._refresher.start()
        return True

    def holds(self) -> bool:
        """Whether this writer's generation is still the highest and still its own (reads the store)."""
        if self.lost is None:
            generations = self._generations()
            content = self._content(self.generation)
            if not generations or generations[-1] != self.generation:
                self.lost = f"generation {generations[-1] if generations else 'none'} replaced {self.generation}"
            elif content is not None and not content.startswith(self.token):
                self.lost = f"generation {self.generation} holds another writer's token"
        return self.lost is None

    def check(self) -> None:
        """Raises ``LockLost`` unless this writer still holds the lock (called before each rename)."""
        if not self.holds():
            raise LockLost(f"lost the lock {self.folder} ({self.lost}): it was not refreshed for {self.stale_s:.0f} s "
                           "and another writer took it; nothing more was renamed")

    def _refresh(self) -> None:
        while not self._stop.wait(self.stale_s / 4):
            try:
                if not self.holds():
                    log.error("lost the lock %s (%s)", self.folder, self.lost)
                    return
                self._counter += 1
                self.fs.write_bytes(self._path(self.generation), f"{self.token} {self._counter}".encode())
            except Exception as exc:  # best effort: a missed refresh only lets a waiter break the lock sooner
                log.warning("could not refresh %s: %s", self.folder, exc)

    def release(self) -> None:
        self._stop.set()
        if self._refresher is not None:
            self._refresher.join()
        if self.generation is not None and self.holds():
            self.fs.write_bytes(self._path(self.generation), f"{RELEASED} by {self.token}".encode())
        elif self.generation is not None:
            log.warning("not releasing %s: %s", self.folder, self.lost)


@contextlib.contextmanager
def output_lock(fs: HadoopFS, root: str, timeout_s: float = LOCK_TIMEOUT_S, stale_s: float = LOCK_STALE_S):
    """Holds the lock of one output for the block; yields the ``OutputLock`` (``check()`` before renames).

    Raises:
        PipelineError: the lock was held by a live writer for ``timeout_s``.
    """
    lock = OutputLock(fs, root, timeout_s, stale_s)
    lock.acquire()
    try:
        yield lock
    finally:
        lock.release()


def swap_into_place(fs: HadoopFS, staging: str, root: str) -> None:
    """Replaces ``root`` by ``staging`` with renames, one writer at a time; on failure the previous root is
    restored. Two runs racing on one output leave the complete output of whichever swapped last."""
    with output_lock(fs, root) as lock:
        _swap(fs, staging, qualify(root).rstrip("/"), lock.check)


def _swap(fs: HadoopFS, staging: str, root: str, check) -> None:
    old = f"{root}.__old-{uuid.uuid4().hex[:12]}"
    check()
    had_old = fs.exists(root)
    if had_old:
        fs.rename(root, old)
    try:
        check()
        fs.rename(staging, root)
    except Exception:
        if had_old and not fs.exists(root):
            fs.rename(old, root)
        raise
    if had_old:
        fs.delete(old)
