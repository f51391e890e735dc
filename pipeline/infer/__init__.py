"""Batch inference stage: score inputs with a registered model in Spark."""
