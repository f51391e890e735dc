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


def lr_find_figure(sweep):
    """Loss against learning rate (log scale) of a range test, with the two readings marked."""
    fig, ax = plt.subplots(figsize=(8, 5))
    ax.plot(sweep.rates, sweep.losses, color="0.75", lw=1, label="loss per step (mean over ranks)")
    ax.plot(sweep.rates, sweep.smoothed, color="C0", lw=2, label="smoothed loss")
    ax.set_xscale("log")
    if sweep.steepest:
        ax.axvline(sweep.steepest, color="C2", ls="--", label=f"steepest descent {sweep.steepest:.2e}")
    ax.axvline(sweep.minimum / 10, color="C1", ls=":", label=f"minimum / 10 {sweep.minimum / 10:.2e}")
    finite = [v for v in sweep.smoothed if np.isfinite(v)]
    if finite:  # keep the blow-up from flattening the interesting part
        lowest = min(finite + [v for v in sweep.losses if np.isfinite(v)])
        ax.set_ylim(lowest * 0.9, min(max(finite), 4 * min(finite)) * 1.1)
    ax.set_xlabel("learning rate (effective, all ranks)")
    ax.set_ylabel("training loss")
    ax.set_title(f"learning-rate range test on {sweep.ranks} ranks: suggested {sweep.suggested:.2e} ({sweep.method})")
    ax.grid(alpha=0.3, which="both")
    ax.legend()
    fig.tight_layout()
    return fig


def close(fig) -> None:
    plt.close(fig)
