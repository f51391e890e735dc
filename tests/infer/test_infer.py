"""Spark batch inference over every input kind, with rejects for rows that cannot be scored."""

import gzip
import json

import mlflow
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from pipeline.config import ModelConfig, PipelineConfig
from pipeline.errors import PipelineError
from pipeline.infer.batch import batch_infer
from pipeline.io.tracking import model_location
from tests.helpers import idx_images_bytes, idx_labels_bytes, read_split, tree_snapshot, write_idx_pair


@pytest.fixture(scope="module")
def champion(tmp_path_factory, trained_weights):
    """A registry (SQLite store) whose model 'mnist-cnn' has version 1 under the alias champion."""
    from pipeline.io.tracking import setup_experiment
    from pipeline.train.model import build_model

    folder = tmp_path_factory.mktemp("registry")
    cfg = PipelineConfig()
    cfg.mlflow.tracking_uri = f"sqlite:///{folder / 'mlflow.db'}"
    cfg.mlflow.artifact_location = str(folder / "artifacts")
    experiment = setup_experiment(cfg.mlflow)
    model = build_model(ModelConfig())
    model.set_weights(trained_weights)
    example = np.zeros((2, 28, 28, 1), dtype=np.float32)
    with mlflow.start_run(experiment_id=experiment) as run:
        info = mlflow.tensorflow.log_model(model, **model_location(), registered_model_name="mnist-cnn",
                                           signature=mlflow.models.infer_signature(example, model.predict(example)))
    mlflow.MlflowClient().set_registered_model_alias("mnist-cnn", "champion", info.registered_model_version)
    return cfg.mlflow, model, run.info.run_id


def _cfg(champion, tmp_path, fmt, source, **infer) -> PipelineConfig:
    cfg = PipelineConfig()
    cfg.mlflow = champion[0]
    cfg.spark.progress_interval_s = 0
    cfg.infer.input_format = fmt
    cfg.infer.input = str(source)
    cfg.infer.output = str(tmp_path / "predictions")
    cfg.monitor.path = str(tmp_path / "monitoring")
    for key, value in infer.items():
        setattr(cfg.infer, key, value)
    return cfg


def _outputs(tmp_path):
    out = tmp_path / "predictions"
    predictions = pq.read_table(str(out / "predictions")).to_pylist()
    rejects = pq.read_table(str(out / "rejects")).to_pylist()
    return {r["id"]: r for r in predictions}, {r["id"]: r for r in rejects}, json.loads((out / "summary.json").read_text())


def test_dataset_split_is_scored_like_the_model_in_memory(spark, champion, sample_dataset, tmp_path):
    _, model, run_id = champion
    summary = batch_infer(spark, _cfg(champion, tmp_path, "dataset", sample_dataset[0], split="test"))
    predictions, rejects, on_disk = _outputs(tmp_path)
    recorded = summary.pop("monitoring")  # adds the MLflow run and the description once recorded
    assert on_disk.pop("monitoring").items() <= recorded.items() and on_disk == summary
    assert summary["rows_scored"] == len(predictions) == 2000 and summary["rejects"] == 0 and not rejects
    rows = read_split(sample_dataset[0], "test")
    images = np.stack([np.frombuffer(r[1], dtype=np.uint8).reshape(28, 28, 1) for r in rows]).astype(np.float32)
    expected = model.predict(images, verbose=0)
    agree = np.mean([predictions[r[0]]["predicted_label"] == int(expected[i].argmax()) for i, r in enumerate(rows)])
    assert agree >= 0.995
    one = predictions[rows[0][0]]
    assert len(one["probabilities"]) == 10 and abs(sum(one["probabilities"]) - 1) < 1e-3
    assert one["probability"] == pytest.approx(max(one["probabilities"]))
    assert (one["model_name"], one["model_version"], one["run_id"]) == ("mnist-cnn", "1", run_id)
    assert one["label"] == rows[0][2] and one["scored_at"] is not None
    labels = np.array([r[2] for r in rows])
    assert summary["accuracy"] == pytest.approx(np.mean(labels == expected.argmax(axis=1)), abs=0.005)
    assert sum(summary["predicted_histogram"].values()) == 2000
    assert summary["rows_per_sec"] > 0


def test_idx_input_with_a_bad_file_scores_the_rest(spark, champion, small_arrays, tmp_path):
    folder = tmp_path / "in"
    write_idx_pair(folder, "batch-a", *small_arrays["test"])
    x, y = small_arrays["train"]
    (folder / "batch-b-images-idx3-ubyte.gz").write_bytes(gzip.compress(idx_images_bytes(x[:10], magic=0x0801)))
    (folder / "batch-b-labels-idx1-ubyte.gz").write_bytes(gzip.compress(idx_labels_bytes(y[:10])))
    summary = batch_infer(spark, _cfg(champion, tmp_path, "idx", folder / "batch-*"))
    predictions, rejects, _ = _outputs(tmp_path)
    assert summary["rows_scored"] == 60 and summary["rejects"] == 1
    (reject,) = rejects.values()
    assert reject["reject_reason"] == "invalid IDX file"
    assert "batch-b-images-idx3-ubyte.gz: magic number 0x00000801, expected 0x00000803" in reject["note"]
    assert all(p["label"] is not None for p in predictions.values())


def test_parquet_table_mixing_good_and_bad_rows(spark, champion, small_arrays, tmp_path):
    x, y = small_arrays["test"]
    images = [row.tobytes() for row in x[:20]] + [b"\x00" * 700, None, x[0].tobytes() + b"\x01"]
    ids = [f"img-{i}" for i in range(len(images))]
    table = pa.table({"key": ids, "pixels": pa.array(images, pa.binary()), "digit": list(y[:20]) + [0, 0, 0]})
    (tmp_path / "table").mkdir()
    pq.write_table(table, tmp_path / "table" / "part-0.parquet")
    summary = batch_infer(spark, _cfg(champion, tmp_path, "parquet", tmp_path / "table", id_column="key",
                                      image_column="pixels", label_column="digit"))
    predictions, rejects, _ = _outputs(tmp_path)
    assert summary["rows_scored"] == 20 and summary["rejects"] == 3
    assert rejects["img-20"]["reject_reason"] == "wrong image size; expected 784 pixels (28x28)"
    assert rejects["img-20"]["note"] == "700 pixels"
    assert rejects["img-21"]["reject_reason"] == "image is missing (null)"
    assert rejects["img-22"]["reject_reason"] == "wrong image size; expected 784 pixels (28x28)"
    assert rejects["img-22"]["note"] == "785 pixels"
    assert set(predictions) == {f"img-{i}" for i in range(20)}


def test_parquet_array_column_out_of_range_is_rejected(spark, champion, small_arrays, tmp_path):
    x, _ = small_arrays["test"]
    good = x[0].astype(int).tolist()
    bad = list(good)
    bad[5] = 300
    table = pa.table({"id": ["good", "bad"], "image": [good, bad]})
    (tmp_path / "table").mkdir()
    pq.write_table(table, tmp_path / "table" / "part-0.parquet")
    summary = batch_infer(spark, _cfg(champion, tmp_path, "parquet", tmp_path / "table", label_column=None))
    predictions, rejects, _ = _outputs(tmp_path)
    assert set(predictions) == {"good"} and summary["accuracy"] is None
    assert rejects["bad"]["reject_reason"] == "pixel values out of range; expected 0-255"
    assert rejects["bad"]["note"] == "values 0..300"


def test_pixel_values_that_are_not_integers_0_255_are_rejects_never_darker_images(spark, champion, small_arrays,
                                                                                    tmp_path):
    x, y = small_arrays["test"]
    good = x[0].astype(float)
    rows = {"good": good, "unit": good / 255, "nan": np.where(np.arange(784) == 3, np.nan, good),
            "inf": np.where(np.arange(784) == 3, np.inf, good), "fraction": good + 0.5 * (np.arange(784) == 9),
            "bad-label": good}
    labels = {"good": float(y[0]), "unit": float(y[0]), "nan": 1.0, "inf": 1.0, "fraction": 1.0, "bad-label": 3.5}
    table = pa.table({"id": list(rows), "image": [v.tolist() for v in rows.values()],
                      "label": [labels[k] for k in rows]})
    (tmp_path / "table").mkdir()
    pq.write_table(table, tmp_path / "table" / "part-0.parquet")
    summary = batch_infer(spark, _cfg(champion, tmp_path, "parquet", tmp_path / "table"))
    predictions, rejects, _ = _outputs(tmp_path)
    assert set(predictions) == {"good"} and summary["rows_scored"] == 1 and summary["rejects"] == 5
    assert rejects["unit"]["reject_reason"] == "pixel values not integers; expected integers 0-255 " \
                                               "(infer.pixel_scale=0-1 scales values in 0-1)"
    assert rejects["nan"]["reject_reason"] == rejects["inf"]["reject_reason"] == \
        "pixel values not finite (NaN or infinity)"
    assert rejects["nan"]["note"] == "1 values such as nan" and rejects["inf"]["note"] == "1 values such as inf"
    assert rejects["fraction"]["note"].startswith("1 values such as ")
    assert rejects["bad-label"]["reject_reason"] == "label is not an integer 0-9"
    assert rejects["bad-label"]["note"] == "label 3.5"

    # said on purpose: values in 0-1 are scaled to 0-255 and score as the integer image does
    unit = pa.table({"id": ["unit", "int"], "image": [rows["unit"].tolist(), [v / 255 for v in good.tolist()]],
                     "label": [int(y[0])] * 2})
    pq.write_table(unit, tmp_path / "table" / "part-0.parquet")
    batch_infer(spark, _cfg(champion, tmp_path, "parquet", tmp_path / "table", pixel_scale="0-1"))
    scaled, rejects, _ = _outputs(tmp_path)
    assert not rejects and set(scaled) == {"unit", "int"}  # the same image, batched differently: float noise only
    assert np.allclose(scaled["unit"]["probabilities"], predictions["good"]["probabilities"], rtol=1e-4, atol=1e-7)


def test_binary_images_with_a_label_that_is_not_a_digit_are_rejects(spark, champion, small_arrays, tmp_path):
    x, _ = small_arrays["test"]
    table = pa.table({"id": ["a", "b", "c", "d"], "image": [x[i].tobytes() for i in range(4)],
                      "label": ["3", "seven", "12", None]})
    (tmp_path / "table").mkdir()
    pq.write_table(table, tmp_path / "table" / "part-0.parquet")
    summary = batch_infer(spark, _cfg(champion, tmp_path, "parquet", tmp_path / "table"))
    predictions, rejects, _ = _outputs(tmp_path)
    assert set(predictions) == {"a", "d"} and predictions["a"]["label"] == 3 and predictions["d"]["label"] is None
    assert {k: (r["reject_reason"], r["note"]) for k, r in rejects.items()} == {
        "b": ("label is not an integer 0-9", "label seven"), "c": ("label is not an integer 0-9", "label 12")}
    assert summary["labelled_rows"] == 1


def test_sixteen_bit_images_are_read_as_they_are_or_rejected(spark, champion, small_arrays, tmp_path):
    x, _ = small_arrays["test"]
    folder = tmp_path / "images"
    folder.mkdir()
    Image.fromarray(x[0].reshape(28, 28).astype(np.uint16)).save(folder / "fits.png")  # 16-bit, values 0-255
    Image.fromarray(x[0].reshape(28, 28).astype(np.uint16) * 257).save(folder / "wide.png")  # values to 65535
    Image.fromarray(x[0].reshape(28, 28), mode="L").save(folder / "gray.png")
    batch_infer(spark, _cfg(champion, tmp_path, "images", folder))
    predictions, rejects, _ = _outputs(tmp_path)
    (key, wide), = rejects.items()
    assert key.endswith("wide.png")
    assert wide["reject_reason"] == "pixel values out of range; expected 0-255" and wide["note"].startswith("I")
    fits = next(v for k, v in predictions.items() if k.endswith("fits.png"))
    gray = next(v for k, v in predictions.items() if k.endswith("gray.png"))
    assert np.allclose(fits["probabilities"], gray["probabilities"], rtol=1e-4, atol=1e-7)


def test_image_folder_accounts_for_every_file(spark, champion, small_arrays, tmp_path):
    x, _ = small_arrays["test"]
    folder = tmp_path / "images"
    (folder / "nested").mkdir(parents=True)
    Image.fromarray(x[0].reshape(28, 28), mode="L").save(folder / "gray.png")
    rgb = Image.fromarray(np.stack([x[1].reshape(28, 28)] * 3, axis=-1), mode="RGB").resize((64, 64))
    rgb.save(folder / "color.jpg", quality=95)
    (folder / "broken.png").write_bytes(b"this is not a png")
    (folder / "nested" / "other-broken.png").write_bytes(b"nor is this")
    (folder / "empty.png").write_bytes(b"")  # Spark's binaryFile source skips empty files
    png = (folder / "gray.png").read_bytes()
    (folder / "cut.png").write_bytes(png[: len(png) // 2])
    summary = batch_infer(spark, _cfg(champion, tmp_path, "images", folder))
    predictions, rejects, _ = _outputs(tmp_path)
    assert summary["inputs"] == 6 and summary["rows_scored"] == 2 and summary["rejects"] == 4
    assert len(predictions) + len(rejects) == 6
    by_name = {k.rsplit("/", 1)[-1]: v for k, v in predictions.items()}
    assert by_name["gray.png"]["note"] is None
    assert by_name["color.jpg"]["note"] == "converted RGB to grayscale; resized 64x64 to 28x28"
    reasons = {k.rsplit("/", 1)[-1]: v["reject_reason"] for k, v in rejects.items()}
    assert reasons == {
        "broken.png": "cannot decode image: not an image format Pillow reads",
        "other-broken.png": "cannot decode image: not an image format Pillow reads",
        "empty.png": "file is empty (0 bytes)",
        "cut.png": "cannot decode image: truncated or corrupt image data",
    }


def test_missing_champion_alias_is_a_clear_error_and_keeps_old_output(spark, champion, sample_dataset, tmp_path):
    cfg = _cfg(champion, tmp_path, "dataset", sample_dataset[0])
    batch_infer(spark, cfg)
    before = tree_snapshot(tmp_path / "predictions")
    cfg.promote.champion_alias = "nobody"
    with pytest.raises(PipelineError, match=r"registered model 'mnist-cnn' has no alias 'nobody' in sqlite:///.*; "
                                            r"promote a version first \(`mnist-pipeline evaluate`\)"):
        batch_infer(spark, cfg)
    assert tree_snapshot(tmp_path / "predictions") == before
    cfg.infer.skip_without_champion = True  # what the scheduled job sets: nothing to score with is not a failure
    assert batch_infer(spark, cfg) is None
    assert tree_snapshot(tmp_path / "predictions") == before


def test_idx_input_matching_nothing_names_the_infer_key(spark, champion, tmp_path):
    from pipeline.errors import InputError

    with pytest.raises(InputError, match=r"no input files match infer\.input='.*nothing-\*' \(empty input\)"):
        batch_infer(spark, _cfg(champion, tmp_path, "idx", tmp_path / "nothing-*"))


def test_version_1_of_another_tracking_store_is_shipped_afresh(spark, tmp_path):
    """The shipped-archive cache knows a version by its registry, source and run: the same URI
    ``models:/m/1`` in a second store of the same process is that store's model, never the first's."""
    import zipfile

    from pipeline.infer import batch

    shipped = []
    for store in ("a", "b"):
        files = tmp_path / store / "files"
        files.mkdir(parents=True)
        (files / "weights.txt").write_text(f"model of store {store}")
        mlflow.set_tracking_uri(f"sqlite:///{tmp_path / store / 'mlflow.db'}")
        try:
            client = mlflow.MlflowClient()
            client.create_registered_model("m")
            assert client.create_model_version("m", str(files)).version in (1, "1")
            version = client.get_model_version("m", "1")
            shipped.append(batch.ship_model(spark, "models:/m/1", version))
            again = batch.ship_model(spark, "models:/m/1", version)
            assert again == shipped[-1]  # the same version: shipped once
        finally:
            mlflow.set_tracking_uri(None)
    assert shipped[0] != shipped[1]
    for store, name in zip(("a", "b"), shipped):
        with zipfile.ZipFile(f"{batch._ship_folder[0]}/{name}") as archive:
            assert archive.read("weights.txt").decode() == f"model of store {store}"
