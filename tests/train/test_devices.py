"""Which GPU a rank uses. GPUs cannot exist on this machine: the CPU path runs for real, the pinning
logic runs against a stand-in for TensorFlow's device API."""

from types import SimpleNamespace

import pytest

from pipeline.train.devices import gpu_for_local_rank, pin_gpu, task_gpu_addresses


@pytest.mark.parametrize("gpus, local_rank, expected", [(0, 0, None), (0, 3, None), (1, 0, 0), (4, 0, 0), (4, 3, 3),
                                                        (2, 3, 1)])
def test_each_local_rank_gets_its_own_gpu(gpus, local_rank, expected):
    assert gpu_for_local_rank(gpus, local_rank) == expected


def test_a_cpu_only_node_runs_as_it_is():
    import tensorflow as tf

    assert tf.config.list_physical_devices("GPU") == []
    assert pin_gpu(tf, 1) is None
    assert tf.config.get_visible_devices("CPU")


def test_pinning_turns_on_memory_growth_and_shows_only_the_ranks_gpu():
    calls = []
    gpus = [f"GPU:{i}" for i in range(4)]
    config = SimpleNamespace(
        list_physical_devices=lambda kind: gpus if kind == "GPU" else [],
        experimental=SimpleNamespace(set_memory_growth=lambda gpu, on: calls.append(("growth", gpu, on))),
        set_visible_devices=lambda device, kind: calls.append(("visible", device, kind)),
    )
    assert pin_gpu(SimpleNamespace(config=config), local_rank=2) == 2
    assert calls == [("growth", g, True) for g in gpus] + [("visible", "GPU:2", "GPU")]


def test_spark_tasks_without_gpu_resources_get_none(spark):
    assert spark.sparkContext.parallelize([0], 1).map(lambda _: task_gpu_addresses()).first() == []
