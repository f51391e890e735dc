"""``train.backend: tf_distribute``: N workers of TensorFlow's ``MultiWorkerMirroredStrategy`` in one
Spark barrier stage.

Each barrier task picks a free port on its executor's host, learns every task's address through
``BarrierTaskContext.allGather`` (ordered by partition, so the partition is the worker's rank), and
starts a fresh Python process for the worker with ``TF_CONFIG`` set (``python -m
pipeline.train.tf_worker``). A fresh process per training, because a TensorFlow process keeps its
first collective cluster for life and Spark reuses its Python workers. The worker process dies with
its task (``PR_SET_PDEATHSIG``), so a stage Spark kills leaves nothing running.

A worker that exits abnormally fails its task at once with ``tf_distribute worker <r> was lost (...)``
(a signal) or ``... failed (exit code <n>)`` (its traceback is in ``rank-<r>.error``); Spark then fails
the barrier stage and kills the other tasks. A worker that hangs alive makes the others' next
collective fail after ``train.collective_timeout_s``.
"""

from __future__ import annotations

import os
import pickle
import signal
import sys
import time

LOST = "tf_distribute worker {rank} was lost ({how})"
FAILED = "tf_distribute worker {rank} failed (exit code {code}); its traceback is in rank-{rank}.error"
ERROR_GRACE_S = 3.0  # a failed worker's task waits this long before failing the stage (barrier_task)


def exit_description(rank: int, code: int) -> str:
    """What a worker process's exit code says: lost to a signal, or failed with an error of its own."""
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        return LOST.format(rank=rank, how=f"exit code {code}, killed by signal {-code} ({name})")
    return FAILED.format(rank=rank, code=code)


def barrier_task(job, environment: dict[str, str]):
    """The ``mapPartitions`` function of the barrier stage: runs this task's worker process and yields
    what it returned."""

    def run(_partition):
        import json
        import socket
        import subprocess
        import tempfile

        from pyspark import BarrierTaskContext

        context = BarrierTaskContext.get()
        rank = context.partitionId()
        host = context.getTaskInfos()[rank].address.rsplit(":", 1)[0]
        with socket.socket() as probe:  # a free port on this host for the worker's collectives
            probe.bind((host, 0))
            port = probe.getsockname()[1]
        addresses = context.allGather(f"{host}:{port}")
        hosts = [a.rsplit(":", 1)[0] for a in addresses]
        with tempfile.TemporaryDirectory(prefix="tf-worker-") as tmp:
            job_file, result_file = os.path.join(tmp, "job.pkl"), os.path.join(tmp, "result.pkl")
            with open(job_file, "wb") as handle:
                pickle.dump(job, handle)
            env = {**os.environ, **environment,
                   "TF_CONFIG": json.dumps({"cluster": {"worker": addresses}, "task": {"type": "worker", "index": rank}})}
            args = [sys.executable, "-m", "pipeline.train.tf_worker", job_file, result_file, str(rank),
                    str(len(addresses)), str(hosts[:rank].count(host)), str(hosts.count(host))]
            process = subprocess.Popen(args, env=env, preexec_fn=_die_with_parent)
            try:
                code = process.wait()
            finally:
                if process.poll() is None:
                    process.kill()
                    process.wait()
            if code > 0:
                # A worker that failed on its own may have timed out waiting for a stalled one: give the
                # other waiting workers a moment to record their own timeouts before Spark stops them,
                # so the driver can tell the stalled worker from those that noticed.
                time.sleep(ERROR_GRACE_S)
            if code != 0:
                raise RuntimeError(exit_description(rank, code))
            with open(result_file, "rb") as handle:
                yield pickle.load(handle)

    return run


def _die_with_parent() -> None:
    """In the worker process: be killed when the Spark task's Python worker dies (Linux)."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except OSError:
        pass


def main(argv: list[str]) -> int:
    job_file, result_file, rank, size, local_rank, local_size = argv
    os.environ["TF_USE_LEGACY_KERAS"] = "1"
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    with open(job_file, "rb") as handle:
        job = pickle.load(handle)
    from pipeline.train.worker import on_tf_worker

    result = on_tf_worker(job, int(rank), int(size), int(local_rank), int(local_size))
    with open(result_file, "wb") as handle:
        pickle.dump(result, handle)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
