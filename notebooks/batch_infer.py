# Databricks notebook source
# MAGIC %md
# MAGIC # Batch inference with the champion model
# MAGIC
# MAGIC Parameters (widgets): `conf`, config files relative to this notebook, comma-separated;
# MAGIC `data.root` (empty: the config file's value; the dataset scored when infer.input is empty);
# MAGIC `infer.input_format` (empty: the config file's value);
# MAGIC `infer.input` (empty: the config file's value);
# MAGIC `infer.output` (empty: the config file's value);
# MAGIC `infer.model_version` (empty: the config file's value);
# MAGIC `infer.mode` (empty: the config file's value): batch scores the input whole and replaces the output,
# MAGIC incremental scores only the files that arrived in the `infer.input` folder since the last run;
# MAGIC `overrides`, any other `section.key=value` pairs, space-separated.
# MAGIC The logic lives in the `pipeline` package (installed from the bundle's wheel); this notebook only
# MAGIC maps widgets onto the config and makes one call.

# COMMAND ----------

dbutils.widgets.text("conf", "../conf/databricks.yaml", "config files")
dbutils.widgets.text("data.root", "", "data.root")
dbutils.widgets.text("infer.input_format", "", "infer.input_format")
dbutils.widgets.text("infer.input", "", "infer.input")
dbutils.widgets.text("infer.output", "", "infer.output")
dbutils.widgets.text("infer.model_version", "", "infer.model_version")
dbutils.widgets.text("infer.mode", "", "infer.mode")
dbutils.widgets.text("overrides", "", "key=value ...")

# COMMAND ----------

from pipeline.notebook import config_from_widgets, run_stage

cfg = config_from_widgets(dbutils, ["data.root", "infer.input_format", "infer.input", "infer.output", "infer.model_version",
                                    "infer.mode"])
print(run_stage(spark, "infer", cfg))
