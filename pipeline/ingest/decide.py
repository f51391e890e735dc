"""Ingest's decisions without a shuffle: which copy of each repeated image is kept, and the counts the
val split and the file ranges are cut from, by tasks that each own an id range.

Every copy of an image has the same id (its SHA-256), so all copies of an image fall in one id range,
and the staged files (rows in id order, in row groups of ``STAGED_ROW_GROUP_ROWS``) let a task read
only the row groups of its range, and only the narrow columns (no image bytes). Each task:

- finds its range's distinct ids and, per id, what ``build.keep_one_per_image`` finds in Spark: the
  kept copy's key (``write.copy_keys``), split and label, the number of copies, whether their labels
  disagree, and the val hash ``vh``;
- writes those rows, in id order, to ``decided/part-<task>.parquet`` under the staging folder (read
  back by Spark for the val thresholds and small splits' ranks, and by the write for the kept copies);
- returns its counts per ``(split, label, val bucket)``, summed across tasks by Spark.

Ids are the leading 128 bits of SHA-256 hex digests, so evenly spaced id values cut the rows into
ranges of about equal size. Before this, one Spark shuffle of the narrow rows by id did this: 0.5-1 s
of a 2.3 s ingest of 70,000 images on 2 cores, mostly fixed costs (docs/benchmarks.md).
"""

from __future__ import annotations

from pipeline.ingest.write import KEY_IDX_BITS, KEY_LABEL_BITS, KEY_SRC_BITS, _read_range, copy_keys

# What ``keep_one_per_image`` returns, one row per distinct image
DECIDED_SCHEMA = "id string, split string, label int, key long, copies long, conflict boolean, vh long"
# One task's counts per (split, label, val bucket); ``bucket`` is 0 for test rows
STATS_SCHEMA = "split string, label int, bucket long, kept long, dropped long, repeated long, conflicts long"
_NARROW = ("id", "split", "src", "idx", "label", "vh")
_TEST_BIT = KEY_SRC_BITS + KEY_IDX_BITS + KEY_LABEL_BITS


def id_ranges(tasks: int) -> list[list]:
    """``tasks`` consecutive id ranges ``[first, end)`` covering every 32-hex-digit id, evenly spaced
    (None: unbounded)."""
    edges = [None, *(format(b * (1 << 128) // tasks, "032x") for b in range(1, tasks)), None]
    return [[edges[k], edges[k + 1]] for k in range(tasks)]


def decide_rows(table, bucket_shift: int):
    """The decided rows (``DECIDED_SCHEMA``) and the counts (``STATS_SCHEMA``) of staged narrow rows
    (a pyarrow table of ``id, split, src, idx, label, vh``), as two pyarrow tables."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    order = pc.sort_indices(table["id"]).to_numpy()
    rows = table.take(order)
    n = rows.num_rows
    ids = rows["id"]
    new = np.ones(n, dtype=bool)
    if n > 1:
        new[1:] = pc.not_equal(ids.slice(1), ids.slice(0, n - 1)).to_numpy()
    starts = np.flatnonzero(new)
    labels = rows["label"].to_numpy()
    keys = copy_keys(rows["split"].to_numpy(), rows["src"].to_numpy(), rows["idx"].to_numpy(),
                     labels)
    key = np.minimum.reduceat(keys, starts)
    copies = np.diff(np.append(starts, n)).astype(np.int64)
    conflict = np.minimum.reduceat(labels, starts) != np.maximum.reduceat(labels, starts)
    vh = rows["vh"].to_numpy()[starts]
    is_train = (key >> _TEST_BIT) != 0
    label = (key % (1 << KEY_LABEL_BITS)).astype(np.int32)
    decided = pa.table({
        "id": ids.take(pa.array(starts)), "split": pa.array(np.where(is_train, "train", "test"), pa.string()),
        "label": pa.array(label), "key": pa.array(key), "copies": pa.array(copies),
        "conflict": pa.array(conflict), "vh": pa.array(vh),
    })
    # counts per (split, label, bucket): one integer code per group, then a weighted count per code
    bucket = np.where(is_train, vh >> bucket_shift, 0)
    code = (is_train.astype(np.int64) << 40) + (label.astype(np.int64) << 32) + (bucket - np.int64(-1 << 20))
    groups, inverse = np.unique(code, return_inverse=True)

    def total(weights=None):
        return np.bincount(inverse, weights=weights, minlength=len(groups)).astype(np.int64)

    stats = pa.table({
        "split": pa.array(np.where((groups >> 40) != 0, "train", "test"), pa.string()),
        "label": pa.array(((groups >> 32) & 0xFF).astype(np.int32)),
        "bucket": pa.array((groups & 0xFFFFFFFF) + np.int64(-1 << 20)),
        "kept": pa.array(total()), "dropped": pa.array(total(copies - 1)),
        "repeated": pa.array(total(copies > 1)), "conflicts": pa.array(total(conflict)),
    })
    return decided, stats


def decide_task_fn(ranges: list[list], staged: list[str], out_dir: str, bucket_shift: int):
    """The ``mapInArrow`` function of the decision job: rows ``task`` (an index into ``ranges``) in,
    that range's counts (``STATS_SCHEMA``) out; its decided rows go to ``out_dir``."""

    def run(batches):
        import pyarrow as pa
        import pyarrow.parquet as pq

        from pipeline.io import storage

        for batch in batches:
            for t in batch.column("task").to_pylist():
                first, end = ranges[t]
                table = _read_range(staged, None, first, end, columns=_NARROW)
                if table is None or table.num_rows == 0:
                    continue
                decided, stats = decide_rows(table, bucket_shift)
                sink = pa.BufferOutputStream()
                pq.write_table(decided, sink, compression="snappy", write_statistics=["id", "copies"])
                # named by the task, so a retried task replaces its earlier attempt's file
                storage.write_bytes(storage.join(out_dir, f"part-{t:05d}.parquet"), sink.getvalue().to_pybytes())
                yield from stats.to_batches()

    return run
