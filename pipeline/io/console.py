"""What a person sees on the console: the pipeline's own progress lines and its final report.

Everything else (Spark's and TensorFlow's start-up lines from every process, library warnings, Horovod
rank output) goes to a log file whose path is printed once. The redirection is at the level of file
descriptors 1 and 2, so the JVM, Spark's Python workers and the Horovod ranks, which inherit them, write
there too. Verbose mode leaves the console alone and shows everything.
"""

from __future__ import annotations

import datetime as dt
import io
import logging
import os
import sys
from pathlib import Path

_FILE_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
QUIET_LOGGERS = ("py4j", "petastorm", "pyarrow")


def drop_py4j_retry(record: logging.LogRecord) -> bool:
    """Logging filter: False for py4j's note that it is retrying a command on a fresh connection.

    py4j logs that on the root logger at INFO with a full traceback (a connection to the JVM that a
    finished thread left behind was reset); the command then succeeds. A retry that fails is logged at
    ERROR and kept.
    """
    return not (record.levelno == logging.INFO and record.module == "java_gateway"
                and record.msg == "Exception while sending command.")


class _ConsoleFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        return f"warning: {text}" if record.levelno >= logging.WARNING else text


def _stream_for(stream, fd: int, saved_fd: int):
    """The console stream: a fresh one on the saved descriptor if ``stream`` writes to ``fd`` (which is
    about to point at the log file); else ``stream`` itself (a test's capture, a notebook's cell output)."""
    try:
        if stream.fileno() == fd:
            return os.fdopen(os.dup(saved_fd), "w", buffering=1)
    except (AttributeError, OSError, io.UnsupportedOperation):
        pass
    return stream


class Console:
    """A context for one command: ``out`` for reports, ``err`` for errors, ``log_path`` for the rest."""

    def __init__(self, command: str, log_dir: str, verbose: bool):
        self.verbose = verbose
        stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
        self.log_path = None if verbose else Path(log_dir).resolve() / f"{command}-{stamp}-{os.getpid()}.log"
        self.out, self.err = sys.stdout, sys.stderr
        self._saved: tuple[int, int] | None = None
        self._handlers: list[logging.Handler] = []

    def __enter__(self) -> Console:
        root = logging.getLogger()
        root.setLevel(logging.INFO)
        for name in QUIET_LOGGERS:
            logging.getLogger(name).setLevel(logging.WARNING)
        if self.verbose:
            self._add(root, logging.StreamHandler(sys.stderr), logging.Formatter(_FILE_FORMAT))
            return self
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = open(self.log_path, "a", buffering=1)
        sys.stdout.flush()
        sys.stderr.flush()
        self._saved = (os.dup(1), os.dup(2))
        self._given = (sys.stdout, sys.stderr)
        self.out = _stream_for(sys.stdout, 1, self._saved[0])
        self.err = _stream_for(sys.stderr, 2, self._saved[1])
        os.dup2(self._log.fileno(), 1)
        os.dup2(self._log.fileno(), 2)
        logging.captureWarnings(True)
        self._add(root, logging.StreamHandler(self._log), logging.Formatter(_FILE_FORMAT))
        # The pipeline's own lines (progress, epochs, decisions) also go to the console, briefly.
        self._add(logging.getLogger("pipeline"), logging.StreamHandler(self.err),
                  _ConsoleFormatter("%(asctime)s %(message)s", datefmt="%H:%M:%S"))
        self.err.write(f"logs: {self.log_path}\n")
        return self

    def _add(self, logger: logging.Logger, handler: logging.Handler, formatter: logging.Formatter) -> None:
        handler.setFormatter(formatter)
        handler.addFilter(drop_py4j_retry)
        logger.addHandler(handler)
        self._handlers.append((logger, handler))

    def __exit__(self, *exc) -> None:
        for logger, handler in self._handlers:
            logger.removeHandler(handler)
            handler.flush()
        if self._saved is None:
            return
        logging.captureWarnings(False)
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(self._saved[0], 1)
        os.dup2(self._saved[1], 2)
        for fd in self._saved:
            os.close(fd)
        for stream in (self.out, self.err):
            if stream not in self._given:
                stream.close()  # the console streams _stream_for opened on duplicated descriptors
        self.out, self.err = self._given
        self._log.close()
