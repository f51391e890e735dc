"""Labelled data that arrived after the base sources (``ingest.extra``), read on the executors into the
same staged files as the base sources, so de-duplication, the splits and the manifest treat it alike.

Two forms are how labelled inference inputs come back from people or from a labelling tool:

- ``parquet``: rows with an image (784 bytes, row-major 28x28, or 784 integer values 0-255) and a label
  (an integer 0-9), columns ``image_column`` / ``label_column`` (default ``image`` / ``label``): the
  Parquet rows inference scores, with a label added;
- ``images``: PNG/JPEG files in one folder per label, ``<path>/<label>/<name>``, 28x28, grayscale or
  converted to it.

The base formats (``idx``, ``libsvm``, ``csv``) go through ``sources.files``' own parsers. A bad file or
row stops the ingest with an error naming the file, the row and what was expected, like a bad base file.
"""

from __future__ import annotations

import json
import logging

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from pipeline.errors import InputError
from pipeline.sources.files import PARSED_SCHEMA, _meta_batch, _Sink
from pipeline.sources.pixels import WIDE_MODES, pixel_problem

log = logging.getLogger(__name__)

# images per parse task of a folder of images (each file is small; a task per file would cost more in
# scheduling than in decoding)
IMAGES_PER_TASK = 4096
OWN_FORMATS = ("parquet", "images")


def plan_tasks(entries: list[tuple[int, dict]], first_task: int, first_src: int) -> list[dict]:
    """The parse tasks of the ``parquet`` and ``images`` entries of ``ingest.extra`` (``(index, entry)``),
    listed through the storage layer on the driver: one task per Parquet file, one per
    ``IMAGES_PER_TASK`` images. Task and source numbers start at ``first_task`` / ``first_src``.

    An entry whose folder exists but holds no file yet adds nothing (labelled data comes when it comes).

    Raises:
        InputError: an entry's folder does not exist, a file is empty, an image is not in a folder named
            by its label.
    """
    from pipeline.io import storage

    tasks = []
    for i, entry in entries:
        key = f"ingest.extra[{i}]"
        files = storage.list_files(entry["path"])
        if not files:
            folder = entry["path"].split("*")[0].split("?")[0].split("[")[0]
            if not storage.exists(folder):
                raise InputError(f"{key}.path={entry['path']!r}: {folder} does not exist; expected the folder "
                                 "labelled data is put in (it may be empty)")
            log.info("%s: no labelled files under %s yet", key, entry["path"])
            continue
        for path, size in files:
            if size == 0:
                raise InputError(f"{path}: file is empty (listed by {key}); expected {entry['format']} data")
        if entry["format"] == "parquet":
            for path, size in files:
                tasks.append({"format": "parquet", "files": [[path, -1, size]], "extra": i,
                              "image_column": entry.get("image_column", "image"),
                              "label_column": entry.get("label_column", "label")})
            continue
        labelled = []
        for path, size in files:
            label = path.rstrip("/").split("/")[-2]
            if not (len(label) == 1 and label.isdigit()):
                raise InputError(f"{path}: listed by {key} (format images) but its folder {label!r} is not a label; "
                                 "expected one folder per label, <path>/0/ ... <path>/9/")
            labelled.append([path, int(label), size])
        for a in range(0, len(labelled), IMAGES_PER_TASK):
            tasks.append({"format": "images", "files": labelled[a:a + IMAGES_PER_TASK], "extra": i,
                          "image_column": "", "label_column": ""})
    for n, t in enumerate(tasks):
        t["task"], t["src"] = first_task + n, first_src + n
    return tasks


def parse_tasks(spark: SparkSession, tasks: list[dict], staged_dir: str, rows_parsed, seed: int) -> DataFrame:
    """Runs ``tasks`` on the executors: each writes its images to a staged file of its own and returns
    ``PARSED_SCHEMA`` rows for its files (checksum, size, rows) and their errors."""
    n = len(tasks)
    plan = F.from_json(F.lit(json.dumps([json.dumps(t) for t in tasks])), "array<string>")
    frame = spark.range(0, n, 1, n).select(F.element_at(plan, F.col("id").cast("int") + 1).alias("task"))
    return frame.mapInArrow(_parse_fn(staged_dir, rows_parsed, seed), PARSED_SCHEMA)


def _parse_fn(staged_dir: str, rows_parsed, seed: int):
    def run(batches):
        import hashlib

        for batch in batches:
            for value in batch.column("task").to_pylist():
                t = json.loads(value)
                sink = _Sink(staged_dir, t["task"], t["src"], rows_parsed, seed)
                read = _read_parquet if t["format"] == "parquet" else _read_image
                for first, (path, label, _) in enumerate(t["files"]):
                    meta = {"kind": "file", "role": f"extra-{t['format']}", "split": "train", "source": path}
                    try:
                        data = _bytes(path)
                        x, y = read(data, path, label, t)
                    except InputError as exc:
                        yield _meta_batch([meta, {"kind": "error", "split": "train", "source": path,
                                                  "message": str(exc)}])
                        continue
                    yield _meta_batch([{**meta, "sha256": hashlib.sha256(data).hexdigest(), "nbytes": len(data),
                                        "nrows": len(y)}])
                    # an image of a folder is row `first` of its task; a Parquet file's rows count from 0
                    yield from sink.images("train", path, first if t["format"] == "images" else 0, x, y)
                sink.close()

    return run


def _bytes(path: str) -> bytes:
    from pipeline.io import storage

    try:
        return storage.read_bytes(path)
    except FileNotFoundError as exc:
        raise InputError(f"{path}: listed when the run started but not read: removed since") from exc


def _read_parquet(data: bytes, path: str, _label, t: dict):
    """``(x (n, 784) uint8, y (n,) int)`` of a labelled Parquet file."""
    import io
    import math

    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(io.BytesIO(data))
    except Exception as exc:
        raise InputError(f"{path}: not a readable Parquet file ({type(exc).__name__}: {exc})") from None
    image_col, label_col = t["image_column"], t["label_column"]
    for col in (image_col, label_col):
        if col not in table.column_names:
            raise InputError(f"{path}: no column {col!r} (ingest.extra[{t['extra']}] image_column / label_column); "
                             f"columns are {', '.join(table.column_names)}")
    images, labels = table.column(image_col), table.column(label_col)
    n = table.num_rows
    x = np.empty((n, 784), np.uint8)
    kind = images.type
    if pa.types.is_binary(kind) or pa.types.is_large_binary(kind):
        for r, value in enumerate(images.to_pylist()):
            if value is None or len(value) != 784:
                raise InputError(f"{path}: row {r}: image of {'no' if value is None else len(value)} bytes; "
                                 "expected 784 (28x28, one byte a pixel)")
            x[r] = np.frombuffer(value, np.uint8)
    elif pa.types.is_list(kind) or pa.types.is_large_list(kind) or pa.types.is_fixed_size_list(kind):
        for r, value in enumerate(images.to_pylist()):
            values = np.asarray(value if value is not None else [], dtype=np.float64)
            if values.size != 784:
                raise InputError(f"{path}: row {r}: image of {values.size} values; expected 784 (28x28)")
            problem = pixel_problem(values)
            if problem:
                raise InputError(f"{path}: row {r}: {problem[0]} ({problem[1]})")
            x[r] = values.astype(np.uint8)
    else:
        raise InputError(f"{path}: column {image_col!r} is {kind}; expected binary (784 bytes) or a list of 784 "
                         "values 0-255")
    y = np.full(n, -1, np.int64)
    for r, value in enumerate(labels.to_pylist()):
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) \
            and value == int(value) and 0 <= value <= 9
        if not ok:
            raise InputError(f"{path}: row {r}: label {value!r}; expected an integer 0-9")
        y[r] = int(value)
    return x, y


def _read_image(data: bytes, path: str, label: int, _t):
    """``(x (1, 784) uint8, y (1,))`` of one labelled image file."""
    import io

    import numpy as np
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as img:
            img.load()
            if img.size != (28, 28):
                raise InputError(f"{path}: image of {img.size[0]}x{img.size[1]} pixels; expected 28x28")
            if img.mode in WIDE_MODES:
                values = np.asarray(img, dtype=np.float64)
                problem = pixel_problem(values)
                if problem:
                    raise InputError(f"{path}: {img.mode} image: {problem[0]} ({problem[1]})")
                pixels = values.astype(np.uint8)
            else:
                pixels = np.asarray(img.convert("L") if img.mode != "L" else img, dtype=np.uint8)
    except UnidentifiedImageError:
        raise InputError(f"{path}: not an image format Pillow reads; expected PNG or JPEG") from None
    except InputError:
        raise
    except Exception as exc:
        raise InputError(f"{path}: truncated or corrupt image ({type(exc).__name__})") from None
    return pixels.reshape(1, 784), np.array([label], np.int64)
