"""Sharded reads, through Petastorm and through pyarrow: disjoint shards whose union is the split, the
same shard from either engine."""

import numpy as np
import pytest

from pipeline.errors import InputError
from pipeline.io.reader import open_split
from tests.helpers import read_split

ENGINES = ["petastorm", "pyarrow"]


def _read_ids(root, split, shard, count, engine="petastorm"):
    ids, images, labels = [], [], []
    with open_split(str(root), split, batch_size=64, cur_shard=shard, shard_count=count, with_ids=True,
                    engine=engine) as ds:
        for image, label, id_ in ds:
            assert image.shape[1:] == (28, 28, 1) and image.dtype.name == "uint8"
            ids += [i.decode() for i in id_.numpy()]
            images += list(image.numpy().reshape(-1, 784))
            labels += list(label.numpy())
    return ids, images, labels


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("count", [1, 2, 3])
def test_shards_are_disjoint_and_cover_the_split(sample_dataset, count, engine):
    root, _ = sample_dataset
    expected = read_split(root, "val")
    shards = [_read_ids(root, "val", r, count, engine)[0] for r in range(count)]
    for i in range(count):
        assert shards[i], f"shard {i} of {count} is empty"
        for j in range(i + 1, count):
            assert not set(shards[i]) & set(shards[j])
    union = [i for s in shards for i in s]
    assert sorted(union) == [r[0] for r in expected]


@pytest.mark.parametrize("engine", ENGINES)
def test_reader_yields_raw_pixels_and_labels_as_stored(sample_dataset, engine):
    root, _ = sample_dataset
    ids, images, labels = _read_ids(root, "test", None, None, engine)
    stored = {r[0]: r for r in read_split(root, "test")}
    for i in (0, 500, len(ids) - 1):
        assert np.asarray(images[i], dtype=np.uint8).tobytes() == stored[ids[i]][1]
        assert labels[i] == stored[ids[i]][2]


def test_both_engines_read_the_same_shard(sample_dataset):
    root, _ = sample_dataset
    for r in range(3):
        assert sorted(_read_ids(root, "train", r, 3, "pyarrow")[0]) == sorted(_read_ids(root, "train", r, 3)[0])


@pytest.mark.parametrize("engine", ENGINES)
def test_batches_have_the_requested_size(sample_dataset, engine):
    root, _ = sample_dataset
    with open_split(str(root), "val", batch_size=100, engine=engine) as ds:
        sizes = [int(image.shape[0]) for image, _ in ds]
    assert sizes == [100] * 8


@pytest.mark.parametrize("engine", ENGINES)
def test_more_shards_than_row_groups_is_refused(sample_dataset, engine):
    root, _ = sample_dataset
    for num_epochs in (1, None):
        with pytest.raises(InputError, match=r"8 row groups, too few for shard 8 of 9"):
            with open_split(str(root), "val", batch_size=10, cur_shard=8, shard_count=9, num_epochs=num_epochs,
                            engine=engine):
                pass


def test_a_one_pass_read_is_never_short(sample_dataset):
    """Petastorm's own end of a num_epochs=1 pass can come before its row groups were read (an empty
    shard in about 1 of 20 opens here, bench/reader_short_read.py); a pass here is every row, once."""
    root, _ = sample_dataset
    expected = [sorted(_read_ids(root, "val", r, 2)[0]) for r in range(2)]
    assert all(expected) and len(expected[0]) + len(expected[1]) == 800
    for _ in range(40):
        for r in range(2):
            assert sorted(_read_ids(root, "val", r, 2)[0]) == expected[r]


@pytest.mark.parametrize("engine", ENGINES)
def test_a_pass_of_several_epochs_is_each_row_that_many_times(sample_dataset, engine):
    root, _ = sample_dataset
    with open_split(str(root), "val", batch_size=64, cur_shard=0, shard_count=2, num_epochs=3, with_ids=True,
                    engine=engine) as ds:
        ids = [i for _, _, batch in ds for i in batch.numpy()]
    assert len(ids) == 3 * len(set(ids)) and sorted(i.decode() for i in set(ids)) == sorted(_read_ids(root, "val", 0, 2)[0])


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("shuffle_buffer", [0, 512])
def test_training_reader_runs_without_the_tf_data_autotuner(sample_dataset, shuffle_buffer, engine):
    # Deleting an autotuned iterator waits for the autotuner's thread: 0-20 s at the end of every
    # fit on 2 cores (bench/fit_end_bench.py). The pipeline must keep it off, and still read whole.
    root, _ = sample_dataset
    with open_split(str(root), "val", batch_size=100, shuffle_buffer=shuffle_buffer, seed=1, engine=engine) as ds:
        assert ds.options().autotune.enabled is False
        assert sum(int(image.shape[0]) for image, _ in ds) == 800


def test_pyarrow_training_passes_shuffle_row_groups_and_each_holds_the_shard_once(sample_dataset):
    root, _ = sample_dataset
    shard = sorted(_read_ids(root, "train", 0, 2)[0])
    with open_split(str(root), "train", batch_size=len(shard), cur_shard=0, shard_count=2, num_epochs=None,
                    shuffle_row_groups=True, seed=5, with_ids=True, engine="pyarrow") as ds:
        it = iter(ds)
        passes = [[i.decode() for i in next(it)[2].numpy()] for _ in range(4)]
    assert all(sorted(p) == shard for p in passes)
    assert len({tuple(p) for p in passes}) > 1  # a new row-group order per pass


def _pairs(images, labels):
    return sorted(zip((bytes(np.asarray(i, dtype=np.uint8).tobytes()) for i in images), (int(v) for v in labels)))


@pytest.mark.parametrize("count", [1, 2])
def test_a_shard_in_memory_holds_the_rows_the_streaming_reader_yields(sample_dataset, count):
    from pipeline.io.reader import load_shard

    root, _ = sample_dataset
    for rank in range(count):
        _, streamed_images, streamed_labels = _read_ids(root, "val", rank, count)
        images, labels = load_shard(str(root), "val", rank, count)
        assert images.shape == (len(streamed_labels), 28, 28, 1) and images.dtype == np.uint8
        assert labels.dtype == np.int32
        assert _pairs(images.reshape(-1, 784), labels) == _pairs(streamed_images, streamed_labels)


def test_in_memory_passes_are_full_reshuffles_of_the_shard(sample_dataset):
    root, _ = sample_dataset
    with open_split(str(root), "val", batch_size=100, num_epochs=None, shuffle_buffer=512, seed=3,
                    in_memory=True) as ds:
        assert ds.options().autotune.enabled is False
        it = iter(ds)
        passes = [[next(it) for _ in range(8)] for _ in range(2)]  # 800 rows: 8 batches a pass
    with open_split(str(root), "val", batch_size=100) as ds:
        stored = _pairs(*zip(*[(i, lab) for image, label in ds for i, lab in zip(image.numpy(), label.numpy())]))
    orders = []
    for batches in passes:
        images = np.concatenate([b[0].numpy() for b in batches])
        labels = np.concatenate([b[1].numpy() for b in batches])
        assert _pairs(images, labels) == stored  # every row exactly once per pass
        orders.append(images.reshape(-1, 784)[:, 300:310].tobytes())
    assert orders[0] != orders[1]  # each pass in a new order


def test_in_memory_reader_is_deterministic_for_a_seed(sample_dataset):
    root, _ = sample_dataset

    def first_labels(seed):
        with open_split(str(root), "val", batch_size=50, num_epochs=None, shuffle_buffer=1, seed=seed,
                        in_memory=True) as ds:
            return next(iter(ds))[1].numpy().tolist()

    assert first_labels(7) == first_labels(7)
    assert first_labels(7) != first_labels(8)


def test_in_memory_refuses_row_ids(sample_dataset):
    root, _ = sample_dataset
    with pytest.raises(ValueError, match="in_memory"):
        with open_split(str(root), "val", batch_size=10, with_ids=True, in_memory=True):
            pass


def test_a_shard_in_memory_needs_a_row_group_of_its_own(sample_dataset):
    from pipeline.io.reader import load_shard

    root, manifest = sample_dataset
    groups = manifest["splits"]["val"]["row_groups"]
    with pytest.raises(InputError, match=f"{groups} row groups, too few for shard {groups} of {groups + 1}"):
        load_shard(str(root), "val", groups, groups + 1)


def test_a_pass_that_ends_early_is_refused(sample_dataset):
    from pipeline.io.reader import check_whole_pass, split_rows

    root, manifest = sample_dataset
    assert split_rows(str(root), "test") == manifest["splits"]["test"]["rows"]
    check_whole_pass(str(root), "test", manifest["splits"]["test"]["rows"])
    with pytest.raises(InputError, match=r"test: read 1999 rows of 2000; the reader ended early"):
        check_whole_pass(str(root), "test", 1999)


def test_an_unknown_engine_is_refused(sample_dataset):
    root, _ = sample_dataset
    with pytest.raises(ValueError, match=r"engine='arrow'; expected 'petastorm' or 'pyarrow'"):
        with open_split(str(root), "val", batch_size=10, engine="arrow"):
            pass
