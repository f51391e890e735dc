"""The search space: checked against the config when it loads, sampled into config values."""

import optuna
import pytest

from pipeline.config import PipelineConfig, apply_overrides, check_space, load_config
from pipeline.errors import ConfigError
from pipeline.tune import space as search_space
from pipeline.tune.study import trial_config


@pytest.mark.parametrize("override, message", [
    ("tune.space.model.foo={type: int, low: 1, high: 3}", r"tune\.space\.model\.foo: .*unknown config key 'model\.foo'"),
    ("tune.space.optimizer.name={type: categorical, choices: [adam, lbfgs]}",
     r"tune\.space\.optimizer\.name: the value 'lbfgs' is not a valid setting: optimizer\.name is 'lbfgs'"),
    ("tune.space.model.dense_dropout={type: float, low: 0.2, high: 1.5}",
     r"the value 1\.5 is not a valid setting: model\.dense_dropout is 1\.5"),
    ("tune.space.optimizer.learning_rate={type: float, low: 0, high: 1, log: true}",
     r"tune\.space\.optimizer\.learning_rate: a log distribution needs low > 0"),
    ("tune.space.train.batch_size={type: int, low: 64, high: 32}", r"low 64 must be below high 32"),
    ("tune.space.train.batch_size={type: int, low: 1.5, high: 32}", r"tune\.space\.train\.batch_size\.low is 1\.5"),
    ("tune.space.train.batch_size={type: poisson, lam: 3}", r"\.type is 'poisson'; expected one of float, int"),
    ("tune.space.train.batch_size={type: categorical, choices: [32], low: 1}", r"has low, which a categorical"),
    ("tune.space.model.conv_filters.2={type: int, low: 8, high: 64}", r"model\.conv_filters has 2 elements"),
    ("tune.space.train.batch_size=64", r"tune\.space\.train\.batch_size must be a mapping"),
    ("tune.pruner=threshold", r"tune\.prune_threshold is not set"),
    ("tune.metric=test_accuracy", r"tune\.metric is 'test_accuracy'; expected one of val_accuracy, val_loss"),
    ("lr_find.max_learning_rate=1.0e-7", r"expected 0 < min < max"),
])
def test_a_bad_space_or_setting_fails_when_the_config_loads(override, message):
    with pytest.raises(ConfigError, match=message):
        load_config(overrides=[override])


def test_the_default_space_is_valid_and_every_key_is_a_config_key():
    cfg = load_config()
    assert set(cfg.tune.space) >= {"optimizer.learning_rate", "optimizer.name", "train.batch_size"}


def test_sampled_values_become_config_values_lists_included():
    space = {
        "optimizer.learning_rate": {"type": "float", "low": 1e-4, "high": 1e-2, "log": True},
        "model.conv_filters": {"type": "categorical", "choices": [[16, 32], [32, 64]]},
        "model.dense_units.0": {"type": "int", "low": 64, "high": 256, "step": 64},
        "optimizer.name": {"type": "categorical", "choices": ["adam", "sgd"]},
    }
    cfg = load_config()
    check_space(space, cfg)
    trial = optuna.trial.FixedTrial({"optimizer.learning_rate": 3e-3, "model.conv_filters": "[16, 32]",
                                     "model.dense_units.0": 192, "optimizer.name": "sgd"})
    values = search_space.suggest(trial, space)
    assert values == {"optimizer.learning_rate": 3e-3, "model.conv_filters": [16, 32], "model.dense_units.0": 192,
                      "optimizer.name": "sgd"}
    cfg.tune.epochs = 2
    tcfg = trial_config(cfg, values, 7)
    assert (tcfg.optimizer.learning_rate, tcfg.model.conv_filters, tcfg.model.dense_units) == (3e-3, [16, 32], [192])
    assert (tcfg.train.epochs, tcfg.mlflow.run_name) == (2, "mnist-cnn-trial-7")
    assert cfg.model.dense_units == [128] and cfg.train.epochs == 20  # the base config is left as it was
    # A config file sets lists whole, so the best-settings YAML does too.
    assert search_space.as_config_sections(tcfg, values) == {
        "optimizer": {"learning_rate": 3e-3, "name": "sgd"},
        "model": {"conv_filters": [16, 32], "dense_units": [192]},
    }


def test_a_list_element_can_be_overridden_on_the_command_line():
    cfg = load_config(overrides=["model.conv_filters.1=128"])
    assert cfg.model.conv_filters == [32, 128]
    with pytest.raises(ConfigError, match=r"'model\.conv_filters\.0' must be an integer"):
        load_config(overrides=["model.conv_filters.0=wide"])


def test_apply_overrides_validates_and_names_the_source():
    with pytest.raises(ConfigError, match=r"trial 3: optimizer\.learning_rate=-1\.0"):
        apply_overrides(PipelineConfig(), {"optimizer.learning_rate": -1.0, "train.epochs": 2}, source="trial 3:")


def test_a_study_database_that_cannot_be_opened_names_tune_storage(tmp_path):
    from pipeline.tune.study import open_study

    cfg = load_config(overrides=["tune.storage=nosuchdb://host/x"])
    with pytest.raises(ConfigError, match=r"tune\.storage nosuchdb://host/x: cannot open the study database"):
        open_study(cfg)
