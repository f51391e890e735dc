"""The driver's view of a running training: epoch records from the run folder, printed and logged."""

from __future__ import annotations

import logging
import threading
import time

from pipeline.train import checkpoints
from pipeline.train.failures import first_line

log = logging.getLogger(__name__)


def _metrics(record: dict, now_ms: int):
    from mlflow.entities import Metric

    return [Metric(k, float(v), now_ms, record["epoch"]) for k, v in record.items() if k != "epoch"]


def _resource_metrics(records: list[dict], now_ms: int):
    """``cpu_percent_rank<r>``, ``rss_mb_rank<r>`` (and ``gpu_memory_mb_rank<r>``) at step = epoch."""
    from mlflow.entities import Metric

    return [Metric(f"{k}_rank{r['rank']}", float(v), now_ms, r["epoch"])
            for r in records for k, v in r.items() if k not in ("epoch", "rank")]


class EpochTailer:
    """Prints each epoch record and logs it to MLflow as rank 0 writes it.

    A tracking server that is away does not stop training: the record stays on disk and is logged
    later (``log_missing_epochs``). ``on_record(record) -> bool`` sees each record once; when it returns
    True (a tuning trial to prune) the ranks are asked to stop and ``stopped_after`` holds that epoch.
    When it raises (the tuner's storage failed, say), the ranks are asked to stop too, and ``stop``
    raises that exception as it is: an epoch is judged, or the run fails saying why it was not.
    """

    def __init__(self, client, run_id: str, run_dir: str, epochs: int, interval_s: float = 2.0,
                 on_record=None):
        self._client, self._run_id, self._run_dir, self._epochs = client, run_id, run_dir, epochs
        self._interval = interval_s
        self._on_record = on_record
        self._logged = self._printed = self._judged = 0
        self._resources_from = 0  # epochs up to this were logged by an earlier attempt
        self._resources_logged: set[tuple[int, int]] = set()
        self.stopped_after: int | None = None
        self.error: BaseException | None = None  # what on_record raised
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="epoch-tailer", daemon=True)

    def start(self, already_logged: int) -> None:
        self._logged = self._printed = self._judged = self._resources_from = already_logged
        self._thread.start()

    def stop(self, raise_error: bool = True) -> list[dict]:
        """Stops tailing (one last poll) and returns every epoch record; raises what ``on_record`` raised,
        unless ``raise_error`` is False (the ranks failed: their error is the one to report)."""
        self._stop.set()
        self._thread.join(timeout=60)
        self._poll_quietly()
        if self.error is not None and raise_error:
            raise self.error
        return checkpoints.read_epochs(self._run_dir)

    def _loop(self) -> None:
        while not self._stop.wait(self._interval):
            self._poll_quietly()

    def _poll_quietly(self) -> None:
        try:
            self.poll()
        except Exception as exc:  # keep training going; what is not read or logged now is at the end
            log.warning("epoch records not read or not logged to MLflow yet: %s", first_line(exc))

    def poll(self) -> None:
        for record in checkpoints.read_epochs(self._run_dir):
            step = record["epoch"]
            if step > self._printed:
                log.info(
                    "epoch %d/%d: loss %.4f acc %.4f | val_loss %.4f val_acc %.4f | lr %.2e | %.0f img/s "
                    "(%.0f per rank) | %.1f s", step, self._epochs, record["loss"], record["accuracy"],
                    record["val_loss"], record["val_accuracy"], record["learning_rate"], record["images_per_sec"],
                    record["images_per_sec_per_rank"], record["epoch_seconds"])
                self._printed = step
            if step > self._judged and self._on_record is not None and self.stopped_after is None:
                self._judged = step
                try:
                    stop = self._on_record(record)
                except Exception as exc:
                    self.error, stop = exc, True
                    log.error("judging epoch %d failed (%s: %s); stopping the ranks", step, type(exc).__name__,
                              first_line(exc))
                if stop:
                    checkpoints.request_stop(self._run_dir)
                    self.stopped_after = step
                    if self.error is None:
                        log.info("stopping the ranks after epoch %d", step)
            if step > self._logged:
                self._client.log_batch(self._run_id, metrics=_metrics(record, int(time.time() * 1000)))
                self._logged = step
        fresh = [r for r in checkpoints.read_resources(self._run_dir)
                 if r["epoch"] > self._resources_from and (r["rank"], r["epoch"]) not in self._resources_logged]
        if fresh:
            self._client.log_batch(self._run_id, metrics=_resource_metrics(fresh, int(time.time() * 1000)))
            self._resources_logged.update((r["rank"], r["epoch"]) for r in fresh)


def log_missing_epochs(client, run_id: str, epochs: list[dict], run_dir: str | None = None) -> None:
    """Logs the epoch records (and, given ``run_dir``, the ranks' resource records) the tailer could not
    (tracking server away during training)."""
    logged = {m.step for m in client.get_metric_history(run_id, "loss")}
    now = int(time.time() * 1000)
    for record in epochs:
        if record["epoch"] not in logged:
            client.log_batch(run_id, metrics=_metrics(record, now))
    if run_dir is None:
        return
    records = checkpoints.read_resources(run_dir)
    for rank in sorted({r["rank"] for r in records}):
        done = {m.step for m in client.get_metric_history(run_id, f"cpu_percent_rank{rank}")}
        missing = [r for r in records if r["rank"] == rank and r["epoch"] not in done]
        if missing:
            client.log_batch(run_id, metrics=_resource_metrics(missing, now))
