"""spark-submit entry point for the monitoring report: the last monitored inference runs and the
drift-over-time plot (it reads monitor.path; no Spark job runs).

    spark-submit --master spark://HOST:7077 --py-files dist/mnist_pipeline-0.1.0-py3-none-any.whl \
        jobs/monitor.py -c conf/cluster.yaml [monitor.last=N ...]
"""

import sys

from pipeline.cli import main

if __name__ == "__main__":
    sys.exit(main(["monitor", *sys.argv[1:]], verbose_default=True))
