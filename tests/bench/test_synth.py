"""The scale-data generator: real digits, transformed, written as many IDX files that ingest reads."""

import numpy as np

from bench import synth
from pipeline.sources import formats


def test_generated_copies_are_new_images_with_their_source_labels(sample_arrays, tmp_path):
    x, y = sample_arrays["train"]
    written = synth.generate(x, y, 2_500, tmp_path, prefix="train", per_file=1_000, seed=3)
    assert written == 2_500
    images = sorted(tmp_path.glob("train-*-images-idx3-ubyte.gz"))
    assert len(images) == 3
    xs, ys = [], []
    for path in images:
        labels = path.with_name(path.name.replace("images-idx3", "labels-idx1"))
        gx, gy = formats.parse_idx_pair(path.read_bytes(), path.name, labels.read_bytes(), labels.name)
        xs.append(gx)
        ys.append(gy)
    gx, gy = np.concatenate(xs), np.concatenate(ys)
    assert len(gx) == 2_500 and set(gy) <= set(range(10))
    originals = {row.tobytes() for row in x}
    assert sum(row.tobytes() in originals for row in gx) < 25  # transformed, not copied
    assert len({row.tobytes() for row in gx}) > 2_450  # and hardly ever the same twice
    # ink is roughly preserved by a small rotation and shift
    assert abs(gx.mean() - x.mean()) < 0.15 * x.mean()


def test_a_synthetic_input_is_train_and_test_files_ingest_can_pair(tmp_path):
    folder = synth.synthetic_input(1_200, tmp_path / "in", test=300)
    names = sorted(p.name for p in folder.iterdir())
    assert names == ["t10k-0000-00000-images-idx3-ubyte.gz", "t10k-0000-00000-labels-idx1-ubyte.gz",
                     "train-0000-00000-images-idx3-ubyte.gz", "train-0000-00000-labels-idx1-ubyte.gz"]
    x, _ = formats.parse_idx_pair(*(p for n in names[2:] for p in ((folder / n).read_bytes(), n)))
    assert len(x) == 1_200
