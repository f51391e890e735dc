# Databricks notebook source
# MAGIC %md
# MAGIC # Evaluate and promote: challenger vs champion on the test split
# MAGIC
# MAGIC Parameters (widgets): `conf`, config files relative to this notebook, comma-separated;
# MAGIC `data.root` (empty: the config file's value);
# MAGIC `promote.version` (empty: the config file's value);
# MAGIC `promote.min_accuracy` (empty: the config file's value);
# MAGIC `overrides`, any other `section.key=value` pairs, space-separated.
# MAGIC The logic lives in the `pipeline` package (installed from the bundle's wheel); this notebook only
# MAGIC maps widgets onto the config and makes one call.

# COMMAND ----------

dbutils.widgets.text("conf", "../conf/databricks.yaml", "config files")
dbutils.widgets.text("data.root", "", "data.root")
dbutils.widgets.text("promote.version", "", "promote.version")
dbutils.widgets.text("promote.min_accuracy", "", "promote.min_accuracy")
dbutils.widgets.text("overrides", "", "key=value ...")

# COMMAND ----------

from pipeline.notebook import config_from_widgets, run_stage

cfg = config_from_widgets(dbutils, ["data.root", "promote.version", "promote.min_accuracy"])
print(run_stage(spark, "evaluate", cfg))
