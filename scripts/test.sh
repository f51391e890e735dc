#!/usr/bin/env bash
# Sets up .venv if needed, then runs the whole test suite (real Spark local[2], real Parquet,
# traffic on 127.0.0.1 only). Extra arguments go to pytest, e.g. scripts/test.sh -k ingest
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$root/scripts/setup.sh"
cd "$root"
export SPARK_LOCAL_IP=127.0.0.1
exec .venv/bin/python -m pytest "$@"
