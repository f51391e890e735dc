"""Bad ingest inputs, one builder each, with the error each must produce: shared by the Spark ingest
tests (tests/ingest/test_ingest_validation.py) and the parser tests (tests/sources/test_formats.py)."""

import gzip

import numpy as np

from tests.helpers import csv_text, idx_images_bytes, idx_labels_bytes, libsvm_text, write_idx_pair


def good_test_pair(folder, arrays):
    write_idx_pair(folder, "t10k", *arrays["test"])
    return str(folder / "t10k-*")


def train_files(folder, images_bytes, labels_bytes, gz=True):
    folder.mkdir(parents=True, exist_ok=True)
    wrap = (lambda b: gzip.compress(b, mtime=0)) if gz else (lambda b: b)
    suffix = ".gz" if gz else ""
    (folder / f"train-images-idx3-ubyte{suffix}").write_bytes(wrap(images_bytes))
    (folder / f"train-labels-idx1-ubyte{suffix}").write_bytes(wrap(labels_bytes))
    return str(folder / "train-*")


def wrong_magic(folder, a):
    x, y = a["train"]
    return train_files(folder, idx_images_bytes(x, magic=0x00000801), idx_labels_bytes(y)), "idx"


def truncated_raw(folder, a):
    x, y = a["train"]
    return train_files(folder, idx_images_bytes(x)[:-100], idx_labels_bytes(y), gz=False), "idx"


def truncated_gzip(folder, a):
    x, y = a["train"]
    folder.mkdir(parents=True)
    (folder / "train-images-idx3-ubyte.gz").write_bytes(gzip.compress(idx_images_bytes(x), mtime=0)[:-500])
    (folder / "train-labels-idx1-ubyte.gz").write_bytes(gzip.compress(idx_labels_bytes(y), mtime=0))
    return str(folder / "train-*"), "idx"


def header_too_small(folder, a):
    x, y = a["train"]
    return train_files(folder, idx_images_bytes(x, count=len(x) - 5), idx_labels_bytes(y)), "idx"


def absurd_header(folder, a):
    x, y = a["train"]
    return train_files(folder, idx_images_bytes(x[:3], count=0xFFFFFFFF), idx_labels_bytes(y)), "idx"


def absurd_label_header(folder, a):
    x, y = a["train"]
    return train_files(folder, idx_images_bytes(x), idx_labels_bytes(y[:2], count=0xFFFFFFF0), gz=False), "idx"


def count_mismatch(folder, a):
    x, y = a["train"]
    return train_files(folder, idx_images_bytes(x), idx_labels_bytes(y[:-1])), "idx"


def label_out_of_range(folder, a):
    x, y = a["train"]
    y = y.copy()
    y[7] = 12
    return train_files(folder, idx_images_bytes(x), idx_labels_bytes(y)), "idx"


def not_28x28(folder, a):
    x, y = a["train"]
    side = np.zeros((len(x), 32 * 32), dtype=np.uint8)
    return train_files(folder, idx_images_bytes(side, rows=32, cols=32), idx_labels_bytes(y)), "idx"


def _gz_pair_with_images(folder, a, images: bytes):
    """A gzip pair whose labels are good and whose images file holds ``images`` as they are."""
    x, y = a["train"]
    train_files(folder, b"", idx_labels_bytes(y))
    (folder / "train-images-idx3-ubyte.gz").write_bytes(images)
    return str(folder / "train-*"), "idx"


def corrupt_gzip(folder, a):
    data = bytearray(gzip.compress(idx_images_bytes(a["train"][0]), mtime=0))
    data[200:260] = b"\xff" * 60
    return _gz_pair_with_images(folder, a, bytes(data))


def gz_name_not_gzip(folder, a):
    return _gz_pair_with_images(folder, a, idx_images_bytes(a["train"][0]))


def empty_file(folder, a):
    x, y = a["train"]
    return train_files(folder, b"", idx_labels_bytes(y), gz=False), "idx"


def zero_images(folder, a):
    return train_files(folder, idx_images_bytes(np.zeros((0, 784))), idx_labels_bytes(np.zeros(0))), "idx"


def no_files_match(folder, a):
    folder.mkdir(parents=True)
    return str(folder / "nothing-here-*"), "idx"


def missing_labels_file(folder, a):
    x, _ = a["train"]
    folder.mkdir(parents=True)
    (folder / "train-images-idx3-ubyte.gz").write_bytes(gzip.compress(idx_images_bytes(x), mtime=0))
    return str(folder / "train-*"), "idx"


def _libsvm_with_line(folder, a, line: int, edit):
    """Five LIBSVM rows of real digits, line ``line`` (0-based) replaced by ``edit(line)``."""
    x, y = a["train"]
    folder.mkdir(parents=True)
    text = libsvm_text(x[:5], y[:5]).splitlines()
    text[line] = edit(text[line])
    (folder / "train.txt").write_text("\n".join(text) + "\n")
    return str(folder / "train.txt"), "libsvm"


def libsvm_index_out_of_range(folder, a):
    return _libsvm_with_line(folder, a, 3, lambda row: row + " 785:10")


def libsvm_value_out_of_range(folder, a):
    return _libsvm_with_line(folder, a, 1, lambda row: row + " 1:300")


def libsvm_label_not_a_number(folder, a):
    return _libsvm_with_line(folder, a, 2, lambda row: "nan" + row[1:])


def csv_label_infinite(folder, a):
    x, y = a["train"]
    folder.mkdir(parents=True)
    rows = csv_text(x[:5], y[:5], header=False).splitlines()
    rows[3] = "1e400" + rows[3][1:]
    (folder / "train.csv").write_text("\n".join(rows) + "\n")
    return str(folder / "train.csv"), "csv"


def csv_pixel_out_of_range(folder, a):
    x, y = a["train"]
    x = x[:5].astype(np.int64)
    x[2, 100] = 256
    folder.mkdir(parents=True)
    (folder / "train.csv").write_text(csv_text(x, y[:5]))
    return str(folder / "train.csv"), "csv"


def csv_wrong_columns(folder, a):
    x, y = a["train"]
    folder.mkdir(parents=True)
    (folder / "train.csv").write_text(csv_text(x[:5, :700], y[:5], header=False))
    return str(folder / "train.csv"), "csv"


CASES = [
    (wrong_magic, r"train-images-idx3-ubyte\.gz: magic number 0x00000801, expected 0x00000803"),
    (truncated_raw, r"train-images-idx3-ubyte: header says 240 images of 28x28 \(188176 bytes\) but the data "
                    r"holds 188076 bytes \(truncated\)"),
    (truncated_gzip, r"train-images-idx3-ubyte\.gz: gzip stream ends early"),
    (header_too_small, r"train-images-idx3-ubyte\.gz: header says 235 images .* holds more bytes"),
    (absurd_header, r"train-images-idx3-ubyte\.gz: header says 4294967295 images of 28x28 \(3367254359296 bytes\) "
                    r"but the data holds 2368 bytes \(truncated\)"),
    (absurd_label_header, r"train-labels-idx1-ubyte: header says 4294967280 labels"),
    (count_mismatch, r"train-images-idx3-ubyte\.gz holds 240 images but .*train-labels-idx1-ubyte\.gz holds 239 labels"),
    (label_out_of_range, r"train-labels-idx1-ubyte\.gz: label index 7: label 12 is outside 0-9"),
    (not_28x28, r"train-images-idx3-ubyte\.gz: images are 32x32, expected 28x28"),
    (corrupt_gzip, r"train-images-idx3-ubyte\.gz: corrupt gzip data"),
    (gz_name_not_gzip, r"train-images-idx3-ubyte\.gz: the name ends in \.gz but the file is not gzip data"),
    (empty_file, r"train-images-idx3-ubyte: file is empty"),
    (zero_images, r"train-images-idx3-ubyte\.gz: holds no images \(empty input\)"),
    (no_files_match, r"no input files match ingest\.train='.*nothing-here-\*' \(empty input\)"),
    (missing_labels_file, r"train-images-idx3-ubyte\.gz: no matching labels file \(expected .*train-labels-idx1-ubyte\.gz\)"),
    (libsvm_index_out_of_range, r"train\.txt:4: index 785 is out of range; expected 1-784"),
    (libsvm_value_out_of_range, r"train\.txt:2: pixel value '300' is out of range; expected an integer 0-255"),
    (libsvm_label_not_a_number, r"train\.txt:3: label 'nan' is not a finite number"),
    (csv_label_infinite, r"train\.csv:4: column 1 value '1e400' is not a (finite )?number"),
    (csv_pixel_out_of_range, r"train\.csv:4: pixel value '256' \(column 102\) is out of range"),
    (csv_wrong_columns, r"train\.csv: rows have 701 columns; expected 785"),
]
