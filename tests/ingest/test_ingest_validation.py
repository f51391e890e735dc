"""Every bad-input case: a clear error naming the file, and the previous dataset left intact."""

import re

import pytest

from pipeline.errors import InputError
from pipeline.ingest.build import ingest
from tests.bad_inputs import (
    CASES,
    corrupt_gzip,
    count_mismatch,
    good_test_pair,
    gz_name_not_gzip,
    header_too_small,
    label_out_of_range,
    train_files,
    truncated_gzip,
    wrong_magic,
)
from tests.helpers import csv_text, idx_images_bytes, idx_labels_bytes, libsvm_text, make_config, tree_snapshot


@pytest.mark.parametrize("build, message", CASES, ids=[c[0].__name__ for c in CASES])
def test_bad_input_fails_with_clear_error_and_keeps_previous_dataset(
    build, message, spark, small_arrays, previous_dataset, tmp_path
):
    before = tree_snapshot(previous_dataset)
    train, fmt = build(tmp_path / "in", small_arrays)
    if fmt == "idx":
        test = good_test_pair(tmp_path / "in", small_arrays)
    else:
        test = train
    cfg = make_config(previous_dataset, train, test, fmt=fmt)
    with pytest.raises(InputError, match=message):
        ingest(spark, cfg)
    assert tree_snapshot(previous_dataset) == before
    leftovers = [p.name for p in previous_dataset.parent.iterdir()
                 if p.name not in (previous_dataset.name, f".{previous_dataset.name}.__lock")]
    assert leftovers == []


# (absurd_header's file of three images is too small to be cut)
GZIP_CASES = [c for c in CASES if c[0] in (wrong_magic, truncated_gzip, header_too_small, count_mismatch,
                                            label_out_of_range, corrupt_gzip, gz_name_not_gzip)]


@pytest.mark.parametrize("build, message", GZIP_CASES, ids=[c[0].__name__ for c in GZIP_CASES])
def test_bad_gzip_input_parsed_in_parts_fails_with_the_same_error(build, message, spark, small_arrays,
                                                                  previous_dataset, tmp_path):
    """A gzip pair cut into parts of its records: the last part checks the whole pair, the others stage
    what they can reach and stay silent, and nothing is written."""
    from pipeline.io.fs import HadoopFS
    from pipeline.sources.files import plan_idx_tasks, plan_units

    before = tree_snapshot(previous_dataset)
    train, _ = build(tmp_path / "in", small_arrays)
    plan = plan_idx_tasks(plan_units(HadoopFS(spark), "idx", "train", train), 1, 2)
    assert [t["parts"] for t in plan] == [2, 2]
    cfg = make_config(previous_dataset, train, good_test_pair(tmp_path / "in", small_arrays), records_per_task=1)
    with pytest.raises(InputError, match=message) as info:
        ingest(spark, cfg)
    assert str(info.value).count("\n  ") == 1, "one problem, reported once"
    assert tree_snapshot(previous_dataset) == before


def test_bad_input_with_no_previous_dataset_writes_nothing(spark, small_arrays, tmp_path):
    train, _ = label_out_of_range(tmp_path / "in", small_arrays)
    out = tmp_path / "out"
    out.mkdir()
    cfg = make_config(out / "dataset", train, good_test_pair(tmp_path / "in", small_arrays))
    with pytest.raises(InputError, match="label 12 is outside 0-9"):
        ingest(spark, cfg)
    assert list(out.iterdir()) == []


def test_all_bad_files_are_reported_together(spark, small_arrays, tmp_path):
    """Two broken inputs in one run: the error lists both, so a user fixes them in one go."""
    x, y = small_arrays["train"]
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "train-a-images-idx3-ubyte").write_bytes(idx_images_bytes(x, magic=0x0801))
    (folder / "train-a-labels-idx1-ubyte").write_bytes(idx_labels_bytes(y))
    (folder / "train-b-images-idx3-ubyte").write_bytes(idx_images_bytes(x))
    (folder / "train-b-labels-idx1-ubyte").write_bytes(idx_labels_bytes(y[:10]))
    cfg = make_config(tmp_path / "out", str(folder / "train-*"), good_test_pair(folder, small_arrays))
    with pytest.raises(InputError) as info:
        ingest(spark, cfg)
    text = str(info.value)
    assert re.search(r"train-a-images-idx3-ubyte: magic number", text)
    assert re.search(r"train-b-images-idx3-ubyte holds 240 images but .* holds 10 labels", text)


@pytest.mark.parametrize("case, message", [
    ("label", r"train-labels-idx1-ubyte: label index 130: label 12 is outside 0-9"),
    ("truncated", r"train-images-idx3-ubyte: header says 240 images of 28x28 \(188176 bytes\) but the data "
                  r"holds 188076 bytes \(truncated\)"),
    ("count", r"train-images-idx3-ubyte holds 240 images but .*train-labels-idx1-ubyte holds 239 labels"),
])
def test_errors_in_a_raw_file_parsed_in_record_ranges_name_the_file(case, message, spark, small_arrays,
                                                                      previous_dataset, tmp_path):
    x, y = small_arrays["train"]
    y = y.copy()
    if case == "label":
        y[130] = 12  # in the third range of 50 records: the index is the file's, not the range's
    images = idx_images_bytes(x)[:-100] if case == "truncated" else idx_images_bytes(x)
    labels = idx_labels_bytes(y[:-1] if case == "count" else y)
    train = train_files(tmp_path / "in", images, labels, gz=False)
    before = tree_snapshot(previous_dataset)
    cfg = make_config(previous_dataset, train, good_test_pair(tmp_path / "in", small_arrays), records_per_task=1)
    with pytest.raises(InputError, match=message):
        ingest(spark, cfg)
    assert tree_snapshot(previous_dataset) == before


@pytest.mark.parametrize("gz", [True, False], ids=["gzip-whole", "raw-ranged"])
def test_an_input_removed_after_planning_is_reported_by_name(gz, spark, small_arrays, tmp_path):
    # Files are listed on the driver, read in tasks: one that disappears in between is an input
    # error naming it, not a failed Spark task.
    from pipeline.io.fs import HadoopFS
    from pipeline.sources.files import parse_inputs, plan_units

    x, y = small_arrays["train"]
    pattern = train_files(tmp_path / "in", idx_images_bytes(x), idx_labels_bytes(y), gz=gz)
    units = plan_units(HadoopFS(spark), "idx", "train", pattern)
    (tmp_path / "in" / ("train-labels-idx1-ubyte" + (".gz" if gz else ""))).unlink()
    parsed = parse_inputs(spark, "idx", units, "auto", spark.sparkContext.accumulator(0), 50,
                          str(tmp_path / "staged"))
    errors = {r.message for r in parsed.drop("image").collect() if r.kind == "error"}
    assert len(errors) == 1
    assert re.search(r"train-labels-idx1-ubyte(\.gz)?: cannot be read any more \(FileNotFoundError", errors.pop())


def test_more_image_files_than_the_copy_key_holds_is_refused_up_front(spark, small_arrays, previous_dataset,
                                                                      tmp_path, monkeypatch):
    # the copy key numbers source files in 26 bits; shrunk to 1 bit here, two image files are too many
    monkeypatch.setattr("pipeline.ingest.build._KEY_SRC_BITS", 1)
    x, y = small_arrays["train"]
    train = train_files(tmp_path / "in", idx_images_bytes(x), idx_labels_bytes(y))
    before = tree_snapshot(previous_dataset)
    cfg = make_config(previous_dataset, train, good_test_pair(tmp_path / "in", small_arrays))
    with pytest.raises(InputError, match=r"ingest.train and ingest.test match 2 image files; one ingest takes at most 1"):
        ingest(spark, cfg)
    assert tree_snapshot(previous_dataset) == before


@pytest.mark.parametrize("fmt", ["libsvm", "csv"])
@pytest.mark.parametrize("when", ["before the read is planned", "while the job runs"])
def test_a_text_input_removed_after_planning_is_reported_by_name(fmt, when, spark, small_arrays, previous_dataset,
                                                                tmp_path, monkeypatch):
    # Text files are listed on the driver and read by Spark's binaryFile source: one that disappears in
    # between is an input error naming it (not a failed Spark task), and nothing is written.
    import pipeline.ingest.build as build

    x, y = small_arrays["train"]
    folder = tmp_path / "in"
    folder.mkdir()
    make = libsvm_text if fmt == "libsvm" else csv_text
    for name, rows in (("train-a.txt", slice(0, 120)), ("train-b.txt", slice(120, 240))):
        (folder / name).write_text(make(x[rows], y[rows]))
    (folder / "test.txt").write_text(make(*small_arrays["test"]))
    victim = folder / "train-b.txt"
    real_plan, real_parse = build.plan_units, build.parse_inputs

    def plan_then_remove(*args, **kwargs):
        units = real_plan(*args, **kwargs)
        if when == "before the read is planned" and victim.exists():
            victim.unlink()
        return units

    def parse_then_remove(*args, **kwargs):
        frame = real_parse(*args, **kwargs)  # lazy: the files are read when ingest collects it
        if victim.exists():
            victim.unlink()
        return frame

    monkeypatch.setattr(build, "plan_units", plan_then_remove)
    monkeypatch.setattr(build, "parse_inputs", parse_then_remove)
    before = tree_snapshot(previous_dataset)
    cfg = make_config(previous_dataset, str(folder / "train-*.txt"), str(folder / "test.txt"), fmt=fmt)
    with pytest.raises(InputError, match=r"train-b\.txt: listed when the run started but not read"):
        ingest(spark, cfg)
    assert tree_snapshot(previous_dataset) == before
