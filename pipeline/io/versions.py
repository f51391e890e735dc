"""The version preflight: every package the pipeline needs is installed in a version it supports, for
the backend that will run, and Horovod loads against the installed TensorFlow where it trains. On a
managed runtime a stray install (a notebook's ``%pip install``, a cluster library pulling its own
TensorFlow) is named, with what to do about it, before anything runs."""

from __future__ import annotations

from importlib import metadata

from pipeline.errors import PreflightError

DISTRIBUTION = "mnist-pipeline"
HOROVOD_EXTRA = "horovod"
# Provided by the platform rather than declared by the wheel (a pip-installed pyspark would shadow the
# cluster's Spark), but held to a range all the same: Spark 3.5 and 4.0 for the pipeline, 3.5 where
# Horovod trains (horovod.spark was never run on Spark 4 here).
PLATFORM_PROVIDED = ["pyspark<4.1,>=3.5"]
PLATFORM_PROVIDED_HOROVOD = ["pyspark<3.6,>=3.5"]

# Why a range stops where it does, for the message: the package's own range, and the narrower one the
# Horovod backend imposes.
WHY = {
    "tensorflow": "tested up to 2.21, the newest TensorFlow with a matching tf-keras",
    "tf-keras": "the models are Keras 2",
    "numpy": "pandas and pyarrow here are tested on numpy 1.23-2.x",
    "pandas": "tested on pandas 1.5-2.x",
    "pyspark": "the pipeline is tested on Spark 3.5 and 4.0",
    "mlflow": "registry aliases and spark_udf as used here exist from MLflow 2.13 on",
}
WHY_HOROVOD = {
    "tensorflow": "Horovod 0.28.1 compiles against TensorFlow 2.16-2.18 only",
    "tf-keras": "it follows TensorFlow, which Horovod 0.28.1 holds to 2.16-2.18",
    "pyarrow": "petastorm 0.13.1 passes validate_schema, which pyarrow 15 removed",
    "numpy": "pyarrow < 15 is built against numpy 1.x",
    "petastorm": "the Horovod backend reads its shards through Petastorm",
    "pyspark": "the Horovod backend is tested on Spark 3.5 only",
}


def _declared() -> list:
    from packaging.requirements import Requirement

    try:
        return [Requirement(r) for r in metadata.requires(DISTRIBUTION) or []]
    except metadata.PackageNotFoundError:
        return []


def supported_ranges(backend: str | None = None) -> list[str]:
    """The requirement strings that hold where ``backend`` trains (None: a stage that does not train),
    e.g. ``tensorflow<2.22,>=2.16``: the wheel's base requirements, and for ``horovod`` its ``horovod``
    extra as well."""
    extras = ["", HOROVOD_EXTRA] if backend == HOROVOD_EXTRA else [""]
    out = [f"{r.name}{r.specifier}" for r in _declared()
           if r.marker is None or any(r.marker.evaluate({"extra": extra}) for extra in extras)]
    return out + (PLATFORM_PROVIDED_HOROVOD if backend == HOROVOD_EXTRA else PLATFORM_PROVIDED)


def out_of_range(requirements: list[str], installed: dict[str, str | None], backend: str | None = None) -> list[str]:
    """One sentence per package that is missing or outside its supported range (for ``backend``)."""
    from packaging.requirements import Requirement

    problems = []
    for text in requirements:
        req = Requirement(text)
        version = installed.get(req.name)
        reasons = {**WHY, **WHY_HOROVOD} if backend == HOROVOD_EXTRA else WHY
        why = f" ({reasons[req.name]})" if req.name in reasons else ""
        if version is None:
            problems.append(f"{req.name} is not installed; the pipeline needs {req.name}{req.specifier}{why}")
        elif not req.specifier.contains(version, prereleases=True):
            problems.append(f"{req.name} {version} is installed but the pipeline supports {req.specifier}{why}")
    return problems


def horovod_problem(import_error: BaseException | None, tensorflow_version: str | None) -> str | None:
    """What to do when ``horovod.tensorflow`` does not load."""
    if import_error is None:
        return None
    text = str(import_error).strip().splitlines()[0] if str(import_error).strip() else type(import_error).__name__
    if isinstance(import_error, ModuleNotFoundError) and (import_error.name or "").split(".")[0] == "horovod":
        return (f"horovod is not installed ({text}); build it against this TensorFlow with Gloo support "
                "(scripts/setup.sh shows how)")
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


def check(backend: str | None = None) -> None:
    """Raises ``PreflightError`` naming every package outside its supported range where ``backend``
    (``horovod``, ``tf_distribute``, None for a stage that does not train) runs, and for ``horovod`` a
    Horovod that does not load against the installed TensorFlow."""
    from packaging.requirements import Requirement

    requirements = supported_ranges(backend)
    problems = out_of_range(requirements, _installed([Requirement(r).name for r in requirements]), backend)
    if backend == HOROVOD_EXTRA:
        error = None
        try:
            import horovod.tensorflow  # noqa: F401
        except Exception as exc:  # ImportError, NotFoundError (a TF op library that does not link)
            error = exc
        problem = horovod_problem(error, _installed(["tensorflow"])["tensorflow"])
        if problem:
            problems.insert(0, problem)
        if problems:
            problems.append("the Horovod backend's packages come with `pip install mnist-pipeline[horovod]` (Horovod "
                            "itself is built: scripts/setup.sh); or set train.backend=tf_distribute, which needs neither "
                            "Horovod nor Petastorm")
    if problems:
        raise PreflightError("the installed packages do not fit this pipeline:\n  " + "\n  ".join(problems))
