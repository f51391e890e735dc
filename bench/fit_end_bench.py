"""The end of ``model.fit`` on the training reader: seconds from the last epoch's end to ``fit``
returning, with tf.data's autotuner on and off (the reader's setting: off).

    .venv/bin/python bench/fit_end_bench.py [--root data/datasets/mnist] [--pairs 3] [--steps 100]

Two processes fit at once, as two ranks share this machine's cores, each on its half of the train
split through ``pipeline.io.reader.open_split`` with the training settings (repeating, shuffled row
groups, shuffle buffer); an epoch of ``--steps`` batches ends in the middle of a pass over the shard.
Each mode runs ``--pairs`` pairs, the modes interleaved; figures go to bench/results/fit_end.json.
The dataset is one ingest wrote (``mnist-pipeline ingest`` writes the sample's to data/datasets/mnist).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def child(root: str, shard: int, steps: int, autotune: bool) -> dict:
    import tensorflow as tf
    import tf_keras as keras

    from pipeline.config import PipelineConfig
    from pipeline.io import reader
    from pipeline.train.model import build_model

    if autotune:  # what the reader did before: tf.data's autotuner running beside the pipeline
        def options():
            o = tf.data.Options()
            o.autotune.enabled = True
            return o
        reader._fixed_pipeline_options = options
    tf.config.threading.set_intra_op_parallelism_threads(1)
    cfg = PipelineConfig()
    model = build_model(cfg.model)
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    marks = {}

    class Mark(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            marks["last_epoch_end"] = time.perf_counter()

    batch = cfg.train.batch_size
    with reader.open_split(root, "train", batch, cur_shard=shard, shard_count=2, num_epochs=None,
                           shuffle_row_groups=True, shuffle_buffer=cfg.train.shuffle_buffer, seed=shard) as train, \
         reader.open_split(root, "val", batch, cur_shard=shard, shard_count=2, num_epochs=None) as val:
        start = time.perf_counter()
        model.fit(train, steps_per_epoch=steps, epochs=2, validation_data=val, validation_steps=10,
                  callbacks=[Mark()], verbose=0)
        returned = time.perf_counter()
    return {"fit_seconds": returned - start, "end_seconds": returned - marks["last_epoch_end"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", default="data/datasets/mnist")
    parser.add_argument("--pairs", type=int, default=3)
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--child", help=argparse.SUPPRESS)  # shard,autotune
    args = parser.parse_args()
    if args.child:
        shard, autotune = args.child.split(",")
        print(json.dumps(child(args.root, int(shard), args.steps, autotune == "1")))
        return
    if not (Path(args.root) / "train").is_dir():
        sys.exit(f"no dataset at {args.root}; write one first: .venv/bin/mnist-pipeline ingest")
    from common import write_results

    runs = {"autotune on": [], "autotune off (the reader)": []}
    for _ in range(args.pairs):
        for mode, flag in (("autotune on", "1"), ("autotune off (the reader)", "0")):
            procs = [subprocess.Popen([sys.executable, __file__, "--root", args.root, "--steps", str(args.steps),
                                       "--child", f"{shard},{flag}"], stdout=subprocess.PIPE,
                                      stderr=subprocess.DEVNULL, text=True) for shard in (0, 1)]
            for p in procs:
                out, _ = p.communicate()
                if p.returncode:
                    sys.exit(f"a fit process failed with exit code {p.returncode}")
                runs[mode].append(json.loads(out.strip().splitlines()[-1]))
            print(f"{mode:28} end of fit {[round(r['end_seconds'], 1) for r in runs[mode][-2:]]} s", flush=True)
    print(f"\n{'mode':28} {'end of fit s, max':>18} {'runs over 1 s':>14} {'fit s, median':>14}")
    figures = {"date": time.strftime("%Y-%m-%d"), "steps_per_epoch": args.steps, "pairs": args.pairs, "modes": {}}
    for mode, rs in runs.items():
        ends = sorted(r["end_seconds"] for r in rs)
        fits = sorted(r["fit_seconds"] for r in rs)
        slow = sum(e > 1.0 for e in ends)
        print(f"{mode:28} {ends[-1]:18.1f} {f'{slow} of {len(ends)}':>14} {fits[len(fits) // 2]:14.1f}")
        figures["modes"][mode] = {"end_seconds": [round(e, 2) for e in ends], "fit_seconds": [round(f, 2) for f in fits]}
    print(f"results: {write_results('fit_end', figures)}")


if __name__ == "__main__":
    main()
