"""A real Spark standalone cluster on 127.0.0.1 (a master and workers) from the pip pyspark package,
started and stopped (by each process group's own pid) by a test."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pyspark

from tests.mlflow_server import free_port

SPARK_HOME = str(Path(pyspark.__file__).parent)
VENV_BIN = str(Path(sys.executable).parent)


def spark_env(**extra) -> dict[str, str]:
    env = dict(os.environ)
    env.update(SPARK_HOME=SPARK_HOME, SPARK_LOCAL_IP="127.0.0.1", PYSPARK_PYTHON=sys.executable,
               PYSPARK_DRIVER_PYTHON=sys.executable, PATH=f"{VENV_BIN}:{env.get('PATH', '')}")
    env.update(extra)
    return env


class StandaloneCluster:
    def __init__(self, folder: Path, workers: int = 2, cores: int = 1, memory: str = "2g"):
        self.folder = folder
        self.workers, self.cores, self.memory = workers, cores, memory
        self.port, self.ui_port = free_port(), free_port()
        self.url = f"spark://127.0.0.1:{self.port}"
        self.processes: list[subprocess.Popen] = []

    def _start(self, name: str, *args: str) -> subprocess.Popen:
        log = open(self.folder / f"{name}.log", "w")
        process = subprocess.Popen([f"{SPARK_HOME}/bin/spark-class", *args], stdout=log, stderr=subprocess.STDOUT,
                                   env=spark_env(SPARK_WORKER_DIR=str(self.folder / "work")), start_new_session=True)
        self.processes.append(process)
        return process

    def start(self, timeout_s: float = 90) -> StandaloneCluster:
        self.folder.mkdir(parents=True, exist_ok=True)
        self._start("master", "org.apache.spark.deploy.master.Master", "--host", "127.0.0.1",
                    "--port", str(self.port), "--webui-port", str(self.ui_port))
        for i in range(self.workers):
            self._start(f"worker-{i}", "org.apache.spark.deploy.worker.Worker", "--host", "127.0.0.1",
                        "--cores", str(self.cores), "--memory", self.memory, "--webui-port", str(free_port()), self.url)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.alive_workers() >= self.workers:
                return self
            time.sleep(1)
        self.stop()
        raise RuntimeError(f"the standalone cluster did not get {self.workers} workers in {timeout_s} s")

    def alive_workers(self) -> int:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.ui_port}/json/", timeout=2) as response:
                return int(json.load(response).get("aliveworkers", 0))
        except OSError:
            return 0

    def stop(self) -> None:
        for process in reversed(self.processes):
            try:
                os.killpg(process.pid, signal.SIGTERM)
                process.wait(timeout=20)
            except ProcessLookupError:
                pass
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=10)
        self.processes.clear()
