"""Download from a mirror over HTTP on 127.0.0.1, with SHA-256 verification."""

import functools
import hashlib
import http.server
import threading

import pytest

from pipeline.errors import InputError
from pipeline.ingest.build import ingest
from tests.helpers import SAMPLE_DIR, make_config


@pytest.fixture
def mirror():
    """A real HTTP server on 127.0.0.1 serving the sample's four IDX files; counts requests."""
    requests = []

    class Handler(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            requests.append(self.path)

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Handler, directory=str(SAMPLE_DIR)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/", requests
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)


def _published():
    return dict(line.split()[::-1] for line in (SAMPLE_DIR / "SHA256SUMS").read_text().splitlines())


def _download_config(tmp_path, url, sha256):
    cfg = make_config(tmp_path / "dataset", "", "", fmt="download")
    cfg.ingest.download.mirror = url
    cfg.ingest.download.cache_dir = str(tmp_path / "cache")
    cfg.ingest.download.sha256 = sha256
    return cfg


def test_download_verifies_caches_and_ingests(spark, mirror, tmp_path):
    url, requests = mirror
    manifest = ingest(spark, _download_config(tmp_path, url, _published()))
    assert manifest["rows_parsed"] == 10000
    assert sorted(p.name for p in (tmp_path / "cache").iterdir()) == sorted(_published())
    for name, digest in _published().items():
        assert hashlib.sha256((tmp_path / "cache" / name).read_bytes()).hexdigest() == digest
    fetched = len(requests)
    assert fetched == 4
    ingest(spark, _download_config(tmp_path, url, _published()))
    assert len(requests) == fetched  # the second run uses the verified cache


def test_checksum_mismatch_is_refused(spark, mirror, tmp_path):
    url, _ = mirror
    sums = _published()
    sums["t10k-labels-idx1-ubyte.gz"] = "0" * 64
    with pytest.raises(InputError, match=r"t10k-labels-idx1-ubyte\.gz: SHA-256 b991e8.* does not match the "
                                         r"published 0{64}; refusing the file"):
        ingest(spark, _download_config(tmp_path, url, sums))
    assert "t10k-labels-idx1-ubyte.gz" not in {p.name for p in (tmp_path / "cache").iterdir()}
    assert not (tmp_path / "dataset").exists()


def test_unreachable_mirror_names_the_url(spark, tmp_path):
    with pytest.raises(InputError, match=r"download of http://127\.0\.0\.1:9/train-images-idx3-ubyte\.gz failed"):
        ingest(spark, _download_config(tmp_path, "http://127.0.0.1:9/", _published()))
