#!/usr/bin/env bash
# The main job on the embedded default: sets up .venv if needed, then runs the pipeline on the
# MNIST sample shipped in data/mnist-sample: ingest, then distributed training tracked in MLflow
# (SQLite store under data/mlflow). No server, no account, no internet.
# Extra arguments are config overrides, e.g. scripts/run.sh ingest.seed=7
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$root/scripts/setup.sh"
cd "$root"
exec .venv/bin/mnist-pipeline run "$@"
