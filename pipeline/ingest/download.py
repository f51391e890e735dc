"""Fetches the canonical MNIST files from a mirror into a cache folder, verifying SHA-256."""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
import time
import urllib.error
import urllib.request

from pipeline.config import DownloadConfig
from pipeline.errors import InputError
from pipeline.io import storage
from pipeline.io.fs import qualify

log = logging.getLogger(__name__)


def sha256_file(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def download_mnist(cfg: DownloadConfig) -> str:
    """Makes sure every file of ``cfg.sha256`` is in ``cfg.cache_dir`` with its published checksum.

    Cached files are checked again and fetched anew if they do not match. A file whose checksum does not match is refused:
    it is deleted, never placed in the cache, and ``InputError`` says which file and both checksums.

    Returns:
        The cache folder (fully qualified), holding the canonical four-file IDX layout.
    """
    cache = qualify(cfg.cache_dir).rstrip("/")
    storage.makedirs(cache)
    present = set(storage.list_names(cache))
    for name, expected in cfg.sha256.items():
        if name in present:
            if hashlib.sha256(storage.read_bytes(storage.join(cache, name))).hexdigest() == expected:
                continue
            log.warning("cached %s/%s does not match its published checksum; fetching it again", cache, name)
            storage.delete(storage.join(cache, name))
        url = cfg.mirror.rstrip("/") + "/" + name
        fd, tmp = tempfile.mkstemp(prefix="mnist-download-", suffix="-" + name)
        os.close(fd)
        try:
            start = time.monotonic()
            log.info("downloading %s", url)
            try:
                with urllib.request.urlopen(url, timeout=cfg.timeout_s) as response, open(tmp, "wb") as out:
                    total = 0
                    for block in iter(lambda: response.read(1 << 20), b""):
                        out.write(block)
                        total += len(block)
            except (urllib.error.URLError, OSError) as exc:
                raise InputError(
                    f"download of {url} failed ({exc}); check ingest.download.mirror or the network"
                ) from None
            actual = sha256_file(tmp)
            if actual != expected:
                raise InputError(
                    f"download of {url}: SHA-256 {actual} does not match the published {expected}; "
                    "refusing the file (the mirror serves different bytes)"
                )
            log.info("downloaded %s: %d bytes in %.1f s, checksum ok", name, total, time.monotonic() - start)
            with open(tmp, "rb") as handle:
                storage.write_bytes(storage.join(cache, name), handle.read())  # published whole
        finally:
            if os.path.exists(tmp):
                os.remove(tmp)
    return cache
