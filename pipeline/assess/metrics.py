"""Classification metrics on the test split: accuracy, per-class precision/recall/F1, confusion matrix."""

from __future__ import annotations

import numpy as np


def confusion_matrix(labels: np.ndarray, predicted: np.ndarray, classes: int = 10) -> np.ndarray:
    """``m[true, predicted]`` counts."""
    matrix = np.zeros((classes, classes), dtype=np.int64)
    np.add.at(matrix, (labels.astype(int), predicted.astype(int)), 1)
    return matrix


def per_class_scores(matrix: np.ndarray) -> dict[int, dict[str, float]]:
    """Precision, recall, F1 and support per class; 0.0 where a ratio has no denominator."""
    scores = {}
    for c in range(matrix.shape[0]):
        tp = matrix[c, c]
        predicted, actual = matrix[:, c].sum(), matrix[c, :].sum()
        precision = tp / predicted if predicted else 0.0
        recall = tp / actual if actual else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        scores[c] = {"precision": float(precision), "recall": float(recall), "f1": float(f1), "support": int(actual)}
    return scores


def accuracy(matrix: np.ndarray) -> float:
    return float(np.trace(matrix) / max(matrix.sum(), 1))
