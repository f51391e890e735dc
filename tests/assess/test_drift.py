"""The monitor's arithmetic: bins, profiles, PSI and the verdict, against direct computations."""

import math

import numpy as np
import pytest

from pipeline.assess import drift


def test_psi_is_zero_for_the_same_shares_and_matches_the_formula():
    assert drift.psi([10, 20, 70], [1, 2, 7]) == pytest.approx(0.0, abs=1e-12)
    e, a = np.array([0.5, 0.3, 0.2]), np.array([0.3, 0.3, 0.4])
    expected = sum((ai - ei) * math.log(ai / ei) for ai, ei in zip(a, e))
    assert drift.psi(e * 100, a * 1000) == pytest.approx(expected)
    assert drift.psi(e, a) == pytest.approx(drift.psi(a, e))  # symmetric


def test_psi_of_an_empty_bin_is_finite_and_grows_with_the_bin_that_fills():
    small = drift.psi([100, 0], [99, 1])
    large = drift.psi([100, 0], [50, 50])
    assert 0 < small < large < 10
    with pytest.raises(ValueError, match="bins"):
        drift.psi([1, 2], [1, 2, 3])
    with pytest.raises(ValueError, match="no rows"):
        drift.psi([0, 0], [1, 1])


def test_bins_at_their_edges():
    assert drift.confidence_bins(np.array([0.1, 0.1899, 0.1901, 0.5, 0.99, 1.0])).tolist() == [0, 0, 1, 4, 9, 9]
    uniform = np.full((1, 10), 0.1)
    certain = np.eye(10)[:1]
    assert drift.entropy_bins(np.vstack([certain, uniform])).tolist() == [0, 9]
    assert drift.entropies(uniform)[0] == pytest.approx(math.log(10))


def test_pixel_totals_and_ink_match_a_loop(rng):
    pixels = rng.integers(0, 256, size=(7, 28, 28, 1), dtype=np.uint8)
    expected = [int(np.sum((pixels >= 16 * b) & (pixels < 16 * (b + 1)))) for b in range(16)]
    assert drift.pixel_totals(pixels).tolist() == expected
    assert drift.ink(pixels) == pytest.approx(pixels.reshape(7, -1).mean(axis=1) / 255)
    # pixels are counted two at a time where their number is even: an odd number, and a strided view
    odd = pixels[:3, :3, :3]
    assert drift.pixel_totals(odd).tolist() == np.bincount(odd.ravel(), minlength=256).reshape(16, 16).sum(1).tolist()
    strided = pixels[:, ::2]
    assert drift.pixel_totals(strided).tolist() == \
        np.bincount(strided.ravel(), minlength=256).reshape(16, 16).sum(1).tolist()


def test_profile_counts_every_row_once(rng):
    pixels = rng.integers(0, 256, size=(50, 28, 28), dtype=np.uint8)
    probs = rng.dirichlet(np.ones(10), size=50)
    labels = rng.integers(0, 10, size=50)
    labels[:5] = -1  # unknown
    p = drift.profile(pixels, probs, labels)
    assert p["rows"] == 50 and sum(p["classes"]) == sum(p["confidence"]) == sum(p["entropy"]) == 50
    assert sum(p["pixels"]) == 50 * 784
    assert p["labelled"] == 45 and p["correct"] == int((labels[5:] == probs[5:].argmax(axis=1)).sum())
    assert drift.summary(p)["mean_confidence"] == pytest.approx(probs.max(axis=1).mean())
    assert drift.check_profile(p, "x") is p


def _reference(rows: int) -> dict:
    reference = drift.empty_profile()
    reference.update(rows=rows, classes=[rows // 10] * 10, confidence=[0] * 8 + [rows // 10, rows - rows // 10],
                     entropy=[rows - rows // 10, rows // 10] + [0] * 8, pixels=[rows * 49] * 16,
                     confidence_sum=0.95 * rows, ink_sum=0.13 * rows)
    return reference


def test_verdict_follows_the_thresholds_and_names_the_deciding_figure():
    reference = _reference(100_000)  # big batches: the noise bounds are far below the PSI convention's lines
    same = dict(reference)
    assert drift.compare(reference, same)["verdict"] == "stable"
    shifted = dict(reference, classes=[5_000] * 5 + [15_000] * 5)  # 5 x 0.05 ln 2 + 5 x 0.05 ln 1.5 = 0.25 ln 3
    figures = drift.compare(reference, shifted)
    assert figures["class_psi"] == pytest.approx(0.25 * math.log(3))
    assert (figures["verdict"], figures["decided_by"]) == ("drift", "class_psi")
    assert figures["class_bound"] < 0.01 and figures["threshold"] == 0.1
    assert drift.compare(reference, shifted, moderate=0.1, drift=0.6)["verdict"] == "moderate"
    assert drift.compare(reference, shifted, moderate=0.6, drift=0.7)["verdict"] == "stable"
    assert figures["mean_confidence"] == pytest.approx(0.95) and figures["accuracy"] is None


def test_a_small_batch_needs_a_change_above_its_noise_bound():
    reference = _reference(2_000)
    small = dict(_reference(100), classes=[5] * 5 + [15] * 5)  # the same PSI (0.275) as above, at 100 rows
    figures = drift.compare(reference, small)
    assert figures["class_psi"] == pytest.approx(0.25 * math.log(3), rel=1e-3)
    # 100 rows against 2,000: two samples of one distribution reach PSI 0.3 over 10 bins by chance
    assert figures["class_bound"] > figures["class_psi"] and figures["verdict"] == "stable"
    assert figures["threshold"] == figures["class_bound"]
    large = dict(_reference(2_000), classes=[100] * 5 + [300] * 5)  # the same shares at 2,000 rows: real
    assert drift.compare(reference, large)["verdict"] == "drift"


def test_noise_bound_shrinks_with_the_batch_is_reproducible_and_holds_its_level():
    counts = [1725, 104, 79, 60, 22, 6, 3, 1, 0, 0]  # a trained model's entropy histogram: one bin holds most rows
    b = [drift.noise_bound(counts, n, 2000) for n in (100, 200, 500, 2000)]
    assert b == sorted(b, reverse=True) and b[0] > 0.3 > 0.03 > b[-1]
    assert drift.noise_bound(counts, 200, 2000) == b[1]  # seeded: the same batch size, the same bound
    # its level, checked against samples drawn apart from it: a pair of samples of 200 and 2,000 rows from the
    # reference's shares exceeds the bound at level 0.04 (0.01 per figure) with probability 0.01; 20,000 pairs
    # put the observed share within 0.01 +/- 0.0035 (5 standard errors: a false failure about once in 3.5 million)
    rng = np.random.default_rng(123)
    shares = (np.asarray(counts) + 0.5) / (sum(counts) + 5)
    bound = drift.noise_bound(counts, 200, 2000, level=0.04)
    over = np.mean([drift.psi(rng.multinomial(2000, shares), rng.multinomial(200, shares)) > bound
                    for _ in range(20_000)])
    assert abs(over - 0.01) < 0.0035
    with pytest.raises(ValueError, match="no scored rows"):
        drift.compare(_reference(2_000), drift.empty_profile())


def test_a_profile_of_the_wrong_shape_is_refused_by_name():
    bad = drift.empty_profile()
    bad["pixels"] = [0] * 8
    with pytest.raises(ValueError, match=r"tag x: 'pixels' should be a list of 16 counts"):
        drift.check_profile(bad, "tag x")
