"""The version preflight names a package outside its supported range, and why, before anything runs."""

import pytest

from pipeline.errors import PreflightError
from pipeline.io import versions

RANGES = ["tensorflow<2.19,>=2.16", "pyarrow<15,>=12", "mlflow<4,>=2.13", "PyYAML>=6"]


def test_packages_outside_their_range_are_named_with_the_reason():
    problems = versions.out_of_range(RANGES, {"tensorflow": "2.19.1", "pyarrow": "14.0.1", "mlflow": "2.13.1",
                                              "PyYAML": None})
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


def test_this_environment_passes(monkeypatch):
    versions.check(horovod=True)
    monkeypatch.setattr(versions, "supported_ranges", lambda: ["numpy<1.0"])
    with pytest.raises(PreflightError, match=r"the installed packages do not fit this pipeline:\n  numpy .* is "
                                             r"installed but the pipeline supports <1\.0 \(pyarrow < 15 is built"):
        versions.check()


def test_spark_is_checked_even_where_the_platform_provides_it_without_pip_metadata(monkeypatch):
    import pyspark

    assert "pyspark<3.6,>=3.5" in versions.supported_ranges()
    real = versions.metadata.version

    def no_pyspark_metadata(name):
        if name == "pyspark":
            raise versions.metadata.PackageNotFoundError(name)
        return real(name)

    monkeypatch.setattr(versions.metadata, "version", no_pyspark_metadata)
    assert versions._installed(["pyspark"]) == {"pyspark": pyspark.__version__}
