"""spark-submit entry point for Spark batch inference with the champion model.

    spark-submit --master spark://HOST:7077 --py-files dist/mnist_pipeline-0.1.0-py3-none-any.whl \
        jobs/batch_infer.py -c conf/cluster.yaml [section.key=value ...]
"""

import sys

from pipeline.cli import main

if __name__ == "__main__":
    sys.exit(main(["infer", *sys.argv[1:]], verbose_default=True))
