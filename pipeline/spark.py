"""The Spark session, built from ``SparkConfig``."""

from __future__ import annotations

import os
import sys

from pyspark import SparkContext
from pyspark.sql import SparkSession

from pipeline.config import SparkConfig


def get_spark(cfg: SparkConfig) -> SparkSession:
    """Returns the active session if there is one (Databricks, spark-submit), else builds one.

    ``cfg.local_ip`` pins driver and executors to that address (127.0.0.1 for the embedded default
    and the tests), so nothing binds the machine's external interface.
    """
    active = SparkSession.getActiveSession()
    if active is not None:
        return active
    if cfg.local_ip:
        os.environ["SPARK_LOCAL_IP"] = cfg.local_ip
    # Executors must run the same interpreter (the project's venv) as the driver in local mode.
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    builder = SparkSession.builder.appName(cfg.app_name)
    # spark-submit's --master (a JVM system property of the gateway it started) wins over the config.
    SparkContext._ensure_initialized()
    submitted_master = SparkContext._jvm.java.lang.System.getProperty("spark.master")
    if cfg.master and not submitted_master:
        builder = builder.master(cfg.master)
    if cfg.local_ip:
        builder = builder.config("spark.driver.host", cfg.local_ip).config("spark.driver.bindAddress", cfg.local_ip)
    builder = builder.config("spark.sql.execution.arrow.pyspark.enabled", "true")
    builder = builder.config("spark.ui.showConsoleProgress", "false")
    for key, value in cfg.conf.items():
        builder = builder.config(key, value)
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel("WARN")
    return spark
