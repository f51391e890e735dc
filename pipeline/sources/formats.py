"""Parsers for the MNIST source formats: bytes in, validated numpy arrays out.

Pure functions with no Spark in them, so they run on executors and in unit tests alike. Every
problem raises ``InputError`` naming the file and what was expected. Sizes read from a header are
checked against the real byte length before anything is allocated from them.
"""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pandas as pd

from pipeline.errors import InputError

IMAGE_SIDE = 28
IMAGE_PIXELS = IMAGE_SIDE * IMAGE_SIDE
IDX_IMAGES_MAGIC = 0x00000803  # unsigned byte, 3 dimensions
IDX_LABELS_MAGIC = 0x00000801  # unsigned byte, 1 dimension
_GZIP_MAGIC = b"\x1f\x8b"
_CHUNK = 1 << 16


def is_gzip(data: bytes) -> bool:
    return data[:2] == _GZIP_MAGIC


def gunzip(data: bytes, name: str, limit: int | None = None) -> bytes:
    """Decompresses gzip ``data``; stops after ``limit + 1`` bytes when a limit is given.

    The input is fed in slices of ``_CHUNK`` bytes, without copies: handing zlib the whole input with
    an output cap instead copies the rest of the input at every call (a 26 MB file took 0.4 s to
    inflate that way, 0.24 s this way). The output cap still bounds what a corrupt or hostile stream
    can make us hold.

    Raises:
        InputError: the stream is corrupt or ends early.
    """
    decomp = zlib.decompressobj(wbits=31)
    view = memoryview(data)
    parts: list[bytes] = []
    size = 0
    try:
        for at in range(0, len(view), _CHUNK):
            pending = view[at:at + _CHUNK]
            while pending and not decomp.eof and (limit is None or size <= limit):
                out = decomp.decompress(pending, 0 if limit is None else limit + 1 - size)
                parts.append(out)
                size += len(out)
                pending = decomp.unconsumed_tail
            if decomp.eof or (limit is not None and size > limit):
                break
    except zlib.error as exc:
        raise InputError(f"{name}: corrupt gzip data ({exc})") from None
    if not decomp.eof and (limit is None or size <= limit):
        raise InputError(f"{name}: gzip stream ends early (truncated or corrupt file)")
    return b"".join(parts)


def _maybe_gunzip(data: bytes, name: str, limit: int | None = None) -> bytes:
    if is_gzip(data):
        return gunzip(data, name, limit)
    if name.endswith(".gz"):
        raise InputError(f"{name}: the name ends in .gz but the file is not gzip data (corrupt gzip)")
    return data


def _idx_header(data: bytes, name: str, magic: int, ndim: int) -> tuple[int, ...]:
    header_len = 4 + 4 * ndim
    if not data:
        raise InputError(f"{name}: file is empty; expected an IDX file")
    if len(data) < header_len:
        raise InputError(f"{name}: {len(data)} bytes is shorter than the {header_len}-byte IDX header (truncated)")
    found = struct.unpack(">I", data[:4])[0]
    if found != magic:
        kind = "images (unsigned byte, 3 dimensions)" if ndim == 3 else "labels (unsigned byte, 1 dimension)"
        raise InputError(f"{name}: magic number 0x{found:08x}, expected 0x{magic:08x} for IDX {kind}")
    return struct.unpack(f">{ndim}I", data[4:header_len])


def idx_header_len(ndim: int) -> int:
    return 4 + 4 * ndim


def check_idx_size(dims: tuple[int, ...], size: int, name: str) -> int:
    """Checks that an IDX body of ``size`` bytes (header included) holds what the header says; returns
    the expected size. ``size`` is the file's (or the inflated stream's) real length."""
    ndim = len(dims)
    expected = idx_header_len(ndim) + int(np.prod(dims, dtype=object))
    what = "images" if ndim == 3 else "labels"
    shape = " of " + "x".join(map(str, dims[1:])) if ndim == 3 else ""
    if size < expected:
        raise InputError(
            f"{name}: header says {dims[0]} {what}{shape} ({expected} bytes) but the data holds "
            f"{size} bytes (truncated)"
        )
    if size > expected:
        raise InputError(
            f"{name}: header says {dims[0]} {what}{shape} ({expected} bytes) but the data holds more "
            "bytes than that; header and contents disagree"
        )
    if dims[0] == 0:
        raise InputError(f"{name}: holds no {what} (empty input)")
    if ndim == 3 and dims[1:] != (IMAGE_SIDE, IMAGE_SIDE):
        raise InputError(f"{name}: images are {dims[1]}x{dims[2]}, expected {IMAGE_SIDE}x{IMAGE_SIDE}")
    return expected


def check_raw_idx(head: bytes, size: int, name: str, magic: int, ndim: int) -> tuple[int, ...]:
    """Validates an uncompressed IDX file from its first bytes and its length alone, so a big file can be
    checked without reading it; returns the dimensions."""
    dims = _idx_header(head, name, magic, ndim)
    if size < idx_header_len(ndim):
        raise InputError(f"{name}: {size} bytes is shorter than the {idx_header_len(ndim)}-byte IDX header (truncated)")
    check_idx_size(dims, size, name)
    return dims


def _read_idx(data: bytes, name: str, magic: int, ndim: int) -> tuple[tuple[int, ...], memoryview]:
    header_len = idx_header_len(ndim)
    if is_gzip(data) or name.endswith(".gz"):
        head = _maybe_gunzip(data, name, limit=header_len)
        dims = _idx_header(head, name, magic, ndim)
        expected = header_len + int(np.prod(dims, dtype=object))
        raw = _maybe_gunzip(data, name, limit=expected)
    else:
        dims = _idx_header(data, name, magic, ndim)
        raw = data
    check_idx_size(dims, len(raw), name)
    return dims, memoryview(raw)[header_len:]


def part_range(n: int, part: int, parts: int) -> tuple[int, int]:
    """Records ``[first, stop)`` of part ``part`` of ``parts`` of a gzip file of ``n`` records, cut so
    that the parts cost about the same: part k inflates the stream up to ``stop`` and parses its own
    records, each about as costly as inflating one (measured in the parse tasks), so each part has
    half the records of the one before it (two parts: 2/3 and 1/3)."""
    whole = (1 << parts) - 1

    def stop(k):
        return n if k == parts - 1 else n * (whole + 1 - (1 << (parts - 1 - k))) // whole

    return (0 if part == 0 else stop(part - 1)), stop(part)


def read_idx_part(data: bytes, name: str, magic: int, ndim: int, part: int, parts: int):
    """The records of ``part_range(n, part, parts)`` of an IDX file (raw or gzip) of ``n`` records,
    inflating no further than the part's last record; returns ``(n, first, body)``.

    Only the header and the part's own bytes are checked: the whole file's checks (its size against
    the header, the gzip trailer) belong to whoever reads it whole.
    """
    header_len = idx_header_len(ndim)
    head = _maybe_gunzip(data, name, limit=header_len) if is_gzip(data) or name.endswith(".gz") else data
    dims = _idx_header(head, name, magic, ndim)
    n, record = dims[0], int(np.prod(dims[1:], dtype=object))
    first, stop = part_range(n, part, parts)
    end = header_len + stop * record
    raw = _maybe_gunzip(data, name, limit=end - 1) if is_gzip(data) or name.endswith(".gz") else data
    if len(raw) < end:
        raise InputError(f"{name}: header says {n} records but the data ends before record {stop} (truncated)")
    return n, first, memoryview(raw)[header_len + first * record:end]


def parse_idx_images(data: bytes, name: str) -> np.ndarray:
    """Parses an IDX3 unsigned-byte image file (raw or gzip) into an ``(n, 784)`` uint8 array."""
    dims, body = _read_idx(data, name, IDX_IMAGES_MAGIC, 3)
    return np.frombuffer(body, dtype=np.uint8).reshape(dims[0], IMAGE_PIXELS)


def parse_idx_labels(data: bytes, name: str) -> np.ndarray:
    """Parses an IDX1 unsigned-byte label file (raw or gzip) into an ``(n,)`` uint8 array of 0-9."""
    _, body = _read_idx(data, name, IDX_LABELS_MAGIC, 1)
    labels = np.frombuffer(body, dtype=np.uint8)
    check_labels(labels, name)
    return labels


def parse_idx_pair(images: bytes, images_name: str, labels: bytes, labels_name: str):
    """Parses an images file and its labels file, checking that their counts agree."""
    x = parse_idx_images(images, images_name)
    y = parse_idx_labels(labels, labels_name)
    if len(x) != len(y):
        raise InputError(
            f"{images_name} holds {len(x)} images but {labels_name} holds {len(y)} labels; "
            "expected one label per image"
        )
    return x, y


def check_labels(labels: np.ndarray, name: str, first_index: int = 0) -> None:
    """Labels must be 0-9; ``first_index`` is the index of ``labels[0]`` in its file (for messages)."""
    bad = np.flatnonzero((labels < 0) | (labels > 9))
    if bad.size:
        i = int(bad[0])
        raise InputError(
            f"{name}: label index {first_index + i}: label {labels[i]} is outside 0-9 ({bad.size} such labels)"
        )


def _text(data: bytes, name: str) -> str:
    raw = _maybe_gunzip(data, name)
    if not raw.strip():
        raise InputError(f"{name}: file is empty; expected at least one row")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InputError(f"{name}: not UTF-8 text at byte {exc.start}") from None


def _number(token: str, what: str, name: str, line_no: int) -> float:
    """``token`` as a finite float, or an ``InputError`` naming the file and line ("nan", "inf" and
    "1e400", which float() reads as infinity, are not numbers a pixel or a label can hold)."""
    try:
        value = float(token)
    except ValueError:
        raise InputError(f"{name}:{line_no}: {what} {token!r} is not a number") from None
    if not np.isfinite(value):
        raise InputError(f"{name}:{line_no}: {what} {token!r} is not a finite number")
    return value


def _pixel_value(token: str, name: str, line_no: int) -> int:
    value = _number(token, "pixel value", name, line_no)
    if not (0 <= value <= 255) or value != int(value):
        raise InputError(f"{name}:{line_no}: pixel value {token!r} is out of range; expected an integer 0-255")
    return int(value)


def _label_value(token: str, name: str, line_no: int) -> int:
    value = _number(token, "label", name, line_no)
    if value != int(value) or not 0 <= value <= 9:
        raise InputError(f"{name}:{line_no}: label {token!r} is outside 0-9; expected an integer 0-9")
    return int(value)


def parse_libsvm(data: bytes, name: str) -> tuple[np.ndarray, np.ndarray]:
    """Parses LIBSVM text (``label index:value ...``, 1-based indices, zeros omitted).

    This is the layout of Databricks' ``/databricks-datasets/mnist-digits``.
    """
    text = _text(data, name)
    images, labels = [], []
    for line_no, line in enumerate(text.splitlines(), start=1):
        tokens = line.split()
        if not tokens:
            continue
        labels.append(_label_value(tokens[0], name, line_no))
        row = np.zeros(IMAGE_PIXELS, dtype=np.uint8)
        for token in tokens[1:]:
            index, sep, value = token.partition(":")
            if not sep or not index.isdigit():
                raise InputError(f"{name}:{line_no}: token {token!r} is not of the form index:value")
            idx = int(index)
            if not 1 <= idx <= IMAGE_PIXELS:
                raise InputError(f"{name}:{line_no}: index {idx} is out of range; expected 1-{IMAGE_PIXELS}")
            row[idx - 1] = _pixel_value(value, name, line_no)
        images.append(row)
    if not images:
        raise InputError(f"{name}: holds no rows (empty input)")
    return np.stack(images), np.asarray(labels, dtype=np.uint8)


def parse_csv(data: bytes, name: str, header: str = "auto") -> tuple[np.ndarray, np.ndarray]:
    """Parses CSV with a label column then 784 pixel columns; ``header`` is auto, true or false."""
    text = _text(data, name)
    try:
        # keep_default_na=False: "nan" or "NA" stay the text they are, so the error can quote them
        frame = pd.read_csv(io.StringIO(text), header=None, dtype=str, skip_blank_lines=True,
                            keep_default_na=False)
    except pd.errors.ParserError as exc:
        raise InputError(f"{name}: not valid CSV ({exc})") from None
    first_is_header = header == "true" or (
        header == "auto" and pd.to_numeric(frame.iloc[0:1, 0], errors="coerce").isna().all()
    )
    line_offset = 1
    if first_is_header:
        frame = frame.iloc[1:]
        line_offset = 2
    if frame.empty:
        raise InputError(f"{name}: holds no rows (empty input)")
    if frame.shape[1] != IMAGE_PIXELS + 1:
        raise InputError(
            f"{name}: rows have {frame.shape[1]} columns; expected {IMAGE_PIXELS + 1} (label, then 784 pixels)"
        )
    values = frame.apply(pd.to_numeric, errors="coerce").to_numpy(dtype=np.float64)
    bad = np.argwhere(~np.isfinite(values))
    if bad.size:
        r, c = bad[0]
        what = "not a number" if np.isnan(values[r, c]) else "not a finite number"
        raise InputError(f"{name}:{r + line_offset}: column {c + 1} value {frame.iat[r, c]!r} is {what}")
    labels, pixels = values[:, 0], values[:, 1:]
    bad_label = np.flatnonzero((labels < 0) | (labels > 9) | (labels != np.floor(labels)))
    if bad_label.size:
        r = int(bad_label[0])
        raise InputError(f"{name}:{r + line_offset}: label {frame.iat[r, 0]!r} is outside 0-9; expected an integer 0-9")
    bad_px = np.argwhere((pixels < 0) | (pixels > 255) | (pixels != np.floor(pixels)))
    if bad_px.size:
        r, c = bad_px[0]
        raise InputError(
            f"{name}:{r + line_offset}: pixel value {frame.iat[r, c + 1]!r} (column {c + 2}) is out of "
            "range; expected an integer 0-255"
        )
    return pixels.astype(np.uint8), labels.astype(np.uint8)
