"""The Databricks side: notebooks run top to bottom (with a stand-in for dbutils.widgets, the one part of
Databricks that cannot exist here), and the Asset Bundle points at notebooks that exist."""

import ast
import re
from pathlib import Path

import yaml

from pipeline.cli import _parser
from tests.helpers import SAMPLE_DIR

REPO = Path(__file__).resolve().parent.parent
NOTEBOOKS = REPO / "notebooks"


class Widgets:
    """Stands in for ``dbutils.widgets``: text() declares a widget with its default, get() reads it."""

    def __init__(self, values: dict[str, str]):
        self._values = dict(values)
        self.declared: dict[str, str] = {}

    def text(self, name, default, label=None):
        self.declared[name] = default
        self._values.setdefault(name, default)

    def get(self, name):
        if name not in self.declared:
            raise ValueError(f"widget {name!r} was not declared")  # as Databricks does: InputWidgetNotDefined
        return self._values[name]


class DBUtils:
    def __init__(self, values):
        self.widgets = Widgets(values)


def run_notebook(path: Path, spark, widgets: dict[str, str], capsys) -> str:
    """Executes a Databricks source-format notebook cell by cell, as the workspace would."""
    source = path.read_text()
    assert source.startswith("# Databricks notebook source\n")
    namespace = {"spark": spark, "dbutils": DBUtils(widgets), "display": print}
    for cell in source.split("# COMMAND ----------"):
        code = "\n".join(line for line in cell.splitlines() if not line.startswith("# MAGIC"))
        exec(compile(code, str(path), "exec"), namespace)  # noqa: S102
    return capsys.readouterr().out


def test_notebooks_run_top_to_bottom_on_the_sample(spark, tmp_path, capsys, monkeypatch, train_backend):
    monkeypatch.chdir(tmp_path)  # nothing may lean on files of the checkout's working folder
    common = {
        "conf": "",
        "data.root": str(tmp_path / "dataset"),
        "overrides": f"mlflow.tracking_uri=sqlite:///{tmp_path}/mlflow.db mlflow.artifact_location={tmp_path}/artifacts "
                     f"train.checkpoint_dir={tmp_path}/checkpoints spark.progress_interval_s=0 "
                     f"infer.output={tmp_path}/predictions train.backend={train_backend} "
                     f"monitor.path={tmp_path}/monitoring",
    }
    out = run_notebook(NOTEBOOKS / "ingest.py", spark, {
        **common, "ingest.train": f"{SAMPLE_DIR}/train-*", "ingest.test": f"{SAMPLE_DIR}/t10k-*"}, capsys)
    assert "train     7,200" in out
    out = run_notebook(NOTEBOOKS / "train.py", spark, {**common, "train.num_proc": "2", "train.epochs": "1"}, capsys)
    assert re.search(r"model mnist-cnn version 1: test accuracy 0\.\d+ after 1 epochs", out)
    out = run_notebook(NOTEBOOKS / "evaluate.py", spark, common, capsys)
    assert "evaluate: version 1 promoted to @champion: first model" in out
    out = run_notebook(NOTEBOOKS / "batch_infer.py", spark, common, capsys)
    assert "infer: 2,000 inputs: 2,000 scored, 0 rejected" in out
    assert "monitoring: mnist-cnn version 1 scored 2,000 rows (0 rejects)" in out and "verdict stable: " in out
    assert "**" not in out  # the console gets plain text (the MLflow run's description gets Markdown)
    assert (tmp_path / "predictions" / "summary.json").is_file()
    # incremental scoring of a folder new images arrive in: the files that came since the last run
    from PIL import Image

    from tests.helpers import read_split

    incoming = tmp_path / "incoming"
    incoming.mkdir()
    for i, row in enumerate(read_split(tmp_path / "dataset", "val")[:3]):
        Image.frombytes("L", (28, 28), row[1]).save(incoming / f"digit-{i}.png")
    stream = {**common, "infer.mode": "incremental", "infer.input_format": "images", "infer.input": str(incoming),
              "overrides": common["overrides"].replace(f"infer.output={tmp_path}/predictions",
                                                       f"infer.output={tmp_path}/scored")}
    out = run_notebook(NOTEBOOKS / "batch_infer.py", spark, stream, capsys)
    assert "infer (incremental): 1 new micro-batch(es)" in out and "3 scored, 0 rejected" in out
    out = run_notebook(NOTEBOOKS / "batch_infer.py", spark, stream, capsys)
    assert "no new files since the last run" in out
    out = run_notebook(NOTEBOOKS / "monitor.py", spark, common, capsys)
    assert "monitored inference runs under" in out and "last 2 of 2" in out
    out = run_notebook(NOTEBOOKS / "retrain.py", spark, {**common, "retrain.when": "drift"}, capsys)
    # the three images were scored and measured, not judged: only the 2,000-row run counts
    assert "retrain: skipped (retrain.when=drift): 0 of the last 1 judged runs of champion version 1" in out
    out = run_notebook(NOTEBOOKS / "retrain.py", spark, {**common, "train.epochs": "1",
                                                         "ingest.train": f"{SAMPLE_DIR}/train-*",
                                                         "ingest.test": f"{SAMPLE_DIR}/t10k-*"}, capsys)
    assert "model mnist-cnn version 2" in out and "evaluate: version 2" in out and "infer: 2,000 inputs: 2,000 scored" in out


def test_every_notebook_is_thin_and_declares_what_it_reads():
    for path in sorted(NOTEBOOKS.glob("*.py")):
        source = path.read_text()
        code = "\n".join(line for line in source.splitlines() if not line.startswith("# MAGIC"))
        tree = ast.parse(code)
        calls = [n for n in ast.walk(tree) if isinstance(n, ast.Call) and getattr(n.func, "id", None) == "run_stage"]
        assert len(calls) == 1, f"{path.name} should make exactly one run_stage call"
        assert not [n for n in tree.body if isinstance(n, (ast.FunctionDef, ast.ClassDef))], f"logic in {path.name}"
        declared = set(re.findall(r'dbutils\.widgets\.text\("([^"]+)"', source))
        listed = set(re.findall(r'"([a-z_]+\.[a-z_]+)"', source.split("config_from_widgets(dbutils,")[1]))
        assert listed <= declared, f"{path.name} reads widgets it does not declare: {listed - declared}"
        assert {"conf", "overrides"} <= declared


def test_bundle_tasks_point_at_notebooks_and_jobs_that_exist():
    bundle = yaml.safe_load((REPO / "databricks.yml").read_text())
    jobs = bundle["resources"]["jobs"]
    assert {"retrain", "batch_inference"} <= set(jobs)
    assert jobs["retrain"]["schedule"]["quartz_cron_expression"]
    assert {"dev", "prod"} <= set(bundle["targets"])
    for name, job in jobs.items():
        keys = {t["task_key"] for t in job["tasks"]}
        for task in job["tasks"]:
            for dep in task.get("depends_on", []):
                assert dep["task_key"] in keys, f"{name}.{task['task_key']} depends on a missing task"
            if "notebook_task" in task:
                notebook = REPO / task["notebook_task"]["notebook_path"]
                assert notebook.is_file(), notebook
                conf = task["notebook_task"].get("base_parameters", {}).get("conf")
                if conf:
                    assert (notebook.parent / conf).resolve().is_file(), conf
                declared = set(re.findall(r'dbutils\.widgets\.text\("([^"]+)"', notebook.read_text()))
                assert set(task["notebook_task"].get("base_parameters", {})) <= declared
            if "spark_python_task" in task:
                assert (REPO / task["spark_python_task"]["python_file"]).is_file()
    # the weekly retrain is the retrain stage in one task: it holds data.root's retrain lock throughout
    (weekly,) = jobs["retrain"]["tasks"]
    assert weekly["notebook_task"]["notebook_path"] == "./notebooks/retrain.py"
    assert "infer.skip_without_champion=true" in weekly["notebook_task"]["base_parameters"]["overrides"]
    # the two schedules never fire together: weekly at minute 0 of 03:00, hourly at minute 30
    assert jobs["retrain"]["schedule"]["quartz_cron_expression"].split()[:2] == ["0", "0"]
    assert jobs["score_and_retrain"]["schedule"]["quartz_cron_expression"].split()[:2] == ["0", "30"]
    scoring = {t["task_key"]: t for t in jobs["score_and_retrain"]["tasks"]}
    assert list(scoring) == ["score", "retrain_on_drift"]
    assert scoring["score"]["notebook_task"]["base_parameters"]["infer.mode"] == "incremental"
    assert scoring["retrain_on_drift"]["depends_on"] == [{"task_key": "score"}]
    assert scoring["retrain_on_drift"]["notebook_task"]["base_parameters"]["retrain.when"] == "drift"


def test_bundle_runtime_and_backend_are_variables_with_a_17_3_target():
    bundle = yaml.safe_load((REPO / "databricks.yml").read_text())
    variables = bundle["variables"]
    assert variables["spark_version"]["default"] == "15.4.x-cpu-ml-scala2.12"  # the last runtime with Horovod
    assert variables["backend"]["default"] == "auto"
    (retrain_task,) = bundle["resources"]["jobs"]["retrain"]["tasks"]
    assert "train.backend=${var.backend}" in retrain_task["notebook_task"]["base_parameters"]["overrides"]
    lts = bundle["targets"]["dev-17.3"]
    assert lts["variables"] == {"spark_version": "17.3.x-cpu-ml-scala2.13", "backend": "tf_distribute"}
    from pipeline.config import load_config

    assert load_config(None, ["train.backend=tf_distribute"]).train.backend == "tf_distribute"


def test_bundle_has_what_the_bundle_cli_requires():
    """What `databricks bundle validate/deploy` checks and cannot be run here: targets with a mode, a
    production target with its own root path and a run_as identity, a dedicated ML job cluster and the
    wheel on every task."""
    bundle = yaml.safe_load((REPO / "databricks.yml").read_text())
    assert bundle["bundle"]["name"] and bundle["artifacts"]["pipeline_wheel"]["type"] == "whl"
    targets = bundle["targets"]
    assert targets["dev"]["mode"] == "development" and targets["dev"].get("default") is True
    prod = targets["prod"]
    assert prod["mode"] == "production"
    assert prod["workspace"]["root_path"].startswith("/Workspace/") and "${bundle.target}" in prod["workspace"]["root_path"]
    assert set(prod["run_as"]) == {"service_principal_name"}
    assert prod["run_as"]["service_principal_name"] == "${var.service_principal}"
    assert "service_principal" in bundle["variables"]
    for name, job in bundle["resources"]["jobs"].items():
        clusters = {c["job_cluster_key"]: c["new_cluster"] for c in job["job_clusters"]}
        for cluster in clusters.values():
            assert cluster["spark_version"] == "${var.spark_version}"
            assert cluster["data_security_mode"] == "SINGLE_USER"  # ML runtimes need a dedicated cluster
        for task in job["tasks"]:
            assert task["job_cluster_key"] in clusters, f"{name}.{task['task_key']}"
            assert task["libraries"] == [{"whl": "./dist/*.whl"}], f"{name}.{task['task_key']} lacks the wheel"


def test_every_spark_submit_job_calls_a_real_command():
    commands = set(_parser()._subparsers._group_actions[0].choices)
    for path in sorted((REPO / "jobs").glob("*.py")):
        match = re.search(r'main\(\["([a-z]+)"', path.read_text())
        assert match and match.group(1) in commands, path.name
