"""spark-submit entry point for scheduled retraining: ingest -> train -> evaluate/promote -> batch inference.

    spark-submit --master spark://HOST:7077 --py-files dist/mnist_pipeline-0.1.0-py3-none-any.whl \
        jobs/retrain.py -c conf/cluster.yaml [section.key=value ...]
"""

import sys

from pipeline.cli import main

if __name__ == "__main__":
    sys.exit(main(["retrain", *sys.argv[1:]], verbose_default=True))
