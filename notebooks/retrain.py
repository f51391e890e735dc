# Databricks notebook source
# MAGIC %md
# MAGIC # Retrain: ingest -> train -> evaluate/promote -> batch inference
# MAGIC
# MAGIC Parameters (widgets): `conf`, config files relative to this notebook, comma-separated;
# MAGIC `ingest.train` (empty: the config file's value);
# MAGIC `ingest.test` (empty: the config file's value);
# MAGIC `data.root` (empty: the config file's value);
# MAGIC `train.epochs` (empty: the config file's value);
# MAGIC `retrain.when` (empty: the config file's value): always, or drift to retrain only when the champion's
# MAGIC judged inference runs since its promotion and the last retrain drifted (`retrain.drift_runs` of the
# MAGIC last `retrain.window_runs`) and labelled data it was not trained on is under `ingest.extra`;
# MAGIC `overrides`, any other `section.key=value` pairs, space-separated.
# MAGIC One retrain of a `data.root` runs at a time: a second waits `retrain.lock_wait_s`, then exits saying so.
# MAGIC The logic lives in the `pipeline` package (installed from the bundle's wheel); this notebook only
# MAGIC maps widgets onto the config and makes one call.

# COMMAND ----------

dbutils.widgets.text("conf", "../conf/databricks.yaml", "config files")
dbutils.widgets.text("ingest.train", "", "ingest.train")
dbutils.widgets.text("ingest.test", "", "ingest.test")
dbutils.widgets.text("data.root", "", "data.root")
dbutils.widgets.text("train.epochs", "", "train.epochs")
dbutils.widgets.text("retrain.when", "", "retrain.when")
dbutils.widgets.text("overrides", "", "key=value ...")

# COMMAND ----------

from pipeline.notebook import config_from_widgets, run_stage

cfg = config_from_widgets(dbutils, ["ingest.train", "ingest.test", "data.root", "train.epochs", "retrain.when"])
print(run_stage(spark, "retrain", cfg))
