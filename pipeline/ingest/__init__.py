"""Ingest stage: raw MNIST files -> validated, de-duplicated, split Parquet dataset + manifest."""
