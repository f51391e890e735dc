"""A real ``mlflow server`` process on 127.0.0.1, started and stopped (by its own process group) by a test."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from tests.helpers import stop_process_group


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class MlflowServer:
    def __init__(self, folder: Path, port: int | None = None):
        self.folder = folder
        self.port = port or free_port()
        self.uri = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen | None = None

    def start(self, timeout_s: float = 60) -> MlflowServer:
        self.folder.mkdir(parents=True, exist_ok=True)
        mlflow_bin = Path(sys.executable).parent / "mlflow"
        self._log = open(self.folder / "server.log", "w")
        self.process = subprocess.Popen(
            [str(mlflow_bin), "server", "--host", "127.0.0.1", "--port", str(self.port), "--workers", "1",
             "--backend-store-uri", f"sqlite:///{self.folder / 'mlflow.db'}",
             "--artifacts-destination", str(self.folder / "artifacts")],
            stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True,
        )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"mlflow server exited: {(self.folder / 'server.log').read_text()[-2000:]}")
            try:
                with urllib.request.urlopen(self.uri + "/health", timeout=2):
                    return self
            except OSError:
                time.sleep(0.5)
        self.stop()
        raise RuntimeError(f"mlflow server did not answer on {self.uri} within {timeout_s} s")

    def stop(self) -> None:
        """Stops the server and its uvicorn workers: its process group, by its own pid."""
        if self.process is None:
            return
        stop_process_group(self.process)
        self._log.close()
        self.process = None


class FaultyProxy:
    """A real HTTP proxy on 127.0.0.1 in front of a tracking server that answers HTTP 503 to requests
    whose path contains ``fail_path`` and forwards everything else: a registry having a hiccup."""

    def __init__(self, upstream: str, fail_path: str):
        import http.server
        import threading
        import urllib.error

        self.fail_path, self.failed = fail_path, 0
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def _forward(self):
                if proxy.fail_path in self.path:
                    proxy.failed += 1
                    self.send_response(503)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "content-length")}
                request = urllib.request.Request(upstream + self.path, data=body, headers=headers, method=self.command)
                try:
                    with urllib.request.urlopen(request, timeout=60) as response:
                        status, payload, reply_headers = response.status, response.read(), response.headers
                except urllib.error.HTTPError as exc:
                    status, payload, reply_headers = exc.code, exc.read(), exc.headers
                self.send_response(status)
                for key, value in reply_headers.items():
                    if key.lower() not in ("transfer-encoding", "content-length", "connection", "server", "date"):
                        self.send_header(key, value)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _forward

            def log_message(self, *args):
                pass

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.uri = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> FaultyProxy:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()
