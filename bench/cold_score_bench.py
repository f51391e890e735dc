"""The floor under a small batch inference: one fresh Python process that imports TensorFlow and MLflow,
loads the registered model and predicts a dataset split in memory. Compare it with the main command's
inference step (docs/benchmarks.md, "The main command's inference step").

    bash scripts/run.sh                                  # first: a dataset and a champion to score with
    .venv/bin/python bench/cold_score_bench.py [--runs 3] [--root data/datasets/mnist] [--split test]
        [--tracking-uri sqlite:///data/mlflow/mlflow.db] [--model models:/mnist-cnn@champion]

Each run is a new process. It reports its phases and the wall time of the whole process, start to
exit. The figures go to bench/results/cold_score.json.
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


def child(root: Path, split: str, tracking_uri: str, model_uri: str) -> dict:
    """What one cold process does; the phases in seconds."""
    os.environ["TF_USE_LEGACY_KERAS"] = "1"
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    phases = {}
    start = time.perf_counter()
    import tensorflow  # noqa: F401

    phases["import_tensorflow"] = time.perf_counter() - start
    start = time.perf_counter()
    import mlflow
    import mlflow.pyfunc

    phases["import_mlflow"] = time.perf_counter() - start
    start = time.perf_counter()
    mlflow.set_tracking_uri(tracking_uri)
    model = mlflow.pyfunc.load_model(model_uri)
    phases["load_model"] = time.perf_counter() - start
    from common import load_split

    images, _ = load_split(root, split)
    start = time.perf_counter()
    model.predict(images)
    phases["predict"] = time.perf_counter() - start
    return {"rows": len(images), "phases": {k: round(v, 3) for k, v in phases.items()}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--root", type=Path, default=Path("data/datasets/mnist"))
    parser.add_argument("--split", default="test")
    parser.add_argument("--tracking-uri", default="sqlite:///data/mlflow/mlflow.db")
    parser.add_argument("--model", default="models:/mnist-cnn@champion")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.root, args.split, args.tracking_uri, args.model)))
        return
    if not (args.root / args.split).is_dir():
        sys.exit(f"no split {args.split} under {args.root}: run `bash scripts/run.sh` first (or pass --root)")
    from common import write_results

    runs = []
    for i in range(args.runs):
        start = time.perf_counter()
        out = subprocess.run([sys.executable, __file__, "--child", "--root", str(args.root), "--split", args.split,
                              "--tracking-uri", args.tracking_uri, "--model", args.model],
                             capture_output=True, text=True)
        wall = time.perf_counter() - start
        if out.returncode:
            sys.exit(f"run {i + 1} failed with exit code {out.returncode}:\n{out.stderr[-2000:]}")
        result = json.loads(out.stdout.strip().splitlines()[-1])
        result["wall_seconds"] = round(wall, 2)
        runs.append(result)
        print(f"run {i + 1}: {result['rows']:,} rows, wall {wall:.2f} s, phases {result['phases']}")
    walls = sorted(r["wall_seconds"] for r in runs)
    print(f"cold process, {args.split} split of {args.root}: wall {walls[0]:.2f}-{walls[-1]:.2f} s over {len(runs)} runs")
    print(f"results: {write_results('cold_score', {'model': args.model, 'split': args.split, 'runs': runs})}")


if __name__ == "__main__":
    main()
