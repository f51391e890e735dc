"""Pictures of a run, for MLflow: learning curves, confusion matrix, misclassified test images."""

from __future__ import annotations

import matplotlib
import matplotlib.ticker

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


def png(fig) -> bytes:
    """The figure as PNG bytes (at its own dpi)."""
    import io

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    return buffer.getvalue()


_PLAIN = matplotlib.ticker.FuncFormatter(lambda value, _: f"{value:g}")


def drift_figure(reference: dict, batch: dict, figures: dict):
    """A batch against its model version's reference: predicted-class shares, confidence histogram and
    pixel-intensity histogram side by side, each titled with its PSI."""
    from matplotlib.figure import Figure

    from pipeline.assess import drift

    # A Figure of its own, not pyplot's: it is drawn in a background thread while the outputs are written
    # (pyplot's figure registry is not thread-safe), and nothing needs closing. Fixed margins: tight_layout
    # would render it once more only to measure it.
    fig = Figure(figsize=(15, 4.4))
    axes = fig.subplots(1, 3)
    fig.subplots_adjust(left=0.05, right=0.99, bottom=0.22, top=0.84, wspace=0.22)
    panels = [("classes", "class_psi", "predicted class", [str(c) for c in range(drift.CLASSES)]),
              ("confidence", "confidence_psi", "top-class probability",
               [f"{drift.CONFIDENCE_LOW + i * (1 - drift.CONFIDENCE_LOW) / drift.CONFIDENCE_BINS:.2f}"
                for i in range(drift.CONFIDENCE_BINS)]),
              ("pixels", "pixel_psi", "pixel intensity (bin start)", [str(16 * b) for b in range(drift.PIXEL_BINS)])]
    for ax, (key, figure, label, ticks) in zip(axes, panels):
        ref = np.asarray(reference[key], np.float64)
        mine = np.asarray(batch[key], np.float64)
        x = np.arange(ref.size)
        ax.bar(x - 0.2, ref / max(ref.sum(), 1), width=0.4, label="reference (test split)", color="0.6")
        ax.bar(x + 0.2, mine / max(mine.sum(), 1), width=0.4, label="this batch", color="C0")
        if key != "classes":
            ax.set_yscale("log")  # shares of 1e-4 beside 0.8: plain numbers as labels (no mathtext to lay out)
            ax.yaxis.set_major_formatter(_PLAIN)
            ax.yaxis.set_minor_locator(matplotlib.ticker.NullLocator())  # decades only: ticks are costly to draw
        ax.set_xticks(x)
        ax.set_xticklabels(ticks, rotation=60 if key != "classes" else 0, fontsize=7)
        ax.set_xlabel(label)
        ax.set_ylabel("share of rows" if key != "pixels" else "share of pixels")
        value, bound = figures.get(figure), figures.get(drift.bound_name(figure))
        title = f"{label}: PSI {value:.3f}" if value is not None else label
        ax.set_title(title + (f" (noise bound {bound:.3f})" if bound is not None else ""), fontsize=10)
        ax.grid(alpha=0.3, axis="y")
    fig.legend(*axes[0].get_legend_handles_labels(), fontsize=8, loc="upper right", framealpha=0.9)
    decided = figures.get("decided_by")
    said = (f" ({decided} {figures['decisive']:.3f} against {figures['threshold']:.3f})"
            if figures.get("threshold") is not None and decided in drift.FIGURES else f" ({decided})" if decided else "")
    share = figures.get("reject_share")
    fig.suptitle(f"batch vs reference: {figures.get('verdict', '?')}{said}"
                 + (f"; {share:.1%} of inputs rejected" if share else ""))
    return fig


def drift_over_time(runs: list[dict], moderate: float, drift_threshold: float):
    """The drift figures of each monitored run over time, with the verdict bands and each run's own
    threshold (its noise bound where that is above ``moderate``), and the mean top-class probability
    (the label-free accuracy proxy), accuracy where labels were known and the reject share."""
    from pipeline.assess import drift

    x = np.arange(1, len(runs) + 1)
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(11, 7), sharex=True)
    for name in drift.FIGURES:
        values = [r[name] if r[name] is not None else np.nan for r in runs]
        top.plot(x, values, "o-", label=name)
    thresholds = [r["threshold"] if r.get("threshold") is not None else np.nan for r in runs]
    top.plot(x, thresholds, "_", color="k", ms=14, mew=2, label="each run's threshold (noise bound at its size)")
    top.axhspan(moderate, drift_threshold, color="orange", alpha=0.12, label="moderate")
    top.axhline(drift_threshold, color="red", ls="--", lw=1, label=f"drift above {drift_threshold:g}")
    top.set_ylabel("PSI against the version's reference")
    top.set_yscale("symlog", linthresh=0.01)
    top.set_ylim(bottom=0)
    top.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
    top.legend(fontsize=8, ncol=3)
    top.grid(alpha=0.3)
    bottom.plot(x, [r["mean_confidence"] if r["mean_confidence"] is not None else np.nan for r in runs], "o-",
                label="mean top-class probability")
    bottom.plot(x, [r["accuracy"] if r["accuracy"] is not None else np.nan for r in runs], "s-", label="accuracy")
    bottom.plot(x, [r["reject_share"] if r.get("reject_share") is not None else np.nan for r in runs], "x--",
                color="C3", label="share of inputs rejected")
    bottom.set_ylim(0, 1.02)
    bottom.set_xlabel("monitored run")
    bottom.grid(alpha=0.3)
    bottom.legend(fontsize=8)
    changes = [i for i in range(1, len(runs)) if runs[i]["model_version"] != runs[i - 1]["model_version"]]
    for i in changes:
        for ax in (top, bottom):
            ax.axvline(i + 0.5, color="0.4", ls=":")
        bottom.text(i + 0.55, 0.05, f"v{runs[i]['model_version']}", fontsize=8)
    fig.suptitle("batch inference against the scoring version's reference")
    fig.tight_layout()
    return fig
