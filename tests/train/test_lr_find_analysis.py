"""Reading a learning-rate range test: smoothing, the steepest point, minimum/10, divergence."""

import math

import numpy as np
import pytest

from pipeline.train.lr_find import analyse, smooth


def _sweep(steps=100, low=1e-6, high=1.0):
    rates = list(np.geomspace(low, high, steps))
    # flat at tiny rates, steepest fall around 1e-3, lowest near 3e-2, then blows up
    x = np.log10(rates)
    losses = 2.3 - 1.8 / (1 + np.exp(-(x + 3) * 3)) + np.where(x > -1.5, (x + 1.5) ** 2 * 8, 0)
    return rates, list(losses)


def test_smoothing_is_bias_corrected():
    assert smooth([2.0, 2.0, 2.0], 0.9) == pytest.approx([2.0, 2.0, 2.0])
    out = smooth([1.0, 3.0], 0.5)
    assert out == pytest.approx([1.0, (0.5 * 0.5 + 0.5 * 3.0) / (1 - 0.5 ** 2)])


def test_steepest_and_minimum_are_read_off_the_curve():
    rates, losses = _sweep()
    sweep = analyse(rates, losses, None, beta=0.0, method="steepest", ranks=1, scale_by_ranks=True)
    assert 5e-4 < sweep.steepest < 2e-3
    assert 1e-2 < sweep.minimum < 5e-2
    assert sweep.suggested == sweep.steepest == sweep.suggested_setting
    other = analyse(rates, losses, None, beta=0.0, method="min_div_10", ranks=1, scale_by_ranks=True)
    assert other.suggested == pytest.approx(other.minimum / 10)


def test_the_suggested_setting_is_per_rank_when_the_rate_scales_with_ranks():
    rates, losses = _sweep()
    scaled = analyse(rates, losses, None, beta=0.0, method="steepest", ranks=4, scale_by_ranks=True)
    assert scaled.suggested_setting == pytest.approx(scaled.suggested / 4)
    plain = analyse(rates, losses, None, beta=0.0, method="steepest", ranks=4, scale_by_ranks=False)
    assert plain.suggested_setting == pytest.approx(plain.suggested)


def test_points_from_the_divergence_on_are_not_used():
    rates, losses = _sweep()
    losses[60:] = [math.inf] * 40  # diverged at step 61: an infinite smoothed loss must not count
    sweep = analyse(rates, losses, 61, beta=0.5, method="min_div_10", ranks=1, scale_by_ranks=False)
    assert sweep.minimum <= rates[59]
    assert math.isfinite(sweep.suggested)


def test_a_loss_that_never_falls_falls_back_to_minimum_over_ten_and_says_so():
    rates = list(np.geomspace(1e-2, 10, 50))
    losses = list(np.linspace(2.3, 9.0, 50))
    sweep = analyse(rates, losses, None, beta=0.0, method="steepest", ranks=1, scale_by_ranks=False)
    assert sweep.method == "min_div_10" and sweep.steepest is None
    assert sweep.suggested == pytest.approx(rates[0] / 10)
    assert "min_learning_rate" in sweep.note
