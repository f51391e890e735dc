"""Saying what failed during training: a lost rank by name, a tracking outage apart from everything else."""

from __future__ import annotations

import re
import signal
from collections.abc import Iterator

REMOTE_TRACKING_SCHEMES = ("http://", "https://", "databricks")


def chain(exc: BaseException) -> Iterator[BaseException]:
    """The exception and its causes/contexts, outermost first."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        yield exc
        exc = exc.__cause__ or exc.__context__


def first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def lost_to_signal(exc: BaseException) -> int | None:
    """The rank reported as ended by a signal (Horovod: ``Exit code: -9``, or 128 + the signal;
    tf_distribute: ``worker <r> was lost``), if any: a rank that was lost, not one that failed with an
    error of its own."""
    text = "\n".join(str(e) for e in chain(exc))
    tf_lost = re.search(r"tf_distribute worker (\d+) was lost", text)
    if tf_lost:
        return int(tf_lost.group(1))
    match = re.search(r"Process name: (\d+)\s+Exit code: (-?\d+)", text)
    if match is None:
        return None
    code = int(match.group(2))
    return int(match.group(1)) if code < 0 or code > 128 else None


def describe_failure(exc: BaseException) -> str:
    """Names the lost rank when Horovod reports one ("Process name: 1 / Exit code: -9")."""
    text = "\n".join(str(e) for e in chain(exc))
    match = re.search(r"Process name: (\S+)\s+Exit code: (-?\d+)", text)
    if not match:
        return first_line(exc)
    rank, code = match.group(1), int(match.group(2))
    how = f"exit code {code}"
    signum = -code if code < 0 else code - 128 if code > 128 else None
    if signum:
        try:
            how += f", killed by signal {signum} ({signal.Signals(signum).name})"
        except ValueError:
            pass
    return f"rank {rank} was lost ({how}); Horovod stopped the other ranks"


def describe_tf_failure(exc: BaseException) -> str:
    """Names the tf_distribute worker whose process was lost or failed (``pipeline.train.tf_worker``)
    from Spark's report of the barrier stage; else its first line."""
    text = "\n".join(str(e) for e in chain(exc))
    match = re.search(r"tf_distribute worker \d+ (?:was lost \([^)]*\)\)?|failed \(exit code -?\d+\))", text)
    if match:
        return f"{match.group(0)}; Spark stopped the other workers"
    return first_line(exc)


# How TensorFlow reports a worker that stopped: its coordination service misses the worker's heartbeats
# (a process stopped whole, or a host gone), or a collective gives up after CommunicationOptions'
# timeout (a worker alive but stuck in its own code, so the heartbeats go on).
HEARTBEAT_TIMEOUT = re.compile(r"/job:worker/replica:\d+/task:(\d+) heartbeat timeout")
COLLECTIVE_TIMEOUT = "Collective has timed out"


def stalled_tf_workers(errors: dict[int, str], ranks: int, timeout_s: float) -> str | None:
    """Names the tf_distribute worker(s) that stopped responding, from the errors of the workers that
    noticed (``rank-<r>.error``): the one a heartbeat timeout names, else every worker that did not
    itself time out in a collective while others did. None when the errors say something else."""
    for rank, text in sorted(errors.items()):
        match = HEARTBEAT_TIMEOUT.search(text)
        if match and int(match.group(1)) != rank:
            return (f"tf_distribute worker {match.group(1)} stopped responding: worker {rank}'s heartbeat to it timed "
                    "out (its process is alive but stopped, or its host is unreachable)")
    waited = sorted(r for r, text in errors.items() if COLLECTIVE_TIMEOUT in text)
    silent = [r for r in range(ranks) if r not in errors]
    if not waited or not silent:
        return None
    many = len(silent) > 1
    return (f"tf_distribute worker{'s' if many else ''} {', '.join(map(str, silent))} stopped responding: worker"
            f"{'s' if len(waited) > 1 else ''} {', '.join(map(str, waited))} waited {timeout_s:g} s for "
            f"{'them' if many else 'it'} in a collective (train.collective_timeout_s)")


def is_tracking_failure(exc: BaseException, tracking_uri: str) -> bool:
    """True only when talking to a remote tracking server failed: the connection (refused, reset,
    timed out) or the server's answer (HTTP 5xx). A full disk, a permission error on the checkpoint
    folder or a damaged dataset file is not, whatever ``OSError`` it raised, and neither is anything
    under a local store (SQLite, a folder): those keep their own message."""
    if not tracking_uri.startswith(REMOTE_TRACKING_SCHEMES):
        return False
    for e in chain(exc):
        module = type(e).__module__ or ""
        if module.startswith(("requests.", "urllib3.")):
            return True
        if type(e).__name__ == "MlflowException" and _is_transport_message(str(e)):
            return True
    return False


def _is_transport_message(text: str) -> bool:
    # mlflow.utils.rest_utils wraps transport failures as "API request to <url> failed with exception ..."
    # and bad answers as "API request to endpoint <path> failed with error code 503 != 200".
    if not text.startswith("API request to"):
        return False
    code = re.search(r"failed with error code (\d{3})", text)
    return code is None or code.group(1).startswith("5")
