"""retrain.when=drift's decision: the window of judged runs, its edges, what does not count, the start
after a promotion or a retrain, and new labelled data; with a real MLflow store (SQLite) and no Spark."""

import datetime as dt
import sys

import mlflow
import pytest
from mlflow import MlflowClient

from pipeline.config import PipelineConfig
from pipeline.monitor import decision, history

T0 = dt.datetime(2026, 12, 1, 3, 0, tzinfo=dt.UTC)


def _cfg(tmp_path) -> PipelineConfig:
    cfg = PipelineConfig()
    cfg.monitor.path = str(tmp_path / "monitoring")
    cfg.mlflow.tracking_uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    cfg.mlflow.artifact_location = str(tmp_path / "artifacts")
    return cfg


def _run(cfg, minute: int, verdict: str, version: str = "1", purpose: str = "score") -> dict:
    when = T0 + dt.timedelta(minutes=minute)
    row = {"monitor_run": f"{history.time_prefix(when)}-{minute:06d}", "timestamp": when, "model_name": "mnist-cnn",
           "model_version": version, "source": "/in", "input_format": "parquet", "purpose": purpose, "rows": 500,
           "rejects": 0, "verdict": verdict, "decided_by": "class_psi" if verdict in ("moderate", "drift") else None,
           "decisive": 0.5 if verdict == "drift" else 0.01}
    history.write_run(cfg, row)
    return row


def _after(minute: int) -> str:  # the time prefix of that minute: runs from then on count
    return history.time_prefix(T0 + dt.timedelta(minutes=minute))


def test_the_window_holds_the_last_judged_runs_of_the_champion(tmp_path):
    cfg = _cfg(tmp_path)  # drift_runs 2 of window_runs 5
    _run(cfg, 1, "drift")  # the 6th judged run from the end: outside the window
    _run(cfg, 2, "drift")
    for m in (3, 4, 5):
        _run(cfg, m, "stable")
    _run(cfg, 6, "moderate")
    go, why = decision.evidence(cfg, "1", _after(0))
    assert not go and "1 of the last 5 judged runs of champion version 1" in why and "drift class_psi=0.50" in why
    _run(cfg, 7, "drift")  # now 2 of the last 5 (2, 3, 4, 5, 6, 7 -> 3..7 holds 7 only; 2 left the window)
    assert not decision.evidence(cfg, "1", _after(0))[0]
    _run(cfg, 8, "drift")
    go, why = decision.evidence(cfg, "1", _after(0))
    assert go and "2 of the last 5 judged runs" in why


def test_runs_that_are_not_judged_new_data_of_the_champion_take_no_place_in_the_window(tmp_path):
    cfg = _cfg(tmp_path)
    _run(cfg, 1, "drift")
    _run(cfg, 2, "drift")
    # between them and now: other versions, unjudged verdicts, a retrain's check of its own test split
    _run(cfg, 3, "drift", version="2")
    _run(cfg, 4, "stable", version="2")
    for m, verdict in ((5, "too_few_rows"), (6, "rejects"), (7, "no_reference")):
        _run(cfg, m, verdict)
    _run(cfg, 8, "stable", purpose="retrain")
    _run(cfg, 9, "stable")
    _run(cfg, 10, "stable")
    _run(cfg, 11, "stable")
    go, why = decision.evidence(cfg, "1", _after(0))  # window: 1, 2, 9, 10, 11
    assert go and "2 of the last 5 judged runs" in why and why.count("stable") == 3
    assert not decision.evidence(cfg, "2", _after(0))[0]  # version 2: 1 drift of 2 runs


def test_only_runs_after_the_start_count_and_older_files_are_not_read(tmp_path):
    cfg = _cfg(tmp_path)
    _run(cfg, 1, "drift")
    _run(cfg, 2, "drift")
    _run(cfg, 3, "stable")
    assert decision.evidence(cfg, "1", _after(0))[0]
    go, why = decision.evidence(cfg, "1", _after(2))  # the start is at minute 2: minutes 2 and 3 count
    assert not go and "1 of the last 2 judged runs" in why and "since 2026-12-01 03:02:00 UTC" in why
    # a damaged file older than the start is never opened; one inside the window is named
    old = tmp_path / "monitoring" / "runs" / f"{_after(1)}-000001.parquet"
    old.write_bytes(b"not parquet")
    assert not decision.evidence(cfg, "1", _after(2))[0]
    with pytest.raises(Exception, match="cannot be read"):
        decision.evidence(cfg, "1", _after(0))


def test_the_start_is_the_later_of_the_promotion_and_the_last_retrain_that_ended(tmp_path):
    cfg = _cfg(tmp_path)

    class Version:
        version, creation_timestamp, tags = "1", int(T0.timestamp() * 1000), {}

    assert decision.since(cfg, Version) == _after(0)
    Version.tags = {"promotion.at": (T0 + dt.timedelta(minutes=5)).isoformat()}
    assert decision.since(cfg, Version) == _after(5)
    record = history.start_retrain(cfg, "1", "2 of the last 5 were drift")
    assert decision.since(cfg, Version) == _after(5)  # started, not ended: the evidence is not consumed yet
    history.end_retrain(cfg, record, "failed", error="boom")
    assert decision.since(cfg, Version) == _after(5)  # a failed retrain consumes nothing either
    record = history.start_retrain(cfg, "1", "again")
    history.end_retrain(cfg, record, "kept", model_version="2")
    assert decision.since(cfg, Version) == history.time_prefix(dt.datetime.fromisoformat(record["timestamp"]))


def _champion(cfg, inputs: list[dict]) -> str:
    from pipeline.io.tracking import setup_experiment

    experiment = setup_experiment(cfg.mlflow)
    client = MlflowClient()
    with mlflow.start_run(experiment_id=experiment) as run:
        mlflow.log_dict({"inputs": inputs}, "dataset/manifest.json")
        mlflow.log_text("placeholder", "model/MLmodel")
    client.create_registered_model("mnist-cnn")
    version = client.create_model_version("mnist-cnn", f"{run.info.artifact_uri}/model", run.info.run_id).version
    client.set_registered_model_alias("mnist-cnn", "champion", version)
    client.set_model_version_tag("mnist-cnn", version, "promotion.at", T0.isoformat())
    return str(version)


def test_drift_without_new_labelled_data_skips_saying_where_it_goes_and_new_data_retrains(tmp_path):
    cfg = _cfg(tmp_path)
    labelled = tmp_path / "labelled"
    labelled.mkdir()
    (labelled / "a.parquet").write_bytes(b"x" * 10)
    cfg.ingest.extra = [{"format": "parquet", "path": str(labelled)}]
    version = _champion(cfg, [{"path": f"file:{labelled / 'a.parquet'}", "bytes": 10, "split": "train"}])
    assert decision.drift_decision(cfg).go is False  # no judged run at all
    for m in (1, 2):
        _run(cfg, m, "drift", version=version)
    said = decision.drift_decision(cfg)
    assert not said.go and said.champion_version == version
    assert "no labelled data newer than champion version 1's training data" in said.why and str(labelled) in said.why
    (labelled / "b.parquet").write_bytes(b"y" * 12)  # a labelled file the champion was not trained on
    (labelled / "_SUCCESS").write_bytes(b"")  # Spark's marker files are not data
    said = decision.drift_decision(cfg)
    assert said.go and said.new_files == [str(labelled / "b.parquet")] and "1 labelled file(s)" in said.why
    cfg.ingest.extra = []
    assert "ingest.extra is empty" in decision.drift_decision(cfg).why


def test_no_champion_means_train_one(tmp_path):
    cfg = _cfg(tmp_path)
    from pipeline.io.tracking import setup_experiment

    setup_experiment(cfg.mlflow)
    said = decision.drift_decision(cfg)
    assert said.go and "no version holds @champion" in said.why


def test_the_decision_starts_neither_spark_nor_tensorflow(tmp_path):
    import subprocess

    cfg = _cfg(tmp_path)
    code = ("import sys; from pipeline.config import PipelineConfig; from pipeline.monitor.decision import drift_decision;"
            f"c = PipelineConfig(); c.monitor.path = {cfg.monitor.path!r}; c.mlflow.tracking_uri = "
            f"{cfg.mlflow.tracking_uri!r}; c.mlflow.artifact_location = {cfg.mlflow.artifact_location!r};"
            "from pipeline.io.tracking import setup_experiment; setup_experiment(c.mlflow); print(drift_decision(c).go);"
            "import psutil; print([p.name() for p in psutil.Process().children(recursive=True)]);"
            "print(sorted(m for m in ('tensorflow', 'tf_keras', 'horovod') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    # no JVM (MLflow imports pyspark's Python modules, which start nothing) and no TensorFlow
    assert out.stdout.split() == ["True", "[]", "[]"]
