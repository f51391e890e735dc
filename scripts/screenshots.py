"""Opens the MLflow UI in headless Chromium on what the pipeline logged, and checks that it shows.

    .venv/bin/python scripts/screenshots.py --demo        # make the runs first (about 3 minutes), then shoot
    .venv/bin/python scripts/screenshots.py --workdir DIR # shoot an existing store (DIR/data/mlflow/mlflow.db)

``--demo`` runs, in a fresh working folder: the main command (2 epochs), then batch inference on the
test split turned a quarter (drifted input) twice, then ``retrain retrain.when=drift``. Then it starts
``mlflow ui`` on 127.0.0.1 (its own process group, stopped at the end), renders five pages with
Chromium (``apt-get install chromium``; driven by Playwright, ``requirements-dev.txt``) in the UI's
model-training view, saves them as PNG under ``--out``, and checks the rendered page text for what
each page must show: the training run's description and dataset inputs, its per-rank CPU and memory
charts and its system metrics, the monitoring run's verdict, dataset and figures, and the monitoring
experiment's charts of every run's PSI by run index (drift over time). Exit status 1 names anything
missing.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _run(workdir: Path, *args: str) -> None:
    env = dict(os.environ, SPARK_LOCAL_IP="127.0.0.1")
    print("+ mnist-pipeline", " ".join(args), flush=True)
    subprocess.run([str(BIN / "mnist-pipeline"), *args], cwd=workdir, env=env, check=True)


def make_demo(workdir: Path) -> None:
    """The runs the screenshots show: a training, a stable inference, two drifted ones, a retraining."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    sample = [f"ingest.train={REPO}/data/mnist-sample/train-*-ubyte.gz",
              f"ingest.test={REPO}/data/mnist-sample/t10k-*-ubyte.gz"]
    _run(workdir, "run", "train.epochs=2", *sample)
    test = pq.read_table(str(workdir / "data" / "datasets" / "mnist" / "test"))
    images = [np.rot90(np.frombuffer(b, np.uint8).reshape(28, 28)).tobytes() for b in test.column("image").to_pylist()]
    rotated = workdir / "incoming-rotated"
    rotated.mkdir()
    pq.write_table(pa.table({"id": test.column("id"), "image": images, "label": test.column("label")}),
                   str(rotated / "part-0.parquet"))
    for _ in range(2):
        _run(workdir, "infer", "infer.input_format=parquet", f"infer.input={rotated}",
             "infer.output=data/predictions/rotated")
    _run(workdir, "monitor")
    _run(workdir, "retrain", "retrain.when=drift", "train.epochs=2", *sample)


def shoot(browser, url: str, png: Path, search: str | None = None, wait_for: str | None = None) -> str:
    """Renders ``url``, types ``search`` into the page's search box if given, waits for ``wait_for`` text,
    saves a screenshot and returns the page's text."""
    page = browser.new_page(viewport={"width": 1600, "height": 1300})
    try:
        page.goto(url, wait_until="load", timeout=90_000)  # the UI polls: never network-idle
        if wait_for:
            page.get_by_text(wait_for, exact=False).first.wait_for(timeout=60_000)
        assistant = page.get_by_role("button", name="Close", exact=True)  # MLflow 3's assistant panel
        if assistant.count():
            assistant.first.click()
        if search:
            box = page.get_by_placeholder("Search metric charts")
            box.fill(search)
        page.wait_for_timeout(3000)  # charts draw after their data arrives
        page.screenshot(path=str(png))
        return page.inner_text("body")
    finally:
        page.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--demo", action="store_true", help="make the runs first, in a fresh working folder")
    parser.add_argument("--workdir", type=Path, help="the folder holding data/mlflow/mlflow.db")
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "img")
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # a stopped run still stops its mlflow ui
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="mnist-screens-"))
    if args.demo:
        make_demo(workdir)
    store = workdir / "data" / "mlflow" / "mlflow.db"
    if not store.is_file():
        sys.exit(f"no MLflow store at {store}; run with --demo, or point --workdir at a folder with one")

    from mlflow import MlflowClient

    uri = f"sqlite:///{store}"
    client = MlflowClient(uri)
    training = client.get_experiment_by_name("mnist-pipeline")
    monitoring = client.get_experiment_by_name("mnist-pipeline-monitoring")
    train_run = next(r for r in client.search_runs([training.experiment_id], order_by=["attributes.start_time DESC"])
                     if (r.info.run_name or "").startswith("train-") and r.info.status == "FINISHED")
    drift_run = next(r for r in client.search_runs([monitoring.experiment_id],
                                                   order_by=["attributes.start_time DESC"])
                     if r.data.tags.get("verdict") == "drift")

    port = _free_port()
    server = subprocess.Popen([str(BIN / "mlflow"), "ui", "--backend-store-uri", uri, "--host", "127.0.0.1",
                               "--port", str(port)], cwd=workdir, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                urllib.request.urlopen(f"{base}/health", timeout=2).read()
                break
            except OSError:
                if time.monotonic() > deadline:
                    sys.exit("mlflow ui did not answer in 90 s")
                time.sleep(1)
        args.out.mkdir(parents=True, exist_ok=True)
        t, m = training.experiment_id, monitoring.experiment_id
        ml = "workflowType=machine_learning"  # MLflow 3's UI opens in its GenAI view unless told
        run_url = f"{base}/#/experiments/{t}/runs/{train_run.info.run_id}"
        pages = {  # name: (url, search, wait for, must show)
            "training-run.png": (f"{run_url}?{ml}", None, "Datasets",
                                 [train_run.info.run_name, "test accuracy", "mnist/train", "Training"]),
            "training-metrics.png": (f"{run_url}/model-metrics?{ml}", "rank", "cpu_percent_rank1",
                                     ["cpu_percent_rank0", "cpu_percent_rank1", "rss_mb_rank0", "rss_mb_rank1"]),
            "training-system-metrics.png": (f"{run_url}/system-metrics?{ml}", None, "cpu_utilization_percentage",
                                            ["cpu_utilization_percentage", "system_memory_usage_megabytes"]),
            "monitoring-run.png": (f"{base}/#/experiments/{m}/runs/{drift_run.info.run_id}?{ml}", None, "Datasets",
                                   [drift_run.info.run_name, "largest PSI", "class_psi", "inference:incoming-rotated"]),
            # every monitored run of the experiment on one chart per figure: drift over time
            "monitoring-over-time.png": (f"{base}/#/experiments/{m}/runs?compareRunsMode=CHART&{ml}", "psi",
                                         "class_psi", ["class_psi", "confidence_psi", "entropy_psi", "pixel_psi"]),
        }
        missing = []
        from playwright.sync_api import sync_playwright

        chromium = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
        if chromium is None:
            sys.exit("chromium is not installed (apt-get install chromium)")
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=chromium, args=["--no-sandbox", "--disable-gpu"])
            for name, (url, search, wait_for, expected) in pages.items():
                try:
                    text = shoot(browser, url, args.out / name, search, wait_for)
                except Exception as exc:  # a page that never showed what it must: say which, go on
                    text = ""
                    print(f"{name}: {type(exc).__name__}: {str(exc).splitlines()[0]}")
                absent = [e for e in expected if e not in text]
                print(f"{name}: {url} -> {'ok' if not absent else 'missing ' + ', '.join(absent)}")
                missing += [f"{name}: {e}" for e in absent]
            browser.close()
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)
    if missing:
        print("not shown:\n  " + "\n  ".join(missing))
        return 1
    print(f"screenshots in {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
