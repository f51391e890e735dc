"""The rule every pixel input is held to, by inference (a breaking row is a reject) and by ingest.extra
(a breaking row stops the ingest): values are finite integers 0-255, never clipped or truncated; with
``scale`` "0-1", finite numbers in 0-1."""

from __future__ import annotations

NOT_FINITE = "pixel values not finite (NaN or infinity)"
OUT_OF_RANGE = "pixel values out of range; expected 0-255"
OUT_OF_UNIT_RANGE = "pixel values out of range; expected 0-1 (infer.pixel_scale=0-1)"
NOT_INTEGER = "pixel values not integers; expected integers 0-255 (infer.pixel_scale=0-1 scales values in 0-1)"

# Pillow modes whose pixels can hold values above 255 or fractions: their values must fit 0-255 as they
# are, or the image breaks the rule (convert("L") would clip them).
WIDE_MODES = ("I", "I;16", "I;16B", "I;16L", "I;16N", "F")


def pixel_problem(values, scale: str = "0-255") -> tuple[str, str] | None:
    """``(reject_reason, note)`` when a float64 array of pixel values breaks the rule, else None.

    With ``scale`` "0-255" every value must be a finite integer 0-255; with "0-1" a finite number in 0-1.
    """
    import numpy as np

    finite = np.isfinite(values)
    if not finite.all():
        bad = values[~finite]
        return NOT_FINITE, f"{bad.size} values such as {bad[0]:g}"
    if not values.size:
        return None
    low, high = values.min(), values.max()
    if scale == "0-1":
        return (OUT_OF_UNIT_RANGE, f"values {low:g}..{high:g}") if low < 0 or high > 1 else None
    if low < 0 or high > 255:
        return OUT_OF_RANGE, f"values {low:g}..{high:g}"
    fractional = values != np.floor(values)
    if fractional.any():
        return NOT_INTEGER, f"{int(fractional.sum())} values such as {values[fractional][0]:g}"
    return None
