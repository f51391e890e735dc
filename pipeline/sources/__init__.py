"""Parsers of the raw MNIST source formats and the Spark job that reads them, shared by ingest and inference."""
