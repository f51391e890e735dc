"""CVE-2023-47248: a Parquet file whose column is a pickled pyarrow extension type runs code when
pyarrow < 14.0.1 reads it. Every process that imports the package refuses such a file."""

import subprocess
import sys

import pytest

WRITE_MALICIOUS = """
import sys, pyarrow as pa, pyarrow.parquet as pq
marker = sys.argv[2]
class Payload(pa.PyExtensionType):
    def __init__(self):
        super().__init__(pa.int64())
    def __reduce__(self):  # what a reader unpickles: a call that leaves a marker file
        return (open, (marker, "w"))
column = pa.ExtensionArray.from_storage(Payload(), pa.array([1, 2]))
pq.write_table(pa.table({"x": column}), sys.argv[1])
"""

READ = "import {module}, pyarrow.parquet as pq, sys; pq.read_table(sys.argv[1])"


@pytest.fixture
def malicious_parquet(tmp_path):
    path, marker = tmp_path / "payload.parquet", tmp_path / "code-ran"
    subprocess.run([sys.executable, "-c", WRITE_MALICIOUS, str(path), str(marker)], check=True)
    return path, marker


@pytest.mark.parametrize("module", ["pipeline", "pipeline.train.worker", "pipeline.io.reader"])
def test_a_process_that_imports_the_package_refuses_the_payload(malicious_parquet, module):
    path, marker = malicious_parquet
    result = subprocess.run([sys.executable, "-c", READ.format(module=module), str(path)],
                            capture_output=True, text=True)
    assert result.returncode != 0
    assert "Disallowed deserialization of 'arrow.py_extension_type'" in result.stderr
    assert not marker.exists()


@pytest.mark.slow
def test_spark_python_workers_running_package_code_have_it(spark):
    import pipeline

    active = spark.sparkContext.parallelize(range(2), 2).map(lambda _: pipeline.pyarrow_hotfix_active()).collect()
    assert active == [True, True]
