"""The GPUs Spark assigned to the running task, for any stage whose Spark tasks run TensorFlow (the
training ranks, the batch-inference workers)."""

from __future__ import annotations

import os


def task_gpu_addresses() -> list[str]:
    """The GPUs Spark assigned to the running task (``spark.task.resource.gpu.amount``); [] if none."""
    try:
        from pyspark import TaskContext
    except ImportError:
        return []
    context = TaskContext.get()
    if context is None:
        return []
    gpu = context.resources().get("gpu")
    return list(gpu.addresses) if gpu is not None else []


def use_task_gpus() -> list[str]:
    """Makes TensorFlow in this Spark task see only the GPUs Spark assigned to it. Call before importing
    TensorFlow in the task's process; does nothing when Spark assigns no GPU."""
    addresses = task_gpu_addresses()
    if addresses:
        os.environ["CUDA_VISIBLE_DEVICES"] = ",".join(addresses)
    return addresses
