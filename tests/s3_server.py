"""A real S3-compatible server (moto's standalone server) on 127.0.0.1, started and stopped by the tests."""

from __future__ import annotations

import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from urllib.parse import urlparse

from tests.helpers import stop_process_group


class S3Server:
    def __init__(self, endpoint: str):
        self.endpoint = endpoint
        self.port = urlparse(endpoint).port
        self.process: subprocess.Popen | None = None

    def start(self, timeout_s: float = 30) -> S3Server:
        binary = Path(sys.executable).parent / "moto_server"
        self.process = subprocess.Popen([str(binary), "-H", "127.0.0.1", "-p", str(self.port)],
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(self.endpoint + "/moto-api/", timeout=2):
                    return self
            except OSError:
                time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"moto_server did not answer on {self.endpoint} within {timeout_s} s")

    def create_bucket(self, name: str) -> str:
        import pyarrow.fs as pafs

        pafs.S3FileSystem(endpoint_override=f"127.0.0.1:{self.port}", scheme="http",
                          allow_bucket_creation=True).create_dir(name)
        return f"s3://{name}"

    def stop(self) -> None:
        if self.process is None:
            return
        stop_process_group(self.process)
        self.process = None
