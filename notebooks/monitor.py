# Databricks notebook source
# MAGIC %md
# MAGIC # Monitoring: batch inference against each model version's reference
# MAGIC
# MAGIC Parameters (widgets): `conf`, config files relative to this notebook, comma-separated;
# MAGIC `monitor.path` (empty: the config file's value);
# MAGIC `monitor.last` (empty: the config file's value), how many runs to show;
# MAGIC `overrides`, any other `section.key=value` pairs, space-separated.
# MAGIC Prints the last runs (rows, version, PSI of each histogram, mean top-class probability, accuracy,
# MAGIC verdict) and writes the drift-over-time plot beside the history. Each run's figures are also
# MAGIC charted over time in the MLflow experiment `<mlflow.experiment>-monitoring`.

# COMMAND ----------

dbutils.widgets.text("conf", "../conf/databricks.yaml", "config files")
dbutils.widgets.text("monitor.path", "", "monitor.path")
dbutils.widgets.text("monitor.last", "", "monitor.last")
dbutils.widgets.text("overrides", "", "key=value ...")

# COMMAND ----------

from pipeline.notebook import config_from_widgets, run_stage

cfg = config_from_widgets(dbutils, ["monitor.path", "monitor.last"])
print(run_stage(spark, "monitor", cfg))
