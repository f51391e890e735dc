"""The Spark session follows the config, except that spark-submit's --master wins (tests/test_cluster.py)."""


def test_session_uses_the_configured_master_and_loopback(spark):
    conf = spark.sparkContext.getConf()
    assert spark.sparkContext.master == "local[2]"  # as conftest configured it, not the launcher's local[*]
    assert conf.get("spark.driver.host") == "127.0.0.1"
    assert conf.get("spark.sql.shuffle.partitions") == "4"
