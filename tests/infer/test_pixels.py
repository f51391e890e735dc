"""The pixel rule of inference, on its own: every value a finite integer 0-255 (or, said on purpose, a
number in 0-1), else a reject with a stable reason; never clipped, truncated or cast into a darker image."""

import numpy as np
import pytest

from pipeline.infer.inputs import (
    NOT_FINITE,
    NOT_INTEGER,
    NOT_NUMBERS,
    OUT_OF_RANGE,
    OUT_OF_UNIT_RANGE,
    WRONG_SIZE,
    pixel_bytes,
)

IMAGE = (np.arange(784) % 256).astype(float)


@pytest.mark.parametrize("values, scale, reason", [
    (IMAGE / 255, "0-255", NOT_INTEGER),  # a 0-1 table scored as 0-255 would be near black
    (np.where(np.arange(784) == 5, np.nan, IMAGE), "0-255", NOT_FINITE),
    (np.where(np.arange(784) == 5, -np.inf, IMAGE), "0-255", NOT_FINITE),
    (IMAGE % 255 + 0.5, "0-255", NOT_INTEGER),
    (IMAGE * 2, "0-255", OUT_OF_RANGE),
    (IMAGE - 1, "0-255", OUT_OF_RANGE),
    (IMAGE, "0-1", OUT_OF_UNIT_RANGE),
    (IMAGE[:700], "0-255", WRONG_SIZE),
    (["dark"] * 784, "0-255", NOT_NUMBERS),
])
def test_values_that_break_the_rule_are_rejects(values, scale, reason):
    image, got, note = pixel_bytes(values, scale)
    assert image is None and got == reason and note


def test_good_values_are_the_image_they_say():
    assert pixel_bytes(IMAGE)[0] == IMAGE.astype(np.uint8).tobytes()
    assert pixel_bytes(IMAGE.astype(int).tolist())[0] == IMAGE.astype(np.uint8).tobytes()
    assert pixel_bytes(IMAGE / 255, "0-1")[0] == IMAGE.astype(np.uint8).tobytes()  # scaled back exactly
