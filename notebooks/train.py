# Databricks notebook source
# MAGIC %md
# MAGIC # Train: Horovod on Spark, fed by Petastorm, tracked in MLflow
# MAGIC
# MAGIC Parameters (widgets): `conf`, config files relative to this notebook, comma-separated;
# MAGIC `data.root` (empty: the config file's value);
# MAGIC `train.num_proc` (empty: the config file's value);
# MAGIC `train.epochs` (empty: the config file's value);
# MAGIC `train.batch_size` (empty: the config file's value);
# MAGIC `optimizer.name` (empty: the config file's value);
# MAGIC `optimizer.learning_rate` (empty: the config file's value);
# MAGIC `overrides`, any other `section.key=value` pairs, space-separated.
# MAGIC The logic lives in the `pipeline` package (installed from the bundle's wheel); this notebook only
# MAGIC maps widgets onto the config and makes one call.

# COMMAND ----------

dbutils.widgets.text("conf", "../conf/databricks.yaml", "config files")
dbutils.widgets.text("data.root", "", "data.root")
dbutils.widgets.text("train.num_proc", "", "train.num_proc")
dbutils.widgets.text("train.epochs", "", "train.epochs")
dbutils.widgets.text("train.batch_size", "", "train.batch_size")
dbutils.widgets.text("optimizer.name", "", "optimizer.name")
dbutils.widgets.text("optimizer.learning_rate", "", "optimizer.learning_rate")
dbutils.widgets.text("overrides", "", "key=value ...")

# COMMAND ----------

from pipeline.notebook import config_from_widgets, run_stage

cfg = config_from_widgets(dbutils, ["data.root", "train.num_proc", "train.epochs", "train.batch_size", "optimizer.name", "optimizer.learning_rate"])
print(run_stage(spark, "train", cfg))
