"""mnist-pipeline: Spark ingest, Horovod+Petastorm training, MLflow tracking, Spark batch inference."""

# CVE-2023-47248: pyarrow < 14.0.1 runs pickled code when it reads a Parquet/IPC file holding an
# 'arrow.py_extension_type' column. Importing pyarrow_hotfix refuses that type. Every process that
# runs this package's code (driver, Horovod ranks, Spark Python workers running its functions)
# imports this module first, so every one of them is covered.
import pyarrow_hotfix as _pyarrow_hotfix  # noqa: F401

from pipeline.io.pyworker import speed_up_worker as _speed_up_worker

_speed_up_worker()  # only inside a Spark Python worker on Python 3.10/3.11; see pipeline/io/pyworker.py

__version__ = "0.1.0"


def pyarrow_hotfix_active() -> bool:
    """Whether this process refuses pickled pyarrow extension types (see above)."""
    import pyarrow

    return bool(getattr(pyarrow, "_hotfix_installed", False))
