"""Reading a dataset split back as a ``tf.data.Dataset``, one shard per Horovod rank.

Training uses exactly this: Petastorm's ``make_batch_reader`` shards by Parquet row group, so rank
``r`` of ``n`` reads a disjoint part of the split, and the union over ranks is the whole split.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator

from pipeline.io.dataset import split_path
from pipeline.io.fs import to_url


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

    Raises:
        petastorm.NoDataAvailableError: the split has fewer row groups than ``shard_count``.
    """
    import tensorflow as tf
    from petastorm import make_batch_reader

    # petastorm 0.13 uses pyarrow's legacy dataset API, which pyarrow 12 warns about at every call.
    warnings.filterwarnings("ignore", category=FutureWarning, module=r"petastorm(\.|$)")
    warnings.filterwarnings("ignore", category=UserWarning, module=r"petastorm(\.|$)")
    from petastorm.tf_utils import make_petastorm_dataset

    fields = ["id", "image", "label"] if with_ids else ["image", "label"]
    reader = make_batch_reader(
        to_url(split_path(root, split)),
        schema_fields=fields,
        cur_shard=cur_shard,
        shard_count=shard_count,
        num_epochs=num_epochs,
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
        if shuffle_buffer > 0:
            dataset = dataset.unbatch().shuffle(shuffle_buffer, seed=seed).batch(batch_size)
        else:
            dataset = dataset.rebatch(batch_size)
        yield dataset.prefetch(2).with_options(_fixed_pipeline_options())
    finally:
        reader.stop()
        reader.join()
