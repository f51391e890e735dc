"""The version preflight: every package the pipeline needs is installed in a version it supports, and
Horovod loads against the installed TensorFlow. On a managed runtime a stray install (a notebook's
``%pip install``, a cluster library pulling its own TensorFlow) is named, with what to do about it,
before anything runs."""

from __future__ import annotations

from importlib import metadata

from pipeline.errors import PreflightError

DISTRIBUTION = "mnist-pipeline"
# Provided by the platform rather than declared by the wheel (a pip-installed pyspark would shadow the
# cluster's Spark), but held to a range all the same.
PLATFORM_PROVIDED = ["pyspark<3.6,>=3.5"]

# Why a range stops where it does, for the message.
WHY = {
    "tensorflow": "Horovod 0.28.1 compiles against TensorFlow 2.16-2.18 only",
    "tf-keras": "the models are Keras 2; Horovod's Keras callbacks fail on Keras 3",
    "pyarrow": "petastorm 0.13.1 passes validate_schema, which pyarrow 15 removed",
    "numpy": "pyarrow < 15 is built against numpy 1.x",
    "pandas": "pandas 3 needs numpy 2",
    "pyspark": "the pipeline is built and tested on Spark 3.5 (Databricks 15.4 LTS ML)",
    "mlflow": "registry aliases and spark_udf as used here exist from MLflow 2.13 on",
}


def supported_ranges() -> list[str]:
    """The installed package's requirement strings, e.g. ``tensorflow<2.19,>=2.16``."""
    try:
        declared = [r for r in metadata.requires(DISTRIBUTION) or [] if "extra ==" not in r]
    except metadata.PackageNotFoundError:
        declared = []
    return declared + PLATFORM_PROVIDED


def out_of_range(requirements: list[str], installed: dict[str, str | None]) -> list[str]:
    """One sentence per package that is missing or outside its supported range."""
    from packaging.requirements import Requirement

    problems = []
    for text in requirements:
        req = Requirement(text)
        version = installed.get(req.name)
        why = f" ({WHY[req.name]})" if req.name in WHY else ""
        if version is None:
            problems.append(f"{req.name} is not installed; the pipeline needs {req.name}{req.specifier}")
        elif not req.specifier.contains(version, prereleases=True):
            problems.append(f"{req.name} {version} is installed but the pipeline supports {req.specifier}{why}")
    return problems


def horovod_problem(import_error: BaseException | None, tensorflow_version: str | None) -> str | None:
    """What to do when ``horovod.tensorflow`` does not load."""
    if import_error is None:
        return None
    text = str(import_error).strip().splitlines()[0] if str(import_error).strip() else type(import_error).__name__
    if "undefined symbol" in text or "tensorflow" in text.lower() and "so" in text:
        return (f"horovod cannot load its TensorFlow ops ({text}): it was built against another TensorFlow than the "
                f"installed {tensorflow_version}; rebuild Horovod against this TensorFlow (scripts/setup.sh does) or "
                "restore the TensorFlow it was built with (on Databricks, the runtime's own)")
    return (f"horovod.tensorflow does not import ({text}); build Horovod with TensorFlow and Gloo support "
            "(scripts/setup.sh shows how)")


def _installed(names: list[str]) -> dict[str, str | None]:
    """Installed versions; a package the platform put on the path without pip metadata (Databricks'
    pyspark) is asked for its ``__version__``."""
    import importlib

    out = {}
    for name in names:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            try:
                out[name] = importlib.import_module(name.replace("-", "_")).__version__
            except Exception:
                out[name] = None
    return out


def check(horovod: bool = False) -> None:
    """Raises ``PreflightError`` naming every package outside its supported range (and, with ``horovod``,
    a Horovod that does not load against the installed TensorFlow)."""
    from packaging.requirements import Requirement

    requirements = supported_ranges()
    problems = out_of_range(requirements, _installed([Requirement(r).name for r in requirements]))
    if horovod:
        error = None
        try:
            import horovod.tensorflow  # noqa: F401
        except Exception as exc:  # ImportError, NotFoundError (a TF op library that does not link)
            error = exc
        problem = horovod_problem(error, _installed(["tensorflow"])["tensorflow"])
        if problem:
            problems.append(problem)
    if problems:
        raise PreflightError("the installed packages do not fit this pipeline:\n  " + "\n  ".join(problems))
