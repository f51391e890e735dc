"""The console script as users run it: exit codes, one-line errors, the printed summary."""

import os
import re
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from pipeline.config import PipelineConfig
from pipeline.reports import format_training
from tests.helpers import SAMPLE_DIR

REPO = Path(__file__).resolve().parent.parent

BIN = Path(sys.executable).parent / "mnist-pipeline"


def _run(*args, cwd):
    env = dict(os.environ, SPARK_LOCAL_IP="127.0.0.1")
    return subprocess.run([str(BIN), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


@pytest.mark.slow
def test_ingest_prints_a_summary_and_exits_zero(tmp_path):
    out = tmp_path / "ds"
    result = _run("ingest", "spark.master=local[2]", f"ingest.train={SAMPLE_DIR}/train-*",
                  f"ingest.test={SAMPLE_DIR}/t10k-*", f"data.root={out}", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "train     7,200" in result.stdout and "test      2,000" in result.stdout
    assert re.search(r"ingest: parsed 10,000 rows from 4 files in [\d.]+ s", result.stderr)
    assert (out / "manifest.json").is_file()


@pytest.mark.slow
def test_bad_input_exits_non_zero_with_one_line_error(tmp_path):
    bad = tmp_path / "train-images-idx3-ubyte"
    bad.write_bytes(b"\x00\x00\x08\x01" + b"\x00" * 12)
    (tmp_path / "train-labels-idx1-ubyte").write_bytes(b"\x00\x00\x08\x01\x00\x00\x00\x00")
    result = _run("ingest", "spark.master=local[2]", f"ingest.train={tmp_path}/train-*",
                  f"ingest.test={SAMPLE_DIR}/t10k-*", f"data.root={tmp_path / 'ds'}", cwd=tmp_path)
    assert result.returncode == 1
    assert f"{bad}: magic number 0x00000801, expected 0x00000803" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "ds").exists()


def test_config_error_exits_non_zero(tmp_path):
    result = _run("config", "ingest.shards=3", cwd=tmp_path)
    assert result.returncode == 1
    assert "unknown config key 'ingest.shards'" in result.stderr


def test_config_prints_the_effective_yaml(tmp_path):
    result = _run("config", "ingest.seed=5", cwd=tmp_path)
    assert result.returncode == 0
    assert "seed: 5" in result.stdout


@pytest.mark.slow
def test_main_command_in_a_fresh_clone_is_quiet_and_leaves_the_clone_clean(tmp_path):
    """The README's main command, as a newcomer runs it: in a fresh clone, whose code it runs. Its
    console holds the pipeline's lines and report only; every output lands in ignored folders."""
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", str(REPO), str(clone)], check=True)
    env = dict(os.environ, SPARK_LOCAL_IP="127.0.0.1", PYTHONPATH=str(clone))
    result = subprocess.run([sys.executable, "-m", "pipeline.cli", "run", "train.epochs=1"], cwd=clone, env=env,
                            capture_output=True, text=True, timeout=600)
    console = result.stdout + result.stderr
    assert result.returncode == 0, console[-3000:]
    assert "train     7,200" in result.stdout
    assert "model mnist-cnn version 1: test accuracy 0." in result.stdout
    assert "mlflow ui --backend-store-uri sqlite:///data/mlflow/mlflow.db" in result.stdout
    assert re.search(r"\n  fit: (balanced|under-fitting|over-fitting): ", result.stdout)
    assert "evaluate: version 1 promoted to @champion" in result.stdout and "infer: 2,000 inputs" in result.stdout
    assert "epoch 1/1: loss" in result.stderr
    for noise in ("Traceback", "E0000", "ERROR", "WARN"):
        assert noise not in console, f"{noise!r} on the console:\n{console[-3000:]}"
    assert "cuda" not in console.lower()
    (log_line,) = [line for line in result.stderr.splitlines() if line.startswith("logs: ")]
    log_file = Path(log_line.removeprefix("logs: "))
    assert log_file.parent == clone / "data" / "logs" and log_file.is_file()
    assert "pipeline.ingest.build: ingest:" in log_file.read_text()  # the full log has everything
    status = subprocess.run(["git", "status", "--porcelain", "--untracked-files=all"], cwd=clone,
                            capture_output=True, text=True, check=True).stdout
    assert status == "", f"the run left the clone dirty:\n{status}"


def test_the_run_is_shown_where_it_lives():
    cfg = PipelineConfig()
    result = SimpleNamespace(model_name="m", model_version="3", test_accuracy=0.99, epochs=[{}], run_id="abc",
                             experiment_id="7")
    assert "mlflow ui --backend-store-uri sqlite:///data/mlflow/mlflow.db" in format_training(result, cfg)
    cfg.mlflow.tracking_uri = "http://127.0.0.1:5000/"
    shown = format_training(result, cfg)
    assert "the run: http://127.0.0.1:5000/#/experiments/7/runs/abc" in shown and "mlflow ui" not in shown


@pytest.mark.slow
def test_retrain_exits_zero_when_it_keeps_the_champion_and_non_zero_on_failure(tmp_path):
    common = ["spark.master=local[2]", "train.epochs=1", "spark.progress_interval_s=0",
              f"ingest.train={SAMPLE_DIR}/train-*", f"ingest.test={SAMPLE_DIR}/t10k-*"]
    kept = _run("retrain", *common, "promote.min_accuracy=0.999", cwd=tmp_path)
    assert kept.returncode == 0, kept.stderr[-3000:]
    assert "evaluate: version 1 not promoted; the champion stays @champion: test accuracy" in kept.stdout
    assert "below the floor 0.9990" in kept.stdout
    assert "infer: skipped, no version holds @champion yet" in kept.stdout

    failed = _run("retrain", *common[:-2], f"ingest.train={tmp_path}/missing-*", f"ingest.test={SAMPLE_DIR}/t10k-*",
                  cwd=tmp_path)
    assert failed.returncode == 1
    assert "error: no input files match ingest.train=" in failed.stderr
    # the failed run left the earlier dataset and registry as they were
    assert (tmp_path / "data" / "datasets" / "mnist" / "manifest.json").is_file()
