"""Ingest of real digits: counts, contents, determinism, de-duplication, format equivalence."""

import json

import numpy as np
import pytest

from pipeline.errors import InputError
from pipeline.ingest.build import ingest
from tests.helpers import SAMPLE_DIR, csv_text, image_id, libsvm_text, make_config, read_split, small_idx_inputs, write_idx_pair


def test_sample_counts_labels_and_balance(sample_dataset, sample_arrays):
    root, manifest = sample_dataset
    rows = {s: read_split(root, s) for s in ("train", "val", "test")}
    assert {s: len(r) for s, r in rows.items()} == {"train": 7200, "val": 800, "test": 2000}
    assert {s: manifest["splits"][s]["rows"] for s in rows} == {"train": 7200, "val": 800, "test": 2000}
    for split, split_rows in rows.items():
        labels = np.array([r[2] for r in split_rows])
        assert set(labels) == set(range(10))
        counted = {str(d): int((labels == d).sum()) for d in range(10)}
        assert counted == manifest["splits"][split]["classes"]
        assert manifest["splits"][split]["row_groups"] >= 8
    # val is carved per class: each class keeps its share (10%, rounded) of the source's train set
    _, ytr = sample_arrays["train"]
    for d in range(10):
        assert manifest["splits"]["val"]["classes"][str(d)] == int(0.1 * (ytr == d).sum() + 0.5)
    # test is exactly the source's test set; train+val exactly the source's train set
    xte, _ = sample_arrays["test"]
    assert {r[0] for r in rows["test"]} == {image_id(x) for x in xte}
    xtr, _ = sample_arrays["train"]
    assert {r[0] for r in rows["train"] + rows["val"]} == {image_id(x) for x in xtr}


def test_an_image_matches_the_source_byte_for_byte(sample_dataset, sample_arrays):
    root, _ = sample_dataset
    xte, yte = sample_arrays["test"]
    by_id = {r[0]: r for r in read_split(root, "test")}
    for i in (0, 1234, len(xte) - 1):
        row = by_id[image_id(xte[i])]
        assert row[1] == xte[i].tobytes()
        assert len(row[1]) == 784
        assert row[2] == yte[i]


def test_manifest_records_inputs_with_checksums(sample_dataset):
    root, manifest = sample_dataset
    # the dataset is the three splits and the manifest: no scratch folder of the run is left in it
    assert sorted(p.name for p in root.iterdir()) == ["manifest.json", "test", "train", "val"]
    published = dict(line.split()[::-1] for line in (SAMPLE_DIR / "SHA256SUMS").read_text().splitlines())
    recorded = {p["path"].rsplit("/", 1)[-1]: p["sha256"] for p in manifest["inputs"]}
    assert recorded == published
    assert manifest["schema_version"] == 1
    assert manifest["seed"] == 42
    assert manifest["rows_parsed"] == 10000
    assert manifest["duplicates"] == {"dropped": 0, "label_conflicts": 0}
    assert manifest["created_at"] and manifest["code_version"]


def test_rerun_on_the_same_input_gives_identical_rows(spark, sample_dataset, tmp_path):
    root, _ = sample_dataset
    again = tmp_path / "again"
    cfg = make_config(again, str(SAMPLE_DIR / "train-*-ubyte.gz"), str(SAMPLE_DIR / "t10k-*-ubyte.gz"), max_shards=8)
    ingest(spark, cfg)
    for split in ("train", "val", "test"):
        assert read_split(again, split) == read_split(root, split)


def test_rerun_replaces_the_previous_dataset(spark, small_arrays, previous_dataset, tmp_path):
    train, test = small_idx_inputs(tmp_path / "in", small_arrays)
    manifest = ingest(spark, make_config(previous_dataset, train, test))
    on_disk = json.loads((previous_dataset / "manifest.json").read_text())
    assert on_disk == manifest
    assert len(read_split(previous_dataset, "test")) == 60
    assert sorted(p.name for p in previous_dataset.parent.iterdir()) == [f".{previous_dataset.name}.__lock",
                                                                         previous_dataset.name]  # the lock only


def test_exact_duplicates_are_dropped_and_test_copies_win(spark, small_arrays, tmp_path):
    x, y = small_arrays["train"]
    xte, yte = small_arrays["test"]
    # three extra copies of train image 0 (one with a different label), and test image 5 put in train
    x_dup = np.concatenate([x, x[[0, 0, 0]], xte[[5]]])
    y_dup = np.concatenate([y, [y[0], y[0], (y[0] + 1) % 10], yte[[5]]])
    write_idx_pair(tmp_path / "in", "train", x_dup, y_dup)
    write_idx_pair(tmp_path / "in", "t10k", xte, yte)
    root = tmp_path / "out"
    manifest = ingest(spark, make_config(root, str(tmp_path / "in" / "train-*"), str(tmp_path / "in" / "t10k-*")))
    assert manifest["duplicates"] == {"dropped": 4, "label_conflicts": 1}
    train_ids = {r[0] for r in read_split(root, "train") + read_split(root, "val")}
    test_rows = {r[0]: r for r in read_split(root, "test")}
    assert len(train_ids) == 240
    assert image_id(xte[5]) not in train_ids
    assert test_rows[image_id(xte[5])][2] == yte[5]
    # the kept copy of train image 0 carries the label of its first occurrence
    kept = {r[0]: r[2] for r in read_split(root, "train") + read_split(root, "val")}
    assert kept[image_id(x[0])] == y[0]


def test_idx_libsvm_and_csv_of_the_same_digits_give_identical_datasets(spark, small_arrays, tmp_path):
    (xtr, ytr), (xte, yte) = small_arrays["train"], small_arrays["test"]
    roots = {}
    small_idx_inputs(tmp_path / "idx", small_arrays)
    roots["idx"] = (str(tmp_path / "idx" / "train-*"), str(tmp_path / "idx" / "t10k-*"))
    (tmp_path / "libsvm").mkdir()
    (tmp_path / "libsvm" / "mnist-digits-train.txt").write_text(libsvm_text(xtr, ytr))
    (tmp_path / "libsvm" / "mnist-digits-test.txt").write_text(libsvm_text(xte, yte))
    roots["libsvm"] = (str(tmp_path / "libsvm" / "*train.txt"), str(tmp_path / "libsvm" / "*test.txt"))
    (tmp_path / "csv").mkdir()
    # the train CSV spread over two files, one with a header and one without
    (tmp_path / "csv" / "train-0.csv").write_text(csv_text(xtr[:100], ytr[:100], header=True))
    (tmp_path / "csv" / "train-1.csv").write_text(csv_text(xtr[100:], ytr[100:], header=False))
    (tmp_path / "csv" / "test.csv").write_text(csv_text(xte, yte, header=True))
    roots["csv"] = (str(tmp_path / "csv" / "train-*.csv"), str(tmp_path / "csv" / "test.csv"))

    results = {}
    for fmt, (train, test) in roots.items():
        out = tmp_path / f"out-{fmt}"
        manifest = ingest(spark, make_config(out, train, test, fmt=fmt))
        assert manifest["rows_parsed"] == 300
        results[fmt] = {s: read_split(out, s) for s in ("train", "val", "test")}
    assert results["idx"] == results["libsvm"] == results["csv"]
    # the same rows, not three empty datasets: val is 10% of each class, rounded per class
    val = sum(int(0.1 * (ytr == d).sum() + 0.5) for d in range(10))
    assert [len(results["idx"][s]) for s in ("train", "val", "test")] == [240 - val, val, 60]


def test_gzipped_and_raw_idx_give_the_same_rows(spark, small_arrays, tmp_path):
    for gz in (True, False):
        write_idx_pair(tmp_path / f"in-{gz}", "train", *small_arrays["train"], gz=gz)
        write_idx_pair(tmp_path / f"in-{gz}", "t10k", *small_arrays["test"], gz=gz)
        ingest(spark, make_config(tmp_path / f"out-{gz}", str(tmp_path / f"in-{gz}" / "train-*"),
                                  str(tmp_path / f"in-{gz}" / "t10k-*")))
    assert read_split(tmp_path / "out-True", "train") == read_split(tmp_path / "out-False", "train")


def _files_in_id_order(root, split):
    """Each Parquet file of a split: (first id, last id, rows, row groups), in file-name order."""
    import pyarrow.parquet as pq

    out = []
    for path in sorted((root / split).glob("part-*.parquet")):
        f = pq.ParquetFile(path)
        ids = f.read(columns=["id"]).column("id").to_pylist()
        assert ids == sorted(ids), f"{path.name} is not sorted by id"
        out.append((ids[0], ids[-1], len(ids), f.metadata.num_row_groups))
    return out


@pytest.mark.parametrize("plan", ["literal", "broadcast"])
def test_raw_idx_split_into_record_ranges_gives_the_same_dataset(plan, spark, small_arrays, tmp_path, monkeypatch):
    # the same digits gzipped (one task per pair) and raw, parsed in record ranges of 50 images; the
    # task plan reaches the tasks as a literal (small plans) or broadcast (big ones)
    if plan == "broadcast":
        monkeypatch.setattr("pipeline.sources.files.LITERAL_PLAN_TASKS", 0)
    for gz in (True, False):
        write_idx_pair(tmp_path / f"in-{gz}", "train", *small_arrays["train"], gz=gz)
        write_idx_pair(tmp_path / f"in-{gz}", "t10k", *small_arrays["test"], gz=gz)
    whole = ingest(spark, make_config(tmp_path / "whole", str(tmp_path / "in-True" / "train-*"),
                                      str(tmp_path / "in-True" / "t10k-*")))
    ranged = ingest(spark, make_config(tmp_path / "ranged", str(tmp_path / "in-False" / "train-*"),
                                       str(tmp_path / "in-False" / "t10k-*"), records_per_task=50))
    # the gzip files cut into parts of their records (as many as local[2] has cores)
    parts = ingest(spark, make_config(tmp_path / "parts", str(tmp_path / "in-True" / "train-*"),
                                      str(tmp_path / "in-True" / "t10k-*"), records_per_task=50))
    for split in ("train", "val", "test"):
        assert read_split(tmp_path / "ranged", split) == read_split(tmp_path / "whole", split)
        assert read_split(tmp_path / "parts", split) == read_split(tmp_path / "whole", split)
    assert ranged["rows_parsed"] == whole["rows_parsed"] == parts["rows_parsed"] == 300
    assert parts["inputs"] == whole["inputs"]
    # the manifest checksums the whole raw files although no task read one whole for its images
    import hashlib

    for entry in ranged["inputs"]:
        path = entry["path"].removeprefix("file:")
        data = open(path, "rb").read()
        assert entry["sha256"] == hashlib.sha256(data).hexdigest() and entry["bytes"] == len(data)


def test_each_split_is_written_in_id_ranges_of_about_equal_size(spark, sample_dataset):
    root, manifest = sample_dataset
    for split in ("train", "val", "test"):
        files = _files_in_id_order(root, split)
        # consecutive files hold consecutive id ranges, so the split as a whole is in id order
        for (_, last, _, _), (first, _, _, _) in zip(files, files[1:]):
            assert last < first
        sizes = [n for _, _, n, _ in files]
        if split == "train":  # 900 rows a file: cut at evenly spaced ids, a share within a few per cent
            assert max(sizes) - min(sizes) <= 0.25 * sum(sizes) / len(sizes), sizes
        else:  # too few rows a file for that: cut at exact ranks, equal to one row
            assert max(sizes) - min(sizes) <= 1, sizes
        assert sum(sizes) == manifest["splits"][split]["rows"]
        assert sum(g for *_, g in files) == manifest["splits"][split]["row_groups"] >= 8


def test_partition_keys_land_in_their_partitions_under_spark_hashing(spark):
    # The write sends every row to the partition of its file by a key computed on the driver; Spark
    # must agree, or files would mix id ranges.
    from pyspark.sql import functions as F

    from pipeline.ingest.build import _partition_keys, _spark_int_hash

    values = list(range(-300, 300)) + [2**31 - 1, -(2**31), 123456789]
    got = spark.createDataFrame([(v,) for v in values], "v int").select("v", F.hash("v").alias("h")).collect()
    assert {r.v: r.h for r in got} == {v: _spark_int_hash(v) for v in values}

    n = 24
    keys = _partition_keys(n)
    placed = (spark.createDataFrame([(k,) for k in keys], "k int").repartition(n, "k")
              .select("k", F.spark_partition_id().alias("p")).collect())
    assert sorted((r.p, r.k) for r in placed) == list(enumerate(keys))


def test_of_copies_in_several_files_the_first_file_by_path_wins(spark, small_arrays, tmp_path):
    # image 130 is at index 10 of train-b (its label) and at index 100 of train-a (another label): the
    # copy in train-a is kept, first by source file, then by index
    x, y = small_arrays["train"]
    xte, yte = small_arrays["test"]
    a_x, a_y = x[:120].copy(), y[:120].copy()
    a_x[100], a_y[100] = x[130], (y[130] + 3) % 10
    write_idx_pair(tmp_path / "in", "train-b", x[120:], y[120:])
    write_idx_pair(tmp_path / "in", "train-a", a_x, a_y)
    write_idx_pair(tmp_path / "in", "t10k", xte, yte)
    root = tmp_path / "out"
    manifest = ingest(spark, make_config(root, str(tmp_path / "in" / "train-*"), str(tmp_path / "in" / "t10k-*")))
    kept = {r[0]: r[2] for r in read_split(root, "train") + read_split(root, "val")}
    assert kept[image_id(x[130])] == (y[130] + 3) % 10
    assert manifest["duplicates"] == {"dropped": 1, "label_conflicts": 1}


def test_the_write_tasks_decide_as_spark_does(spark):
    # The write tasks carve val out of train and pick the kept copies in Python; the hash and the
    # copy key must be Spark's, bit for bit, or rows would land in the wrong split.
    import hashlib

    from pipeline.ingest.build import copy_key, val_hash
    from pipeline.ingest.write import copy_keys
    from pipeline.sources.hashing import spark_xxhash64_id_seed

    ids = [hashlib.sha256(str(i).encode()).hexdigest()[:32] for i in range(500)]
    for seed in (42, 0, -5, 2**31 - 1, 2**33 + 7):
        got = spark.createDataFrame([(i,) for i in ids], "id string").select("id", val_hash(seed).alias("h")).collect()
        assert [r.h for r in got] == spark_xxhash64_id_seed([r.id for r in got], seed), seed
    rows = [("test" if i % 3 == 0 else "train", i * 7919 % (1 << 26), i * 104729 % (1 << 32), i % 10)
            for i in range(500)]
    got = spark.createDataFrame(rows, "split string, src int, idx long, label int").select(copy_key().alias("k")).collect()
    split, src, idx, label = (np.array(c) for c in zip(*rows))
    assert [r.k for r in got] == copy_keys(split, src, idx, label).tolist()


def test_direct_write_gives_the_dataset_of_the_spark_shuffle(spark, small_arrays, tmp_path, monkeypatch):
    # The images go straight from the staged files to their output files (no shuffle) unless the
    # repeated images are too many to broadcast (then one Spark shuffle): both write the same files.
    x, y = small_arrays["train"]
    xte, yte = small_arrays["test"]
    x_dup = np.concatenate([x, x[[0, 7, 7]], xte[[5]]])
    y_dup = np.concatenate([y, [(y[0] + 1) % 10, y[7], y[7]], yte[[5]]])
    write_idx_pair(tmp_path / "in", "train-a", x_dup[:150], y_dup[:150])
    write_idx_pair(tmp_path / "in", "train-b", x_dup[150:], y_dup[150:])
    write_idx_pair(tmp_path / "in", "t10k", xte, yte)
    session_conf = {k: spark.conf.get(k, None) for k in ("spark.sql.adaptive.enabled", "spark.sql.shuffle.partitions")}
    manifests = {}
    for direct in (True, False):  # False: more repeated images than a broadcast takes (here: any)
        monkeypatch.setattr("pipeline.ingest.build._BROADCAST_DUPLICATES", 200_000 if direct else 0)
        manifests[direct] = ingest(spark, make_config(tmp_path / f"out-{direct}", str(tmp_path / "in" / "train-*"),
                                                      str(tmp_path / "in" / "t10k-*"), records_per_task=40))
    assert manifests[True]["duplicates"] == {"dropped": 4, "label_conflicts": 1}
    for key in ("splits", "duplicates", "rows_parsed"):
        assert manifests[True][key] == manifests[False][key]
    for split in ("train", "val", "test"):
        assert read_split(tmp_path / "out-True", split) == read_split(tmp_path / "out-False", split)
        direct = _files_in_id_order(tmp_path / "out-True", split)
        shuffled = _files_in_id_order(tmp_path / "out-False", split)
        assert direct == shuffled  # the same id ranges, file by file, one row group each
    # ingest sets its own shuffle settings while it runs and gives the session back as it was
    assert {k: spark.conf.get(k, None) for k in session_conf} == session_conf


def test_split_plan_from_the_decided_counts():
    """The splits' sizes from the decisions' counts, without Spark: val takes round(fraction x n) of
    each class's train rows; files are max(max_shards, rows / rows_per_row_group)."""
    from pipeline.ingest.build import plan_splits

    # (split, label, val bucket, kept, dropped, repeated, conflicts)
    stats = [("train", 0, 3, 50, 2, 1, 0), ("train", 0, 9, 45, 0, 0, 0), ("train", 1, 4, 30, 1, 1, 1),
             ("test", 0, 0, 20, 0, 0, 0), ("test", 1, 0, 12, 3, 2, 0)]
    plan = plan_splits(stats, val_fraction=0.1, max_shards=2, rows_per_row_group=40)
    assert plan.val_counts == {0: 10, 1: 3}  # round(9.5) = 10, round(3.0) = 3
    assert plan.classes == {"train": {0: 85, 1: 27}, "val": {0: 10, 1: 3}, "test": {0: 20, 1: 12}}
    assert plan.counts == {"train": 112, "val": 13, "test": 32}
    assert plan.files == {"train": 3, "val": 2, "test": 2}
    assert plan.histogram == {(0, 3): 50, (0, 9): 45, (1, 4): 30}
    assert plan.duplicates == {"dropped": 6, "label_conflicts": 1} and plan.repeated == 4
    with pytest.raises(InputError, match=r"split val would hold 13 rows, fewer than ingest.max_shards=16"):
        plan_splits(stats, val_fraction=0.1, max_shards=16, rows_per_row_group=40)


def test_id_range_tasks_decide_what_spark_decides(spark):
    # The same narrow rows decided by Spark's aggregation (keep_one_per_image and the counts per
    # split, label and val bucket) and by the Python of the id-range tasks: the same rows, the same counts.
    import pyarrow as pa
    from pyspark.sql import functions as F

    from pipeline.ingest.build import _VAL_BUCKET_SHIFT, keep_one_per_image, val_bucket
    from pipeline.ingest.decide import decide_rows

    rng = np.random.default_rng(3)
    n = 3000
    ids = [format(int(v), "032x") for v in rng.integers(0, 400, n) * (1 << 118)]  # about 400 ids, most repeated
    split = np.where(rng.random(n) < 0.2, "test", "train")
    src = rng.integers(0, 5, n).astype(np.int32)
    idx = rng.integers(0, 1 << 20, n)
    label = rng.integers(0, 10, n).astype(np.int32)
    vh_of = {i: int(v) for i, v in zip(sorted(set(ids)), rng.integers(-(1 << 63), (1 << 63) - 1, 400))}
    vh = np.array([vh_of[i] for i in ids], dtype=np.int64)
    rows = pa.table({"id": ids, "split": split, "src": src, "idx": idx, "label": label, "vh": vh})
    decided, stats = decide_rows(rows, _VAL_BUCKET_SHIFT)

    frame = spark.createDataFrame(rows.to_pandas())
    kept = keep_one_per_image(frame)
    expected = sorted(tuple(r) for r in kept.select("id", "split", "label", "key", "copies", "conflict", "vh").collect())
    got = sorted(zip(*(decided[c].to_pylist() for c in ("id", "split", "label", "key", "copies", "conflict", "vh"))))
    assert got == expected
    assert sum(r[4] > 1 for r in got) > 100 and sum(r[5] for r in got) > 50  # the case is not trivial
    bucket = F.when(F.col("split") == "train", val_bucket()).otherwise(F.lit(0)).alias("bucket")
    expected_stats = sorted(tuple(r) for r in kept.groupBy("split", "label", bucket).agg(
        F.count(F.lit(1)), F.sum(F.col("copies") - 1), F.sum(F.when(F.col("copies") > 1, 1).otherwise(0)),
        F.sum(F.when(F.col("conflict"), 1).otherwise(0))).collect())
    assert sorted(zip(*(stats[c].to_pylist() for c in stats.column_names))) == expected_stats


def test_the_driver_reads_a_boundary_bucket_and_the_repeated_keys_from_the_decided_files(tmp_path):
    # the decided files are read on the driver by row-group statistics; small row groups here so that
    # most are skipped, and the answer must still be every row a full scan finds
    import pyarrow as pa

    from pipeline.ingest.decide import bucket_rows, decide_rows, repeated_keys, write_decided

    rng = np.random.default_rng(5)
    n, shift = 4000, 60  # 16 buckets of the val hash
    ids = [format(int(v), "032x") for v in rng.integers(0, 3000, n) * (1 << 100)]
    vh_of = {i: int(v) for i, v in zip(sorted(set(ids)), rng.integers(-(1 << 63), (1 << 63) - 1, 3000))}
    rows = pa.table({"id": ids, "split": np.where(rng.random(n) < 0.3, "test", "train"),
                     "src": rng.integers(0, 3, n).astype(np.int32), "idx": rng.integers(0, 1 << 20, n),
                     "label": rng.integers(0, 10, n).astype(np.int32),
                     "vh": np.array([vh_of[i] for i in ids], dtype=np.int64)})
    decided, _ = decide_rows(rows, shift)
    for k, a in enumerate(range(0, decided.num_rows, 1000)):
        write_decided(decided.slice(a, 1000), str(tmp_path / f"part-{k:05d}.parquet"), row_group_rows=32)
    buckets = {lab: int(rng.integers(-8, 8)) for lab in range(0, 10, 2)}
    full = decided.to_pylist()
    expected = sorted((r["label"], r["vh"], r["id"]) for r in full if r["split"] == "train"
                      and buckets.get(r["label"]) == r["vh"] >> shift)
    assert len(expected) > 20 and sorted(bucket_rows(str(tmp_path), buckets, shift)) == expected
    repeated = {r["id"]: r["key"] for r in full if r["copies"] > 1}
    assert len(repeated) > 100 and repeated_keys(str(tmp_path)) == repeated


def test_id_ranges_and_gzip_parts_cover_everything_once():
    from pipeline.ingest.decide import id_ranges
    from pipeline.sources.formats import part_range

    for tasks in (1, 2, 7):
        ranges = id_ranges(tasks)
        assert ranges[0][0] is None and ranges[-1][1] is None and len(ranges) == tasks
        assert all(a[1] == b[0] for a, b in zip(ranges, ranges[1:]))
        edges = [r[0] for r in ranges[1:]]
        assert edges == sorted(set(edges)) and all(len(e) == 32 for e in edges)
    for n in (1, 5, 10_000, 60_000):
        for parts in (1, 2, 3, 4):
            cuts = [part_range(n, k, parts) for k in range(parts)]
            assert cuts[0][0] == 0 and cuts[-1][1] == n
            assert all(a[1] == b[0] and b[0] <= b[1] for a, b in zip(cuts, cuts[1:]))
            if n >= 10_000:  # each part inflates up to its end and parses its own: about equal costs
                costs = [stop + (stop - first) for first, stop in cuts]
                assert max(costs) - min(costs) <= 2, costs


def test_write_tasks_own_every_file_once_and_read_what_they_write():
    from pipeline.ingest.decide import id_ranges
    from pipeline.ingest.write import plan_write_tasks

    files = {"train": 14, "val": 8, "test": 8}
    bounds = {s: [format(b * (1 << 128) // n, "032x") for b in range(1, n)] for s, n in files.items()}
    bounds["val"][3] = bounds["train"][6]  # a file may start exactly on a task's first id
    for tasks in (1, 2, 4, 16, 100):
        ranges = id_ranges(tasks)
        plan = plan_write_tasks(files, bounds, ranges)
        assert [t["first"] for t in plan] == [r[0] for r in ranges]
        for split, n in files.items():
            owned = sorted(f[0] for t in plan for f in t["files"].get(split, []))
            assert owned == list(range(n)), (tasks, split)  # each file once
        for t, (first, end) in zip(plan, ranges):
            for fs in t["files"].values():
                for _, lo, _ in fs:  # a task owns the files that start in its range
                    assert (lo is None and first is None) or (lo is not None and (first is None or lo >= first)
                                                              and (end is None or lo < end))
    # with one task per core on 2 cores, both tasks get files of every split
    plan = plan_write_tasks(files, bounds, id_ranges(2))
    assert all(set(t["files"]) == {"train", "val", "test"} for t in plan)


def test_the_code_version_asks_git_only_in_a_checkout_of_this_project(tmp_path, monkeypatch):
    """An installed wheel (site-packages inside some other git repository, as a Databricks repo or a
    user's home can be) is versioned by the package alone, not by that repository's commit."""
    import subprocess

    import pipeline
    from pipeline.ingest.build import _code_version

    other = tmp_path / "home"
    site = other / "venv" / "lib" / "site-packages" / "pipeline"
    site.mkdir(parents=True)
    subprocess.run(["git", "init", "-q", str(other)], check=True)
    subprocess.run(["git", "-C", str(other), "-c", "user.name=x", "-c", "user.email=x@x", "commit", "-q",
                    "--allow-empty", "-m", "other"], check=True)
    monkeypatch.setattr(pipeline, "__file__", str(site / "__init__.py"))
    assert _code_version() == pipeline.__version__
    monkeypatch.undo()
    assert _code_version().startswith(pipeline.__version__ + "+g")  # this checkout: the commit too
