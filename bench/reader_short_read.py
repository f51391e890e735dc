"""How often a one-pass Petastorm read of a shard comes back short, opened the way the pipeline opens it.

Petastorm 0.13.1's reader pools decide "no more data" with two separate reads of shared state: first
that every ventilated item was processed, then that the ventilator has finished. The ventilator thread
can ventilate the shard's row groups and finish between those two reads; the consumer then sees
"done" with items still queued, and the pass ends early, at its start an empty shard
(``ThreadPool.get_results``, ``DummyPool.get_results``). A reader that repeats forever
(``num_epochs=None``) never finishes ventilating, so that decision is never taken: the pipeline reads
one pass as exactly the shard's row count (from the Parquet footers) of a repeating reader.

For each way of reading, this opens every shard of a split ``--opens`` times and counts rows and
distinct ids against the footers. Prints the short or wrong passes per way and writes JSON.

    .venv/bin/python bench/reader_short_read.py --root data/datasets/mnist --opens 200
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def petastorm_one_pass(root: str, split: str, shard: int, shards: int, pool: str) -> list[bytes]:
    """The call the pipeline made before: ``num_epochs=1``, ``workers_count=2``."""
    from petastorm import make_batch_reader

    from pipeline.io.dataset import split_path
    from pipeline.io.fs import to_url

    ids = []
    with make_batch_reader(to_url(split_path(root, split)), schema_fields=["id"], cur_shard=shard,
                           shard_count=shards, num_epochs=1, workers_count=2, reader_pool_type=pool) as reader:
        for batch in reader:
            ids.extend(batch.id.tolist())
    return ids


def pipeline_one_pass(root: str, split: str, shard: int, shards: int) -> list[bytes]:
    from pipeline.io.reader import open_split

    ids = []
    with open_split(root, split, 256, cur_shard=shard, shard_count=shards, num_epochs=1, with_ids=True) as ds:
        for _, _, batch_ids in ds:
            ids.extend(batch_ids.numpy().tolist())
    return ids


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", default="data/datasets/mnist")
    parser.add_argument("--split", default="val")
    parser.add_argument("--shards", type=int, default=2)
    parser.add_argument("--opens", type=int, default=100, help="opens of each shard, per way of reading")
    parser.add_argument("--results", default="bench/results/reader_short_read.json")
    args = parser.parse_args()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    from pipeline.io.reader import _quiet_petastorm, shard_rows

    _quiet_petastorm()
    expected = {s: shard_rows(args.root, args.split, s, args.shards) for s in range(args.shards)}
    ways = {
        "petastorm num_epochs=1, thread pool (the earlier call)":
            lambda s: petastorm_one_pass(args.root, args.split, s, args.shards, "thread"),
        "petastorm num_epochs=1, dummy pool":
            lambda s: petastorm_one_pass(args.root, args.split, s, args.shards, "dummy"),
        "pipeline open_split one pass (repeating reader, footer row count)":
            lambda s: pipeline_one_pass(args.root, args.split, s, args.shards),
    }
    out = {"machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
           "split": args.split, "shards": args.shards, "opens_per_shard": args.opens, "rows_per_shard": expected,
           "ways": {}}
    for name, read in ways.items():
        short = wrong = empty = 0
        started = time.perf_counter()
        for _ in range(args.opens):
            for s in range(args.shards):
                ids = read(s)
                if len(ids) < expected[s]:
                    short += 1
                    empty += not ids
                elif len(ids) != expected[s] or len(set(ids)) != len(ids):
                    wrong += 1
        seconds = time.perf_counter() - started
        passes = args.opens * args.shards
        out["ways"][name] = {"passes": passes, "short": short, "empty": empty, "wrong": wrong,
                             "seconds": round(seconds, 1)}
        print(f"{name}: {passes} passes, {short} short ({empty} empty), {wrong} with wrong or repeated rows, "
              f"{seconds:.1f} s", flush=True)
    Path(args.results).parent.mkdir(parents=True, exist_ok=True)
    Path(args.results).write_text(json.dumps(out, indent=2) + "\n")
    print(f"wrote {args.results}")


if __name__ == "__main__":
    main()
