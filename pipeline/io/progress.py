"""Periodic progress lines while Spark jobs run: tasks done per stage, rows so far, and rate."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from pyspark import SparkContext

log = logging.getLogger(__name__)


class SparkProgress:
    """Logs a line every ``interval_s`` while active, from the driver's status tracker.

    Use as a context manager around a phase of work; ``rows`` (optional) returns a running row
    count, for example an accumulator's value, to report a rate with.
    """

    def __init__(self, sc: SparkContext, phase: str, interval_s: float, rows: Callable[[], int] | None = None):
        self._sc = sc
        self._phase = phase
        self._interval = interval_s
        self._rows = rows
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"progress-{phase}", daemon=True)
        self._start = 0.0
        self._end: float | None = None

    def __enter__(self) -> SparkProgress:
        self._start = time.monotonic()
        if self._interval > 0:
            self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._end = time.monotonic()
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)

    @property
    def elapsed(self) -> float:
        """Seconds from entering to leaving the context (to now while inside it)."""
        return (self._end if self._end is not None else time.monotonic()) - self._start

    def line(self) -> str:
        tracker = self._sc.statusTracker()
        parts = []
        for stage_id in tracker.getActiveStageIds():
            info = tracker.getStageInfo(stage_id)
            if info is not None:
                parts.append(f"stage {stage_id}: {info.numCompletedTasks}/{info.numTasks} tasks")
        text = f"{self._phase}: {self.elapsed:.0f} s"
        if parts:
            text += ", " + ", ".join(parts)
        if self._rows is not None:
            rows = self._rows()
            text += f", {rows:,} rows ({rows / max(self.elapsed, 1e-9):,.0f} rows/s)"
        return text

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            try:
                log.info(self.line())
            except Exception:  # the tracker can vanish at shutdown; progress is best effort
                return
