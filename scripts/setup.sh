#!/usr/bin/env bash
# Creates .venv inside the repository and installs the pinned stack (requirements*.txt, every indirect
# package held to constraints.txt), Horovod built from source. Re-running it when nothing changed
# takes seconds.
#
#   bash scripts/setup.sh                          # .venv: the local stack
#   bash scripts/setup.sh --profile dbr-15.4-ml    # .venv-dbr-15.4-ml: a managed runtime's own packages
#                                                  # (scripts/profiles/dbr-15.4-ml.txt), no project wheel yet
# A profile's "# setup: horovod" line says the runtime ships Horovod (built here against the profile's
# TensorFlow); "# setup: tf_distribute" says it does not, and none is built.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
python="${PYTHON:-python3}"
profile=""
if [ "${1:-}" = "--profile" ]; then
  profile="${2:?usage: setup.sh --profile NAME (a file scripts/profiles/NAME.txt)}"
fi

fail() { echo "setup: $*" >&2; exit 1; }

# Plain-sentence checks for what pip cannot install.
command -v "$python" >/dev/null 2>&1 || fail "Python 3.11 is needed but '$python' was not found; install python3.11 or set PYTHON=/path/to/python3.11."
pyver="$("$python" -c 'import sys; print("%d.%d" % sys.version_info[:2])')"
[ "$pyver" = "3.11" ] || fail "Python 3.11 is needed (TensorFlow 2.18 + Horovod 0.28.1 were verified on it) but '$python' is $pyver; set PYTHON=/path/to/python3.11."
command -v java >/dev/null 2>&1 || fail "Java 17 is needed by Spark but 'java' is not on PATH; install it (Debian: apt-get install openjdk-17-jre-headless)."
command -v g++ >/dev/null 2>&1 || fail "A C++ compiler is needed to build Horovod but 'g++' is not on PATH; install it (Debian: apt-get install g++)."
command -v cmake >/dev/null 2>&1 || fail "cmake is needed to build Horovod but it is not on PATH; install it (Debian: apt-get install cmake)."

if [ -n "$profile" ]; then
  venv="$root/.venv-$profile"
  inputs=("$root/scripts/profiles/$profile.txt")
  [ -f "${inputs[0]}" ] || fail "no profile '$profile': scripts/profiles/$profile.txt does not exist."
else
  venv="$root/.venv"
  inputs=("$root/requirements.txt" "$root/requirements-dev.txt" "$root/constraints.txt" "$root/setup.py")
fi
stamp="$venv/.setup-stamp"
want="$(cat "${inputs[@]}" "$0" | sha256sum | cut -d' ' -f1)"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && [ -x "$venv/bin/python" ]; then
  echo "setup: $(basename "$venv") is up to date"
  exit 0
fi

[ -x "$venv/bin/python" ] || "$python" -m venv "$venv"
pip=("$venv/bin/python" -m pip --disable-pip-version-check)
# This machine's pip config names local indexes that may be empty; pip warns once per package.
quiet_pip() { "${pip[@]}" "$@" 2> >(grep -v "is ignored: it is neither a file nor a directory" >&2); }
echo "setup: installing into $venv (first time: several minutes)"
if [ -n "$profile" ]; then
  quiet_pip install -q -r "${inputs[0]}"
else
  quiet_pip install -q -r "$root/requirements.txt" -r "$root/requirements-dev.txt" -c "$root/constraints.txt"
fi

with_horovod=1
if [ -n "$profile" ] && ! grep -qx "# setup: horovod" "${inputs[0]}"; then
  with_horovod=0
fi
if [ "$with_horovod" = 1 ] && ! "$venv/bin/python" -c "import horovod.tensorflow" >/dev/null 2>&1; then
  echo "setup: building Horovod 0.28.1 against this environment's TensorFlow with Gloo (a few minutes)"
  # --no-cache-dir: a wheel cached from a build against another TensorFlow would not load here.
  cache=()
  [ -n "$profile" ] && cache=(--no-cache-dir)
  HOROVOD_WITH_TENSORFLOW=1 HOROVOD_WITH_GLOO=1 HOROVOD_WITHOUT_MPI=1 \
  HOROVOD_WITHOUT_PYTORCH=1 HOROVOD_WITHOUT_MXNET=1 \
  MAKEFLAGS="-j$(nproc)" \
    quiet_pip install -q "${cache[@]}" --no-build-isolation horovod==0.28.1
fi
if [ "$with_horovod" = 1 ]; then
  "$venv/bin/python" -c "import horovod.tensorflow as hvd; assert hvd.gloo_built()" 2>/dev/null \
    || fail "Horovod was installed but without TensorFlow or Gloo support; remove $venv and run this again."
fi
if [ -z "$profile" ]; then
  quiet_pip install -q --no-deps --no-build-isolation -e "$root"
fi
"${pip[@]}" check >/dev/null || { "${pip[@]}" check; fail "pip check found conflicting packages (above)."; }
echo "$want" > "$stamp"
echo "setup: done"
