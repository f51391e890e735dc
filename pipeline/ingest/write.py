"""Ingest's last step without a shuffle of the images: each write task reads an id range straight
from the staged files and writes the output files that start in it.

The parse tasks stage their rows in id order, in row groups of ``STAGED_ROW_GROUP_ROWS``, so a row
group's id statistics bound its ids. The write's tasks own evenly spaced id ranges (ids are uniform,
so they get about equal work). Each output file (an id range of its split, ``shard_bounds``) goes to
the task whose range holds its first id; the task reads from every staged file only the row groups
that meet its range (on to the end of its last file), keeps the rows of each split (the kept copy of
a repeated image, val carved out of train by the thresholds of ``val_thresholds``), sorts them once
and writes each file's slice as one row group. The decisions are the ones the Spark path applies
(``copy_key``, ``final_split``), computed here in Python on the same values; a test holds the two
paths' output equal.

Before this, the images went through one Spark shuffle (a range partition on the output file, then
a sort within it): about two thirds of ingest's time at 1M images on 2 cores (docs/benchmarks.md).
"""

from __future__ import annotations

# The copy key's layout; build.py's ``copy_key`` computes the same in Spark.
KEY_SRC_BITS, KEY_IDX_BITS, KEY_LABEL_BITS = 26, 32, 4


def copy_keys(split, src, idx, label):
    """``copy_key`` of numpy columns (the test copy first, then source file, then index; label last)."""
    import numpy as np

    not_test = (split != "test").astype(np.int64)
    return ((not_test << (KEY_SRC_BITS + KEY_IDX_BITS + KEY_LABEL_BITS))
            + (src.astype(np.int64) << (KEY_IDX_BITS + KEY_LABEL_BITS))
            + (idx.astype(np.int64) << KEY_LABEL_BITS) + label.astype(np.int64))


def plan_write_tasks(files: dict[str, int], bounds: dict[str, list[str]], ranges: list[list]) -> list[dict]:
    """Gives each output file to the id range (of ``ranges``, consecutive ``[first, end)``) that holds
    its first id, so each task writes the files of every split that start in its range, reading its
    range and on to the end of its last file. Ids are uniform, so evenly spaced ranges balance the
    tasks, whatever the splits' sizes. A task: ``{"first", "files": {split: [[number, first id or
    None, end id or None]]}}`` (ids in ``[first, end)``; None: unbounded)."""
    import bisect

    starts = [r[0] for r in ranges[1:]]
    plan = [{"first": r[0], "files": {}} for r in ranges]
    for split, n in files.items():
        edges = [None, *bounds[split], None]
        for k in range(n):
            owner = 0 if edges[k] is None else bisect.bisect_right(starts, edges[k])
            plan[owner]["files"].setdefault(split, []).append([k, edges[k], edges[k + 1]])
    return plan


def _in_range(ids, first, end):
    import pyarrow.compute as pc

    keep = None
    if first is not None:
        keep = pc.greater_equal(ids, first)
    if end is not None:
        below = pc.less(ids, end)
        keep = below if keep is None else pc.and_(keep, below)
    return keep


_ALL_COLUMNS = ("id", "split", "src", "idx", "label", "vh", "image")


def read_range(staged: list[str], source_split: str | None, first, end, columns=_ALL_COLUMNS):
    """The staged rows of ``source_split`` (None: of every split) with ids in ``[first, end)``, from
    the row groups whose id statistics meet that range."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    from pipeline.io import storage

    tables = []
    for path in staged:
        fs, p = storage.resolve(path)
        with fs.open_input_file(p) as handle:
            pf = pq.ParquetFile(handle)
            meta = pf.metadata
            id_col, split_col = meta.schema.names.index("id"), meta.schema.names.index("split")
            groups = []
            for g in range(meta.num_row_groups):
                ids, splits = meta.row_group(g).column(id_col).statistics, meta.row_group(g).column(split_col).statistics
                if (source_split is not None and splits is not None and splits.has_min_max
                        and not splits.min <= source_split <= splits.max):
                    continue  # no row of the split in this row group
                if ids is None or not ids.has_min_max:
                    groups.append(g)
                elif (end is None or ids.min < end) and (first is None or ids.max >= first):
                    groups.append(g)
            if not groups:
                continue
            table = pf.read_row_groups(groups, columns=list(columns))
        keep = _in_range(table["id"], first, end)
        if source_split is not None:
            of_split = pc.equal(table["split"], source_split)
            keep = of_split if keep is None else pc.and_(keep, of_split)
        tables.append(table if keep is None else table.filter(keep))
    return pa.concat_tables(tables) if tables else None


WRITE_RESULT_SCHEMA = "split string, file int, rows long"


def is_val(part, thresholds: dict[int, tuple[int, str]]):
    """``final_split``'s val decision for staged train rows (a pyarrow table with ``vh``, ``label``,
    ``id``), as a numpy bool array: the rows of each class up to its threshold ``(hash, id)``."""
    import numpy as np
    import pyarrow.compute as pc

    vh, labels = part["vh"].to_numpy(), part["label"].to_numpy()
    out = np.zeros(part.num_rows, dtype=bool)
    for lab, (th, th_id) in thresholds.items():
        of_class = labels == lab
        out |= of_class & (vh < th)
        tie = np.flatnonzero(of_class & (vh == th))  # the same hash as the threshold row: then by id
        if tie.size:
            ids = part["id"].take(tie)
            out[tie[pc.less_equal(ids, th_id).to_numpy()]] = True
    return out


def write_task_fn(plan: list[dict], staged: list[str], out_root: str, thresholds: dict[int, tuple[int, str]],
                  duplicates):
    """The ``mapInArrow`` function of the write job: rows ``task`` (a number in ``plan``) in, rows of
    ``WRITE_RESULT_SCHEMA`` out, one per output file (an empty file is not written).

    ``duplicates``: a broadcast of ``{id: kept copy's key}`` for the repeated images, or None."""

    def run(batches):
        import numpy as np
        import pyarrow as pa
        import pyarrow.compute as pc
        import pyarrow.parquet as pq

        from pipeline.io import storage

        dups = duplicates.value if duplicates is not None else {}
        repeated = pa.array(list(dups), pa.string()) if dups else None

        def kept_rows(source, files):
            """The task's rows of ``source`` that some split keeps, from its first id to the end of its
            last file, with their split (val carved out of train), sorted by split and id once."""
            ends = [f[2] for fs in files.values() for f in fs]
            table = read_range(staged, source, task["first"], None if None in ends else max(ends))
            if table is None or not table.num_rows:
                return None, None
            keep = np.ones(table.num_rows, dtype=bool)
            if repeated is not None:  # of a repeated image, only the kept copy
                copies = np.flatnonzero(pc.is_in(table["id"], value_set=repeated).to_numpy())
                if copies.size:
                    c = table.take(copies)
                    keys = copy_keys(c["split"].to_numpy(), c["src"].to_numpy(), c["idx"].to_numpy(),
                                     c["label"].to_numpy())
                    keep[copies] = [dups[i] == k for i, k in zip(c["id"].to_pylist(), keys.tolist())]
            split = np.zeros(table.num_rows, dtype=np.int8)  # 0: test or train, 1: val
            if source == "train":
                split[is_val(table, thresholds)] = 1
            rows = np.flatnonzero(keep)
            order = pc.sort_indices(pa.table({"val": split[rows], "id": table["id"].take(rows)}),
                                    sort_keys=[("val", "ascending"), ("id", "ascending")]).to_numpy()
            rows = rows[order]
            return table.take(rows), split[rows]  # one copy of the images

        for batch in batches:
            out_split, out_file, out_rows = [], [], []
            for t in batch.column("task").to_pylist():
                task = plan[t]
                for source, splits in (("train", ("train", "val")), ("test", ("test",))):
                    files = {s: task["files"][s] for s in splits if s in task["files"]}
                    if not files:
                        continue
                    table, val = kept_rows(source, files)
                    for split, fs in files.items():
                        a0 = b0 = 0
                        if table is not None:  # this split's rows: one block of the table, in id order
                            first_val = int(np.searchsorted(val, 1))
                            a0, b0 = (first_val, len(val)) if split == "val" else (0, first_val)
                        ids = table["id"].slice(a0, b0 - a0).to_numpy() if b0 > a0 else np.array([], object)
                        for number, lo, hi in fs:
                            a = 0 if lo is None else int(np.searchsorted(ids, lo, side="left"))
                            b = len(ids) if hi is None else int(np.searchsorted(ids, hi, side="left"))
                            if b > a:
                                part = table.slice(a0 + a, b - a)
                                sink = pa.BufferOutputStream()
                                pq.write_table(pa.table({"id": part["id"], "image": part["image"],
                                                         "label": pc.cast(part["label"], pa.int32())}),
                                               sink, compression="snappy", use_dictionary=False,
                                               write_statistics=["id", "label"], row_group_size=b - a)
                                storage.write_bytes(
                                    storage.join(out_root, f"split={split}", f"part-{number:05d}.parquet"),
                                    sink.getvalue().to_pybytes())
                            out_split.append(split)
                            out_file.append(number)
                            out_rows.append(max(0, b - a))
            yield pa.RecordBatch.from_arrays(
                [pa.array(out_split, pa.string()), pa.array(out_file, pa.int32()), pa.array(out_rows, pa.int64())],
                names=["split", "file", "rows"])

    return run
