"""Typed configuration: dataclass defaults, then YAML files, then ``key=value`` overrides.

The dataclass defaults are the embedded default (local Spark, the sample shipped in the repository).
``conf/base.yaml`` spells every key out with the same values so users can read them; per-environment
files (``conf/cluster.yaml``, ...) and command-line overrides change only what they name. An unknown
key or a value of the wrong type is a ``ConfigError`` that names the source and the key.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from pipeline.errors import ConfigError

# Published SHA-256 of the canonical MNIST files, as listed in tensorflow/datasets' checksum file
# for the mnist dataset (url_checksums/mnist.txt), which points at the same mirror.
MNIST_SHA256 = {
    "train-images-idx3-ubyte.gz": "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
    "train-labels-idx1-ubyte.gz": "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
    "t10k-images-idx3-ubyte.gz": "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
    "t10k-labels-idx1-ubyte.gz": "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
}


# The allowed values of every enumerated key, in one place: validation, the code that dispatches on
# them and the tests all read these.
INGEST_FORMATS = ("idx", "libsvm", "csv", "download")
CSV_HEADER_MODES = ("auto", "true", "false")
ACTIVATIONS = ("relu", "leaky_relu", "elu", "selu", "tanh", "sigmoid")
LOSSES = ("sparse_categorical_crossentropy",)
OPTIMIZERS = ("adam", "sgd", "rmsprop", "adadelta")
SCHEDULES = ("none", "step", "exponential", "cosine", "plateau")
INFER_INPUT_FORMATS = ("dataset", "idx", "parquet", "images")
INFER_OUTPUT_FORMATS = ("parquet", "delta")
TUNE_METRICS = ("val_accuracy", "val_loss")
TUNE_SAMPLERS = ("tpe", "random")
TUNE_PRUNERS = ("median", "threshold", "none")
TUNE_DISTRIBUTIONS = ("float", "int", "categorical")
LR_FIND_SUGGESTIONS = ("steepest", "min_div_10")
TRAIN_CACHE_MODES = ("auto", "always", "never")
BIND_CORES_MODES = ("auto", "always", "never")


@dataclass
class SparkConfig:
    master: str | None = "local[*]"  # None: use the session the platform provides (Databricks)
    app_name: str = "mnist-pipeline"
    local_ip: str | None = "127.0.0.1"  # bind driver and executors here; None on a real cluster
    progress_interval_s: float = 10.0
    # Extra Spark settings. 16 shuffle partitions suits the sample and laptops; raise on a cluster.
    # A 1 MiB buffer between the JVM and the Python workers (Spark's default: 64 KiB) moved image
    # batches about 20% faster (docs/benchmarks.md, ingest).
    conf: dict[str, str] = field(default_factory=lambda: {"spark.sql.shuffle.partitions": "16",
                                                          "spark.buffer.size": "1048576"})


@dataclass
class DownloadConfig:
    mirror: str = "https://storage.googleapis.com/cvdf-datasets/mnist/"
    cache_dir: str = "data/cache/mnist"
    timeout_s: float = 60.0
    sha256: dict[str, str] = field(default_factory=lambda: dict(MNIST_SHA256))


@dataclass
class IngestConfig:
    format: str = "idx"  # idx | libsvm | csv | download
    train: str = "data/mnist-sample/train-*-ubyte.gz"
    test: str = "data/mnist-sample/t10k-*-ubyte.gz"
    csv_header: str = "auto"  # auto | true | false
    val_fraction: float = 0.1
    seed: int = 42
    max_shards: int = 8
    rows_per_row_group: int = 4096
    records_per_task: int = 16384  # an uncompressed IDX file of more images is parsed by several tasks
    download: DownloadConfig = field(default_factory=DownloadConfig)


@dataclass
class DataConfig:
    root: str = "data/datasets/mnist"


@dataclass
class ModelConfig:
    conv_filters: list[int] = field(default_factory=lambda: [32, 64])  # one conv layer per entry
    kernel_size: int = 3
    pool_size: int = 2
    conv_dropout: float = 0.25
    dense_units: list[int] = field(default_factory=lambda: [128])  # one hidden dense layer per entry
    dense_dropout: float = 0.25
    activation: str = "relu"  # relu | leaky_relu | elu | selu | tanh | sigmoid
    loss: str = "sparse_categorical_crossentropy"
    label_smoothing: float = 0.0
    batch_norm: bool = False  # batch normalisation after each conv layer
    # Augmentation, active in training only (0 turns each off):
    augment_rotation: float = 10.0  # random rotation, up to this many degrees either way
    augment_zoom: float = 0.1  # random zoom in or out, up to this fraction
    augment_translation: float = 0.1  # random shift, up to this fraction of the height and width


@dataclass
class OptimizerConfig:
    name: str = "adam"  # adam | sgd | rmsprop | adadelta
    learning_rate: float = 0.002  # for one rank; multiplied by the number of ranks when scale_by_ranks
    scale_by_ranks: bool = True
    momentum: float = 0.9  # sgd and rmsprop
    nesterov: bool = False  # sgd
    beta_1: float = 0.9  # adam
    beta_2: float = 0.999  # adam
    epsilon: float = 1e-7
    warmup_epochs: float = 1.0  # ramp from learning_rate to the scaled rate over this many epochs
    schedule: str = "cosine"  # none | step | exponential | cosine | plateau
    decay_rate: float = 0.5  # step: factor every decay_epochs; exponential: factor per decay_epochs
    decay_epochs: float = 5.0
    min_learning_rate: float = 1e-6  # floor for cosine and plateau
    plateau_patience: int = 2


@dataclass
class TrainConfig:
    num_proc: int | None = None  # Horovod ranks; None: Spark's default parallelism, capped by the row groups
    batch_size: int = 128  # per rank
    epochs: int = 20
    steps_per_epoch: int | None = None  # None: one pass over the train split per epoch (over all ranks)
    validation_steps: int | None = None  # None: one pass over the val split per epoch
    early_stopping_patience: int = 0  # epochs without val-loss improvement before stopping; 0: off
    seed: int = 42
    shuffle_buffer: int = 4096  # rows, when a rank streams its shard; a shard in memory is fully reshuffled
    # Each rank reads its train and val shards once into memory and trains from there (auto: when they
    # fit in cache_max_mb per rank; never: stream them with Petastorm every epoch).
    cache_in_memory: str = "auto"
    cache_max_mb: int = 1024
    checkpoint_dir: str = "data/checkpoints"  # every rank and the driver must reach it
    resume: bool = True  # an unfinished run with the same settings continues from its last epoch
    threads_per_rank: int | None = None  # None: the driver's cores divided by the ranks, at least 1
    fp16_allreduce: bool = False  # Horovod: send gradients as float16 (half the bytes per allreduce)
    backward_passes_per_step: int = 1  # Horovod: accumulate this many batches' gradients per allreduce
    # Each rank on a host is bound to its own block of threads_per_rank cores (auto: when the host's ranks
    # take all the cores this process may use; always: whenever the blocks fit; never: the OS places them).
    bind_cores: str = "auto"
    nics: list[str] = field(default_factory=lambda: ["lo"])  # Horovod/Gloo interfaces; [] lets Horovod pick
    start_timeout_s: int = 120
    dead_unit_batch: int = 256  # validation images used to count dead ReLU units each epoch
    misclassified_examples: int = 25
    report_shards: bool = False  # each rank returns the ids of its train shard (to check they are disjoint)


@dataclass
class MlflowConfig:
    tracking_uri: str = "sqlite:///data/mlflow/mlflow.db"
    artifact_location: str | None = "data/mlflow/artifacts"  # for a new experiment; None: the server's default
    registry_uri: str | None = None  # None: the tracking store; databricks-uc for Unity Catalog
    experiment: str = "mnist-pipeline"
    registered_model: str = "mnist-cnn"
    run_name: str | None = None
    http_retries: int = 2  # per request to a tracking server; a server that is down fails in seconds, not minutes
    http_timeout_s: int = 20


@dataclass
class PromoteConfig:
    min_accuracy: float = 0.85  # absolute floor on test accuracy for any champion
    max_regression: float = 0.005  # the challenger may trail the champion's test accuracy by at most this
    max_class_regression: float = 0.03  # ... and any single class's recall by at most this
    champion_alias: str = "champion"
    challenger_alias: str = "challenger"
    version: str | None = None  # the candidate; None: the newest version of mlflow.registered_model


@dataclass
class InferConfig:
    input_format: str = "dataset"  # dataset | idx | parquet | images
    input: str | None = None  # dataset root (None: data.root), IDX file pattern, Parquet path, or images folder
    split: str = "test"  # for input_format dataset
    id_column: str = "id"  # for parquet: the row id (if missing, a hash of the image)
    image_column: str = "image"  # for parquet: 784 bytes, or an array of 784 pixel values
    label_column: str | None = "label"  # optional; when present, accuracy is reported
    alias: str = "champion"  # the model is models:/<mlflow.registered_model>@<alias> ...
    model_version: str | None = None  # ... unless a version is given
    output: str = "data/predictions/mnist"  # predictions/ and rejects/ and summary.json under it
    output_format: str = "parquet"  # parquet | delta
    skip_without_champion: bool = False  # true: no version holds the alias yet -> skip (exit 0), not fail


@dataclass
class RetrainConfig:
    infer: bool = True  # score infer.input with the champion after promotion


def _default_search_space() -> dict[str, dict]:
    return {
        "optimizer.learning_rate": {"type": "float", "low": 1e-4, "high": 1e-2, "log": True},
        "optimizer.name": {"type": "categorical", "choices": ["adam", "rmsprop", "sgd"]},
        "model.dense_dropout": {"type": "float", "low": 0.1, "high": 0.5},
        "model.dense_units.0": {"type": "int", "low": 64, "high": 256, "step": 64},
        "train.batch_size": {"type": "categorical", "choices": [32, 64, 128]},
    }


@dataclass
class TuneConfig:
    study: str = "mnist-cnn"  # re-running with the same name continues the study
    storage: str | None = None  # any SQLAlchemy URL; None: sqlite beside the MLflow store (optuna.db)
    trials: int = 20  # finished trials (complete or pruned) the study should reach
    timeout_s: float | None = None  # wall-clock budget: no trial starts after it (the one running finishes)
    epochs: int | None = 3  # per trial; None: train.epochs
    metric: str = "val_accuracy"  # val_accuracy (maximised) | val_loss (minimised), of the last epoch
    sampler: str = "tpe"  # tpe | random
    seed: int = 42  # sampler seed
    pruner: str = "median"  # median | threshold | none
    pruner_startup_trials: int = 2  # median: trials that finish before any is pruned
    pruner_warmup_epochs: int = 1  # median: epochs a trial runs before it can be pruned
    prune_threshold: float | None = None  # threshold: prune a trial whose metric is worse than this
    output: str = "data/tune"  # <output>/<study>-best.yaml: the best trial's settings
    register_best: bool = False  # train the best settings with train.epochs and register that model
    # Per config key (a list element as key.N): {type: float|int, low, high, [log], [step]} or
    # {type: categorical, choices: [...]}
    space: dict[str, dict] = field(default_factory=_default_search_space)


@dataclass
class LrFindConfig:
    min_learning_rate: float = 1e-6  # the sweep's first rate (the optimizer's actual rate, all ranks)
    max_learning_rate: float = 1.0  # its last
    steps: int = 100  # one batch per step; the rate grows by the same factor every step
    smoothing: float = 0.9  # exponential moving average of the loss (bias-corrected); higher: smoother, laggier
    diverge_factor: float = 4.0  # stop once the smoothed loss exceeds this many times its minimum
    suggest: str = "steepest"  # steepest: where the smoothed loss falls fastest | min_div_10: minimum / 10


@dataclass
class LogConfig:
    verbose: bool = False  # true: every library's output on the console; false: only the pipeline's
    dir: str = "data/logs"  # the console script's log files (one per command)


@dataclass
class PipelineConfig:
    spark: SparkConfig = field(default_factory=SparkConfig)
    ingest: IngestConfig = field(default_factory=IngestConfig)
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    mlflow: MlflowConfig = field(default_factory=MlflowConfig)
    promote: PromoteConfig = field(default_factory=PromoteConfig)
    infer: InferConfig = field(default_factory=InferConfig)
    retrain: RetrainConfig = field(default_factory=RetrainConfig)
    tune: TuneConfig = field(default_factory=TuneConfig)
    lr_find: LrFindConfig = field(default_factory=LrFindConfig)
    log: LogConfig = field(default_factory=LogConfig)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)

    def flat(self) -> dict[str, Any]:
        """Every leaf key as ``section.key`` (dict-valued keys expanded), for logging as params."""
        out: dict[str, Any] = {}

        def walk(prefix: str, value: Any) -> None:
            if isinstance(value, dict):
                for k, v in value.items():
                    walk(f"{prefix}.{k}" if prefix else str(k), v)
            else:
                out[prefix] = value

        walk("", self.to_dict())
        return out


def load_config(files: list[str | Path] | None = None, overrides: list[str] | None = None) -> PipelineConfig:
    """Builds the effective config.

    Args:
        files: YAML files applied in order over the defaults.
        overrides: ``dotted.key=value`` strings applied last; values are parsed as YAML scalars.

    Raises:
        ConfigError: a file is missing or malformed, a key is unknown, or a value has the wrong type.
    """
    cfg = PipelineConfig()
    for path in files or []:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"config file {path} does not exist")
        try:
            data = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as exc:
            raise ConfigError(f"config file {path} is not valid YAML: {exc}") from None
        if not isinstance(data, dict):
            raise ConfigError(f"config file {path} must hold a mapping of sections, got {type(data).__name__}")
        _merge(cfg, data, source=str(path), prefix="")
    for item in overrides or []:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"override {item!r} is not of the form section.key=value")
        try:
            value = yaml.safe_load(raw) if raw != "" else ""
        except yaml.YAMLError:
            value = raw
        _set_dotted(cfg, key.strip(), value, source=f"override {item!r}")
    validate(cfg)
    return cfg


def validate(cfg: PipelineConfig) -> None:
    """Checks values that are the right type but out of range."""
    _validate_core(cfg)
    _validate_tune(cfg)


def _validate_core(cfg: PipelineConfig) -> None:
    ing = cfg.ingest
    _one_of("ingest.format", ing.format, INGEST_FORMATS)
    _one_of("ingest.csv_header", ing.csv_header, CSV_HEADER_MODES)
    if not 0.0 <= ing.val_fraction < 1.0:
        raise ConfigError(f"ingest.val_fraction is {ing.val_fraction}; expected a fraction in [0, 1)")
    if ing.max_shards < 1:
        raise ConfigError(f"ingest.max_shards is {ing.max_shards}; expected at least 1")
    if ing.records_per_task < 1:
        raise ConfigError(f"ingest.records_per_task is {ing.records_per_task}; expected at least 1")
    if ing.rows_per_row_group < 1:
        raise ConfigError(f"ingest.rows_per_row_group is {ing.rows_per_row_group}; expected at least 1")
    _one_of("model.activation", cfg.model.activation, ACTIVATIONS)
    _one_of("model.loss", cfg.model.loss, LOSSES)
    _one_of("optimizer.name", cfg.optimizer.name, OPTIMIZERS)
    _one_of("optimizer.schedule", cfg.optimizer.schedule, SCHEDULES)
    for key, value in (("model.conv_dropout", cfg.model.conv_dropout), ("model.dense_dropout", cfg.model.dense_dropout),
                       ("model.label_smoothing", cfg.model.label_smoothing),
                       ("optimizer.momentum", cfg.optimizer.momentum), ("optimizer.beta_1", cfg.optimizer.beta_1),
                       ("optimizer.beta_2", cfg.optimizer.beta_2)):
        if not 0.0 <= value < 1.0:
            raise ConfigError(f"{key} is {value}; expected a fraction in [0, 1)")
    for key, value, top in (("model.augment_rotation", cfg.model.augment_rotation, 180.0),
                            ("model.augment_zoom", cfg.model.augment_zoom, 1.0),
                            ("model.augment_translation", cfg.model.augment_translation, 1.0)):
        if not 0.0 <= value < top:
            raise ConfigError(f"{key} is {value}; expected at least 0 (off) and below {top:g}")
    if any(n < 1 for n in cfg.model.conv_filters + cfg.model.dense_units):
        raise ConfigError("model.conv_filters and model.dense_units must hold positive sizes")
    for key, value in (("train.batch_size", cfg.train.batch_size), ("train.epochs", cfg.train.epochs)):
        if value < 1:
            raise ConfigError(f"{key} is {value}; expected at least 1")
    _one_of("train.cache_in_memory", cfg.train.cache_in_memory, TRAIN_CACHE_MODES)
    _one_of("train.bind_cores", cfg.train.bind_cores, BIND_CORES_MODES)
    if cfg.train.cache_max_mb < 0:
        raise ConfigError(f"train.cache_max_mb is {cfg.train.cache_max_mb}; expected at least 0")
    if cfg.train.num_proc is not None and cfg.train.num_proc < 1:
        raise ConfigError(f"train.num_proc is {cfg.train.num_proc}; expected at least 1 (or null for Spark's default)")
    _one_of("infer.input_format", cfg.infer.input_format, INFER_INPUT_FORMATS)
    _one_of("infer.output_format", cfg.infer.output_format, INFER_OUTPUT_FORMATS)
    if cfg.optimizer.learning_rate <= 0:
        raise ConfigError(f"optimizer.learning_rate is {cfg.optimizer.learning_rate}; expected a positive number")


def _validate_tune(cfg: PipelineConfig) -> None:
    t, lf = cfg.tune, cfg.lr_find
    _one_of("tune.metric", t.metric, TUNE_METRICS)
    _one_of("tune.sampler", t.sampler, TUNE_SAMPLERS)
    _one_of("tune.pruner", t.pruner, TUNE_PRUNERS)
    _one_of("lr_find.suggest", lf.suggest, LR_FIND_SUGGESTIONS)
    if t.trials < 1:
        raise ConfigError(f"tune.trials is {t.trials}; expected at least 1")
    if t.epochs is not None and t.epochs < 1:
        raise ConfigError(f"tune.epochs is {t.epochs}; expected at least 1 (or null for train.epochs)")
    if t.pruner == "threshold" and t.prune_threshold is None:
        raise ConfigError("tune.pruner is threshold but tune.prune_threshold is not set; expected the metric value "
                          "below which (val_accuracy) or above which (val_loss) a trial is pruned")
    if not 0 < lf.min_learning_rate < lf.max_learning_rate:
        raise ConfigError(f"lr_find.min_learning_rate {lf.min_learning_rate} and lr_find.max_learning_rate "
                          f"{lf.max_learning_rate}: expected 0 < min < max")
    if lf.steps < 10:
        raise ConfigError(f"lr_find.steps is {lf.steps}; expected at least 10")
    if not 0 <= lf.smoothing < 1:
        raise ConfigError(f"lr_find.smoothing is {lf.smoothing}; expected a fraction in [0, 1)")
    if lf.diverge_factor <= 1:
        raise ConfigError(f"lr_find.diverge_factor is {lf.diverge_factor}; expected more than 1")
    from pipeline.tune.space import check_space  # the space names config keys: checked against this config

    check_space(t.space, cfg)


def _one_of(key: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ConfigError(f"{key} is {value!r}; expected one of {', '.join(allowed)}")


def apply_overrides(cfg: PipelineConfig, overrides: dict[str, Any], source: str,
                    name_settings: bool = True) -> PipelineConfig:
    """A copy of ``cfg`` with ``{dotted.key: value}`` set (``key.N`` sets element N of a list), validated.

    Used for search-space values, which arrive as Python values rather than YAML text."""
    import copy

    out = copy.deepcopy(cfg)
    for key, value in overrides.items():
        _set_dotted(out, key, value, source=f"{source} {key}={value!r}")
    try:
        _validate_core(out)
    except ConfigError as exc:
        if not name_settings:
            raise
        settings = ", ".join(f"{k}={v!r}" for k, v in overrides.items())
        raise ConfigError(f"{source} {settings}: {exc}") from None
    return out


def _set_dotted(cfg: Any, key: str, value: Any, source: str) -> None:
    parts = key.split(".")
    node = cfg
    for i, part in enumerate(parts):
        if isinstance(node, dict):  # spark.conf.<setting>, tune.space.<config key>
            parent, name = _parent_field(cfg, parts[:i])
            node[".".join(parts[i:])] = _coerce(value, typing.get_args(_field_types(parent)[name])[1], key, source)
            return
        if isinstance(node, list) and part.isdigit() and i == len(parts) - 1:
            # key.N: element N of a list-valued key (model.conv_filters.1=128)
            parent, name = _parent_field(cfg, parts[:-1])
            if int(part) >= len(node):
                raise ConfigError(f"{source}: {'.'.join(parts[:-1])} has {len(node)} elements; there is no element "
                                  f"{part}")
            node[int(part)] = _coerce(value, typing.get_args(_field_types(parent)[name])[0], key, source)
            return
        if not dataclasses.is_dataclass(node) or part not in _field_types(node):
            raise ConfigError(f"{source}: unknown config key {key!r}; {_known(node, parts[:i])}")
        if i == len(parts) - 1:
            _assign(node, part, value, key, source)
            return
        node = getattr(node, part)


def _parent_field(cfg: Any, parts: list[str]) -> tuple[Any, str]:
    node = cfg
    for part in parts[:-1]:
        node = getattr(node, part)
    return node, parts[-1]


def _merge(node: Any, data: dict, source: str, prefix: str) -> None:
    for k, v in data.items():
        key = f"{prefix}{k}"
        if not dataclasses.is_dataclass(node) or k not in _field_types(node):
            raise ConfigError(f"{source}: unknown config key {key!r}; {_known(node, key.split('.')[:-1])}")
        child = getattr(node, k)
        if dataclasses.is_dataclass(child):
            if not isinstance(v, dict):
                raise ConfigError(f"{source}: {key!r} must be a mapping of keys, got {v!r}")
            _merge(child, v, source, f"{key}.")
        else:
            _assign(node, k, v, key, source)


def _assign(node: Any, name: str, value: Any, key: str, source: str) -> None:
    setattr(node, name, _coerce(value, _field_types(node)[name], key, source))


def _field_types(node: Any) -> dict[str, Any]:
    hints = typing.get_type_hints(type(node))
    return {f.name: hints[f.name] for f in dataclasses.fields(node)}


def _known(node: Any, parts: list[str]) -> str:
    where = ".".join(parts) or "the top level"
    if dataclasses.is_dataclass(node):
        return f"known keys in {where}: {', '.join(_field_types(node))}"
    return f"{where} has no sub-keys"


def _coerce(value: Any, typ: Any, key: str, source: str) -> Any:
    origin = typing.get_origin(typ)
    args = typing.get_args(typ)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return _coerce(value, inner[0], key, source)
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{source}: {key!r} must be a mapping, got {value!r}")
        return {str(k): _coerce(v, args[1], f"{key}.{k}", source) for k, v in value.items()}
    if origin is list:
        if not isinstance(value, list):
            raise ConfigError(f"{source}: {key!r} must be a list, got {value!r}")
        return [_coerce(v, args[0], key, source) for v in value]
    if typ is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{source}: {key!r} must be true or false, got {value!r}")
    if typ is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise ConfigError(f"{source}: {key!r} must be an integer, got {value!r}")
    if typ is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        raise ConfigError(f"{source}: {key!r} must be a number, got {value!r}")
    if typ is str:
        if isinstance(value, bool):  # YAML reads a bare true/false as a bool
            return str(value).lower()
        if isinstance(value, (str, int, float)):
            return str(value)
        raise ConfigError(f"{source}: {key!r} must be a string, got {value!r}")
    return value
