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
    # Under spark-submit the JVM is already up (it hands Python PYSPARK_GATEWAY_PORT) and its --master,
    # a system property there, wins over the config. Otherwise the JVM is launched from this builder's
    # settings, so it must not be started before they are applied (spark.driver.memory among them).
    submitted_master = None
    if "PYSPARK_GATEWAY_PORT" in os.environ:
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


def run_together(*calls) -> None:
    """Runs each call (a Spark action, e.g. a write) in its own thread, so their jobs share the executors
    and their setup and commit overlap; returns when every call has ended, raising the first failure.

    For actions that read one cached result: jobs started together over an uncomputed plan would each
    compute it. Each thread inherits the caller's Spark local properties (job group, description).
    """
    from concurrent.futures import ThreadPoolExecutor

    from pyspark.util import inheritable_thread_target

    if len(calls) == 1:
        calls[0]()
        return
    with ThreadPoolExecutor(len(calls), thread_name_prefix="spark-together") as pool:
        futures = [pool.submit(inheritable_thread_target(call)) for call in calls]
    for future in futures:
        future.result()
