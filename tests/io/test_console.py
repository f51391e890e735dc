import logging

from pipeline.io.console import Console


def _py4j_record(level: int) -> logging.LogRecord:
    # what py4j.java_gateway's logging.info(..., exc_info=True) / logging.exception(...) produce
    return logging.makeLogRecord({"name": "root", "levelno": level, "levelname": logging.getLevelName(level),
                                  "module": "java_gateway", "msg": "Exception while sending command.",
                                  "args": None})


def test_log_file_drops_py4j_retry_notes_but_keeps_failures_and_pipeline_lines(tmp_path):
    with Console("demo", str(tmp_path), verbose=False) as console:
        root = logging.getLogger()
        root.handle(_py4j_record(logging.INFO))
        root.handle(_py4j_record(logging.ERROR))
        logging.getLogger("pipeline.demo").info("epoch 1/2 done")
    text = console.log_path.read_text()
    assert text.count("Exception while sending command.") == 1
    assert "ERROR root: Exception while sending command." in text
    assert "epoch 1/2 done" in text


def test_the_console_closes_the_descriptors_it_duplicated(tmp_path):
    """In a process whose stdout and stderr are real descriptors (as under the console script), each
    command opens console streams on duplicates of them; none may outlive the command."""
    import subprocess
    import sys

    script = f"""
import os
from pipeline.io.console import Console

def open_fds():
    return len(os.listdir("/proc/self/fd"))

before = open_fds()
for _ in range(5):
    with Console("probe", {str(tmp_path)!r}, verbose=False) as console:
        console.out.write("line\\n")
print(before, open_fds())
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    before, after = map(int, done.stdout.split()[-2:])
    assert after == before, (before, after)
