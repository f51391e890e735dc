"""Checks before any Horovod rank starts, so a training that cannot work fails in seconds, not after
Horovod's start timeout: the dataset exists and has enough row groups, the ranks fit Spark's task
slots, and the tracking store answers."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass

from pyspark.sql import SparkSession

from pipeline.config import PipelineConfig
from pipeline.errors import InputError, PreflightError
from pipeline.io.dataset import SPLITS, count_row_groups, read_manifest, split_path
from pipeline.io.fs import HadoopFS
from pipeline.io.tracking import check_tracking

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
        manifest = read_manifest(HadoopFS(spark), cfg.data.root)
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
    check_tracking(cfg.mlflow)
    threads = cfg.train.threads_per_rank
    if threads is None:
        master = sc.master or ""
        threads = max(1, (os.cpu_count() or 1) // num_proc) if master.startswith("local") else \
            int(sc.getConf().get("spark.task.cpus", "1"))
    return Preflight(num_proc=num_proc, manifest=manifest, threads_per_rank=threads)
