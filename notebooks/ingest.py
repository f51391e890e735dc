# Databricks notebook source
# MAGIC %md
# MAGIC # Ingest: raw MNIST -> validated, split Parquet dataset
# MAGIC
# MAGIC Parameters (widgets): `conf`, config files relative to this notebook, comma-separated;
# MAGIC `ingest.format` (empty: the config file's value);
# MAGIC `ingest.train` (empty: the config file's value);
# MAGIC `ingest.test` (empty: the config file's value);
# MAGIC `data.root` (empty: the config file's value);
# MAGIC `overrides`, any other `section.key=value` pairs, space-separated.
# MAGIC The logic lives in the `pipeline` package (installed from the bundle's wheel); this notebook only
# MAGIC maps widgets onto the config and makes one call.

# COMMAND ----------

dbutils.widgets.text("conf", "../conf/databricks.yaml", "config files")
dbutils.widgets.text("ingest.format", "", "ingest.format")
dbutils.widgets.text("ingest.train", "", "ingest.train")
dbutils.widgets.text("ingest.test", "", "ingest.test")
dbutils.widgets.text("data.root", "", "data.root")
dbutils.widgets.text("overrides", "", "key=value ...")

# COMMAND ----------

from pipeline.notebook import config_from_widgets, run_stage

cfg = config_from_widgets(dbutils, ["ingest.format", "ingest.train", "ingest.test", "data.root"])
print(run_stage(spark, "ingest", cfg))
