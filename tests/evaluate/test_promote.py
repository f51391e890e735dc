"""Champion/challenger promotion: the decision rule, and the registry it acts on (real MLflow store)."""

import mlflow
import pytest
from mlflow import MlflowClient

from pipeline.config import ModelConfig, PipelineConfig, PromoteConfig
from pipeline.evaluate.promote import PromotionError, Scores, decide, evaluate_and_promote
from pipeline.io.tracking import model_location

RULE = PromoteConfig(min_accuracy=0.8, max_regression=0.01, max_class_regression=0.05)


def _scores(acc, recall=None):
    return Scores(accuracy=acc, class_recall=recall or {c: acc for c in range(10)})


def test_first_model_is_promoted_if_it_clears_the_floor():
    assert decide(_scores(0.9), None, RULE) == (True, "first model: test accuracy 0.9000 clears the floor 0.8000")
    promote, reason = decide(_scores(0.7), None, RULE)
    assert not promote and reason == "test accuracy 0.7000 is below the floor 0.8000"


def test_better_worse_and_equal_within_margin():
    assert decide(_scores(0.95), _scores(0.93), RULE)[0]
    promote, reason = decide(_scores(0.90), _scores(0.93), RULE)
    assert not promote and "trails the champion's 0.9300 by 0.0300, more than max_regression 0.0100" in reason
    promote, reason = decide(_scores(0.925), _scores(0.93), RULE)
    assert promote and "within 0.0100 of the champion's 0.9300" in reason
    assert decide(_scores(0.93), _scores(0.93), RULE)[0]


def test_a_single_class_regression_blocks_promotion():
    champion = _scores(0.93)
    recall = {c: 0.95 for c in range(10)}
    recall[7] = 0.80
    promote, reason = decide(_scores(0.94, recall), champion, RULE)
    assert not promote and reason.startswith("recall of class 7 fell from 0.9300 to 0.8000")


# --- against a real registry (SQLite store), with real models scored on the sample's test split ---

@pytest.fixture
def registry(tmp_path, sample_dataset):
    cfg = PipelineConfig()
    cfg.data.root = str(sample_dataset[0])
    cfg.mlflow.tracking_uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    cfg.mlflow.artifact_location = str(tmp_path / "artifacts")
    cfg.mlflow.registered_model = "promotion-test"
    cfg.promote = PromoteConfig(min_accuracy=0.8, max_regression=0.01, max_class_regression=0.05)
    from pipeline.io.tracking import setup_experiment

    experiment = setup_experiment(cfg.mlflow)

    def register(weights=None, sabotage_class=None) -> str:
        from pipeline.train.model import build_model

        model = build_model(ModelConfig())
        if weights is not None:
            model.set_weights(weights)
        if sabotage_class is not None:
            out = model.get_layer("probabilities")
            kernel, bias = out.get_weights()
            bias = bias.copy()
            bias[sabotage_class] = -1e4  # this class is never predicted any more
            out.set_weights([kernel, bias])
        with mlflow.start_run(experiment_id=experiment):
            info = mlflow.tensorflow.log_model(model, **model_location(), registered_model_name=cfg.mlflow.registered_model)
        return str(info.registered_model_version)

    return cfg, register, MlflowClient(cfg.mlflow.tracking_uri)


def _champion(client, name):
    return str(client.get_model_version_by_alias(name, "champion").version)


def test_registry_first_then_worse_then_equal(registry, trained_weights):
    cfg, register, client = registry
    name = cfg.mlflow.registered_model
    v1 = register(trained_weights)
    first = evaluate_and_promote(cfg)
    assert first.promote and first.version == v1 and first.champion is None
    assert _champion(client, name) == v1
    tags = client.get_model_version(name, v1).tags
    assert tags["promotion.decision"] == "promoted" and tags["promotion.reason"].startswith("first model")
    run_tags = client.get_run(client.get_model_version(name, v1).run_id).data.tags
    assert run_tags["promotion.decision"] == "promoted"
    assert first.challenger.accuracy >= 0.85

    v2 = register()  # untrained: about chance
    worse = evaluate_and_promote(cfg)
    assert not worse.promote and worse.version == v2 and "below the floor" in worse.reason
    assert _champion(client, name) == v1
    assert str(client.get_model_version_by_alias(name, "challenger").version) == v2
    assert client.get_model_version(name, v2).tags["promotion.champion_accuracy"] == f"{first.challenger.accuracy:.4f}"

    v3 = register(trained_weights)  # the same weights again: equal, so promoted
    equal = evaluate_and_promote(cfg)
    assert equal.promote and equal.champion.accuracy == pytest.approx(equal.challenger.accuracy)
    assert _champion(client, name) == v3


def test_registry_better_model_replaces_a_weak_champion(registry, trained_weights):
    cfg, register, client = registry
    cfg.promote.min_accuracy = 0.0
    weak = register()
    evaluate_and_promote(cfg)
    assert _champion(client, cfg.mlflow.registered_model) == weak
    better = register(trained_weights)
    decision = evaluate_and_promote(cfg)
    assert decision.promote and decision.challenger.accuracy > decision.champion.accuracy + 0.5
    assert _champion(client, cfg.mlflow.registered_model) == better


def test_registry_per_class_regression_blocks_promotion(registry, trained_weights):
    cfg, register, client = registry
    cfg.promote.max_regression = 0.5  # overall drop allowed; only the per-class rule can stop it
    v1 = register(trained_weights)
    evaluate_and_promote(cfg)
    register(trained_weights, sabotage_class=4)
    decision = evaluate_and_promote(cfg)
    assert not decision.promote
    assert decision.reason.startswith("recall of class 4 fell from")
    assert _champion(client, cfg.mlflow.registered_model) == v1


def test_a_champion_moved_during_the_evaluation_is_not_replaced(registry, trained_weights, monkeypatch):
    """The alias is read, scoring takes minutes, then the alias would move: if someone moved it meanwhile,
    the candidate was never compared with the new champion, so the alias stays where they put it."""
    from pipeline.evaluate import promote

    cfg, register, client = registry
    name = cfg.mlflow.registered_model
    v1 = register(trained_weights)
    evaluate_and_promote(cfg)
    v2 = register(trained_weights)
    v3 = register(trained_weights)
    real_score = promote.score_model

    def score_while_another_evaluation_promotes(model_uri, root):
        scores = real_score(model_uri, root)
        client.set_registered_model_alias(name, "champion", v2)  # another evaluation finished first
        return scores

    monkeypatch.setattr(promote, "score_model", score_while_another_evaluation_promotes)
    decision = evaluate_and_promote(cfg, version=v3)
    assert not decision.promote and decision.champion_version == v1
    assert decision.reason.startswith(f"@champion moved from version {v1} to version {v2} while this evaluation ran")
    assert _champion(client, name) == v2
    tags = client.get_model_version(name, v3).tags
    assert tags["promotion.decision"] == "refused" and tags["promotion.reason"] == decision.reason


def test_failed_evaluation_keeps_the_champion(registry, trained_weights, tmp_path):
    cfg, register, client = registry
    v1 = register(trained_weights)
    evaluate_and_promote(cfg)
    broken = client.create_model_version(cfg.mlflow.registered_model, source=str(tmp_path / "no-such-model"))
    with pytest.raises(PromotionError, match=rf"could not evaluate promotion-test version {broken.version}: .*"
                                             r"the champion is unchanged"):
        evaluate_and_promote(cfg)
    assert _champion(client, cfg.mlflow.registered_model) == v1


def test_no_versions_or_an_unknown_version_is_a_clear_error(registry):
    cfg, register, _ = registry
    with pytest.raises(PromotionError, match=r"registered model 'promotion-test' has no versions; train one first"):
        evaluate_and_promote(cfg)
    register()
    with pytest.raises(PromotionError, match=r"registered model 'promotion-test' has no version 9 "
                                             r"\(promote.version\); its versions are 1"):
        evaluate_and_promote(cfg, version="9")


def test_a_registry_error_on_the_alias_lookup_moves_nothing(sample_dataset, trained_weights, tmp_path):
    """Only a missing alias means "no champion": a registry that answers an error to the alias lookup
    must not let the candidate be promoted as a "first model" without being compared."""
    from pipeline.io.tracking import setup_experiment
    from pipeline.train.model import build_model
    from tests.mlflow_server import FaultyProxy, MlflowServer

    server = MlflowServer(tmp_path / "server").start()
    try:
        cfg = PipelineConfig()
        cfg.data.root = str(sample_dataset[0])
        cfg.mlflow.tracking_uri, cfg.mlflow.artifact_location = server.uri, None
        cfg.mlflow.registered_model, cfg.mlflow.http_retries = "hiccup-test", 0
        experiment = setup_experiment(cfg.mlflow)
        model = build_model(ModelConfig())
        model.set_weights(trained_weights)
        versions = []
        for _ in range(2):
            with mlflow.start_run(experiment_id=experiment):
                info = mlflow.tensorflow.log_model(model, **model_location(), registered_model_name="hiccup-test")
            versions.append(str(info.registered_model_version))
        client = MlflowClient(server.uri)
        client.set_registered_model_alias("hiccup-test", "champion", versions[0])

        with FaultyProxy(server.uri, fail_path="/registered-models/alias") as proxy:
            cfg.mlflow.tracking_uri = proxy.uri
            with pytest.raises(PromotionError, match=r"could not look up @champion of hiccup-test: .*nothing was changed"):
                evaluate_and_promote(cfg, version=versions[1])
            assert proxy.failed >= 1

        assert _champion(client, "hiccup-test") == versions[0]
        assert "promotion.decision" not in client.get_model_version("hiccup-test", versions[1]).tags
        with pytest.raises(Exception, match="alias challenger not found"):
            client.get_model_version_by_alias("hiccup-test", "challenger")
    finally:
        server.stop()
