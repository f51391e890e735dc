"""The drift verdict's false alarms and detection by batch size: the rule monitoring applies
(``assess.drift.compare``, noise bounds at ``monitor.false_alarm``) beside the fixed PSI thresholds it
replaced (largest PSI >= 0.1 moderate, > 0.25 drift, whatever the batch's size), on the same batches.

    .venv/bin/python bench/drift_bench.py [--batches 4000] [--shift-batches 1000] [--sizes 100 200 500 2000]

A model of the default CNN is trained in this process on 6,000 of the embedded sample's train digits
(3 epochs). False alarms: the reference is a sample too, so both sides are drawn afresh: the 4,000
digits the model never saw (the sample's 2,000 test digits and the 2,000 train digits left out) are
split at random into a reference of 2,000 and a pool of 2,000, ``--rounds`` times, and each round's
batches are drawn from its pool without replacement; every verdict other than ``stable`` is a false
alarm. Detection: the reference is the model's prediction of the sample's test digits, as training
registers it, and each named shift transforms the 2,000 held-out train digits (batches drawn with
replacement):

- ``inverted``: 255 - pixel (white digits on black become black on white);
- ``rotated``: every digit turned 90 degrees;
- ``half_fashion``: half the batch replaced by Fashion-MNIST test images (another image source;
  ``apt-get install dataset-fashion-mnist``);
- ``blank``: every image all zeros;
- ``constant``: every image one grey (128);
- ``quarter_blank``: a quarter of the batch blank, the rest clean digits (a partial failure upstream);
- subtler ones, to show where detection ends: ``tenth_rotated`` (a tenth of the digits turned) and
  ``dimmer`` (every pixel x 0.6: a scanner or a normalisation changed).

A batch's profile is the sum of its rows' per-row bins, computed once per image by ``drift.profile``'s
own functions, so thousands of batches cost seconds. Prints a table and writes bench/results/drift.json.
"""

from __future__ import annotations

import argparse
import gzip
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import FASHION_MNIST, write_results  # noqa: E402

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

import numpy as np  # noqa: E402

from pipeline.assess import drift  # noqa: E402
from pipeline.sources import formats  # noqa: E402

SAMPLE = Path(__file__).resolve().parent.parent / "data" / "mnist-sample"
FIXED = (0.1, 0.25)  # the thresholds the sized rule replaced


def load_sample():
    out = {}
    for split, prefix in (("train", "train"), ("test", "t10k")):
        out[split] = formats.parse_idx_pair(
            (SAMPLE / f"{prefix}-images-idx3-ubyte.gz").read_bytes(), f"{prefix}-images",
            (SAMPLE / f"{prefix}-labels-idx1-ubyte.gz").read_bytes(), f"{prefix}-labels")
    return out


def train_model(x, y, epochs: int):
    import tf_keras as keras

    from pipeline.config import ModelConfig
    from pipeline.train.model import build_model, make_loss

    keras.utils.set_random_seed(7)
    model = build_model(ModelConfig())
    model.compile(keras.optimizers.Adam(0.002), make_loss(ModelConfig()), ["accuracy"])
    model.fit(x.reshape(-1, 28, 28, 1).astype(np.float32), y, batch_size=128, epochs=epochs, verbose=0)
    return model


class Rows:
    """Per-row contributions to a profile: one-hot bins and pixel counts, so a batch's profile is a sum."""

    def __init__(self, model, images: np.ndarray, labels: np.ndarray | None):
        probs = model.predict(images.reshape(-1, 28, 28, 1).astype(np.float32), batch_size=512, verbose=0)
        self.n = len(images)
        self.classes = np.eye(drift.CLASSES, dtype=np.int64)[probs.argmax(axis=1)]
        self.confidence = np.eye(drift.CONFIDENCE_BINS, dtype=np.int64)[drift.confidence_bins(probs.max(axis=1))]
        self.entropy = np.eye(drift.ENTROPY_BINS, dtype=np.int64)[drift.entropy_bins(probs)]
        self.pixels = np.stack([drift.pixel_totals(i) for i in images])
        self.top = probs.max(axis=1)
        self.ink = drift.ink(images)
        self.correct = (probs.argmax(axis=1) == labels).astype(np.int64) if labels is not None else None

    @staticmethod
    def concat(a: Rows, b: Rows) -> Rows:
        out = Rows.__new__(Rows)
        out.n = a.n + b.n
        for key in ("classes", "confidence", "entropy", "pixels", "top", "ink", "correct"):
            setattr(out, key, np.concatenate([getattr(a, key), getattr(b, key)]))
        return out

    def profile(self, index: np.ndarray) -> dict:
        p = drift.empty_profile()
        p["rows"] = len(index)
        for key in ("classes", "confidence", "entropy", "pixels"):
            p[key] = getattr(self, key)[index].sum(axis=0).tolist()
        p["confidence_sum"] = float(self.top[index].sum())
        p["ink_sum"] = float(self.ink[index].sum())
        return p


def fashion_images(n: int) -> np.ndarray | None:
    path = FASHION_MNIST / "t10k-images-idx3-ubyte.gz"
    if not path.is_file():
        return None
    return formats.parse_idx_images(gzip.decompress(path.read_bytes()), "fashion")[:n]


def verdicts(reference: dict, make_batch, sizes, batches: int, rng, level: float) -> dict:
    """Per size: share of batches judged moderate-or-worse and drift by the sized rule and by the fixed one."""
    out = {}
    for n in sizes:
        sized_alarm = sized_drift = fixed_alarm = fixed_drift = 0
        for _ in range(batches):
            batch = make_batch(n, rng)
            judged = drift.compare(reference, batch, *FIXED, level=level)
            sized_alarm += judged["verdict"] != "stable"
            sized_drift += judged["verdict"] == "drift"
            worst = max(judged[f] for f in drift.FIGURES)
            fixed_alarm += worst >= FIXED[0]
            fixed_drift += worst > FIXED[1]
        out[n] = {"sized_not_stable": sized_alarm / batches, "sized_drift": sized_drift / batches,
                  "fixed_not_stable": fixed_alarm / batches, "fixed_drift": fixed_drift / batches,
                  "bounds": drift.bounds(reference, n, level)}
    return out


def clean_verdicts(unseen: Rows, sizes, batches: int, rounds: int, rng, level: float) -> dict:
    """``verdicts`` of batches of digits nobody saw, the reference drawn afresh each round: half of
    ``unseen`` is the reference, batches come from the other half without replacement."""
    half = unseen.n // 2
    per_round = max(1, batches // rounds)
    totals: dict[int, dict] = {}
    for _ in range(rounds):
        order = rng.permutation(unseen.n)
        reference, pool = unseen.profile(order[:half]), order[half:]
        result = verdicts(reference, lambda n, r, pool=pool: unseen.profile(r.permutation(pool)[:n]), sizes, per_round, rng,
                          level)
        for n, figures in result.items():
            into = totals.setdefault(n, {k: 0.0 for k in figures if k != "bounds"} | {"bounds": []})
            for k, v in figures.items():
                if k == "bounds":
                    into[k].append(v)
                else:
                    into[k] += v / rounds
    for into in totals.values():  # the bounds vary with each round's reference: their median
        into["bounds"] = {f: float(np.median([b[f] for b in into["bounds"]])) for f in drift.FIGURES}
    return totals


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batches", type=int, default=4000, help="batches per size for the false alarms")
    parser.add_argument("--rounds", type=int, default=40, help="reference/pool splits the clean batches are spread over")
    parser.add_argument("--shift-batches", type=int, default=1000, help="batches per size and shift")
    parser.add_argument("--sizes", type=int, nargs="+", default=[100, 200, 500, 2000])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--level", type=float, default=drift.FALSE_ALARM, help="monitor.false_alarm")
    parser.add_argument("--results", default="drift")
    args = parser.parse_args()

    start = time.monotonic()
    data = load_sample()
    (xtr, ytr), (xte, yte) = data["train"], data["test"]
    order = np.random.default_rng(0).permutation(len(ytr))
    fit, held = order[:6000], order[6000:]
    print(f"training the default CNN on {len(fit):,} sample digits ({args.epochs} epochs) ...", file=sys.stderr)
    model = train_model(xtr[fit], ytr[fit], args.epochs)
    test_probs = model.predict(xte.reshape(-1, 28, 28, 1).astype(np.float32), batch_size=512, verbose=0)
    reference = drift.profile(xte, test_probs, yte)
    clean_x, clean_y = xtr[held], ytr[held]
    clean = Rows(model, clean_x, clean_y)
    print(f"model ready ({time.monotonic() - start:.0f} s): test accuracy {reference['correct'] / reference['rows']:.4f}, "
          f"held-out accuracy {clean.correct.mean():.4f}", file=sys.stderr)

    def resample(rows: Rows):
        return lambda n, rng: rows.profile(rng.integers(0, rows.n, n))

    shifted = {
        "inverted": Rows(model, 255 - clean_x, None),
        "rotated": Rows(model, np.ascontiguousarray(np.rot90(clean_x.reshape(-1, 28, 28), axes=(1, 2))).reshape(
            len(clean_x), -1), None),
        "dimmer": Rows(model, (clean_x * 0.6).round().astype(np.uint8), None),
        "blank": Rows(model, np.zeros_like(clean_x[:50]), None),
        "constant": Rows(model, np.full_like(clean_x[:50], 128), None),
    }
    makers = {name: resample(rows) for name, rows in shifted.items()}
    fashion = fashion_images(len(clean_x))
    if fashion is not None:
        other = Rows(model, fashion, None)

        def half_fashion(n, rng):
            a, b = clean.profile(rng.integers(0, clean.n, n - n // 2)), other.profile(rng.integers(0, other.n, n // 2))
            return _add(a, b)

        makers["half_fashion"] = half_fashion
    else:
        print(f"no Fashion-MNIST under {FASHION_MNIST}: half_fashion left out (apt-get install dataset-fashion-mnist)",
              file=sys.stderr)
    blank = shifted["blank"]

    def quarter_blank(n, rng):
        return _add(clean.profile(rng.integers(0, clean.n, n - n // 4)), blank.profile(rng.integers(0, blank.n, n // 4)))

    makers["quarter_blank"] = quarter_blank
    rotated = shifted["rotated"]

    def tenth_rotated(n, rng):
        return _add(clean.profile(rng.integers(0, clean.n, n - n // 10)),
                    rotated.profile(rng.integers(0, rotated.n, n // 10)))

    makers["tenth_rotated"] = tenth_rotated

    rng = np.random.default_rng(42)
    unseen = Rows.concat(Rows(model, xte, yte), clean)
    table = {"clean": clean_verdicts(unseen, args.sizes, args.batches, args.rounds, rng, args.level)}
    for name, make in makers.items():
        table[name] = verdicts(reference, make, args.sizes, args.shift_batches, rng, args.level)
    seconds = time.monotonic() - start

    print(f"\nverdicts by batch size (references of {reference['rows']:,} digits; false_alarm {args.level:g}; "
          f"{args.batches:,} clean batches over {args.rounds} reference/pool splits and {args.shift_batches:,} per "
          "shift at each size)")
    print(f"{'batches':<14} {'rows':>5}  {'sized: not stable':>17} {'drift':>7}   {'fixed 0.1/0.25: not stable':>26} "
          f"{'drift':>7}   noise bounds: class conf entropy pixels")
    for name, by_size in table.items():
        for n, r in by_size.items():
            print(f"{name:<14} {n:>5}  {r['sized_not_stable']:>17.2%} {r['sized_drift']:>7.2%}   "
                  f"{r['fixed_not_stable']:>26.2%} {r['fixed_drift']:>7.2%}   "
                  + " ".join(f"{r['bounds'][f]:.3f}" for f in drift.FIGURES))
    print("clean: a verdict other than stable is a false alarm (target <= 1% at monitor.min_rows = 200); "
          "each shift: detection (target >= 99% at 200)")
    write_results(args.results, {
        "what": "share of batches judged moderate-or-worse (not stable) and drift, by the sized rule and by the fixed "
                "PSI thresholds, on clean held-out digits and on named shifts",
        "command": "python bench/drift_bench.py " + " ".join(sys.argv[1:]),
        "seconds": round(seconds, 1), "false_alarm": args.level,
        "reference_rows": reference["rows"], "batches": args.batches, "rounds": args.rounds,
        "shift_batches": args.shift_batches,
        "held_out_accuracy": float(clean.correct.mean()), "table": table})


def _add(a: dict, b: dict) -> dict:
    out = drift.empty_profile()
    for key, value in a.items():
        out[key] = [x + y for x, y in zip(value, b[key])] if isinstance(value, list) else value + b[key]
    return out


if __name__ == "__main__":
    main()
