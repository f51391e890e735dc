"""The Spark session follows the config, except that spark-submit's --master wins (tests/test_cluster.py)."""


def test_session_uses_the_configured_master_and_loopback(spark):
    conf = spark.sparkContext.getConf()
    assert spark.sparkContext.master == "local[2]"  # as conftest configured it, not the launcher's local[*]
    assert conf.get("spark.driver.host") == "127.0.0.1"
    assert conf.get("spark.sql.shuffle.partitions") == "4"


def test_writes_run_together_all_end_and_the_first_failure_is_raised(spark, tmp_path):
    import pytest
    from pyspark.errors import AnalysisException

    from pipeline.io.spark import run_together

    rows = spark.range(5000).selectExpr("id", "id * 2 AS twice").cache()
    rows.count()
    taken = tmp_path / "taken"
    taken.mkdir()
    (taken / "keep.txt").write_text("earlier output")
    with pytest.raises(AnalysisException, match="already exists"):
        run_together(lambda: rows.write.parquet(str(taken)),  # fails at once: the folder is there
                     lambda: rows.repartition(3).write.parquet(str(tmp_path / "a")),
                     lambda: rows.where("id % 2 = 0").write.parquet(str(tmp_path / "b")))
    # the failure did not cut the other writes short: both are whole, and the folder in the way is untouched
    assert spark.read.parquet(str(tmp_path / "a")).count() == 5000
    assert spark.read.parquet(str(tmp_path / "b")).count() == 2500
    assert (taken / "keep.txt").read_text() == "earlier output"
    rows.unpersist()
