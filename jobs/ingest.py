"""spark-submit entry point for the ingest stage.

    spark-submit --master spark://HOST:7077 --py-files dist/mnist_pipeline-0.1.0-py3-none-any.whl \
        jobs/ingest.py -c conf/cluster.yaml [section.key=value ...]
"""

import sys

from pipeline.cli import main

if __name__ == "__main__":
    sys.exit(main(["ingest", *sys.argv[1:]], verbose_default=True))
