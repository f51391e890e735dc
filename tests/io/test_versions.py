"""The version preflight names a package outside its supported range, and why, before anything runs."""

import pytest

from pipeline.errors import PreflightError
from pipeline.io import versions

RANGES = ["tensorflow<2.19,>=2.16", "pyarrow<15,>=12", "mlflow<4,>=2.13", "PyYAML>=6"]


def test_packages_outside_their_range_are_named_with_the_reason():
    problems = versions.out_of_range(RANGES, {"tensorflow": "2.19.1", "pyarrow": "14.0.1", "mlflow": "2.13.1",
                                              "PyYAML": None}, backend="horovod")
    assert problems == [
        "tensorflow 2.19.1 is installed but the pipeline supports <2.19,>=2.16 (Horovod 0.28.1 compiles against "
        "TensorFlow 2.16-2.18 only)",
        "PyYAML is not installed; the pipeline needs PyYAML>=6",
    ]
    assert versions.out_of_range(RANGES, {"tensorflow": "2.16.1", "pyarrow": "12.0.1", "mlflow": "3.17.2",
                                          "PyYAML": "6.0.1"}) == []


def test_a_horovod_built_against_another_tensorflow_says_what_to_do():
    error = ImportError("/x/horovod/tensorflow/mpi_lib.cpython-311-x86_64-linux-gnu.so: undefined symbol: "
                        "_ZN10tensorflow8OpKernel11TraceStringB5cxx11ERKNS_15OpKernelContextEb")
    message = versions.horovod_problem(error, "2.18.1")
    assert message.startswith("horovod cannot load its TensorFlow ops (/x/horovod/tensorflow/mpi_lib")
    assert "built against another TensorFlow than the installed 2.18.1; rebuild Horovod" in message
    assert versions.horovod_problem(None, "2.18.1") is None


def test_each_backend_is_held_to_its_own_ranges():
    horovod, tf_distribute, no_training = (versions.supported_ranges(b) for b in ("horovod", "tf_distribute", None))
    assert tf_distribute == no_training
    assert not [r for r in tf_distribute if r.startswith("petastorm")]
    assert "pyarrow>=12" in tf_distribute and "tensorflow<2.22,>=2.16" in tf_distribute
    assert "pyspark<4.1,>=3.5" in tf_distribute
    # the horovod extra narrows on top of the base ranges: both hold
    assert {"petastorm<0.14,>=0.13.1", "pyarrow<15,>=12", "tensorflow<2.19,>=2.16", "pyspark<3.6,>=3.5"} <= set(horovod)
    assert "tensorflow<2.22,>=2.16" in horovod


def test_a_runtime_without_petastorm_is_told_which_backend_to_use(monkeypatch):
    real = versions._installed
    monkeypatch.setattr(versions, "_installed", lambda names: {**real(names), "petastorm": None})
    versions.check("tf_distribute")  # the TensorFlow-native backend does not need it
    with pytest.raises(PreflightError) as caught:
        versions.check("horovod")
    message = str(caught.value)
    assert "petastorm is not installed; the pipeline needs petastorm<0.14,>=0.13.1 (the Horovod backend reads" in message
    assert "pip install mnist-pipeline[horovod]" in message and "or set train.backend=tf_distribute" in message


def test_this_environment_passes(monkeypatch):
    versions.check("horovod")
    versions.check("tf_distribute")
    monkeypatch.setattr(versions, "supported_ranges", lambda backend=None: ["numpy<1.0"])
    with pytest.raises(PreflightError, match=r"the installed packages do not fit this pipeline:\n  numpy .* is "
                                             r"installed but the pipeline supports <1\.0 \(pyarrow < 15 is built"):
        versions.check("horovod")


def test_spark_is_checked_even_where_the_platform_provides_it_without_pip_metadata(monkeypatch):
    import pyspark

    assert "pyspark<4.1,>=3.5" in versions.supported_ranges()
    real = versions.metadata.version

    def no_pyspark_metadata(name):
        if name == "pyspark":
            raise versions.metadata.PackageNotFoundError(name)
        return real(name)

    monkeypatch.setattr(versions.metadata, "version", no_pyspark_metadata)
    assert versions._installed(["pyspark"]) == {"pyspark": pyspark.__version__}
