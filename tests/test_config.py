"""Config: defaults, YAML layering, command-line overrides, and errors that name the key."""

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
    with pytest.raises(ConfigError, match=r"ingest\.val_fraction is 1\.5; expected a fraction in \[0, 1\)"):
        load_config(overrides=["ingest.val_fraction=1.5"])
    with pytest.raises(ConfigError, match=r"ingest\.format is 'tfrecord'"):
        load_config(overrides=["ingest.format=tfrecord"])
    with pytest.raises(ConfigError, match=r"train\.cache_in_memory is 'sometimes'"):
        load_config(overrides=["train.cache_in_memory=sometimes"])
    with pytest.raises(ConfigError, match=r"train\.cache_max_mb is -1; expected at least 0"):
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
