"""ingest.extra: labelled data that arrived later joins the train input in every form it comes in,
validated like the base (a clear error naming the file and row; the previous dataset intact),
de-duplicated against the rest and against the test split, and recorded in the manifest."""

import hashlib
import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from pipeline.errors import InputError
from pipeline.ingest.build import ingest
from tests.helpers import csv_text, make_config, read_split, small_idx_inputs, tree_snapshot, write_idx_pair


def _ids(images) -> set[str]:
    return {hashlib.sha256(np.asarray(i, np.uint8).tobytes()).hexdigest()[:32] for i in images}


def _parquet(path, images, labels, as_arrays: bool = False):
    path.parent.mkdir(parents=True, exist_ok=True)
    column = [list(map(int, np.asarray(i).ravel())) for i in images] if as_arrays else \
        [np.asarray(i, np.uint8).tobytes() for i in images]
    pq.write_table(pa.table({"image": column, "label": [int(v) for v in labels]}), str(path))


def _png_folder(folder, images, labels):
    for n, (image, label) in enumerate(zip(images, labels)):
        (folder / str(label)).mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.asarray(image, np.uint8).reshape(28, 28), mode="L").save(folder / str(label) / f"{n}.png")


def test_labelled_data_in_every_form_joins_train_deduplicated_and_in_the_manifest(spark, sample_arrays, small_arrays,
                                                                                  tmp_path):
    train, test = small_idx_inputs(tmp_path / "base", small_arrays)
    (xs, ys) = sample_arrays["train"]
    extra = tmp_path / "extra"
    new = {"bytes": (xs[1000:1040], ys[1000:1040]), "arrays": (xs[1040:1070], ys[1040:1070]),
           "png": (xs[1070:1090], ys[1070:1090]), "idx": (xs[1090:1100], ys[1090:1100]),
           "csv": (xs[1100:1105], ys[1100:1105])}
    _parquet(extra / "rows" / "a.parquet", *new["bytes"])
    _parquet(extra / "rows" / "b.parquet", *new["arrays"], as_arrays=True)
    # also: a copy of a test image (test keeps it), a copy of a base train image and one of another extra row
    xt, yt = small_arrays["test"]
    xb, yb = small_arrays["train"]
    _parquet(extra / "rows" / "c.parquet", [xt[0], xb[0], xs[1000]], [yt[0], yb[0], ys[1000]])
    (extra / "rows" / "_SUCCESS").write_bytes(b"")  # Spark's marker: skipped
    _png_folder(extra / "png", *new["png"])
    write_idx_pair(extra / "idx", "more", *new["idx"])
    (extra / "more.csv").write_text(csv_text(*new["csv"]))
    root = tmp_path / "dataset"
    cfg = make_config(root, train, test, extra=[
        {"format": "parquet", "path": str(extra / "rows")}, {"format": "images", "path": str(extra / "png")},
        {"format": "idx", "path": str(extra / "idx" / "more-*")}, {"format": "csv", "path": str(extra / "more.csv")}])
    manifest = ingest(spark, cfg)

    added = sum(len(v[1]) for v in new.values())  # 105 new digits
    assert manifest["splits"]["test"]["rows"] == 60
    assert manifest["splits"]["train"]["rows"] + manifest["splits"]["val"]["rows"] == 240 + added
    assert manifest["duplicates"]["dropped"] == 3
    kept = {r[0] for s in ("train", "val") for r in read_split(root, s)}
    assert _ids(np.concatenate([v[0] for v in new.values()])) <= kept
    assert not _ids(xt[:1]) & kept  # the test image stays in test only
    by_extra = {}
    for item in manifest["inputs"]:
        if "extra" in item:
            by_extra.setdefault(item["extra"], []).append(item)
    assert sorted(by_extra) == [0, 1, 2, 3]
    assert sorted(i["rows"] for i in by_extra[0]) == [3, 30, 40] and len(by_extra[1]) == 20
    assert all(i["split"] == "train" and len(i["sha256"]) == 64 for items in by_extra.values() for i in items)
    assert manifest["extra"][1] == {"format": "images", "path": str(extra / "png")}
    assert json.loads((root / "manifest.json").read_text())["inputs"] == manifest["inputs"]


@pytest.mark.parametrize("case, message", [
    ("label", r"bad\.parquet: row 1: label 12; expected an integer 0-9"),
    ("nan", r"bad\.parquet: row 0: label nan; expected an integer 0-9"),
    ("short", r"bad\.parquet: row 0: image of 100 bytes; expected 784"),
    ("pixels", r"bad\.parquet: row 0: pixel values out of range; expected 0-255 \(values 0\.\.300\)"),
    ("column", r"bad\.parquet: no column 'label'"),
    ("size", r"7/x\.png: image of 32x32 pixels; expected 28x28"),
    ("folder", r"cats/x\.png: listed by ingest\.extra\[0\] \(format images\) but its folder 'cats' is not a label"),
    ("missing", r"ingest\.extra\[0\]\.path=.*nowhere'.*does not exist"),
    ("empty", r"x\.png: file is empty"),
])
def test_bad_labelled_data_is_named_and_the_previous_dataset_stays(case, message, spark, small_arrays,
                                                                   previous_dataset, tmp_path):
    train, test = small_idx_inputs(tmp_path / "base", small_arrays)
    x, y = small_arrays["train"]
    extra = tmp_path / "extra"
    fmt = "parquet"
    if case == "label":
        _parquet(extra / "bad.parquet", x[:3], [1, 12, 3])
    elif case == "nan":
        extra.mkdir()
        pq.write_table(pa.table({"image": [bytes(784)], "label": [float("nan")]}), str(extra / "bad.parquet"))
    elif case == "short":
        extra.mkdir()
        pq.write_table(pa.table({"image": [b"\x00" * 100], "label": [1]}), str(extra / "bad.parquet"))
    elif case == "pixels":
        extra.mkdir()
        pq.write_table(pa.table({"image": [[0] * 783 + [300]], "label": [1]}), str(extra / "bad.parquet"))
    elif case == "column":
        extra.mkdir()
        pq.write_table(pa.table({"image": [bytes(784)]}), str(extra / "bad.parquet"))
    else:
        fmt = "images"
        folder = {"size": "7", "folder": "cats", "empty": "3"}.get(case, "1")
        if case != "missing":
            (extra / folder).mkdir(parents=True)
            if case == "empty":
                (extra / folder / "x.png").write_bytes(b"")
            else:
                Image.fromarray(np.zeros((32, 32) if case == "size" else (28, 28), np.uint8)).save(extra / folder / "x.png")
    path = tmp_path / "nowhere" if case == "missing" else extra
    before = tree_snapshot(previous_dataset)
    cfg = make_config(previous_dataset, train, test, extra=[{"format": fmt, "path": str(path)}])
    with pytest.raises(InputError, match=message):
        ingest(spark, cfg)
    assert tree_snapshot(previous_dataset) == before


def test_an_empty_labelled_folder_adds_nothing(spark, small_arrays, tmp_path):
    train, test = small_idx_inputs(tmp_path / "base", small_arrays)
    (tmp_path / "labelled").mkdir()  # the folder labelled data will be put in: none yet
    manifest = ingest(spark, make_config(tmp_path / "dataset", train, test,
                                         extra=[{"format": "images", "path": str(tmp_path / "labelled")}]))
    assert manifest["splits"]["train"]["rows"] + manifest["splits"]["val"]["rows"] == 240
    assert not any("extra" in i for i in manifest["inputs"])
