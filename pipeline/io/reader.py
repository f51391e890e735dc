"""Reading a dataset split back as a ``tf.data.Dataset``, one shard per training rank.

Training uses exactly this. Shards are Parquet row groups, so rank ``r`` of ``n`` reads a disjoint
part of the split, and the union over ranks is the whole split. Two engines stream a shard: Petastorm's
``make_batch_reader`` (the Horovod backend, as on Databricks 15.4 ML) and pyarrow row group by row group
(``engine="pyarrow"``: the tf_distribute backend, for runtimes without Petastorm); both take the same
row groups for a shard (``shard_pieces``).

Petastorm's reader is always opened repeating (``num_epochs=None``), and a finite read is cut at the
shard's row count from the Parquet footers. Petastorm 0.13.1 decides "no more data" from two separate
reads of state another thread changes (``ThreadPool.get_results``: every ventilated item processed,
then the ventilator finished; ``DummyPool.get_results`` the same, the other way round). When the
ventilator thread queues the shard's row groups and finishes between the two reads, the pass ends
with row groups unread: at the start of a pass, an empty shard. A repeating reader's ventilator never
finishes, so that decision is never taken; its pools hand row groups back in the order they were
queued, so the first ``rows`` rows are one whole pass (bench/reader_short_read.py counts rows and
distinct ids over hundreds of opens, for the old call and this one).
"""

from __future__ import annotations

import contextlib
import logging
import time
import warnings
from collections.abc import Iterator

from pipeline.errors import InputError
from pipeline.io.dataset import split_path
from pipeline.io.fs import to_url

log = logging.getLogger(__name__)

# Bytes a row takes in memory once decoded: 784 pixels and an int32 label.
ROW_BYTES_IN_MEMORY = 28 * 28 + 4


def _fixed_pipeline_options():
    """tf.data options for a pipeline with fixed parallelism and no autotuning.

    tf.data's autotuner runs a model thread per iterator that re-optimises the pipeline in the
    background; deleting the iterator (at the end of ``model.fit``) waits for an optimisation pass to
    finish. On a loaded 2-core machine that wait was 0-10 s per ``fit``, and 39-46 s in two-rank
    runs (docs/benchmarks.md, the end of training under "Training"; bench/fit_end_bench.py). The
    pipeline here is short (Petastorm's own threads read and decode Parquet; one vectorised decode of
    each batch), so two parallel decode calls and two prefetched batches are all it needs: training
    measured no slower without the autotuner.
    """
    import tensorflow as tf

    options = tf.data.Options()
    options.autotune.enabled = False
    return options


@contextlib.contextmanager
def open_split(
    root: str,
    split: str,
    batch_size: int,
    cur_shard: int | None = None,
    shard_count: int | None = None,
    num_epochs: int | None = 1,
    shuffle_row_groups: bool = False,
    shuffle_buffer: int = 0,
    seed: int | None = None,
    with_ids: bool = False,
    workers_count: int = 2,
    in_memory: bool = False,
    engine: str = "petastorm",
) -> Iterator[tf.data.Dataset]:  # noqa: F821
    """Opens one shard of a split as batches of ``(image, label)`` (or ``(image, label, id)``).

    ``image`` is a ``uint8`` tensor of shape ``(batch, 28, 28, 1)`` holding raw pixels 0-255 (the
    model normalises), ``label`` is ``int32``. The reader is closed when the context exits.

    Args:
        root: dataset root written by ingest.
        split: ``train``, ``val`` or ``test``.
        batch_size: rows per batch (the last batch of an epoch may be smaller).
        cur_shard, shard_count: this reader's shard; ``None`` reads the whole split.
        num_epochs: passes over the shard; ``None`` repeats forever.
        shuffle_row_groups, seed: shuffle the order of row groups (seeded).
        shuffle_buffer: rows in a shuffle buffer; 0 keeps the order of the files.
        with_ids: also yield the row ids (for checks and joins).
        workers_count: reader threads.
        in_memory: read the shard once into memory and serve every pass from there
            (``load_shard``, ``in_memory_dataset``); a shuffled pass is then a full shuffle of the
            shard, whatever ``shuffle_buffer`` says. Not with ``with_ids``.
        engine: ``petastorm`` or ``pyarrow`` (no Petastorm needed), for a streamed read.

    Raises:
        InputError: the split has fewer row groups than ``shard_count``.
    """
    import tensorflow as tf

    if in_memory:
        if with_ids:
            raise ValueError("open_split: in_memory does not keep row ids; read with_ids streaming")
        images, labels = load_shard(root, split, cur_shard, shard_count)
        yield in_memory_dataset(images, labels, batch_size, num_epochs=num_epochs,
                                shuffle=shuffle_buffer > 0 or shuffle_row_groups, seed=seed)
        return
    if engine == "pyarrow":
        yield _batched(arrow_dataset(root, split, with_ids, cur_shard, shard_count, num_epochs, shuffle_row_groups,
                                     seed), batch_size, shuffle_buffer, seed)
        return
    if engine != "petastorm":
        raise ValueError(f"open_split: engine={engine!r}; expected 'petastorm' or 'pyarrow'")
    fields = ["id", "image", "label"] if with_ids else ["image", "label"]
    from petastorm import make_batch_reader

    _quiet_petastorm()
    from petastorm.tf_utils import make_petastorm_dataset

    # A finite read is a repeating reader cut at the shard's row count (from the footers): Petastorm's
    # own end-of-data decision can fire before the row groups were read (module docstring).
    rows = shard_rows(root, split, cur_shard, shard_count)  # also refuses a shard without a row group
    rows = None if num_epochs is None else num_epochs * rows
    reader = make_batch_reader(
        to_url(split_path(root, split)),
        schema_fields=fields,
        cur_shard=cur_shard,
        shard_count=shard_count,
        num_epochs=None,
        shuffle_row_groups=shuffle_row_groups,
        seed=seed,
        workers_count=workers_count,
        reader_pool_type="thread",
    )
    try:
        def decode(batch):
            image = tf.reshape(tf.io.decode_raw(batch.image, tf.uint8), (-1, 28, 28, 1))
            label = tf.cast(batch.label, tf.int32)
            return (image, label, batch.id) if with_ids else (image, label)

        dataset = make_petastorm_dataset(reader).map(decode, num_parallel_calls=2)
        if rows is not None:
            dataset = dataset.unbatch().take(rows)
            if shuffle_buffer > 0:
                dataset = dataset.shuffle(shuffle_buffer, seed=seed)
            dataset = dataset.batch(batch_size)
        elif shuffle_buffer > 0:
            dataset = dataset.unbatch().shuffle(shuffle_buffer, seed=seed).batch(batch_size)
        else:
            dataset = dataset.rebatch(batch_size)
        yield dataset.prefetch(2).with_options(_fixed_pipeline_options())
    finally:
        reader.stop()
        reader.join()


def arrow_dataset(root: str, split: str, with_ids: bool, cur_shard: int | None, shard_count: int | None,
                  num_epochs: int | None, shuffle_row_groups: bool = False, seed: int | None = None):
    """One shard's row groups read with pyarrow, pass after pass (``num_epochs``; None: forever), as a
    ``tf.data.Dataset`` of one element per row group: ``(image, label)`` or ``(image, label, id)``.
    With ``shuffle_row_groups`` each pass takes the row groups in a new seeded order."""
    import numpy as np
    import tensorflow as tf

    from pipeline.io.dataset import parquet_files

    pieces = shard_pieces(root, split, cur_shard, shard_count)  # refuses a shard without a row group
    filesystem, _ = parquet_files(split_path(root, split))

    def row_groups():
        rng = np.random.default_rng(seed)
        done = 0
        while num_epochs is None or done < num_epochs:
            order = rng.permutation(len(pieces)) if shuffle_row_groups else range(len(pieces))
            for i in order:
                f, g, _ = pieces[i]
                images, labels, ids = read_row_group(filesystem, f, g)
                yield (images, labels, ids) if with_ids else (images, labels)
            done += 1

    signature = (tf.TensorSpec((None, 28, 28, 1), tf.uint8), tf.TensorSpec((None,), tf.int32))
    if with_ids:
        signature += (tf.TensorSpec((None,), tf.string),)
    return tf.data.Dataset.from_generator(row_groups, output_signature=signature)


def _batched(dataset, batch_size: int, shuffle_buffer: int, seed: int | None):
    """Row-group elements to batches of ``batch_size`` (through a shuffle buffer of rows if asked)."""
    if shuffle_buffer > 0:
        dataset = dataset.unbatch().shuffle(shuffle_buffer, seed=seed).batch(batch_size)
    else:
        dataset = dataset.rebatch(batch_size)
    return dataset.prefetch(2).with_options(_fixed_pipeline_options())


def read_row_group(filesystem, file: str, group: int):
    """One row group as numpy arrays: images ``uint8 (rows, 28, 28, 1)``, labels ``int32``, ids (str), with the
    pixels straight from the Arrow buffer (784 bytes a row, no object per row).

    Raises:
        InputError: an image that is not 784 bytes (naming the file).
    """
    import numpy as np
    import pyarrow.parquet as pq

    with filesystem.open_input_file(file) as handle:
        table = pq.ParquetFile(handle).read_row_group(group, columns=["id", "image", "label"])
    images = []
    for chunk in table.column("image").chunks:
        offsets = np.frombuffer(chunk.buffers()[1], np.int32)[chunk.offset:chunk.offset + len(chunk) + 1]
        if offsets[-1] - offsets[0] != 784 * len(chunk) or np.any(np.diff(offsets) != 784):
            raise InputError(f"{file}: an image that is not 784 bytes (was the split written by ingest?)")
        images.append(np.frombuffer(chunk.buffers()[2], np.uint8)[offsets[0]:offsets[-1]])
    pixels = np.concatenate(images) if images else np.zeros(0, np.uint8)
    return (pixels.reshape(-1, 28, 28, 1), table.column("label").to_numpy().astype(np.int32),
            table.column("id").to_numpy())


def _quiet_petastorm() -> None:
    # petastorm 0.13 uses pyarrow's legacy dataset API, which pyarrow 12 warns about at every call.
    warnings.filterwarnings("ignore", category=FutureWarning, module=r"petastorm(\.|$)")
    warnings.filterwarnings("ignore", category=UserWarning, module=r"petastorm(\.|$)")


def load_shard(root: str, split: str, cur_shard: int | None = None, shard_count: int | None = None):
    """One shard of a split as two numpy arrays: images ``uint8 (rows, 28, 28, 1)`` and labels ``int32``.

    Sharded by row group as Petastorm shards (``shard_pieces``), read once with pyarrow, row group by
    row group, and put in id order (the order ingest writes them in), so a seeded shuffle of them is
    the same on every run. Memory: ``ROW_BYTES_IN_MEMORY`` per row. Pyarrow rather than Petastorm's
    reader: the pixels go from the Arrow buffer to one numpy array with no per-batch decode, and a
    load is one pass, which Petastorm can only give as a repeating reader cut at a row count (above).

    Raises:
        InputError: the split has fewer row groups than shards, or a row is not 784 bytes.
    """
    import numpy as np

    from pipeline.io.dataset import parquet_files

    start = time.perf_counter()
    filesystem, _ = parquet_files(split_path(root, split))
    mine = shard_pieces(root, split, cur_shard, shard_count)
    images, labels, ids = zip(*(read_row_group(filesystem, f, g) for f, g, _ in mine))
    order = np.argsort(np.concatenate(ids), kind="stable")
    pixels, y = np.concatenate(images)[order], np.concatenate(labels)[order]
    which = f"{split} shard {cur_shard}/{shard_count}" if shard_count is not None else f"{split} split"
    # a rank's shard: worth a line of its log; the driver's read of a whole split (evaluation): not on the console
    log.log(logging.INFO if shard_count is not None else logging.DEBUG,
            "%s in memory: %d rows from %d row groups, %.1f MB, read in %.1f s", which, y.size, len(mine),
              (pixels.nbytes + y.nbytes) / 1e6, time.perf_counter() - start)
    return pixels, y


def in_memory_dataset(images, labels, batch_size: int, num_epochs: int | None = None, shuffle: bool = False,
                      seed: int | None = None):
    """Batches of ``(image, label)`` from arrays in memory, as ``open_split`` yields them.

    Shuffling permutes row indices (8 bytes a row), not the images, and every pass gets a fresh
    permutation of the whole shard; each batch is then one gather. Passes run into each other
    (the last batch of a pass is completed from the next), as with the streaming reader.
    """
    import tensorflow as tf

    images_t, labels_t = tf.constant(images), tf.constant(labels)
    index = tf.data.Dataset.range(int(labels.shape[0]))
    if shuffle:
        index = index.shuffle(int(labels.shape[0]), seed=seed, reshuffle_each_iteration=True)
    index = index.repeat(num_epochs).batch(batch_size)
    dataset = index.map(lambda i: (tf.gather(images_t, i), tf.gather(labels_t, i)), num_parallel_calls=2)
    return dataset.prefetch(2).with_options(_fixed_pipeline_options())


def shard_pieces(root: str, split: str, cur_shard: int | None = None, shard_count: int | None = None):
    """``(file, row group, rows)`` of one shard, sharded as Petastorm shards: the split's row groups,
    file by file in name order; shard ``r`` of ``n`` takes every ``n``-th from the ``r``-th.

    Raises:
        InputError: the split has fewer row groups than shards, or a damaged file (named).
    """
    from pipeline.io.dataset import parquet_footers

    path = split_path(root, split)
    pieces = [(f, g, meta.row_group(g).num_rows) for f, meta in parquet_footers(path)
              for g in range(meta.num_row_groups)]
    mine = pieces if shard_count is None else pieces[cur_shard::shard_count]
    if not mine:
        raise InputError(f"{path}: {len(pieces)} row groups, too few for shard {cur_shard} of {shard_count}; "
                         "re-run ingest with a higher ingest.max_shards, or use fewer ranks")
    return mine


def shard_rows(root: str, split: str, cur_shard: int | None = None, shard_count: int | None = None) -> int:
    """Rows of one shard (the whole split when ``shard_count`` is None), from the Parquet footers."""
    return sum(rows for _, _, rows in shard_pieces(root, split, cur_shard, shard_count))


def split_rows(root: str, split: str) -> int:
    """Rows of a split, from its Parquet footers: what a whole pass over it must yield."""
    from pipeline.io.dataset import parquet_footers

    return sum(meta.num_rows for _, meta in parquet_footers(split_path(root, split)))


def check_whole_pass(root: str, split: str, rows: int) -> None:
    """Raises ``InputError`` unless ``rows`` is every row of the split (a pass that ended early)."""
    expected = split_rows(root, split)
    if rows != expected:
        raise InputError(f"{split_path(root, split)}: read {rows} rows of {expected}; the reader ended early")
