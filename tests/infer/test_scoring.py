"""Scoring an Arrow batch in-process: the same probabilities as the model in memory, rejects decided in
the same pass, and images read straight from the Arrow buffer."""

import numpy as np
import pyarrow as pa

from pipeline.config import ModelConfig
from pipeline.infer.inputs import MISSING_IMAGE, WRONG_SIZE
from pipeline.infer.scoring import score_batch
from pipeline.train.model import build_model


def _batch(images, reasons=None):
    n = len(images)
    return pa.RecordBatch.from_arrays(
        [pa.array([f"r{i}" for i in range(n)]), pa.array(images, pa.binary()), pa.array(list(range(n)), pa.int32()),
         pa.array([None] * n, pa.string()), pa.array(reasons or [None] * n, pa.string())],
        names=["id", "image", "label", "note", "reject_reason"])


def test_a_clean_batch_matches_the_model_in_memory(small_arrays, trained_weights):
    x, _ = small_arrays["test"]
    model = build_model(ModelConfig())
    model.set_weights(trained_weights)
    out = score_batch(model, _batch([row.tobytes() for row in x]), batch_size=16)
    expected = model.predict(x.reshape(-1, 28, 28, 1).astype(np.float32), verbose=0)
    got = np.array(out.column("probabilities").to_pylist(), dtype=np.float32)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
    assert out.column("predicted_label").to_pylist() == expected.argmax(axis=1).tolist()
    assert out.column("reject_reason").null_count == len(x)


def test_bad_rows_are_rejected_in_the_same_pass_and_the_rest_still_scored(small_arrays):
    x, _ = small_arrays["test"]
    model = build_model(ModelConfig())
    images = [x[0].tobytes(), None, b"\x01" * 700, x[1].tobytes(), x[2].tobytes()]
    out = score_batch(model, _batch(images, [None, None, None, None, "cannot decode image: x"]))
    rows = out.to_pylist()
    assert [r["reject_reason"] for r in rows] == [None, MISSING_IMAGE, WRONG_SIZE, None, "cannot decode image: x"]
    assert rows[2]["note"] == "700 pixels"
    assert rows[1]["probabilities"] is None and rows[1]["predicted_label"] is None
    expected = model.predict(np.stack([x[0], x[1]]).reshape(-1, 28, 28, 1).astype(np.float32), verbose=0)
    np.testing.assert_allclose([rows[0]["probabilities"], rows[3]["probabilities"]], expected, rtol=1e-5, atol=1e-6)
