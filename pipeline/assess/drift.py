"""What a model sees, as a few histograms, and how far a batch has moved from the model's reference.

A *profile* summarises scored rows with fixed bins, so two profiles compare bin by bin whoever computed
them (the driver at registration, Spark executors at inference):

- ``classes``: rows per predicted class (10);
- ``confidence``: the top-class probability, 10 equal bins over [0.1, 1] (it cannot be below 0.1);
- ``entropy``: the prediction's entropy in nats, 10 equal bins over [0, ln 10];
- ``pixels``: every pixel's intensity, 16 equal bins over 0-255 (``value >> 4``);
- sums for the means: top-class probability, ink (mean intensity / 255 per image), and, where labels
  are known, labelled and correct rows.

Every histogram is compared with the population stability index, PSI = sum((a - e) * ln(a / e)) over
the bins, a and e the batch's and the reference's shares (each share floored at ``EPSILON`` so an
empty bin stays finite). One measure on one scale for all four: the common PSI convention (< 0.1
stable, 0.1-0.25 moderate, > 0.25 drift) then reads every figure, and it is the symmetric
Kullback-Leibler divergence of the two binned distributions, so it grows with both a bin that empties
and a bin that fills. The verdict is decided by the largest of them.
"""

from __future__ import annotations

import math

import numpy as np

REFERENCE_KEY = "drift_reference"  # the key of a model's reference profile in its MLmodel metadata
REFERENCE_ARTIFACT = "monitoring/reference.json"  # the same, as an artifact of the training run
CLASSES = 10
CONFIDENCE_BINS = 10
CONFIDENCE_LOW = 0.1
ENTROPY_BINS = 10
ENTROPY_HIGH = math.log(CLASSES)
PIXEL_BINS = 16
EPSILON = 1e-4
HISTOGRAMS = ("classes", "confidence", "entropy", "pixels")
FIGURES = ("class_psi", "confidence_psi", "entropy_psi", "pixel_psi")
VERDICTS = ("stable", "moderate", "drift")


def confidence_bins(top: np.ndarray) -> np.ndarray:
    """The confidence bin (0-9) of each top-class probability."""
    scaled = (np.asarray(top, np.float64) - CONFIDENCE_LOW) / (1 - CONFIDENCE_LOW) * CONFIDENCE_BINS
    return np.clip(np.floor(scaled), 0, CONFIDENCE_BINS - 1).astype(np.int32)


def entropies(probs: np.ndarray) -> np.ndarray:
    p = np.clip(np.asarray(probs, np.float64), 1e-12, 1.0)
    return -(p * np.log(p)).sum(axis=1)


def entropy_bins(probs: np.ndarray) -> np.ndarray:
    """The entropy bin (0-9) of each row of class probabilities."""
    scaled = entropies(probs) / ENTROPY_HIGH * ENTROPY_BINS
    return np.clip(np.floor(scaled), 0, ENTROPY_BINS - 1).astype(np.int32)


def pixel_totals(pixels: np.ndarray) -> np.ndarray:
    """``(16,)`` int64: all of the images' pixels per intensity bin."""
    flat = np.ascontiguousarray(pixels, np.uint8).ravel()
    if flat.size % 2:
        values = np.bincount(flat, minlength=256)
    else:  # two pixels per count: half the values to widen and add (784 pixels per image: always even)
        pairs = np.bincount(flat.view(np.uint16), minlength=65536).reshape(256, 256)
        values = pairs.sum(axis=0) + pairs.sum(axis=1)  # whichever byte is which: both are counted
    return values.reshape(PIXEL_BINS, 256 // PIXEL_BINS).sum(axis=1).astype(np.int64)


def ink(pixels: np.ndarray) -> np.ndarray:
    """Mean intensity of each image, 0-1."""
    pixels = np.asarray(pixels, np.uint8).reshape(len(pixels), -1)
    return pixels.sum(axis=1, dtype=np.uint32) / (255.0 * pixels.shape[1])  # exact integer sums, then one division


def empty_profile() -> dict:
    return {"rows": 0, "classes": [0] * CLASSES, "confidence": [0] * CONFIDENCE_BINS,
            "entropy": [0] * ENTROPY_BINS, "pixels": [0] * PIXEL_BINS, "confidence_sum": 0.0, "ink_sum": 0.0,
            "labelled": 0, "correct": 0}


def profile(pixels: np.ndarray, probs: np.ndarray, labels: np.ndarray | None = None) -> dict:
    """The profile of scored rows, computed directly (the reference at registration, and the check of the
    Spark computation): ``pixels`` uint8 ``(rows, 28, 28[, 1])``, ``probs`` ``(rows, 10)``, ``labels``
    int (negative or None: unknown)."""
    probs = np.asarray(probs, np.float64)
    predicted = probs.argmax(axis=1)
    top = probs.max(axis=1)
    out = empty_profile()
    out["rows"] = int(len(probs))
    out["classes"] = np.bincount(predicted, minlength=CLASSES).astype(int).tolist()
    out["confidence"] = np.bincount(confidence_bins(top), minlength=CONFIDENCE_BINS).astype(int).tolist()
    out["entropy"] = np.bincount(entropy_bins(probs), minlength=ENTROPY_BINS).astype(int).tolist()
    out["pixels"] = pixel_totals(pixels).astype(int).tolist()
    out["confidence_sum"] = float(top.sum())
    out["ink_sum"] = float(ink(pixels).sum())
    if labels is not None:
        labels = np.asarray(labels)
        known = labels >= 0
        out["labelled"] = int(known.sum())
        out["correct"] = int((labels[known] == predicted[known]).sum())
    return out


def summary(p: dict) -> dict:
    """The means of a profile: mean_confidence (a label-free accuracy proxy), mean_ink, accuracy (None
    without labels)."""
    rows = p["rows"]
    return {"rows": rows,
            "mean_confidence": p["confidence_sum"] / rows if rows else None,
            "mean_ink": p["ink_sum"] / rows if rows else None,
            "accuracy": p["correct"] / p["labelled"] if p["labelled"] else None}


def psi(expected, actual, epsilon: float = EPSILON) -> float:
    """Population stability index of two histograms over the same bins (counts or shares)."""
    e = np.asarray(expected, np.float64)
    a = np.asarray(actual, np.float64)
    if e.shape != a.shape:
        raise ValueError(f"histograms of {e.size} and {a.size} bins cannot be compared")
    if e.sum() <= 0 or a.sum() <= 0:
        raise ValueError("a histogram with no rows cannot be compared")
    e = np.maximum(e / e.sum(), epsilon)
    a = np.maximum(a / a.sum(), epsilon)
    return float(((a - e) * np.log(a / e)).sum())


def compare(reference: dict, batch: dict, moderate: float = 0.1, drift: float = 0.25) -> dict:
    """The drift figures of ``batch`` against ``reference``, and the verdict with the figure that decided it.

    ``{"class_psi", "confidence_psi", "entropy_psi", "pixel_psi", "mean_confidence", "reference_mean_confidence",
    "mean_ink", "reference_mean_ink", "accuracy", "reference_accuracy", "verdict", "decided_by", "decisive"}``;
    verdict ``stable`` below ``moderate``, ``drift`` above ``drift``, else ``moderate``.
    """
    if not batch["rows"]:
        raise ValueError("the batch has no scored rows to compare")
    figures = {name: psi(reference[hist], batch[hist]) for name, hist in zip(FIGURES, HISTOGRAMS)}
    decided_by = max(FIGURES, key=lambda name: figures[name])
    worst = figures[decided_by]
    verdict = "drift" if worst > drift else "moderate" if worst >= moderate else "stable"
    mine, theirs = summary(batch), summary(reference)
    return {**figures,
            "mean_confidence": mine["mean_confidence"], "reference_mean_confidence": theirs["mean_confidence"],
            "mean_ink": mine["mean_ink"], "reference_mean_ink": theirs["mean_ink"],
            "accuracy": mine["accuracy"], "reference_accuracy": theirs["accuracy"],
            "verdict": verdict, "decided_by": decided_by, "decisive": worst}


def check_profile(p: dict, what: str) -> dict:
    """``p`` when it has the shape of a profile; ValueError naming ``what`` otherwise."""
    sizes = {"classes": CLASSES, "confidence": CONFIDENCE_BINS, "entropy": ENTROPY_BINS, "pixels": PIXEL_BINS}
    for key, size in sizes.items():
        values = p.get(key) if isinstance(p, dict) else None
        if not isinstance(values, list) or len(values) != size:
            raise ValueError(f"{what}: {key!r} should be a list of {size} counts, found {values!r}")
    for key in ("rows", "confidence_sum", "ink_sum", "labelled", "correct"):
        if not isinstance(p.get(key), (int, float)):
            raise ValueError(f"{what}: {key!r} should be a number, found {p.get(key)!r}")
    return p
