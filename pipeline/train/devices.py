"""Which devices a process uses: a rank pins the GPU of its local rank and, where its host's ranks fill
the cores, binds itself to its own block of cores (the GPUs Spark assigns a task: pipeline.io.gpus)."""

from __future__ import annotations

import logging
import os

from pipeline.errors import ConfigError

log = logging.getLogger(__name__)


def gpu_for_local_rank(gpu_count: int, local_rank: int) -> int | None:
    """The index of the GPU a rank uses: its local rank, wrapped when ranks outnumber GPUs; None on CPU."""
    if gpu_count <= 0:
        return None
    return local_rank % gpu_count


def pin_gpu(tf, local_rank: int) -> int | None:
    """The Horovod recipe: memory growth on, only this rank's GPU visible. Call before any TF op runs."""
    gpus = tf.config.list_physical_devices("GPU")
    index = gpu_for_local_rank(len(gpus), local_rank)
    if index is None:
        return None
    for gpu in gpus:
        tf.config.experimental.set_memory_growth(gpu, True)
    tf.config.set_visible_devices(gpus[index], "GPU")
    log.info("local rank %d uses GPU %d of %d", local_rank, index, len(gpus))
    return index


def core_block(available: list[int], local_rank: int, local_size: int, threads: int, mode: str) -> list[int] | None:
    """The cores a rank binds to, or None to leave it to the OS.

    The host's ``local_size`` ranks take consecutive blocks of ``threads`` cores out of ``available``
    (the cores this process may use), by local rank. ``auto`` binds only when the ranks take all of
    them: then a second job on the host could only oversubscribe it anyway, and no core is left idle
    for others. ``always`` binds whenever the blocks fit. ``never`` does not bind.

    Raises:
        ValueError: ``always`` and the blocks need more cores than ``available`` holds.
    """
    cores = sorted(available)
    need = local_size * threads
    if mode == "never" or (mode == "auto" and (local_size < 2 or need != len(cores))):
        return None
    if need > len(cores):
        raise ConfigError(f"train.bind_cores=always: {local_size} ranks on this host x {threads} threads "
                         f"(train.threads_per_rank) need {need} cores; this process may use {len(cores)} "
                         f"({core_ranges(cores)}); lower train.threads_per_rank or set train.bind_cores=auto")
    return cores[local_rank * threads:(local_rank + 1) * threads]


def bind_to_cores(local_rank: int, local_size: int, threads: int, mode: str) -> list[int] | None:
    """Binds every thread of this process (those running now and, through them, those started later)
    to the rank's block of cores (``core_block``). Returns the block, or None where nothing was bound.

    Two ranks on two cores, each bound to its own core, train about 10% faster than unbound
    (docs/benchmarks.md, training): each rank's communication threads then take time from its own
    training thread only, and the ranks' steps stay in step.
    """
    if not hasattr(os, "sched_getaffinity"):  # not Linux: leave placement to the OS
        return None
    block = core_block(sorted(os.sched_getaffinity(0)), local_rank, local_size, threads, mode)
    if block is None:
        return None
    original = os.sched_getaffinity(0)
    try:
        _set_affinity_of_every_thread(block)
    except OSError as exc:  # a container that forbids it: train unbound rather than not at all
        log.warning("local rank %d could not bind to cores %s (%s); the OS places it", local_rank,
                    core_ranges(block), exc)
        try:
            _set_affinity_of_every_thread(original)  # undo a partial binding
        except OSError:
            pass
        return None
    bound = sorted(os.sched_getaffinity(0))  # what the OS holds now, not what was asked
    log.info("local rank %d of %d bound to cores %s", local_rank, local_size, core_ranges(bound))
    return bound


def _set_affinity_of_every_thread(cores) -> None:
    try:
        tids = [int(t) for t in os.listdir("/proc/self/task")]
    except OSError:
        tids = [0]
    for tid in tids:
        try:
            os.sched_setaffinity(tid, cores)
        except ProcessLookupError:  # the thread ended meanwhile
            pass


def core_ranges(cores: list[int]) -> str:
    """[0, 1, 2, 5] -> '0-2,5'."""
    out, start = [], None
    for i, c in enumerate(cores):
        if start is None:
            start = c
        if i + 1 == len(cores) or cores[i + 1] != c + 1:
            out.append(f"{start}-{c}" if c != start else f"{c}")
            start = None
    return ",".join(out)


