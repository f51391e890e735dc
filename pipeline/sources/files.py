"""Reading raw MNIST sources in Spark: files -> parse units -> parsed rows, on the executors.

Shared by ingest (where a bad file stops the run) and batch inference (where it becomes a reject).
``plan_units`` resolves a path pattern on the driver; ``parse_inputs`` parses on the executors: IDX
pairs read through the storage layer (a big uncompressed pair split into record ranges, a big gzip
pair into parts of its records, one task each), text files through Spark's binaryFile source, one
task per file.
"""

from __future__ import annotations

import json

from pyspark.errors import AnalysisException
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from pipeline.errors import InputError
from pipeline.io.fs import HadoopFS, display_path

PARSED_SCHEMA = (
    "kind string, role string, split string, source string, idx long, label int, image binary, "
    "sha256 string, nbytes long, nrows long, message string"
)
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
        return [{"path": f.path, "unit": f.path, "split": split, "role": fmt, "size": f.size} for f in files]
    units: dict[str, dict[str, str]] = {}
    sizes = {f.path: f.size for f in files}
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
        rows += [{"path": roles[r], "unit": unit, "split": split, "role": r, "size": sizes[roles[r]]}
                 for r in ("images", "labels")]
    return rows


# ``src``: the source file's position among the inputs' sorted paths (ingest decides which copy of a
# repeated image to keep by it: one 64-bit key per row instead of the path)
STAGED_SCHEMA = "id string, split string, source string, src int, idx long, label int, image binary, vh long"
# A staged file's rows are in id order, in row groups of this many: each row group's id statistics
# cover a narrow id range, so the write reads only the row groups of the range it writes.
STAGED_ROW_GROUP_ROWS = 1024
_BATCH_ROWS = 8192


class _Sink:
    """Where one parse task's images go: back to Spark as Arrow batches of ``PARSED_SCHEMA`` rows, or,
    with ``staged_dir`` (ingest), into a Parquet file of the task's own there (``STAGED_SCHEMA``: the
    images with their ids), so that only the per-file rows cross from Python to the JVM. The file's
    name comes from the task's number, so a retried task replaces its earlier attempt's file."""

    def __init__(self, staged_dir: str | None, task: int, src: int, rows_parsed, seed: int = 0):
        self.staged_dir, self.task, self.src, self.rows_parsed, self.seed = staged_dir, task, src, rows_parsed, seed
        self.parts = []

    def images(self, split: str, source: str, first: int, x, y):
        """Yields the Arrow batches to send (none when staging)."""
        import numpy as np

        x = np.ascontiguousarray(x)
        self.rows_parsed.add(len(y))
        if self.staged_dir is not None:
            self.parts.append((split, source, first, x, y))
            return
        import pyarrow as pa

        schema = arrow_schema(PARSED_SCHEMA)
        for a in range(0, len(y), _BATCH_ROWS):
            xs, ys = x[a:a + _BATCH_ROWS], y[a:a + _BATCH_ROWS]
            n = len(ys)
            yield pa.RecordBatch.from_arrays([
                pa.repeat("image", n), pa.nulls(n, pa.string()), pa.repeat(split, n), pa.repeat(source, n),
                pa.array(np.arange(first + a, first + a + n, dtype=np.int64)), pa.array(ys.astype(np.int32)),
                _binary_column(xs), pa.nulls(n, pa.string()), pa.nulls(n, pa.int64()), pa.nulls(n, pa.int64()),
                pa.nulls(n, pa.string()),
            ], schema=schema)

    def close(self) -> None:
        """Writes the staged file (write-then-move, so a reader never sees half of it)."""
        if self.staged_dir is None or not self.parts:
            return
        import hashlib

        import numpy as np
        import pyarrow as pa
        import pyarrow.parquet as pq

        from pipeline.io import storage
        from pipeline.sources.hashing import spark_xxhash64_id_seed

        tables = []
        for split, source, first, x, y in self.parts:
            n = len(y)
            ids = [hashlib.sha256(row).hexdigest()[:32] for row in x]
            tables.append(pa.table({
                "id": pa.array(ids, pa.string()),
                "split": pa.repeat(split, n), "source": pa.repeat(source, n),
                "src": pa.repeat(pa.scalar(self.src, pa.int32()), n),
                "idx": pa.array(np.arange(first, first + n, dtype=np.int64)),
                "label": pa.array(y.astype(np.int32)), "image": _binary_column(x),
                # the val hash of the id (ingest's val split), computed once here
                "vh": pa.array(spark_xxhash64_id_seed(ids, self.seed), pa.int64()),
            }))
        sink = pa.BufferOutputStream()
        pq.write_table(pa.concat_tables(tables).sort_by("id"), sink, use_dictionary=["split", "source"],
                       compression="snappy", write_statistics=["id", "split", "source", "src", "idx", "label"],
                       row_group_size=STAGED_ROW_GROUP_ROWS)
        storage.write_bytes(storage.join(self.staged_dir, f"part-{self.task:05d}.parquet"),
                            sink.getvalue().to_pybytes())


def _binary_column(x):
    """An ``(n, 784)`` uint8 array as an Arrow binary column on the same memory (no object per image)."""
    import numpy as np
    import pyarrow as pa

    n, width = x.shape
    offsets = pa.py_buffer(np.arange(n + 1, dtype=np.int32) * width)
    return pa.Array.from_buffers(pa.binary(), n, [None, offsets, pa.py_buffer(np.ascontiguousarray(x))])


def arrow_schema(ddl: str):
    import pyarrow as pa

    types = {"string": pa.string(), "long": pa.int64(), "int": pa.int32(), "binary": pa.binary()}
    return pa.schema([(name, types[kind]) for name, kind in _ddl_fields(ddl)])


def _ddl_fields(ddl: str) -> list[tuple[str, str]]:
    """``a long, b string`` as ``[("a", "long"), ("b", "string")]``."""
    return [tuple(p.split()) for p in ddl.split(", ")]


def _struct_fields(ddl: str) -> str:
    """``a long, b string`` as struct fields: ``a: long, b: string``."""
    return ", ".join(f"{name}: {kind}" for name, kind in _ddl_fields(ddl))


def _meta_batch(rows: list[dict]):
    import pyarrow as pa

    return pa.RecordBatch.from_pylist(rows, schema=arrow_schema(PARSED_SCHEMA))


def _parse_text_fn(fmt: str, csv_header: str, files: dict[str, tuple[int, str, str]], staged_dir, rows_parsed,
                   seed: int = 0):
    """Returns the ``mapInArrow`` function that parses text files (LIBSVM or CSV), one per row of Spark's
    binaryFile source; ``files`` maps each path to (task number, split, role)."""

    def run(batches):
        import hashlib

        from pipeline.errors import InputError as Err
        from pipeline.io.fs import display_path as display
        from pipeline.sources import formats as fm

        for batch in batches:
            for row in batch.to_pylist():
                path, content = row["path"], row["content"]
                task, split, role = files[path]
                meta = {"kind": "file", "role": role, "split": split, "source": path,
                        "sha256": hashlib.sha256(content).hexdigest(), "nbytes": len(content)}
                try:
                    if fmt == "libsvm":
                        x, y = fm.parse_libsvm(content, display(path))
                    else:
                        x, y = fm.parse_csv(content, display(path), csv_header)
                except Err as exc:
                    yield _meta_batch([meta, {"kind": "error", "split": split, "source": path, "message": str(exc)}])
                    continue
                yield _meta_batch([{**meta, "nrows": len(y)}])
                sink = _Sink(staged_dir, task, task, rows_parsed, seed)  # task numbers follow the sorted paths
                yield from sink.images(split, path, 0, x, y)
                sink.close()

    return run


# Up to this many parse tasks, the plan reaches the tasks as a literal in the query (about 300
# bytes a task, in every Spark task); more are broadcast.
LITERAL_PLAN_TASKS = 2_000
IDX_TASK_SCHEMA = (
    "task long, unit string, split string, images string, labels string, src long, ranged boolean, start long, "
    "stop long, part long, parts long"
)
_IDX_IMAGES_HEADER = 16
_IDX_LABELS_HEADER = 8


# A gzip file is parsed by at most this many tasks: each inflates the stream from its start up to its
# last record, so a part costs more the later it lies and more parts soon cost more than they save.
GZIP_MAX_PARTS = 4


def plan_idx_tasks(units: list[dict], records_per_task: int | None, gzip_parts: int = 1) -> list[dict]:
    """The parse tasks of IDX pairs: one per pair, plus record-range tasks for big uncompressed pairs,
    or record parts of big gzip pairs.

    An uncompressed pair of more than ``records_per_task`` images gets a check task (validates both
    headers against the file sizes and checksums the files, streaming) and one task per record range,
    each reading only its own bytes, so one big file is parsed by many tasks.

    A gzip stream cannot be entered in the middle. A big gzip pair (about ``records_per_task`` images
    or more, guessed from its size) is cut into up to ``gzip_parts`` parts of its records (the count is
    in the header, so each task finds its own part): a task inflates the stream only up to its part's
    last record, and the last part, which inflates it all anyway, checks and checksums the whole pair.
    Against a second stage fed by one inflating task, this inflates some bytes twice and reads the
    compressed file once per part, but writes no inflated bytes to be read back, and needs no second job.
    """
    pairs: dict[str, dict] = {}
    for u in units:
        pair = pairs.setdefault(u["unit"], {"unit": u["unit"], "split": u["split"]})
        pair[u["role"]] = u["path"]
        pair[u["role"] + "_size"] = u.get("size", 0)
    src = {p: i for i, p in enumerate(sorted(pair["images"] for pair in pairs.values()))}
    tasks = []
    for _, pair in sorted(pairs.items()):
        raw = not pair["images"].endswith(".gz") and not pair["labels"].endswith(".gz")
        n = max(0, pair["images_size"] - _IDX_IMAGES_HEADER) // (28 * 28)
        base = {**{k: pair[k] for k in ("unit", "split", "images", "labels")}, "src": src[pair["images"]],
                "part": 0, "parts": 1}
        if not raw:
            # about how many images: MNIST-like images deflate about 3:1
            n = max(1, 3 * n)
            parts = min(max(gzip_parts, 1), -(-n // records_per_task)) if records_per_task else 1
            tasks += [{**base, "ranged": False, "start": -1, "stop": -1, "part": k, "parts": parts,
                       "weight": max(1, round(2 * n / (2 - 2 ** (1 - parts))))}  # part_range's cost, each
                      for k in range(parts)]
            continue
        ranged = bool(records_per_task) and n > records_per_task
        tasks.append({**base, "ranged": ranged, "start": -1, "stop": -1, "weight": 1 if ranged else max(1, n)})
        if ranged:
            tasks += [{**base, "ranged": True, "start": a, "stop": min(n, a + records_per_task),
                       "weight": min(n, a + records_per_task) - a}
                      for a in range(0, n, records_per_task)]
    return [{"task": i, **t} for i, t in enumerate(tasks)]


# A Spark task costs tens of milliseconds before its work starts (scheduling, the Python worker, the
# Arrow stream: a wave of Python tasks that do nothing takes about 0.1 s on 2 cores), so parse tasks
# are grouped into Spark tasks ("slots") of about this much work: ``weight`` counts one per image
# parsed and one per image inflated, so this is about 1 s of one core.
_WEIGHT_PER_SLOT = 200_000


def assign_slots(tasks: list[dict], cores: int) -> dict[int, int]:
    """Groups parse tasks into slots of about ``_WEIGHT_PER_SLOT`` (by the tasks' ``weight``), at least
    one per core while there are tasks to share, the largest first into the least loaded slot;
    returns ``{task number: slot}``."""
    def weight(t):
        return t.get("weight", 1)

    total = sum(weight(t) for t in tasks)
    n = min(len(tasks), max(max(cores, 1), -(-total // _WEIGHT_PER_SLOT)))
    load = [0] * n
    slot_of = {}
    for t in sorted(tasks, key=lambda t: (-weight(t), t["task"])):
        i = min(range(n), key=lambda k: (load[k], k))
        slot_of[t["task"]] = i
        load[i] += weight(t)
    return slot_of


def _parse_idx_fn(staged_dir: str | None, rows_parsed, seed: int = 0):
    """Returns the ``mapInArrow`` function that runs IDX parse tasks on an executor (``parse_idx_task``).

    Files are read through the storage layer, so a task reads only the bytes it needs; images leave
    as one Arrow binary column on the parsed numpy buffer (no Python object per image).
    """

    def run(batches):
        for batch in batches:
            for t in batch.to_pylist():
                sink = _Sink(staged_dir, t["task"], t["src"], rows_parsed, seed)
                yield from parse_idx_task(t, sink)
                sink.close()

    return run


def parse_idx_task(t: dict, sink: _Sink):
    """One IDX parse task (a row of the task plan): a gzip part, a record range of a raw pair, the check
    of a ranged pair, or a whole pair. Yields Arrow batches of ``PARSED_SCHEMA`` rows (the files' rows,
    errors, and the images unless ``sink`` stages them). Runs without Spark (tests call it directly)."""
    try:
        if t["part"] < t["parts"] - 1:
            yield from _idx_gzip_part(t, sink)
        elif t["start"] >= 0:
            yield from _idx_record_range(t, sink)
        elif t["ranged"]:
            yield from _idx_checked_pair(t, sink)
        else:
            yield from _idx_whole_pair(t, sink)
    except InputError as exc:  # an input file that vanished after planning (other I/O errors: Spark retries)
        yield _meta_batch([_error_row(t, t["images"], exc)])


def _error_row(t: dict, source: str, exc: Exception) -> dict:
    return {"kind": "error", "split": t["split"], "source": source, "message": str(exc)}


def _gone(path: str, exc: Exception) -> InputError:
    return InputError(f"{display_path(path)}: cannot be read any more ({type(exc).__name__}: {exc}); it was "
                      "listed when ingest started, so it was removed or its permissions changed since")


def _opened(path: str):
    from pipeline.io import storage

    fs, p = storage.resolve(path)
    try:
        return fs.open_input_file(p)
    except (FileNotFoundError, PermissionError) as exc:
        raise _gone(path, exc) from exc


def _read_all(path: str) -> bytes:
    from pipeline.io import storage

    try:
        return storage.read_bytes(path)
    except (FileNotFoundError, PermissionError) as exc:
        raise _gone(path, exc) from exc


def _idx_whole_pair(t: dict, sink: _Sink):
    """Checks and checksums the whole pair; stages its images (the last part's, for gzip parts)."""
    import hashlib

    from pipeline.sources import formats as fm

    data = {r: _read_all(t[r]) for r in ("images", "labels")}
    meta = [{"kind": "file", "role": r, "split": t["split"], "source": t[r],
             "sha256": hashlib.sha256(d).hexdigest(), "nbytes": len(d)} for r, d in data.items()]
    try:
        x, y = fm.parse_idx_pair(data["images"], display_path(t["images"]), data["labels"], display_path(t["labels"]))
    except InputError as exc:
        yield _meta_batch(meta + [_error_row(t, t["images"], exc)])
        return
    yield _meta_batch([{**m, "nrows": len(y)} for m in meta])
    first, _ = fm.part_range(len(y), t["part"], t["parts"])
    yield from sink.images(t["split"], t["images"], first, x[first:], y[first:])


def _idx_gzip_part(t: dict, sink: _Sink):
    """Stages one part of a gzip pair's records, inflating no further than its last record. The pair's
    last part checks the whole pair and reports what is wrong with it, so a part that meets a problem
    stages nothing and says nothing."""
    import numpy as np

    from pipeline.sources import formats as fm

    try:
        _, first, body = fm.read_idx_part(_read_all(t["images"]), display_path(t["images"]), fm.IDX_IMAGES_MAGIC,
                                          3, t["part"], t["parts"])
        _, first_label, labels = fm.read_idx_part(_read_all(t["labels"]), display_path(t["labels"]),
                                                  fm.IDX_LABELS_MAGIC, 1, t["part"], t["parts"])
    except InputError:
        return
    if first_label != first or len(labels) != len(body) // fm.IMAGE_PIXELS or not len(labels):
        return  # the counts differ, or the part is empty
    x = np.frombuffer(body, dtype=np.uint8).reshape(-1, fm.IMAGE_PIXELS)
    yield from sink.images(t["split"], t["images"], first, x, np.frombuffer(labels, dtype=np.uint8))


def _idx_raw_dims(handles: dict, t: dict) -> int | None:
    """The pair's image count from both headers and sizes; None where either is gzip data."""
    from pipeline.sources import formats as fm

    heads = {r: h.read_at(_IDX_IMAGES_HEADER if r == "images" else _IDX_LABELS_HEADER, 0)
             for r, h in handles.items()}
    if any(fm.is_gzip(h) for h in heads.values()):
        return None
    xd = fm.check_raw_idx(heads["images"], handles["images"].size(), display_path(t["images"]),
                          fm.IDX_IMAGES_MAGIC, 3)
    yd = fm.check_raw_idx(heads["labels"], handles["labels"].size(), display_path(t["labels"]),
                          fm.IDX_LABELS_MAGIC, 1)
    if xd[0] != yd[0]:
        raise InputError(f"{display_path(t['images'])} holds {xd[0]} images but {display_path(t['labels'])} holds "
                         f"{yd[0]} labels; expected one label per image")
    return xd[0]


def _idx_checked_pair(t: dict, sink: _Sink):
    """Validates a ranged pair and checksums it, streaming; its images come from the range tasks."""
    import hashlib

    meta = []
    with _opened(t["images"]) as images, _opened(t["labels"]) as labels:
        handles = {"images": images, "labels": labels}
        for role, h in handles.items():
            digest, size = hashlib.sha256(), 0
            while chunk := h.read(8 << 20):
                digest.update(chunk)
                size += len(chunk)
            meta.append({"kind": "file", "role": role, "split": t["split"], "source": t[role],
                         "sha256": digest.hexdigest(), "nbytes": size})
        try:
            n = _idx_raw_dims(handles, t)
        except InputError as exc:
            yield _meta_batch(meta + [_error_row(t, t["images"], exc)])
            return
    if n is None:  # gzip data under a raw name: parse it whole here; the range tasks skip it
        yield from _idx_whole_pair(t, sink)
        return
    yield _meta_batch([{**m, "nrows": n} for m in meta])


def _idx_record_range(t: dict, sink: _Sink):
    """Stages records ``[start, stop)`` of a raw pair, reading only their bytes (the check task reports
    anything wrong with the pair as a whole)."""
    import numpy as np

    from pipeline.sources import formats as fm

    with _opened(t["images"]) as images, _opened(t["labels"]) as labels:
        try:
            n = _idx_raw_dims({"images": images, "labels": labels}, t)
        except InputError:
            return  # the pair's check task reports it
        if n is None:
            return
        a, b = t["start"], min(t["stop"], n)
        if a >= b:
            return
        x = np.frombuffer(images.read_at((b - a) * fm.IMAGE_PIXELS, _IDX_IMAGES_HEADER + a * fm.IMAGE_PIXELS),
                          dtype=np.uint8).reshape(-1, fm.IMAGE_PIXELS)
        y = np.frombuffer(labels.read_at(b - a, _IDX_LABELS_HEADER + a), dtype=np.uint8)
    try:
        fm.check_labels(y, display_path(t["labels"]), first_index=a)
    except InputError as exc:
        yield _meta_batch([_error_row(t, t["labels"], exc)])
        return
    yield from sink.images(t["split"], t["images"], a, x, y)


def _not_read(paths: list[str]) -> InputError:
    return InputError("invalid input, nothing written:\n  " + "\n  ".join(
        f"{display_path(p)}: listed when the run started but not read: removed since, or no longer readable"
        for p in paths))


def check_all_read(units: list[dict], meta) -> None:
    """Every planned file was read: each has a row (``file`` or ``error``) of its own in ``meta``.

    Raises:
        InputError: names each file that was not.
    """
    seen = {m.source for m in meta}
    gone = sorted(u["path"] for u in units if u["path"] not in seen)
    if gone:
        raise _not_read(gone)


def check_readable_by_tasks(units: list[dict]) -> None:
    """IDX parse tasks read through the storage layer; refuse a file system it cannot open, on the driver.

    Raises:
        InputError: names the file and the schemes that work (LIBSVM/CSV go through Spark's own reader).
    """
    from pipeline.io import storage

    for u in units:
        scheme, _ = storage.split_uri(u["path"])
        if scheme not in storage.LOCAL_SCHEMES + storage.S3_SCHEMES + ("hdfs", "gs"):
            raise InputError(
                f"{display_path(u['path'])}: IDX files are read by the parse tasks through the storage layer, "
                f"which cannot open {scheme}:// paths; use a local path, /dbfs/ or dbfs:/, /Volumes/, hdfs://, "
                "s3://, s3a:// or gs://, or copy the files there"
            )


def parse_inputs(spark: SparkSession, fmt: str, units: list[dict], csv_header: str, rows_parsed,
                 records_per_task: int | None = None, staged_dir: str | None = None, seed: int = 0,
                 first: int = 0) -> DataFrame:
    """Parses the planned files on the executors into rows of ``PARSED_SCHEMA``: one ``file`` row per
    input file (checksum, size, rows), one ``error`` row per problem, and one ``image`` row per image,
    or, with ``staged_dir``, no image rows: each task writes its images with their ids to a Parquet
    file of its own there instead (read back by Spark's own reader, far faster than rows sent from
    Python), and nothing is staged for a unit with an error. Staged rows carry ``vh``, the val hash
    of their id under ``seed`` (Spark's ``xxhash64(id, seed)``; ingest's val split).

    IDX pairs are read through the storage layer by ``plan_idx_tasks``' tasks (record ranges of big
    uncompressed files when ``records_per_task`` is given); text files with Spark's binaryFile source.
    ``first``: the first task and source number (several groups of inputs staged into one folder).
    """
    if fmt == "idx":
        check_readable_by_tasks(units)
        tasks = plan_idx_tasks(units, records_per_task, min(GZIP_MAX_PARTS, spark.sparkContext.defaultParallelism))
        for t in tasks:
            t["task"] += first
            t["src"] += first
        columns = [name for name, _ in _ddl_fields(IDX_TASK_SCHEMA)]
        slot_of = assign_slots(tasks, spark.sparkContext.defaultParallelism)
        # Spark task i runs the parse tasks of slot i: a JVM range with one row per partition
        n_slots = max(slot_of.values()) + 1
        slots = spark.range(0, n_slots, 1, n_slots)
        if len(tasks) <= LITERAL_PLAN_TASKS:
            # each row takes its slot's tasks from the plan as a JSON literal: no Python process makes
            # the rows and no job broadcasts them (the literal travels with every Spark task)
            by_slot: list[list[dict]] = [[] for _ in range(n_slots)]
            for t in tasks:
                by_slot[slot_of[t["task"]]].append({c: t[c] for c in columns})
            plan = F.from_json(F.lit(json.dumps(by_slot)), f"array<array<struct<{_struct_fields(IDX_TASK_SCHEMA)}>>>")
            frame = slots.select(F.explode(F.element_at(plan, F.col("id").cast("int") + 1)).alias("t")).select("t.*")
        else:  # a big plan is broadcast once instead (one more job; it keeps the range's partitions)
            rows = spark.createDataFrame([(slot_of[t["task"]], *(t[c] for c in columns)) for t in tasks],
                                         "slot long, " + IDX_TASK_SCHEMA)
            frame = slots.withColumnRenamed("id", "slot").join(F.broadcast(rows), "slot").select(*columns)
        return frame.mapInArrow(_parse_idx_fn(staged_dir, rows_parsed, seed), PARSED_SCHEMA)
    paths = sorted({u["path"] for u in units})
    number = {p: first + i for i, p in enumerate(paths)}
    files = {u["path"]: (number[u["path"]], u["split"], u["role"]) for u in units}
    # a file removed after planning is skipped by the read rather than failing its task; the caller
    # finds it missing from the file rows (``check_all_read``) and names it
    try:
        raw = spark.read.format("binaryFile").option("ignoreMissingFiles", "true").load(paths)
    except AnalysisException as exc:  # removed before the read was planned
        gone = [p for p in paths if not HadoopFS(spark).exists(p)]
        if not gone:
            raise
        raise _not_read(gone) from exc
    raw = raw.select("path", "content")
    return raw.mapInArrow(_parse_text_fn(fmt, csv_header, files, staged_dir, rows_parsed, seed), PARSED_SCHEMA)
