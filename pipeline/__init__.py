"""mnist-pipeline: Spark ingest, Horovod+Petastorm training, MLflow tracking, Spark batch inference."""

__version__ = "0.1.0"
