"""Reading raw MNIST sources in Spark: files -> parse units -> parsed rows, on the executors.

Shared by ingest (where a bad file stops the run) and batch inference (where it becomes a reject).
``plan_units`` resolves a path pattern on the driver; ``parse_inputs`` reads the files with Spark's
binaryFile source and parses each unit (an IDX images/labels pair, or one text file) in one task.
"""

from __future__ import annotations

import pandas as pd
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from pipeline.errors import InputError
from pipeline.io.fs import HadoopFS, display_path

PARSED_SCHEMA = (
    "kind string, role string, split string, source string, idx long, label int, image binary, "
    "sha256 string, nbytes long, nrows long, message string"
)
PARSED_COLUMNS = [part.split()[0] for part in PARSED_SCHEMA.split(", ")]
_IMAGES_TAG = "images-idx3"
_LABELS_TAG = "labels-idx1"


def plan_units(fs: HadoopFS, fmt: str, split: str, pattern: str, key: str | None = None) -> list[dict]:
    """Resolves an input pattern into parse units: rows of ``path, unit, split, role``.

    For IDX, files are paired by name: ``X-images-idx3-ubyte[.gz]`` with ``X-labels-idx1-ubyte[.gz]``.

    Raises:
        InputError: nothing matches, or an IDX file has no partner.
    """
    files = fs.glob_files(pattern)
    key = key or f"ingest.{split}"  # the config key the pattern came from, for messages
    if not files:
        raise InputError(f"no input files match {key}={pattern!r} (empty input)")
    for f in files:
        if f.size == 0:  # Spark's file sources skip empty files, so catch them here
            raise InputError(f"{display_path(f.path)}: file is empty; expected {fmt.upper()} data")
    if fmt != "idx":
        return [{"path": f.path, "unit": f.path, "split": split, "role": fmt} for f in files]
    units: dict[str, dict[str, str]] = {}
    for f in files:
        name = f.path.rsplit("/", 1)[-1]
        if _IMAGES_TAG in name:
            units.setdefault(f.path.replace(_IMAGES_TAG, "*"), {})["images"] = f.path
        elif _LABELS_TAG in name:
            units.setdefault(f.path.replace(_LABELS_TAG, "*"), {})["labels"] = f.path
        else:
            raise InputError(
                f"{display_path(f.path)}: matched by {key}={pattern!r} but is not an IDX images or labels file "
                f"(expected '{_IMAGES_TAG}' or '{_LABELS_TAG}' in the name)"
            )
    rows = []
    for unit, roles in sorted(units.items()):
        for role, partner in (("images", "labels"), ("labels", "images")):
            if role in roles and partner not in roles:
                tag = _LABELS_TAG if partner == "labels" else _IMAGES_TAG
                expected = roles[role].replace(_IMAGES_TAG if role == "images" else _LABELS_TAG, tag)
                raise InputError(
                    f"{display_path(roles[role])}: no matching {partner} file (expected {display_path(expected)})"
                )
        rows += [{"path": roles[r], "unit": unit, "split": split, "role": r} for r in ("images", "labels")]
    return rows


def _parse_unit_fn(fmt: str, csv_header: str, rows_parsed):
    """Returns the function applied to each unit's files on an executor."""

    def parse(pdf: pd.DataFrame) -> pd.DataFrame:
        import hashlib

        from pipeline.errors import InputError as Err
        from pipeline.io.fs import display_path as display
        from pipeline.sources import formats as fm

        files = {row.role: row for row in pdf.itertuples(index=False)}
        meta = [
            {
                "kind": "file", "role": r.role, "split": r.split, "source": r.path,
                "sha256": hashlib.sha256(r.content).hexdigest(), "nbytes": len(r.content),
            }
            for r in files.values()
        ]
        any_row = next(iter(files.values()))
        try:
            if fmt == "idx":
                img, lab = files["images"], files["labels"]
                x, y = fm.parse_idx_pair(img.content, display(img.path), lab.content, display(lab.path))
                source = img.path
            elif fmt == "libsvm":
                x, y = fm.parse_libsvm(any_row.content, display(any_row.path))
                source = any_row.path
            else:
                x, y = fm.parse_csv(any_row.content, display(any_row.path), csv_header)
                source = any_row.path
        except Err as exc:
            error = {"kind": "error", "split": any_row.split, "source": any_row.path, "message": str(exc)}
            return pd.DataFrame(meta + [error], columns=PARSED_COLUMNS)
        for m in meta:
            m["nrows"] = len(y)
        rows_parsed.add(len(y))
        images = pd.DataFrame({
            "kind": "image",
            "split": any_row.split,
            "source": source,
            "idx": range(len(y)),
            "label": y.astype("int32"),
            "image": [row.tobytes() for row in x],
        })
        return pd.concat([pd.DataFrame(meta), images], ignore_index=True).reindex(columns=PARSED_COLUMNS)

    return parse


def parse_inputs(spark: SparkSession, fmt: str, units: list[dict], csv_header: str, rows_parsed) -> DataFrame:
    """Reads the planned files with Spark's binaryFile source and parses each unit on an executor."""
    plan = spark.createDataFrame(pd.DataFrame(units))
    raw = spark.read.format("binaryFile").load(sorted({u["path"] for u in units})).select("path", "content")
    joined = raw.join(F.broadcast(plan), "path")
    return joined.groupBy("unit").applyInPandas(_parse_unit_fn(fmt, csv_header, rows_parsed), PARSED_SCHEMA)
