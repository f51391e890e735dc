"""Ingest's decisions without a shuffle: which copy of each repeated image is kept, and the counts the
val split and the file ranges are cut from, by tasks that each own an id range.

Every copy of an image has the same id (its SHA-256), so all copies of an image fall in one id range,
and the staged files (rows in id order, in row groups of ``STAGED_ROW_GROUP_ROWS``) let a task read
only the row groups of its range, and only the narrow columns (no image bytes). Each task:

- finds its range's distinct ids and, per id, what ``build.keep_one_per_image`` finds in Spark: the
  kept copy's key (``write.copy_keys``), split and label, the number of copies, whether their labels
  disagree, and the val hash ``vh``;
- writes those rows to ``decided/part-<task>.parquet`` under the staging folder, in order of split,
  class and val hash (``write_decided``), so the driver can read one val-hash bucket of a class by
  row-group statistics (``bucket_rows``, for the val thresholds) and the repeated images' kept keys
  (``repeated_keys``, for the write); Spark reads them to rank small splits exactly;
- returns its counts per ``(split, label, val bucket)``, summed across tasks by Spark.

Ids are the leading 128 bits of SHA-256 hex digests, so evenly spaced id values cut the rows into
ranges of about equal size. Before this, one Spark shuffle of the narrow rows by id did this: 0.5-1 s
of a 2.3 s ingest of 70,000 images on 2 cores, mostly fixed costs (docs/benchmarks.md).
"""

from __future__ import annotations

from pipeline.ingest.write import KEY_IDX_BITS, KEY_LABEL_BITS, KEY_SRC_BITS, copy_keys, read_range

# What ``keep_one_per_image`` returns, one row per distinct image
DECIDED_SCHEMA = "id string, split string, label int, key long, copies long, conflict boolean, vh long"
# One task's counts per (split, label, val bucket); ``bucket`` is 0 for test rows
STATS_SCHEMA = "split string, label int, bucket long, kept long, dropped long, repeated long, conflicts long"
_NARROW = ("id", "split", "src", "idx", "label", "vh")
_DECIDED_ROW_GROUP_ROWS = 4096
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


def write_decided(decided, path: str, row_group_rows: int = _DECIDED_ROW_GROUP_ROWS) -> None:
    """Writes decided rows in val hash order per split and class, so that a class's boundary bucket is
    a few row groups (``bucket_rows``)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from pipeline.io import storage

    decided = decided.sort_by([("split", "ascending"), ("label", "ascending"), ("vh", "ascending")])
    sink = pa.BufferOutputStream()
    pq.write_table(decided, sink, compression="snappy", row_group_size=row_group_rows,
                   write_statistics=["split", "label", "vh", "copies"])
    storage.write_bytes(path, sink.getvalue().to_pybytes())


def decide_task_fn(ranges: list[list], staged: list[str], out_dir: str, bucket_shift: int):
    """The ``mapInArrow`` function of the decision job: rows ``task`` (an index into ``ranges``) in,
    that range's counts (``STATS_SCHEMA``) out; its decided rows go to ``out_dir``."""

    def run(batches):
        from pipeline.io import storage

        for batch in batches:
            for t in batch.column("task").to_pylist():
                first, end = ranges[t]
                table = read_range(staged, None, first, end, columns=_NARROW)
                if table is None or table.num_rows == 0:
                    continue
                decided, stats = decide_rows(table, bucket_shift)
                # named by the task, so a retried task replaces its earlier attempt's file
                write_decided(decided, storage.join(out_dir, f"part-{t:05d}.parquet"))
                yield from stats.to_batches()

    return run


def _row_groups(folder: str, wanted):
    """The row groups of the decided files under ``folder`` for which ``wanted(statistics)`` holds
    (``statistics``: ``{column: (min, max)}``), read whole, one pyarrow table at a time."""
    import pyarrow.parquet as pq

    from pipeline.io.dataset import parquet_files

    filesystem, files = parquet_files(folder)
    for path in files:
        with filesystem.open_input_file(path) as handle:
            pf = pq.ParquetFile(handle)
            meta = pf.metadata
            names = meta.schema.names
            for g in range(meta.num_row_groups):
                stats = {}
                for name in ("split", "label", "vh", "copies"):
                    st = meta.row_group(g).column(names.index(name)).statistics
                    stats[name] = (st.min, st.max) if st is not None and st.has_min_max else None
                if wanted(stats):
                    yield pf.read_row_group(g)


def bucket_rows(folder: str, buckets: dict[int, int], bucket_shift: int):
    """``(label, vh, id)`` of the kept train rows of each class's val bucket ``buckets[label]``, read
    on the driver from the decided files under ``folder``: only the row groups whose statistics can
    hold such rows (the files are in val hash order per class), about 1/1024 of each class."""
    import numpy as np

    def span(lab):
        b = buckets[lab]
        return b << bucket_shift, ((b + 1) << bucket_shift) - 1

    def wanted(st):
        if any(v is None for v in st.values()):
            return True
        if not st["split"][0] <= "train" <= st["split"][1]:
            return False
        return any(st["label"][0] <= lab <= st["label"][1] and st["vh"][0] <= span(lab)[1]
                   and st["vh"][1] >= span(lab)[0] for lab in buckets)

    for table in _row_groups(folder, wanted):
        split, labels, vh = (table[c].to_numpy() for c in ("split", "label", "vh"))
        for lab in buckets:
            lo, hi = span(lab)
            rows = np.flatnonzero((split == "train") & (labels == lab) & (vh >= lo) & (vh <= hi))
            for h, ident in zip(vh[rows].tolist(), table["id"].take(rows).to_pylist()):
                yield lab, h, ident


def repeated_keys(folder: str) -> dict[str, int]:
    """``{id: kept copy's key}`` of the images that occur more than once, from the decided files."""
    import numpy as np

    out = {}
    for table in _row_groups(folder, lambda st: st["copies"] is None or st["copies"][1] > 1):
        rows = np.flatnonzero(table["copies"].to_numpy() > 1)
        out.update(zip(table["id"].take(rows).to_pylist(), table["key"].take(rows).to_pylist()))
    return out
