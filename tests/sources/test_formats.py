"""The source parsers on their own, in-process and in milliseconds: every validation case of ingest,
plus the parsers' own corner cases. A parser regression shows here before any Spark job runs."""

import gzip
import re
from pathlib import Path

import numpy as np
import pytest

from pipeline.errors import InputError
from pipeline.sources import formats
from tests.bad_inputs import CASES
from tests.helpers import csv_text, idx_images_bytes, idx_labels_bytes, libsvm_text

PLANNING_CASES = ("no_files_match", "missing_labels_file")  # refused before parsing (tested with Spark)


def _parse_folder(pattern: str, fmt: str):
    files = sorted(Path(pattern).parent.glob(Path(pattern).name))
    if fmt == "idx":
        images = next(f for f in files if "images-idx3" in f.name)
        labels = next(f for f in files if "labels-idx1" in f.name)
        return formats.parse_idx_pair(images.read_bytes(), images.name, labels.read_bytes(), labels.name)
    parse = formats.parse_libsvm if fmt == "libsvm" else formats.parse_csv
    return parse(files[0].read_bytes(), files[0].name)


@pytest.mark.parametrize("build, message", [c for c in CASES if c[0].__name__ not in PLANNING_CASES],
                         ids=[c[0].__name__ for c in CASES if c[0].__name__ not in PLANNING_CASES])
def test_every_ingest_validation_case_is_caught_by_the_parser(build, message, small_arrays, tmp_path):
    pattern, fmt = build(tmp_path / "in", small_arrays)
    with pytest.raises(InputError, match=message):
        _parse_folder(pattern, fmt)


def test_good_inputs_round_trip_in_every_format(small_arrays):
    x, y = small_arrays["train"]
    for data in (idx_images_bytes(x), gzip.compress(idx_images_bytes(x))):
        assert np.array_equal(formats.parse_idx_images(data, "images"), x)
    assert np.array_equal(formats.parse_idx_labels(idx_labels_bytes(y), "labels"), y)
    for parsed in (formats.parse_libsvm(libsvm_text(x, y).encode(), "t.txt"),
                   formats.parse_csv(csv_text(x, y).encode(), "t.csv"),
                   formats.parse_csv(csv_text(x, y, header=False).encode(), "t.csv", header="false")):
        assert np.array_equal(parsed[0], x) and np.array_equal(parsed[1], y)


@pytest.mark.parametrize("text, message", [
    (b"3 12-7\n", r"t\.txt:1: token '12-7' is not of the form index:value"),
    (b"x 1:3\n", r"t\.txt:1: label 'x' is not a number"),
    (b"10 1:3\n", r"t\.txt:1: label '10' is outside 0-9"),
    (b"nan 1:3\n", r"t\.txt:1: label 'nan' is not a finite number"),
    (b"inf 1:3\n", r"t\.txt:1: label 'inf' is not a finite number"),
    (b"1e400 1:3\n", r"t\.txt:1: label '1e400' is not a finite number"),
    (b"3.5 1:3\n", r"t\.txt:1: label '3\.5' is outside 0-9; expected an integer 0-9"),
    (b"3 1:nan\n", r"t\.txt:1: pixel value 'nan' is not a finite number"),
    (b"3 1:-inf\n", r"t\.txt:1: pixel value '-inf' is not a finite number"),
    (b"3 1:abc\n", r"t\.txt:1: pixel value 'abc' is not a number"),
    (b"3 1:2.5\n", r"t\.txt:1: pixel value '2\.5' is out of range; expected an integer 0-255"),
    (b"\n\n", r"t\.txt: file is empty; expected at least one row"),
    (b"\xff\xfe 1:2\n", r"t\.txt: not UTF-8 text at byte 0"),
])
def test_libsvm_rows_are_checked(text, message):
    with pytest.raises(InputError, match=message):
        formats.parse_libsvm(text, "t.txt")


def test_csv_rows_are_checked(small_arrays):
    x, y = small_arrays["train"]
    rows = csv_text(x[:3], y[:3], header=False).splitlines()
    bad_value = rows[1].split(",")
    bad_value[5] = "dark"
    with pytest.raises(InputError, match=r"t\.csv:2: column 6 value 'dark' is not a number"):
        formats.parse_csv("\n".join([rows[0], ",".join(bad_value)]).encode(), "t.csv", header="false")
    bad_label = rows[2].split(",")
    bad_label[0] = "11"
    with pytest.raises(InputError, match=r"t\.csv:3: label '11' is outside 0-9"):
        formats.parse_csv("\n".join(rows[:2] + [",".join(bad_label)]).encode(), "t.csv", header="false")
    for token, message in (("nan", "is not a number"), ("inf", "is not a finite number"),
                           ("1e400", "is not a (finite )?number"), ("3.5", "is outside 0-9; expected an integer")):
        row = rows[2].split(",")
        row[0] = token
        with pytest.raises(InputError, match=rf"t\.csv:3: (column 1 value|label) '{re.escape(token)}' {message}"):
            formats.parse_csv("\n".join(rows[:2] + [",".join(row)]).encode(), "t.csv", header="false")
    row = rows[2].split(",")
    row[9] = "nan"
    with pytest.raises(InputError, match=r"t\.csv:3: column 10 value 'nan' is not a number"):
        formats.parse_csv("\n".join(rows[:2] + [",".join(row)]).encode(), "t.csv", header="false")
    with pytest.raises(InputError, match=r"t\.csv: holds no rows \(empty input\)"):
        formats.parse_csv(csv_text(x[:0], y[:0]).encode(), "t.csv")


def test_gunzip_stops_at_its_limit_without_inflating_the_rest():
    data = gzip.compress(b"\0" * (10 << 20))
    assert len(formats.gunzip(data, "big.gz", limit=100)) == 101


def test_idx_inputs_on_a_file_system_the_tasks_cannot_open_are_refused_on_the_driver():
    from pipeline.sources.files import check_readable_by_tasks

    ok = [{"path": p} for p in ("file:/data/x", "/data/x", "dbfs:/x", "hdfs://nn:8020/x", "s3a://b/x", "gs://b/x")]
    check_readable_by_tasks(ok)
    with pytest.raises(InputError, match=r"abfss://acct@c/x: IDX files are read .* cannot open abfss:// paths"):
        check_readable_by_tasks([{"path": "abfss://acct@c/x"}])


class _Count:
    def __init__(self):
        self.value = 0

    def add(self, n):
        self.value += n


def _units(folder, prefix, gz):
    suffix = ".gz" if gz else ""
    return [{"path": str(folder / f"{prefix}-{role}-ubyte{suffix}"), "unit": prefix, "split": "train", "role": kind,
             "size": (folder / f"{prefix}-{role}-ubyte{suffix}").stat().st_size}
            for role, kind in (("images-idx3", "images"), ("labels-idx1", "labels"))]


@pytest.mark.parametrize("gz, records_per_task, gzip_parts", [(False, 40, 1), (True, 40, 3), (False, None, 1)],
                         ids=["raw-record-ranges", "gzip-parts", "whole-pair"])
def test_idx_parse_tasks_run_without_spark_and_stage_every_image_once(small_arrays, tmp_path, gz, records_per_task,
                                                                     gzip_parts):
    """The IDX parse tasks of a plan, run one by one as Spark would run them: together they stage each
    image of the pair exactly once, with its index, and report the files' checksums."""
    import hashlib

    import pyarrow as pa
    import pyarrow.parquet as pq

    from pipeline.sources.files import _Sink, parse_idx_task, plan_idx_tasks
    from tests.helpers import write_idx_pair

    x, y = small_arrays["train"]
    write_idx_pair(tmp_path / "in", "train", x, y, gz=gz)
    plan = plan_idx_tasks(_units(tmp_path / "in", "train", gz), records_per_task, gzip_parts)
    assert len(plan) > 1 or records_per_task is None
    staged, counted, meta = tmp_path / "staged", _Count(), []
    for t in plan:
        sink = _Sink(str(staged), t["task"], t["src"], counted)
        meta += [row for batch in parse_idx_task(t, sink) for row in pa.Table.from_batches([batch]).to_pylist()]
        sink.close()
    rows = pq.read_table(staged).to_pylist()
    assert counted.value == len(rows) == len(y)
    assert sorted(r["idx"] for r in rows) == list(range(len(y)))
    assert all(bytes(r["image"]) == x[r["idx"]].tobytes() and r["label"] == y[r["idx"]] for r in rows)
    files = {m["source"]: m for m in meta if m["kind"] == "file"}
    assert {m["role"] for m in files.values()} == {"images", "labels"} and not [m for m in meta if m["kind"] == "error"]
    for path, m in files.items():
        assert m["sha256"] == hashlib.sha256(open(path, "rb").read()).hexdigest() and m["nrows"] == len(y)


def test_a_bad_idx_pair_is_an_error_row_not_a_crash(small_arrays, tmp_path):
    import pyarrow as pa

    from pipeline.sources.files import _Sink, parse_idx_task, plan_idx_tasks
    from tests.helpers import idx_images_bytes, idx_labels_bytes

    x, y = small_arrays["train"]
    (tmp_path / "train-images-idx3-ubyte").write_bytes(idx_images_bytes(x[:30]))
    (tmp_path / "train-labels-idx1-ubyte").write_bytes(idx_labels_bytes(y[:29]))
    (t,) = plan_idx_tasks(_units(tmp_path, "train", gz=False), None)
    rows = [r for b in parse_idx_task(t, _Sink(None, 0, 0, _Count())) for r in pa.Table.from_batches([b]).to_pylist()]
    (error,) = [r for r in rows if r["kind"] == "error"]
    assert "train-images-idx3-ubyte holds 30 images but" in error["message"] and "29 labels" in error["message"]
