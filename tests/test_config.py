"""Config: defaults, YAML layering, command-line overrides, and errors that name the key."""

import re
from pathlib import Path

import pytest
import yaml

from pipeline.config import PipelineConfig, load_config
from pipeline.errors import ConfigError

CONF = Path(__file__).resolve().parent.parent / "conf"


def test_base_yaml_spells_out_exactly_the_defaults():
    assert load_config([CONF / "base.yaml"]).to_dict() == PipelineConfig().to_dict()


def test_every_conf_file_loads():
    for path in sorted(CONF.glob("*.yaml")):
        load_config([CONF / "base.yaml", path])


def test_files_then_overrides_apply_in_order(tmp_path):
    env = tmp_path / "env.yaml"
    env.write_text(yaml.safe_dump({"ingest": {"seed": 7, "max_shards": 16}, "spark": {"master": "local[2]"}}))
    cfg = load_config([env], ["ingest.seed=9", "data.root=/tmp/x", "spark.conf.spark.sql.shuffle.partitions=64"])
    assert (cfg.ingest.seed, cfg.ingest.max_shards, cfg.spark.master) == (9, 16, "local[2]")
    assert cfg.data.root == "/tmp/x"
    assert cfg.spark.conf["spark.sql.shuffle.partitions"] == "64"
    assert cfg.flat()["spark.conf.spark.sql.shuffle.partitions"] == "64"


def test_null_override_clears_an_optional_key():
    assert load_config(overrides=["spark.local_ip=null"]).spark.local_ip is None


def test_unknown_key_names_the_source_and_the_known_keys(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("ingest:\n  sed: 3\n")
    with pytest.raises(ConfigError, match=r"bad\.yaml: unknown config key 'ingest\.sed'; known keys in ingest: format"):
        load_config([bad])
    with pytest.raises(ConfigError, match=r"override 'ingest\.sed=3': unknown config key 'ingest\.sed'"):
        load_config(overrides=["ingest.sed=3"])


def test_wrong_type_and_out_of_range_values_are_refused():
    with pytest.raises(ConfigError, match=r"'ingest\.max_shards' must be an integer, got 'many'"):
        load_config(overrides=["ingest.max_shards=many"])
    with pytest.raises(ConfigError, match=r"ingest\.val_fraction is 1\.5; expected a number in \[0, 1\)"):
        load_config(overrides=["ingest.val_fraction=1.5"])
    with pytest.raises(ConfigError, match=r"ingest\.format is 'tfrecord'"):
        load_config(overrides=["ingest.format=tfrecord"])
    with pytest.raises(ConfigError, match=r"train\.cache_in_memory is 'sometimes'"):
        load_config(overrides=["train.cache_in_memory=sometimes"])
    with pytest.raises(ConfigError, match=r"train\.cache_max_mb is -1; expected an integer in \[0, inf\)"):
        load_config(overrides=["train.cache_max_mb=-1"])
    with pytest.raises(ConfigError, match=r"not of the form section\.key=value"):
        load_config(overrides=["ingest.seed"])


def test_missing_or_malformed_file(tmp_path):
    with pytest.raises(ConfigError, match=r"config file .*nope\.yaml does not exist"):
        load_config([tmp_path / "nope.yaml"])
    broken = tmp_path / "broken.yaml"
    broken.write_text("ingest: [unclosed\n")
    with pytest.raises(ConfigError, match=r"broken\.yaml is not valid YAML"):
        load_config([broken])


def test_each_list_of_allowed_values_is_the_one_the_code_dispatches_on():
    import tf_keras as keras

    from pipeline import config
    from pipeline.infer.inputs import LOADERS
    from pipeline.train.model import build_model
    from pipeline.train.schedules import _optimizer_builders, learning_rate_at

    opt = config.OptimizerConfig()
    assert set(_optimizer_builders(keras, opt, 0.1)) == set(config.OPTIMIZERS)
    assert set(LOADERS) == set(config.INFER_INPUT_FORMATS)
    for schedule in config.SCHEDULES:
        opt.schedule = schedule
        assert learning_rate_at(2.5, opt, 2, 10) > 0
    for activation in config.ACTIVATIONS:
        assert build_model(config.ModelConfig(activation=activation, conv_filters=[4], dense_units=[8]))


def _numeric_keys(node, prefix=""):
    import dataclasses
    import typing

    hints = typing.get_type_hints(type(node))
    for f in dataclasses.fields(node):
        value, key = getattr(node, f.name), f"{prefix}{f.name}"
        if dataclasses.is_dataclass(value):
            yield from _numeric_keys(value, f"{key}.")
            continue
        kinds = set(typing.get_args(hints[f.name])) | {hints[f.name]}
        kinds |= {a for k in list(kinds) for a in typing.get_args(k)}
        if kinds & {int, float}:
            yield key


def test_every_numeric_key_has_a_range():
    from pipeline.config import BOUNDS

    keys = set(_numeric_keys(PipelineConfig()))
    assert keys - set(BOUNDS) == set()
    assert set(BOUNDS) - keys == set()  # no stale entry
    load_config()  # the defaults are inside their ranges


@pytest.mark.parametrize("override, message", [
    ("optimizer.decay_epochs=0", r"optimizer\.decay_epochs is 0\.0; expected a number in \(0, inf\)"),
    ("model.kernel_size=30", r"model\.kernel_size is 30; expected an integer in \[1, 28\]"),
    ("model.pool_size=0", r"model\.pool_size is 0; expected an integer in \[1, 28\]"),
    ("model.dense_dropout=1.5", r"model\.dense_dropout is 1\.5; expected a number in \[0, 1\)"),
    ("train.shuffle_buffer=-1", r"train\.shuffle_buffer is -1; expected an integer in \[0, inf\)"),
    ("train.steps_per_epoch=0", r"train\.steps_per_epoch is 0; expected an integer in \[1, inf\)"),
    ("train.threads_per_rank=0", r"train\.threads_per_rank is 0; expected an integer in \[1, inf\)"),
    ("optimizer.learning_rate=.nan", r"optimizer\.learning_rate is nan; expected a number in \(0, inf\)"),
    ("optimizer.learning_rate=.inf", r"optimizer\.learning_rate is inf; expected a number in \(0, inf\)"),
    ("model.conv_filters=[32, 0]", r"model\.conv_filters is \[32, 0\]; expected an integer in \[1, inf\)"),
    ("promote.min_accuracy=1.2", r"promote\.min_accuracy is 1\.2; expected a number in \[0, 1\]"),
    ("tune.timeout_s=0", r"tune\.timeout_s is 0\.0; expected a number in \(0, inf\)"),
    ("infer.pixel_scale=0-100", r"infer\.pixel_scale is '0-100'; expected one of 0-255, 0-1"),
])
def test_values_that_cannot_work_are_refused_naming_source_key_value_and_range(override, message):
    with pytest.raises(ConfigError, match=rf"^override '{re.escape(override)}': {message}"):
        load_config(overrides=[override])


def test_a_range_error_names_the_file_that_set_the_value(tmp_path):
    env = tmp_path / "env.yaml"
    env.write_text("optimizer:\n  decay_epochs: 0\n")
    with pytest.raises(ConfigError, match=rf"^{re.escape(str(env))}: optimizer\.decay_epochs is 0\.0"):
        load_config([env])


def test_kernels_that_leave_no_image_to_pool_are_refused():
    load_config(overrides=["model.kernel_size=13"])  # 28 - 2 x 12 = 4 >= pool 2
    with pytest.raises(ConfigError, match=r"model\.kernel_size 14 with 2 conv layers \(model\.conv_filters\) "
                                          r"leaves a 2x2 feature map, smaller than model\.pool_size 3"):
        load_config(overrides=["model.kernel_size=14", "model.pool_size=3"])
    with pytest.raises(ConfigError, match=r"leaves a 0x0 feature map"):
        load_config(overrides=["model.conv_filters=[8, 8, 8]", "model.kernel_size=11"])


def test_a_file_sets_one_entry_of_a_mapping_and_keeps_the_others(tmp_path):
    defaults = PipelineConfig()
    env = tmp_path / "env.yaml"
    env.write_text(yaml.safe_dump({"spark": {"conf": {"spark.executor.memory": "4g"}},
                                   "tune": {"space": {"train.batch_size": None,
                                                      "model.conv_dropout": {"type": "float", "low": 0.1,
                                                                             "high": 0.4}}}}))
    cfg = load_config([env])
    assert cfg.spark.conf == {**defaults.spark.conf, "spark.executor.memory": "4g"}
    expected_space = {k: v for k, v in defaults.tune.space.items() if k != "train.batch_size"}
    expected_space["model.conv_dropout"] = {"type": "float", "low": 0.1, "high": 0.4}
    assert cfg.tune.space == expected_space
    # the same as overrides, one entry at a time
    same = load_config(overrides=["spark.conf.spark.executor.memory=4g", "tune.space.train.batch_size=null",
                                  "tune.space.model.conv_dropout={type: float, low: 0.1, high: 0.4}"])
    assert same.to_dict() == cfg.to_dict()


def test_one_key_names_the_champion():
    with pytest.raises(ConfigError, match=r"unknown config key 'infer\.alias'; it was replaced by "
                                          r"promote\.champion_alias"):
        load_config(overrides=["infer.alias=best"])


def test_a_decay_floor_above_the_rate_is_refused():
    load_config(overrides=["optimizer.learning_rate=1.0e-6"])  # equal to the floor: a flat schedule, allowed
    with pytest.raises(ConfigError, match=r"optimizer\.min_learning_rate 0\.01 is above optimizer\.learning_rate "
                                          r"0\.002; the cosine schedule decays"):
        load_config(overrides=["optimizer.min_learning_rate=0.01"])


def test_a_monitor_min_rows_too_small_to_judge_is_refused_with_what_it_would_miss():
    with pytest.raises(ConfigError, match=r"monitor.min_rows is 50; expected 100 or more: .* 65% of runs"):
        load_config(None, ["monitor.min_rows=50"])
    assert load_config(None, ["monitor.min_rows=100"]).monitor.min_rows == 100
    with pytest.raises(ConfigError, match=r"ingest.extra\[0\].format is 'tfrecord'; expected one of parquet, images"):
        load_config(None, ["ingest.extra=[{format: tfrecord, path: /x}]"])
    with pytest.raises(ConfigError, match=r"ingest.extra\[0\] has unknown keys colour"):
        load_config(None, ["ingest.extra=[{format: images, path: /x, colour: red}]"])
    with pytest.raises(ConfigError, match=r"image_column and label_column are for format parquet, not images"):
        load_config(None, ["ingest.extra=[{format: images, path: /x, label_column: y}]"])
