#!/usr/bin/env bash
# The project's wheel on a managed runtime's own packages, the way a cluster library is installed:
#   1. build .venv-PROFILE with the runtime's versions (scripts/setup.sh --profile PROFILE),
#   2. build the wheel and `pip install` it there with its dependencies, as Databricks does,
#   3. fail if pip changed any package the runtime already had (adding new ones is fine),
#   4. run the Databricks notebooks end to end in that environment (dbutils stand-in, local Spark,
#      2 workers: ingest, train, evaluate/promote, batch inference, retrain) on the backend the runtime
#      has: Horovod where the profile says "# setup: horovod" (the wheel then goes in with its
#      [horovod] extra, Petastorm and the ranges Horovod needs), else tf_distribute, followed by the
#      fault drill: a worker killed with SIGKILL after epoch 1, and the same call resuming.
#
#   bash scripts/test-profile.sh [dbr-15.4-ml | dbr-16.4-ml | dbr-17.3-ml]
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
echo "test-profile: pip install the wheel into $venv, as a cluster library"
wheel="$(ls "$wheels"/*.whl)"
if grep -qx "# setup: horovod" "scripts/profiles/$profile.txt"; then
  backend=horovod
  target="$wheel[horovod]"
else
  backend=tf_distribute
  target="$wheel"
fi
quiet_pip install -q "$target"
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
if [ "$backend" = horovod ]; then
  exec "$venv/bin/python" -m pytest -p no:cacheprovider tests/test_entrypoints.py -k notebooks_run "$@"
fi
exec "$venv/bin/python" -m pytest -p no:cacheprovider --train-backend tf_distribute \
  tests/test_entrypoints.py tests/train/test_tf_distribute.py -k "notebooks_run or killed_worker_is_named" "$@"
