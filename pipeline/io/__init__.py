"""Shared infrastructure: file systems, the dataset contract and its reader, the Spark session, MLflow set-up, progress."""
