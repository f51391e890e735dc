"""Monitoring: every scoring run judged against the scoring version's reference, kept as a history, and
the decision of ``retrain.when=drift`` read from it. ``infer/`` scores; this package judges and remembers.

- ``verdict``: a run's verdict from its figures (``assess.drift``'s sized rule, rejects, too few rows);
- ``history``: the runs and the retrain decisions under ``monitor.path``, read newest first;
- ``record``: a run's reference, its MLflow run and its history row;
- ``decision``: whether ``retrain.when=drift`` retrains now (no Spark, no model download);
- ``report``: ``mnist-pipeline monitor``, the table and the drift-over-time plot.

It sits between the stages and the shared leaves: inference records into it, retraining asks it, and it
imports no stage.
"""
