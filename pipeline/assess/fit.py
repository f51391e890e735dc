"""Over- and under-fitting, read off the per-epoch records the way the course teaches it: the gap
between train and validation accuracy, and which way the two losses move."""

from __future__ import annotations


def accuracy_gap(record: dict) -> float:
    """Train accuracy minus validation accuracy for one epoch (positive: the model fits train better)."""
    return float(record["accuracy"]) - float(record["val_accuracy"])


def diagnose(epochs: list[dict], rising_epochs: int = 2, gap_limit: float = 0.03,
             underfit_accuracy: float = 0.9) -> str:
    """One line on how the run fits.

    over-fitted: validation loss rose for ``rising_epochs`` epochs in a row while train loss fell, or the
    last accuracy gap exceeds ``gap_limit``; under-fitted: both losses still falling at the end (the model
    is still learning), or train accuracy below ``underfit_accuracy``; else balanced.
    """
    if not epochs:
        return "no epochs recorded"
    last = epochs[-1]
    gap = accuracy_gap(last)
    tail = epochs[-(rising_epochs + 1):]
    val_rising = len(tail) == rising_epochs + 1 and all(
        b["val_loss"] > a["val_loss"] for a, b in zip(tail, tail[1:]))
    train_falling = len(tail) >= 2 and all(b["loss"] < a["loss"] for a, b in zip(tail, tail[1:]))
    if val_rising and train_falling:
        return (f"over-fitting: validation loss rose for the last {rising_epochs} epochs while train loss fell "
                f"(accuracy gap {gap:+.3f}); more dropout or augmentation, fewer epochs or early stopping help")
    if gap > gap_limit:
        return (f"over-fitting: train accuracy {last['accuracy']:.3f} is {gap:.3f} above validation "
                f"{last['val_accuracy']:.3f}; more dropout or augmentation, or fewer epochs help")
    still_learning = len(epochs) >= 2 and epochs[-1]["loss"] < epochs[-2]["loss"] \
        and epochs[-1]["val_loss"] < epochs[-2]["val_loss"]
    low = last["accuracy"] < underfit_accuracy
    if still_learning or low:  # the sentence names the reason that fired, or both
        reasons = []
        if low:
            reasons.append(f"train accuracy {last['accuracy']:.3f} is below {underfit_accuracy:.2f}")
        if still_learning:
            reasons.append("both losses were still falling at the last epoch")
        return (f"under-fitting: {' and '.join(reasons)} (validation {last['val_accuracy']:.3f}, gap {gap:+.3f}); "
                "more epochs, a higher learning rate or a wider model may help")
    return (f"balanced: train accuracy {last['accuracy']:.3f}, validation {last['val_accuracy']:.3f} "
            f"(gap {gap:+.3f}); validation loss has stopped falling without rising")
