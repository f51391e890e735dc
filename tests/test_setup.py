"""scripts/setup.sh reports a missing system tool in one plain sentence, before installing anything."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

SETUP = Path(__file__).resolve().parent.parent / "scripts" / "setup.sh"


def _path_without(tmp_path: Path, missing: str) -> str:
    """A PATH with every command of the usual bin folders except ``missing``."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for folder in ("/usr/local/bin", "/usr/bin", "/bin"):
        if not os.path.isdir(folder):
            continue
        for name in os.listdir(folder):
            target = bin_dir / name
            if name != missing and not target.exists():
                target.symlink_to(os.path.join(folder, name))
    return str(bin_dir)


@pytest.mark.parametrize("missing, sentence", [
    ("java", "setup: Java 17 is needed by Spark but 'java' is not on PATH; install it"),
    ("g++", "setup: A C++ compiler is needed to build Horovod but 'g++' is not on PATH; install it"),
    ("cmake", "setup: cmake is needed to build Horovod but it is not on PATH; install it"),
])
def test_missing_system_tool_is_one_plain_sentence(tmp_path, missing, sentence):
    env = dict(os.environ, PATH=_path_without(tmp_path, missing), PYTHON=sys.executable)
    result = subprocess.run(["bash", str(SETUP)], env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    assert result.stderr.strip().startswith(sentence)
    assert len(result.stderr.strip().splitlines()) == 1
    assert result.stdout == ""


def test_wrong_python_version_is_named(tmp_path):
    fake = tmp_path / "python3.9"
    fake.write_text("#!/bin/sh\necho 3.9\n")
    fake.chmod(0o755)
    result = subprocess.run(["bash", str(SETUP)], env=dict(os.environ, PYTHON=str(fake)),
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    assert "Python 3.11 is needed" in result.stderr and "is 3.9" in result.stderr
