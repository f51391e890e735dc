#!/usr/bin/env bash
# The project's wheel on a managed runtime's own packages, the way a cluster library is installed:
#   1. build .venv-PROFILE with the runtime's versions (scripts/setup.sh --profile PROFILE),
#   2. build the wheel and `pip install` it there with its dependencies, as Databricks does,
#   3. fail if pip changed any package the runtime already had (adding new ones is fine),
#   4. run the Databricks notebooks end to end in that environment (dbutils stand-in, local Spark,
#      2 Horovod ranks: ingest, train, evaluate/promote, batch inference, retrain).
#
#   bash scripts/test-profile.sh [dbr-15.4-ml]
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
profile="${1:-dbr-15.4-ml}"
[ $# -gt 0 ] && shift  # the rest goes to pytest
venv="$root/.venv-$profile"
cd "$root"
bash scripts/setup.sh --profile "$profile"
pip=("$venv/bin/python" -m pip --disable-pip-version-check)
quiet_pip() { "${pip[@]}" "$@" 2> >(grep -v "is ignored: it is neither a file nor a directory" >&2); }

wheels="$root/build/profile-wheel"
rm -rf "$wheels"
quiet_pip wheel -q --no-deps -w "$wheels" "$root"
"${pip[@]}" uninstall -q -y mnist-pipeline >/dev/null 2>&1 || true
before="$("${pip[@]}" freeze --exclude-editable | grep -v '^mnist-pipeline' | sort)"
echo "test-profile: pip install $(basename "$wheels"/*.whl) into $venv, as a cluster library"
quiet_pip install -q "$wheels"/*.whl
after="$("${pip[@]}" freeze --exclude-editable | sort)"
changed="$(comm -23 <(echo "$before") <(echo "$after"))"
if [ -n "$changed" ]; then
  echo "test-profile: installing the wheel changed packages the runtime ships (runtime version -> now):" >&2
  while read -r line; do
    name="${line%%==*}"
    now="$(echo "$after" | grep -i "^${name}==" || echo "removed")"
    echo "  $line -> $now" >&2
  done <<< "$changed"
  exit 1
fi
added="$(comm -13 <(echo "$before") <(echo "$after") | tr '\n' ' ')"
echo "test-profile: no runtime package changed; added: ${added:-nothing}"

quiet_pip install -q "pytest>=8,<9" "pytest-timeout>=2.3"
export SPARK_LOCAL_IP=127.0.0.1
exec "$venv/bin/python" -m pytest -p no:cacheprovider tests/test_entrypoints.py -k notebooks_run "$@"
