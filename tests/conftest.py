import os
import shutil

import numpy as np
import pytest


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# Loopback only: Spark must not bind the machine's external interface.
os.environ["SPARK_LOCAL_IP"] = "127.0.0.1"
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# S3 is a real S3-compatible server on loopback (moto's, started by the `s3` fixture). Its address and
# dummy credentials are set before Spark starts, so Spark's Python workers (preflight probes) and the
# Horovod ranks see them, as every node of a real cluster must.
os.environ["AWS_ENDPOINT_URL"] = f"http://127.0.0.1:{_free_port()}"
os.environ.update(AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing", AWS_REGION="us-east-1")

from pipeline.config import SparkConfig  # noqa: E402
from pipeline.sources import formats  # noqa: E402
from tests.helpers import SAMPLE_DIR, make_config  # noqa: E402


@pytest.fixture(scope="session")
def spark():
    from pipeline.io.spark import get_spark

    session = get_spark(SparkConfig(master="local[2]", app_name="mnist-pipeline-tests", progress_interval_s=0,
                                    conf={"spark.sql.shuffle.partitions": "4"}))
    yield session
    session.stop()


@pytest.fixture(scope="session")
def sample_arrays():
    """The embedded sample, parsed straight from its IDX files: {'train': (x, y), 'test': (x, y)}."""
    out = {}
    for split, prefix in (("train", "train"), ("test", "t10k")):
        x, y = formats.parse_idx_pair(
            (SAMPLE_DIR / f"{prefix}-images-idx3-ubyte.gz").read_bytes(), f"{prefix}-images",
            (SAMPLE_DIR / f"{prefix}-labels-idx1-ubyte.gz").read_bytes(), f"{prefix}-labels",
        )
        out[split] = (x, y)
    return out


@pytest.fixture(scope="session")
def small_arrays(sample_arrays):
    """A small slice of real digits: 240 train and 60 test images."""
    (xtr, ytr), (xte, yte) = sample_arrays["train"], sample_arrays["test"]
    return {"train": (xtr[:240].copy(), ytr[:240].copy()), "test": (xte[:60].copy(), yte[:60].copy())}


@pytest.fixture(scope="session")
def sample_dataset(spark, tmp_path_factory):
    """The sample ingested once with the default settings; tests copy it, never change it."""
    from pipeline.ingest.build import ingest

    root = tmp_path_factory.mktemp("sample") / "dataset"
    cfg = make_config(root, str(SAMPLE_DIR / "train-*-ubyte.gz"), str(SAMPLE_DIR / "t10k-*-ubyte.gz"), max_shards=8)
    manifest = ingest(spark, cfg)
    return root, manifest


@pytest.fixture
def previous_dataset(sample_dataset, tmp_path):
    """A copy of a good dataset at the output path, as an earlier successful run would leave it."""
    root = tmp_path / "out" / "dataset"
    shutil.copytree(sample_dataset[0], root)
    return root


@pytest.fixture
def rng():
    return np.random.default_rng(0)


@pytest.fixture(scope="session")
def trained_weights(sample_dataset):
    """Weights of the default CNN after one quick in-process epoch on the sample (about 0.93 accuracy)."""
    import tf_keras as keras

    from pipeline.config import ModelConfig
    from pipeline.train.model import build_model, make_loss
    from tests.helpers import read_split

    rows = read_split(sample_dataset[0], "train")
    x = np.stack([np.frombuffer(r[1], dtype=np.uint8).reshape(28, 28, 1) for r in rows]).astype(np.float32)
    y = np.array([r[2] for r in rows])
    keras.utils.set_random_seed(1)
    model = build_model(ModelConfig())
    model.compile(keras.optimizers.Adam(0.002), make_loss(ModelConfig()), ["accuracy"])
    model.fit(x, y, batch_size=64, epochs=1, verbose=0)
    return model.get_weights()


def pytest_addoption(parser):
    parser.addoption("--train-backend", default="auto", choices=["auto", "horovod", "tf_distribute"],
                     help="train.backend for the end-to-end notebook run (scripts/test-profile.sh sets it per runtime)")


@pytest.fixture
def train_backend(request) -> str:
    return request.config.getoption("--train-backend")


# Fixtures that start Spark, train a model or run a server: a test using one is slow.
SLOW_FIXTURES = {"s3", "spark", "sample_dataset", "previous_dataset", "trained_weights", "tracking_server", "champion",
                 "registry", "monitored"}


def pytest_collection_modifyitems(config, items):
    for item in items:
        if SLOW_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)


@pytest.fixture(scope="session")
def s3():
    """moto's S3 server on 127.0.0.1 at AWS_ENDPOINT_URL, stopped by its own pid at the end."""
    from tests.s3_server import S3Server

    server = S3Server(os.environ["AWS_ENDPOINT_URL"]).start()
    yield server
    server.stop()
