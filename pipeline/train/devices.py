"""Which accelerator a process uses: a rank pins the GPU of its local rank; an inference task the GPU
Spark assigned it. CPU-only nodes run as they are."""

from __future__ import annotations

import logging
import os

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
