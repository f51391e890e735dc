"""Champion/challenger: score a candidate version and the champion on the same test split, and move
the ``champion`` alias only if the candidate clears the floor and does not regress.

The decision is a pure function (``decide``); ``evaluate_and_promote`` does the MLflow I/O around it.
The alias is only ever re-pointed in one call after every evaluation succeeded, so a failure at any
step leaves the registry with the champion it had.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass

from pipeline.config import PipelineConfig, PromoteConfig
from pipeline.errors import PipelineError

log = logging.getLogger(__name__)


class PromotionError(PipelineError):
    """The candidate could not be evaluated; the champion was left as it was."""


@dataclass
class Scores:
    accuracy: float
    class_recall: dict[int, float]


@dataclass
class Decision:
    promote: bool
    reason: str
    challenger: Scores
    champion: Scores | None
    version: str
    champion_version: str | None


def decide(challenger: Scores, champion: Scores | None, cfg: PromoteConfig) -> tuple[bool, str]:
    """Promote iff the challenger clears the floor and trails the champion by no more than the margins."""
    if challenger.accuracy < cfg.min_accuracy:
        return False, f"test accuracy {challenger.accuracy:.4f} is below the floor {cfg.min_accuracy:.4f}"
    if champion is None:
        return True, f"first model: test accuracy {challenger.accuracy:.4f} clears the floor {cfg.min_accuracy:.4f}"
    drop = champion.accuracy - challenger.accuracy
    if drop > cfg.max_regression:
        return False, (f"test accuracy {challenger.accuracy:.4f} trails the champion's {champion.accuracy:.4f} by "
                       f"{drop:.4f}, more than max_regression {cfg.max_regression:.4f}")
    worst = max(champion.class_recall, key=lambda c: champion.class_recall[c] - challenger.class_recall.get(c, 0.0))
    class_drop = champion.class_recall[worst] - challenger.class_recall.get(worst, 0.0)
    if class_drop > cfg.max_class_regression:
        return False, (f"recall of class {worst} fell from {champion.class_recall[worst]:.4f} to "
                       f"{challenger.class_recall.get(worst, 0.0):.4f} ({class_drop:.4f} > max_class_regression "
                       f"{cfg.max_class_regression:.4f})")
    if drop > 0:
        return True, (f"test accuracy {challenger.accuracy:.4f} is within {cfg.max_regression:.4f} of the "
                      f"champion's {champion.accuracy:.4f}, no class regressed beyond {cfg.max_class_regression:.4f}")
    return True, (f"test accuracy {challenger.accuracy:.4f} >= the champion's {champion.accuracy:.4f}, no class "
                  f"regressed beyond {cfg.max_class_regression:.4f}")


def current_champion(client, name: str, alias: str) -> str | None:
    """The version holding ``alias``, or None when the model has no such alias.

    Only "this alias does not exist" means there is no champion. Any other failure (server error,
    timeout, a Unity Catalog permission error) is a ``PromotionError``: a champion that could not be
    seen must never be replaced by a candidate that was not compared with it.
    """
    from pipeline.io.tracking import RegistryError, alias_version

    try:
        return alias_version(client, name, alias)
    except RegistryError as exc:
        raise PromotionError(f"{exc}; nothing was changed (run evaluate again once the registry answers)") from exc


def score_model(model_uri: str, dataset_root: str) -> Scores:
    """Loads a registered model with pyfunc and scores it on the test split (driver side)."""
    import mlflow

    from pipeline.assess import metrics
    from pipeline.assess.report import score_split

    model = mlflow.pyfunc.load_model(model_uri)
    _, labels, probs = score_split(model.predict, dataset_root)
    matrix = metrics.confusion_matrix(labels, probs.argmax(axis=1))
    recall = {c: s["recall"] for c, s in metrics.per_class_scores(matrix).items()}
    return Scores(accuracy=metrics.accuracy(matrix), class_recall=recall)


def evaluate_and_promote(cfg: PipelineConfig, version: str | None = None) -> Decision:
    """Evaluates the candidate (``version``, else ``promote.version``, else the newest) against the champion
    and records the decision and its reason as tags on the version and its run.

    Raises:
        PromotionError: there is no candidate, or a model cannot be loaded or scored; nothing moved.
    """
    from mlflow import MlflowClient

    from pipeline.io.fs import qualify
    from pipeline.io.tracking import setup_experiment

    setup_experiment(cfg.mlflow)
    client = MlflowClient()
    name, pcfg = cfg.mlflow.registered_model, cfg.promote
    versions = client.search_model_versions(f"name='{name}'")
    if not versions:
        raise PromotionError(f"registered model {name!r} has no versions; train one first (mnist-pipeline train)")
    version = version or pcfg.version or str(max(int(v.version) for v in versions))
    from pipeline.io.tracking import model_version

    candidate = model_version(client, name, version)  # RegistryError when the registry cannot be asked
    if candidate is None:
        raise PromotionError(f"registered model {name!r} has no version {version} (promote.version); its versions "
                             f"are {', '.join(sorted((str(v.version) for v in versions), key=int))}")
    champion_version = current_champion(client, name, pcfg.champion_alias)
    root = qualify(cfg.data.root)
    try:
        challenger_scores = score_model(f"models:/{name}/{version}", root)
    except Exception as exc:
        raise PromotionError(f"could not evaluate {name} version {version}: {exc}; the champion is unchanged") from exc
    champion_scores = None
    if champion_version is not None and champion_version != version:
        try:
            champion_scores = score_model(f"models:/{name}/{champion_version}", root)
        except Exception as exc:
            raise PromotionError(
                f"could not evaluate the champion ({name} version {champion_version}): {exc}; nothing was changed"
            ) from exc
    elif champion_version is not None:
        champion_scores = challenger_scores
    promote, reason = decide(challenger_scores, champion_scores, pcfg)
    decision = "promoted" if promote else "rejected"
    client.set_registered_model_alias(name, pcfg.challenger_alias, version)
    if promote:
        # Scoring took a while: the alias may have been moved meanwhile (another evaluation, a person).
        # Moving it now would replace a champion this candidate was never compared with.
        now = current_champion(client, name, pcfg.champion_alias)
        if now != champion_version:
            promote, decision = False, "refused"
            reason = (f"@{pcfg.champion_alias} moved from version {champion_version or 'none'} to version "
                      f"{now or 'none'} while this evaluation ran, so it was compared with a champion that no "
                      f"longer holds the alias; evaluate again to compare with version {now or 'none'} ({reason})")
        else:
            client.set_registered_model_alias(name, pcfg.champion_alias, version)
    tags = {
        "promotion.decision": decision,
        "promotion.reason": reason,
        "promotion.challenger_accuracy": f"{challenger_scores.accuracy:.4f}",
        "promotion.champion_accuracy": f"{champion_scores.accuracy:.4f}" if champion_scores else "none",
        "promotion.champion_version": champion_version or "none",
    }
    if promote and champion_version != version:
        # when it became champion: retrain.when=drift counts only the champion's runs after this
        tags["promotion.at"] = dt.datetime.now(dt.UTC).replace(microsecond=0).isoformat()
    for key, value in tags.items():
        client.set_model_version_tag(name, version, key, value)
        if candidate.run_id:
            client.set_tag(candidate.run_id, key, value)
    _describe_decision(client, candidate, decision, reason, pcfg.champion_alias)
    log.info("%s version %s %s: %s", name, version, tags["promotion.decision"], reason)
    return Decision(promote=promote, reason=reason, challenger=challenger_scores, champion=champion_scores,
                    version=version, champion_version=champion_version)


def _describe_decision(client, candidate, decision: str, reason: str, alias: str) -> None:
    """Adds the promotion decision to the version's description (and its run's), replacing an earlier one."""
    marker = "\n\nPromotion: "
    words = {"promoted": f"promoted to @{alias}", "rejected": "not promoted", "refused": "refused"}[decision]
    base = (candidate.description or "").split(marker)[0]
    text = f"{base}{marker}{words}: {reason}." if base else f"Promotion: {words}: {reason}."
    client.update_model_version(candidate.name, candidate.version, description=text)
    if candidate.run_id:
        client.set_tag(candidate.run_id, "mlflow.note.content", text)
