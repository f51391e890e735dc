from setuptools import find_packages, setup

setup(
    name="mnist-pipeline",
    version="0.1.0",
    description="Spark ingest, Horovod+Petastorm training, MLflow tracking and batch inference for MNIST",
    packages=find_packages(include=["pipeline", "pipeline.*"]),
    package_data={"pipeline": ["conf/*.yaml"]},
    python_requires=">=3.11,<3.12",
    install_requires=[
        "pyspark>=3.5,<3.6",
        "tensorflow>=2.17,<2.19",
        "tf-keras>=2.17,<2.19",
        "petastorm==0.13.1",
        "pyarrow>=12,<13",
        "numpy>=1.26,<2",
        "pandas>=2.2,<3",
        "mlflow>=3.17,<4",
        "PyYAML>=6",
        "matplotlib>=3.8",
        "pyarrow-hotfix>=0.6",
    ],
    entry_points={"console_scripts": ["mnist-pipeline=pipeline.cli:main"]},
)
