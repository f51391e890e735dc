from setuptools import find_packages, setup

# The ranges the code is tested on: the local pins (constraints.txt) and three Databricks Runtime ML
# profiles (scripts/profiles/*.txt, checked by scripts/test-profile.sh): 15.4 LTS (Horovod, Petastorm,
# TensorFlow 2.16, Spark 3.5.0), 16.4 LTS (TensorFlow 2.21, Spark 3.5.2, pyarrow 15) and 17.3 LTS
# (TensorFlow 2.21, Spark 4.0, numpy 2, pyarrow 19). Installing the wheel on any of them changes none of
# its packages.
#
# The base requirements are what the tf_distribute backend needs, which is everything but Horovod and
# Petastorm. The `horovod` extra adds what the Horovod backend needs beside Horovod itself: Petastorm and
# the narrower ranges it and Horovod 0.28.1 impose (pyarrow < 15, TensorFlow < 2.19, numpy 1.x), so an
# environment that does not train with Horovod never has its pyarrow pinned below 15.
# Horovod is not listed: Databricks 15.4 ML ships it prebuilt, elsewhere scripts/setup.sh builds it against
# the installed TensorFlow. Neither is pyspark: Spark comes with the platform (Databricks, spark-submit),
# where a pip-installed pyspark would shadow the cluster's own; `pip install mnist-pipeline[spark]` brings
# it where there is none. The version check (pipeline/io/versions.py) holds each to its range all the same.
setup(
    name="mnist-pipeline",
    version="0.1.0",
    description="Spark ingest, Horovod or tf.distribute training, MLflow tracking and batch inference for MNIST",
    packages=find_packages(include=["pipeline", "pipeline.*"]),
    python_requires=">=3.10,<3.13",
    install_requires=[
        "tensorflow>=2.16,<2.22",
        "tf-keras>=2.16,<2.22",  # Keras 2: Horovod's callbacks and MultiWorkerMirroredStrategy's tutorial path
        "pyarrow>=12",
        "pyarrow-hotfix>=0.6",  # CVE-2023-47248 on pyarrow < 14.0.1
        "numpy>=1.23,<3",
        "pandas>=1.5,<3",
        "mlflow>=2.13,<4",
        "PyYAML>=6",
        "xxhash>=2,<5",  # ingest's write tasks compute Spark's xxhash64 of ids (the val split) in Python
        "matplotlib>=3.7",
        "Pillow>=9",  # batch inference decodes PNG/JPEG folders (infer.input_format=images)
        "optuna>=4,<6",  # mnist-pipeline tune; not on Databricks ML runtimes, installs beside them
        "psutil>=5.9",  # each rank's CPU and memory per epoch, and MLflow's system metrics of the driver's run
        "scipy>=1.9,<2",  # monitoring's noise bounds (the chi-square quantile); MLflow and every ML runtime have it
    ],
    extras_require={
        "horovod": [
            "petastorm>=0.13.1,<0.14",
            "pyarrow>=12,<15",  # petastorm 0.13.1 passes validate_schema, which pyarrow 15 removed
            "tensorflow>=2.16,<2.19",  # Horovod 0.28.1 does not compile against 2.19+
            "tf-keras>=2.16,<2.19",
            "numpy>=1.23,<2",  # pyarrow < 15 is built against numpy 1.x
        ],
        "spark": ["pyspark>=3.5,<4.1"],
    },
    entry_points={"console_scripts": ["mnist-pipeline=pipeline.cli:main"]},
)
