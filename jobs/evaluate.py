"""spark-submit entry point for the evaluate/promote stage (challenger vs champion).

    spark-submit --master spark://HOST:7077 --py-files dist/mnist_pipeline-0.1.0-py3-none-any.whl \
        jobs/evaluate.py -c conf/cluster.yaml [section.key=value ...]
"""

import sys

from pipeline.cli import main

if __name__ == "__main__":
    sys.exit(main(["evaluate", *sys.argv[1:]], verbose_default=True))
