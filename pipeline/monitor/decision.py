"""Whether ``retrain.when=drift`` retrains now. Asked before anything expensive: it reads the registry's
champion (one lookup), the newest history files until its window is full (never every file) and, only
when the evidence says go, the listing of ``ingest.extra`` and the champion's training manifest (a
small JSON artifact). No SparkSession, no model download.

The evidence is the champion's own *judged* runs of new data (``stable``, ``moderate``, ``drift``; not
``rejects``, ``too_few_rows``, ``no_reference``, nor the retrain's check of its own test split) since
it became champion and since the last retrain that ended (promoted or kept): a retrain consumes the
evidence it acted on, so a challenger that was not promoted is not trained again on the same runs.
Retraining also needs something to learn from: labelled data under ``ingest.extra`` that the champion
was not trained on. Without it, the decision says so and where labelled examples go.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass, field

from pipeline.config import PipelineConfig
from pipeline.monitor import history
from pipeline.monitor.verdict import JUDGED

log = logging.getLogger(__name__)


@dataclass
class Decision:
    go: bool
    why: str
    champion_version: str | None = None
    new_files: list[str] = field(default_factory=list)  # labelled files the champion was not trained on


def drift_decision(cfg: PipelineConfig) -> Decision:
    """The decision of ``retrain.when=drift`` (module docstring).

    Raises:
        RegistryError: the registry could not be asked (not the same as "no champion").
        PipelineError: a history file or the champion's manifest could not be read.
    """
    from mlflow import MlflowClient

    from pipeline.io.tracking import alias_version, model_version, set_tracking

    set_tracking(cfg.mlflow)
    client = MlflowClient()
    name, alias = cfg.mlflow.registered_model, cfg.promote.champion_alias
    champion = alias_version(client, name, alias)
    if champion is None:
        return Decision(True, f"no version holds @{alias}, so there is no champion to keep")
    version = model_version(client, name, champion)
    go, why = evidence(cfg, champion, since(cfg, version))
    if not go:
        return Decision(False, why, champion)
    new = new_labelled_files(cfg, version)
    if not new:
        where = ", ".join(e.get("path", "?") for e in cfg.ingest.extra) or "nothing (ingest.extra is empty)"
        return Decision(False, f"{why}; but no labelled data newer than champion version {champion}'s training data "
                               f"was found (ingest.extra reads {where}): retraining on the same data cannot learn the "
                               "new inputs. Put labelled examples of them there (Parquet rows with image and label, "
                               "or images in one folder per label, see the README) and the next call retrains",
                        champion)
    return Decision(True, f"{why}; {len(new)} labelled file(s) under ingest.extra are new since champion version "
                          f"{champion} was trained", champion, new)


def since(cfg: PipelineConfig, version) -> str:
    """The time prefix from which runs count: the later of the champion's promotion (its
    ``promotion.at`` tag, else its registration) and the last retrain that ended."""
    tags = getattr(version, "tags", None) or {}
    if tags.get("promotion.at"):
        start = dt.datetime.fromisoformat(tags["promotion.at"])
    else:
        start = dt.datetime.fromtimestamp(version.creation_timestamp / 1000, dt.UTC)
    last = history.last_retrain(cfg)
    if last is not None:
        start = max(start, dt.datetime.fromisoformat(last["timestamp"]))
    return history.time_prefix(start)


def evidence(cfg: PipelineConfig, champion: str, since: str) -> tuple[bool, str]:
    """(drift enough?, why) from the champion's judged runs of new data from ``since`` on (a key's time
    prefix), newest first, reading only the files the window needs."""
    r = cfg.retrain
    window = []
    for run in history.newest_runs(cfg, since=since):
        if (run["model_name"] == cfg.mlflow.registered_model and run["model_version"] == str(champion)
                and run["verdict"] in JUDGED and run["purpose"] != history.RETRAIN_CHECK):
            window.append(run)
            if len(window) == r.window_runs:
                break
    window.reverse()
    drifted = [x for x in window if x["verdict"] == "drift"]
    figures = ", ".join(x["verdict"] + (f" {x['decided_by']}={x['decisive']:.2f}"
                                        if x["verdict"] in ("moderate", "drift") else "") for x in window) or "none"
    what = (f"{len(drifted)} of the last {len(window)} judged runs of champion version {champion} since "
            f"{_shown(since)} were drift (retrain.when=drift needs {r.drift_runs} of the last {r.window_runs}; "
            f"runs: {figures})")
    return len(drifted) >= r.drift_runs, what


def _shown(prefix: str) -> str:
    return dt.datetime.strptime(prefix, "%Y%m%dT%H%M%SZ").strftime("%Y-%m-%d %H:%M:%S UTC")


def new_labelled_files(cfg: PipelineConfig, version) -> list[str]:
    """The files under ``ingest.extra`` that the champion's training data did not hold (by path and size,
    against the manifest its training run logged).

    Raises:
        PipelineError: the manifest could not be read for another reason than its absence.
    """
    from pipeline.io import storage

    if not cfg.ingest.extra:
        return []
    listed = []
    for entry in cfg.ingest.extra:
        listed += storage.list_files(entry["path"])
    trained = trained_inputs(version)
    if trained is None:
        log.info("version %s has no dataset/manifest.json artifact; every file under ingest.extra counts as new",
                 version.version)
        return [p for p, _ in listed]
    return [p for p, size in listed if (p, size) not in trained]


def trained_inputs(version) -> set[tuple[str, int]] | None:
    """(path, bytes) of every input file of the version's training data, from its run's
    ``dataset/manifest.json``; None only when the run has no such artifact.

    Raises:
        PipelineError: the artifact could not be read (a server error, a damaged file).
    """
    import mlflow

    from pipeline.errors import PipelineError
    from pipeline.io import storage
    from pipeline.io.tracking import is_not_found

    try:
        manifest = mlflow.artifacts.load_dict(f"runs:/{version.run_id}/dataset/manifest.json")
    except Exception as exc:
        if is_not_found(exc) or isinstance(exc, FileNotFoundError) or "No such file" in str(exc):
            return None
        raise PipelineError(f"could not read the training manifest of version {version.version} "
                            f"(run {version.run_id}: {type(exc).__name__}: {exc})") from exc
    return {(storage.resolve(i["path"])[1], int(i["bytes"])) for i in manifest.get("inputs", [])}
