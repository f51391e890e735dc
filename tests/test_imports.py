"""The package's layers (.importlinter): errors, config, io and sources import no stage; stages import
only the layers below them. A change that imports upwards fails here, naming the import and its line."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_imports_flow_one_way():
    lint = Path(sys.executable).parent / "lint-imports"
    done = subprocess.run([str(lint), "--config", str(ROOT / ".importlinter"), "--no-cache"], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    assert "0 broken" in done.stdout


def test_the_package_imports_and_picks_tf_distribute_without_horovod_or_petastorm():
    """A runtime after Databricks 15.4 has neither: every module imports, `auto` resolves to
    tf_distribute, and a stage asking for Horovod is told which package is missing and what to use."""
    script = r'''
import importlib, pkgutil, sys
sys.modules["horovod"] = None  # an import of either now fails as if it were not installed
sys.modules["petastorm"] = None
import pipeline
names = [m.name for m in pkgutil.walk_packages(pipeline.__path__, "pipeline.")]
for name in names:
    importlib.import_module(name)
from pipeline.errors import PreflightError
from pipeline.io import versions
from pipeline.train.backends import resolve_backend
assert resolve_backend("auto") == "tf_distribute"
try:
    resolve_backend("horovod")
except PreflightError as exc:
    print("HOROVOD:", exc)
real = versions._installed
versions._installed = lambda names: {**real(names), "petastorm": None}
versions.check("tf_distribute")
try:
    versions.check("horovod")
except PreflightError as exc:
    print("PETASTORM:", " ".join(str(exc).split()))
print("MODULES:", len(names))
'''
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-4000:]
    out = done.stdout
    assert int(out.split("MODULES:")[1]) > 50
    assert "HOROVOD: train.backend=horovod but horovod is not installed" in out
    assert "or set train.backend=tf_distribute" in out.split("HOROVOD:")[1].split("\n")[0]
    assert "petastorm is not installed" in out and "pip install mnist-pipeline[horovod]" in out
