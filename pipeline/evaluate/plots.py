"""Pictures of a run, for MLflow: learning curves, confusion matrix, misclassified test images."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def learning_curves(epochs: list[dict]):
    """Train vs val loss and accuracy per epoch: the gap shows over-fitting, high flat curves under-fitting."""
    x = [e["epoch"] for e in epochs]
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for ax, metric in zip(axes, ("loss", "accuracy")):
        ax.plot(x, [e[metric] for e in epochs], "o-", label=f"train {metric}")
        ax.plot(x, [e[f"val_{metric}"] for e in epochs], "s-", label=f"val {metric}")
        ax.set_xlabel("epoch")
        ax.set_title(metric)
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    return fig


def confusion_matrix_figure(matrix: np.ndarray):
    fig, ax = plt.subplots(figsize=(6.5, 5.5))
    image = ax.imshow(matrix, cmap="Blues")
    fig.colorbar(image, ax=ax)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_xticks(range(10))
    ax.set_yticks(range(10))
    threshold = matrix.max() / 2
    for i in range(matrix.shape[0]):
        for j in range(matrix.shape[1]):
            ax.text(j, i, str(matrix[i, j]), ha="center", va="center", fontsize=7,
                    color="white" if matrix[i, j] > threshold else "black")
    ax.set_title("test confusion matrix")
    fig.tight_layout()
    return fig


def misclassified_grid(images: np.ndarray, labels: np.ndarray, predicted: np.ndarray, probabilities: np.ndarray,
                       limit: int = 25):
    """A grid of misclassified test images titled ``true -> predicted (p)``."""
    wrong = np.flatnonzero(labels != predicted)[:limit]
    cols = 5
    rows = max(1, int(np.ceil(len(wrong) / cols)))
    fig, axes = plt.subplots(rows, cols, figsize=(cols * 1.8, rows * 2.0))
    for ax in np.atleast_1d(axes).ravel():
        ax.axis("off")
    for ax, i in zip(np.atleast_1d(axes).ravel(), wrong):
        ax.imshow(images[i].reshape(28, 28), cmap="gray_r")
        ax.set_title(f"{labels[i]} -> {predicted[i]} ({probabilities[i]:.2f})", fontsize=8)
    fig.suptitle(f"misclassified test images: {len(wrong)} shown")
    fig.tight_layout()
    return fig
