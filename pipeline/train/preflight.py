"""Checks before any Horovod rank starts, so a training that cannot work fails in seconds, not after
Horovod's start timeout: the dataset exists and has enough row groups, the ranks fit Spark's task
slots, the checkpoint folder can be written and read back and the dataset read, both from the driver
and from inside a Spark task (where the ranks will run), the tracking store answers, and on a local
master the ranks' core binding fits the cores."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass

from pyspark.sql import SparkSession

from pipeline.config import PipelineConfig
from pipeline.errors import ConfigError, InputError, PreflightError
from pipeline.io import storage
from pipeline.io.dataset import SPLITS, count_row_groups, read_manifest, split_path
from pipeline.io.fs import qualify
from pipeline.io.tracking import check_tracking
from pipeline.train.devices import core_block

log = logging.getLogger(__name__)


@dataclass
class Preflight:
    num_proc: int
    manifest: dict
    threads_per_rank: int


def preflight(spark: SparkSession, cfg: PipelineConfig) -> Preflight:
    """Returns the number of ranks, the dataset's manifest and the threads each rank may use.

    Raises:
        PreflightError: what to change, naming the key or path.
    """
    sc = spark.sparkContext
    slots = sc.defaultParallelism // int(sc.getConf().get("spark.task.cpus", "1"))
    try:
        manifest = read_manifest(cfg.data.root)
        row_groups = {split: count_row_groups(split_path(cfg.data.root, split)) for split in SPLITS}
    except InputError as exc:
        raise PreflightError(str(exc)) from None
    num_proc = cfg.train.num_proc
    if num_proc is None:
        num_proc = max(1, min(slots, *row_groups.values()))
        if num_proc < slots:
            log.info("train.num_proc not set: %d ranks (the fewest row groups of a split; Spark has %d slots)",
                     num_proc, slots)
    if num_proc > slots:
        raise PreflightError(
            f"train.num_proc={num_proc} but Spark has {slots} task slots (spark.default.parallelism / spark.task.cpus); "
            "each Horovod rank needs its own slot: lower train.num_proc or add executors/cores"
        )
    for split, groups in row_groups.items():
        if groups < num_proc:
            raise PreflightError(
                f"split {split} of {cfg.data.root} has {groups} Parquet row groups but train.num_proc={num_proc} ranks "
                f"each need one; re-run ingest with ingest.max_shards>={num_proc} or lower train.num_proc"
            )
    prove_paths(spark, cfg)
    check_tracking(cfg.mlflow)
    wait_for_free_slots(sc, num_proc, slots, cfg.train.slots_wait_s)
    threads = cfg.train.threads_per_rank
    local = (sc.master or "").startswith("local")
    if threads is None:
        threads = max(1, (os.cpu_count() or 1) // num_proc) if local else int(sc.getConf().get("spark.task.cpus", "1"))
    if local and hasattr(os, "sched_getaffinity"):
        # On a local master every rank shares this host and these cores: a binding that cannot fit fails
        # here, in seconds (on a cluster each rank finds out on its host).
        try:
            core_block(sorted(os.sched_getaffinity(0)), 0, num_proc, threads, cfg.train.bind_cores)
        except ConfigError as exc:
            raise PreflightError(str(exc)) from None
    return Preflight(num_proc=num_proc, manifest=manifest, threads_per_rank=threads)


def busy_slots(sc) -> tuple[int, list[str]]:
    """Task slots other jobs of this application hold now (their running tasks, each taking one slot of
    spark.task.cpus cores), and those jobs' stages."""
    tracker = sc.statusTracker()
    running, stages = 0, []
    for stage_id in tracker.getActiveStageIds():
        info = tracker.getStageInfo(stage_id)
        if info is not None and info.numActiveTasks:
            running += info.numActiveTasks
            stages.append(f"stage {stage_id} ({info.name.split(' at ')[0]}: {info.numActiveTasks} tasks)")
    return running, stages


def wait_for_free_slots(sc, needed: int, slots: int, wait_s: float, poll_s: float = 0.5) -> None:
    """Returns once ``needed`` task slots are free at the same time; the ranks start together (Horovod
    waits for all of them, a barrier stage is scheduled whole), so a busy cluster would otherwise hang.

    Raises:
        PreflightError: after ``wait_s`` seconds, naming the stages that hold the slots.
    """
    import time

    deadline = time.monotonic() + wait_s
    while True:
        busy, stages = busy_slots(sc)
        if slots - busy >= needed:
            return
        if time.monotonic() >= deadline:
            raise PreflightError(
                f"train.num_proc={needed} ranks need {needed} task slots free at once (they start together), but "
                f"{busy} of Spark's {slots} slots stayed busy for {wait_s:g} s with other jobs of this Spark "
                f"application: {', '.join(stages)}; wait for them, lower train.num_proc, or raise train.slots_wait_s")
        time.sleep(poll_s)


def probe_checkpoint_dir(path: str) -> None:
    """Writes, reads back and deletes a small file in ``path``; raises what went wrong."""
    import uuid

    probe = storage.join(path, f".preflight-{uuid.uuid4().hex[:12]}")
    payload = f"preflight {uuid.uuid4().hex}".encode()
    storage.write_bytes(probe, payload)
    try:
        if storage.read_bytes(probe) != payload:
            raise OSError("the file read back differs from the file written")
    finally:
        storage.delete(probe)


def probe_from_task(checkpoint_dir: str, data_root: str) -> str | None:
    """Runs inside a Spark task: None if both paths work from there, else what failed."""
    import socket

    where = f"a Spark task on {socket.gethostname()}"
    try:
        probe_checkpoint_dir(checkpoint_dir)
    except Exception as exc:
        return _path_problem("train.checkpoint_dir", checkpoint_dir, where, exc)
    try:
        storage.read_bytes(storage.join(data_root, "manifest.json"))
    except Exception as exc:
        return _path_problem("data.root", data_root, where, exc)
    return None


def _path_problem(key: str, path: str, where: str, exc: BaseException) -> str:
    scheme = storage.split_uri(path)[0] or "local"
    reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return (f"{key}={path} ({scheme}) is not usable from {where}: {reason}; {storage.how_to_configure(path)}")


def prove_paths(spark: SparkSession, cfg: PipelineConfig) -> None:
    """The checkpoint folder and the dataset, proven from the driver and from one Spark task.

    Raises:
        PreflightError: naming the key, the path, its scheme, where it failed and what to configure.
    """
    checkpoint_dir, data_root = qualify(cfg.train.checkpoint_dir), qualify(cfg.data.root)
    try:
        probe_checkpoint_dir(checkpoint_dir)
    except Exception as exc:
        raise PreflightError(_path_problem("train.checkpoint_dir", checkpoint_dir, "the driver", exc)) from None
    problem = spark.sparkContext.parallelize([0], 1).map(lambda _: probe_from_task(checkpoint_dir, data_root)).first()
    if problem:
        raise PreflightError(problem)
