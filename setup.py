from setuptools import find_packages, setup

# The ranges the code is tested on: the local pins (constraints.txt) and Databricks Runtime 15.4 LTS ML's
# own versions (scripts/profiles/dbr-15.4-ml.txt, checked by scripts/test-profile.sh). Installing the
# wheel on that runtime changes none of its packages. Horovod is not listed: the runtime ships it
# prebuilt, elsewhere scripts/setup.sh builds it against the installed TensorFlow. Neither is pyspark:
# Spark comes with the platform (Databricks, spark-submit), where a pip-installed pyspark would shadow the
# cluster's own; `pip install mnist-pipeline[spark]` brings it where there is none. The version check
# (pipeline/io/versions.py) still holds Spark to 3.5.
setup(
    name="mnist-pipeline",
    version="0.1.0",
    description="Spark ingest, Horovod+Petastorm training, MLflow tracking and batch inference for MNIST",
    packages=find_packages(include=["pipeline", "pipeline.*"]),
    python_requires=">=3.11,<3.12",
    install_requires=[
        "tensorflow>=2.16,<2.19",  # Horovod 0.28.1 does not compile against 2.19+
        "tf-keras>=2.16,<2.19",  # Keras 2: Horovod's Keras callbacks do not work with Keras 3
        "petastorm>=0.13.1,<0.14",
        "pyarrow>=12,<15",  # petastorm 0.13.1 passes validate_schema, which pyarrow 15 removed
        "pyarrow-hotfix>=0.6",  # CVE-2023-47248 on pyarrow < 14.0.1
        "numpy>=1.23,<2",
        "pandas>=1.5,<3",
        "mlflow>=2.13,<4",
        "PyYAML>=6",
        "xxhash>=2,<5",  # ingest's write tasks compute Spark's xxhash64 of ids (the val split) in Python
        "matplotlib>=3.7",
        "Pillow>=9",  # batch inference decodes PNG/JPEG folders (infer.input_format=images)
        "optuna>=4,<6",  # mnist-pipeline tune; not on Databricks 15.4 ML, installs beside it (SQLAlchemy>=1.4.2)
    ],
    extras_require={"spark": ["pyspark>=3.5,<3.6"]},
    entry_points={"console_scripts": ["mnist-pipeline=pipeline.cli:main"]},
)
