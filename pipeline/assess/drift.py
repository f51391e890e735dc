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
empty bin stays finite). One measure on one scale for all four, the symmetric Kullback-Leibler
divergence of the two binned distributions, so it grows with both a bin that empties and a bin that
fills. PSI is the reported size of a change.

Whether a change is real is a separate question, and the answer depends on the batch's size: two
samples of one distribution differ by chance, and their PSI is then about (bins - 1) x (1/n + 1/m),
n and m the two samples' rows. To second order PSI is sum((a - e)^2 / p), and nm/(n+m) times that is
the two-sample chi-square statistic of homogeneity, chi-square distributed with bins - 1 degrees of
freedom when nothing changed and every bin is well filled. A model's confidence and entropy histograms
are not: nearly every row sits in one bin. So a figure counts as a change only above its *noise
bound*, the (1 - level / 4) quantile of the PSI between two samples of n and m rows drawn from the
reference's own shares (simulated: ``noise_bound``), where ``level`` is the false-alarm level of a
whole run (``monitor.false_alarm``) and 4 the figures judged at once (Bonferroni). The pixel
histogram counts pixels, but pixels of one image move together: its n and m are images, not pixels,
which can only overstate its noise. A figure is ``moderate`` above max(psi_moderate, bound) and
``drift`` above max(psi_drift, bound): at a few hundred rows the bound decides, at thousands the
common PSI convention (0.1, 0.25) does. ``bench/drift_bench.py`` measures the false alarms and the
detection this gives at 100 to 2,000 rows.
"""

from __future__ import annotations

import functools
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
HISTOGRAM_BINS = {"classes": CLASSES, "confidence": CONFIDENCE_BINS, "entropy": ENTROPY_BINS, "pixels": PIXEL_BINS}
FALSE_ALARM = 0.01  # the default false-alarm level of a run (monitor.false_alarm)


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


NOISE_DRAWS = 20_000  # simulated pairs of samples per noise bound
CHI2_MIN_EXPECTED = 40  # every bin expects this many rows on both sides: the chi-square quantile is used (within 2%)


def noise_bound(reference_counts, rows: int, reference_rows: int, level: float = FALSE_ALARM,
                figures: int = len(FIGURES)) -> float:
    """The PSI that sampling alone exceeds with probability ``level / figures`` between a batch of ``rows``
    and a reference of ``reference_rows``, both drawn from the reference's own shares (module docstring).

    Where every bin expects at least ``CHI2_MIN_EXPECTED`` rows in both samples, the chi-square quantile
    x (1/n + 1/m). Elsewhere simulated: a model's confidence and entropy histograms put almost every row
    in one bin and a few in the others, where the approximation understates the tail several times over
    (``bench/drift_bench.py``). The shares are the reference's counts plus one
    half per bin (Jeffreys), so a bin the reference never filled can still be hit by chance. Seeded by
    its inputs: the same batch size against the same reference always gets the same bound.
    """
    counts = tuple(int(c) for c in reference_counts)
    if rows <= 0 or reference_rows <= 0:
        return math.inf
    tail = float(level) / figures
    shares = (np.asarray(counts, np.float64) + 0.5) / (sum(counts) + 0.5 * len(counts))
    if shares.min() * min(rows, reference_rows) >= CHI2_MIN_EXPECTED:
        # every bin well filled on both sides: the chi-square quantile is exact enough, and costs nothing
        from scipy.stats import chi2

        return float(chi2.isf(tail, len(counts) - 1)) * (1.0 / rows + 1.0 / reference_rows)
    return _simulated_bound(counts, int(rows), int(reference_rows), tail)


@functools.lru_cache(maxsize=4096)
def _simulated_bound(counts: tuple[int, ...], rows: int, reference_rows: int, tail: float) -> float:
    shares = (np.asarray(counts, np.float64) + 0.5) / (sum(counts) + 0.5 * len(counts))
    rng = np.random.default_rng([rows, reference_rows, *counts])
    a = rng.multinomial(rows, shares, size=NOISE_DRAWS) / rows
    e = rng.multinomial(reference_rows, shares, size=NOISE_DRAWS) / reference_rows
    a, e = np.maximum(a, EPSILON), np.maximum(e, EPSILON)
    values = ((a - e) * np.log(a / e)).sum(axis=1)
    return float(np.quantile(values, 1.0 - tail))


def bounds(reference: dict, rows: int, level: float = FALSE_ALARM) -> dict[str, float]:
    """Each figure's noise bound for a batch of ``rows`` against ``reference`` (a profile).

    The pixel histogram counts pixels, but the pixels of one image move together: its samples are
    images (``rows``, ``reference["rows"]``), which can only overstate its noise."""
    return {name: noise_bound(reference[hist], rows, reference["rows"], level)
            for name, hist in zip(FIGURES, HISTOGRAMS)}


def compare(reference: dict, batch: dict, moderate: float = 0.1, drift: float = 0.25,
            level: float = FALSE_ALARM) -> dict:
    """The drift figures of ``batch`` against ``reference``, and the verdict with the figure that decided it.

    ``{"class_psi", "confidence_psi", "entropy_psi", "pixel_psi", "class_bound", ..., "mean_confidence",
    "reference_mean_confidence", "mean_ink", "reference_mean_ink", "accuracy", "reference_accuracy",
    "verdict", "decided_by", "decisive", "threshold"}``: a figure is moderate above max(``moderate``, its
    noise bound at ``level``), drift above max(``drift``, its bound); the verdict is the worst figure's,
    ``decided_by`` the figure furthest past its moderate threshold (the largest PSI where none is), and
    ``threshold`` that figure's moderate threshold.
    """
    if not batch["rows"]:
        raise ValueError("the batch has no scored rows to compare")
    figures = {name: psi(reference[hist], batch[hist]) for name, hist in zip(FIGURES, HISTOGRAMS)}
    noise = bounds(reference, batch["rows"], level)

    def grade(name: str) -> int:
        value = figures[name]
        return 2 if value > max(drift, noise[name]) else 1 if value >= max(moderate, noise[name]) else 0

    grades = {name: grade(name) for name in FIGURES}
    worst = max(grades.values())
    decided_by = max(FIGURES, key=lambda name: (grades[name], figures[name] / max(moderate, noise[name])))
    mine, theirs = summary(batch), summary(reference)
    return {**figures, **{bound_name(name): noise[name] for name in FIGURES},
            "mean_confidence": mine["mean_confidence"], "reference_mean_confidence": theirs["mean_confidence"],
            "mean_ink": mine["mean_ink"], "reference_mean_ink": theirs["mean_ink"],
            "accuracy": mine["accuracy"], "reference_accuracy": theirs["accuracy"],
            "verdict": VERDICTS[worst], "decided_by": decided_by, "decisive": figures[decided_by],
            "threshold": max(moderate, noise[decided_by])}


def bound_name(figure: str) -> str:
    """``class_psi`` -> ``class_bound``: the name of a figure's noise bound in a run's figures."""
    return figure.replace("_psi", "_bound")


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
