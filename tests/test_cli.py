"""The console script as users run it: exit codes, one-line errors, the printed summary."""

import os
import subprocess
import sys
from pathlib import Path

from tests.helpers import SAMPLE_DIR

BIN = Path(sys.executable).parent / "mnist-pipeline"


def _run(*args, cwd):
    env = dict(os.environ, SPARK_LOCAL_IP="127.0.0.1")
    return subprocess.run([str(BIN), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def test_ingest_prints_a_summary_and_exits_zero(tmp_path):
    out = tmp_path / "ds"
    result = _run("ingest", "spark.master=local[2]", f"ingest.train={SAMPLE_DIR}/train-*",
                  f"ingest.test={SAMPLE_DIR}/t10k-*", f"data.root={out}", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "train     7,200" in result.stdout and "test      2,000" in result.stdout
    assert "ingest parse" in result.stderr or "parsed 10,000 rows" in result.stderr
    assert (out / "manifest.json").is_file()


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


def test_run_ingests_trains_and_prints_the_registered_model(tmp_path):
    """The README's main command, on the sample, in a fresh working folder (SQLite store there)."""
    result = _run("run", "spark.master=local[2]", "train.epochs=1", "spark.progress_interval_s=0",
                  f"ingest.train={SAMPLE_DIR}/train-*", f"ingest.test={SAMPLE_DIR}/t10k-*", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "train     7,200" in result.stdout
    assert "model mnist-cnn version 1: test accuracy 0." in result.stdout
    assert "mlflow ui --backend-store-uri sqlite:///data/mlflow/mlflow.db" in result.stdout
    assert "epoch 1/1: loss" in result.stderr
    assert (tmp_path / "data" / "mlflow" / "mlflow.db").is_file()
    assert (tmp_path / "data" / "datasets" / "mnist" / "manifest.json").is_file()


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
