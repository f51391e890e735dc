"""A trained model on the test split: predictions, metrics and plots, logged to the active MLflow run."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pipeline.assess import metrics, plots


@dataclass
class TestReport:
    accuracy: float
    matrix: np.ndarray
    per_class: dict[int, dict[str, float]]


def score_split(predict, dataset_root: str, split: str = "test", batch_size: int = 1024):
    """The one scorer of a split, on the driver: ``(images, labels, probabilities)`` over every row.

    ``predict`` maps a float32 batch ``(n, 28, 28, 1)`` of raw pixels to ``(n, 10)`` probabilities (a
    Keras model's ``predict_on_batch``, a pyfunc model's ``predict``). The split is read whole with
    ``io.reader.load_shard`` (every row group, counted against the footers), in id order.
    """
    from pipeline.io.reader import check_whole_pass, load_shard

    images, labels = load_shard(dataset_root, split)
    check_whole_pass(dataset_root, split, len(labels))  # no accuracy of a partial split
    probs = [np.asarray(predict(images[i:i + batch_size].astype(np.float32)))
             for i in range(0, len(labels), batch_size)]
    return images, labels, np.concatenate(probs)


def predict_test_split(model, dataset_root: str):
    """A Keras model on the whole test split: (images, labels, probabilities)."""
    return score_split(model.predict_on_batch, dataset_root)


def log_test_report(images: np.ndarray, labels: np.ndarray, probs: np.ndarray, epochs: list[dict],
                    misclassified_examples: int, extra_metrics: dict[str, float] | None = None) -> TestReport:
    """Logs test accuracy, per-class precision/recall/F1, the confusion matrix and the plots (learning
    curves, confusion matrix, misclassified digits) to the active MLflow run."""
    import matplotlib.pyplot as plt
    import mlflow

    predicted = probs.argmax(axis=1)
    matrix = metrics.confusion_matrix(labels, predicted)
    acc = metrics.accuracy(matrix)
    scores = metrics.per_class_scores(matrix)
    logged = {"test_accuracy": acc, **(extra_metrics or {})}
    for c, s in scores.items():
        for name in ("precision", "recall", "f1"):
            logged[f"test_{name}_{c}"] = s[name]
    mlflow.log_metrics(logged)
    mlflow.log_dict({"confusion_matrix": matrix.tolist(), "per_class": scores, "accuracy": acc},
                    "evaluation/test_metrics.json")
    if epochs:
        mlflow.log_figure(plots.learning_curves(epochs), "plots/learning_curves.png")
    mlflow.log_figure(plots.confusion_matrix_figure(matrix), "plots/confusion_matrix.png")
    mlflow.log_figure(plots.misclassified_grid(images, labels, predicted, probs.max(axis=1), misclassified_examples),
                      "plots/misclassified.png")
    plt.close("all")
    return TestReport(accuracy=acc, matrix=matrix, per_class=scores)
