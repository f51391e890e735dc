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
# ingest.extra: labelled data that arrived after the base sources (each entry: format, path, and for
# parquet the columns); parquet and images are how labelled inference inputs come back
EXTRA_FORMATS = ("parquet", "images", "idx", "libsvm", "csv")
EXTRA_KEYS = {"format", "path", "image_column", "label_column"}
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
TRAIN_BACKENDS = ("auto", "horovod", "tf_distribute")
PIXEL_SCALES = ("0-255", "0-1")
RETRAIN_WHEN = ("always", "drift")
INFER_MODES = ("batch", "incremental")
# The fewest scored rows a run may be judged at (monitor.min_rows): bench/drift_bench.py's named shifts are
# all detected at 100 rows, not at 50.
MIN_JUDGED_ROWS = 100
# Keys that were removed, and the key that does their job now (named in the unknown-key error).
RENAMED_KEYS = {"infer.alias": "promote.champion_alias"}

# The allowed range of every numeric key, in interval notation ([ and ] include the end, ( and ) do not).
# The bound of a list-valued key holds for each element; a key that may be null is not checked when it
# is. tests/test_config.py holds every int or float key of the config to having an entry here.
_INT32 = "[0, 2147483647]"
BOUNDS = {
    "spark.progress_interval_s": "[0, inf)",
    "ingest.val_fraction": "[0, 1)", "ingest.seed": _INT32, "ingest.max_shards": "[1, inf)",
    "ingest.rows_per_row_group": "[1, inf)", "ingest.records_per_task": "[1, inf)",
    "ingest.download.timeout_s": "(0, inf)",
    "model.conv_filters": "[1, inf)", "model.kernel_size": "[1, 28]", "model.pool_size": "[1, 28]",
    "model.conv_dropout": "[0, 1)", "model.dense_units": "[1, inf)", "model.dense_dropout": "[0, 1)",
    "model.label_smoothing": "[0, 1)", "model.augment_rotation": "[0, 180)", "model.augment_zoom": "[0, 1)",
    "model.augment_translation": "[0, 1)",
    "optimizer.learning_rate": "(0, inf)", "optimizer.momentum": "[0, 1)", "optimizer.beta_1": "[0, 1)",
    "optimizer.beta_2": "[0, 1)", "optimizer.epsilon": "(0, 1)", "optimizer.warmup_epochs": "[0, inf)",
    "optimizer.decay_rate": "(0, 1]", "optimizer.decay_epochs": "(0, inf)",
    "optimizer.min_learning_rate": "[0, inf)", "optimizer.plateau_patience": "[1, inf)",
    "train.num_proc": "[1, inf)", "train.batch_size": "[1, inf)", "train.epochs": "[1, inf)",
    "train.steps_per_epoch": "[1, inf)", "train.validation_steps": "[1, inf)",
    "train.early_stopping_patience": "[0, inf)", "train.seed": _INT32, "train.shuffle_buffer": "[0, inf)",
    "train.cache_max_mb": "[0, inf)", "train.threads_per_rank": "[1, inf)", "train.keep_checkpoints": "[1, inf)",
    "train.backward_passes_per_step": "[1, inf)", "train.start_timeout_s": "[1, inf)",
    "train.collective_timeout_s": "(0, inf)",
    "train.slots_wait_s": "[0, inf)",
    "train.dead_unit_batch": "[1, inf)", "train.misclassified_examples": "[0, inf)",
    "mlflow.http_retries": "[0, inf)", "mlflow.http_timeout_s": "[1, inf)",
    "promote.min_accuracy": "[0, 1]", "promote.max_regression": "[0, 1]", "promote.max_class_regression": "[0, 1]",
    "tune.trials": "[1, inf)", "tune.timeout_s": "(0, inf)", "tune.epochs": "[1, inf)", "tune.seed": _INT32,
    "tune.pruner_startup_trials": "[0, inf)", "tune.pruner_warmup_epochs": "[0, inf)",
    "tune.prune_threshold": "(-inf, inf)",
    "lr_find.min_learning_rate": "(0, inf)", "lr_find.max_learning_rate": "(0, inf)", "lr_find.steps": "[10, inf)",
    "lr_find.smoothing": "[0, 1)", "lr_find.diverge_factor": "(1, inf)",
    "infer.max_files_per_trigger": "[1, inf)",
    "monitor.psi_moderate": "(0, inf)", "monitor.psi_drift": "(0, inf)", "monitor.last": "[1, inf)",
    "monitor.min_rows": "[1, inf)", "monitor.false_alarm": "(0, 0.2]", "monitor.max_reject_share": "[0, 1)",
    "retrain.lock_wait_s": "[0, inf)",
    "retrain.drift_runs": "[1, inf)", "retrain.window_runs": "[1, inf)",
}


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
    # Labelled data that arrived later, added to the train input (validated, de-duplicated against the
    # rest and against the test split): [{format: parquet|images|idx|libsvm|csv, path: ...}, ...]
    extra: list[dict[str, str]] = field(default_factory=list)
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
    # horovod: horovod.spark.run over Gloo; tf_distribute: TensorFlow's MultiWorkerMirroredStrategy in a
    # Spark barrier stage (no Horovod, no Petastorm needed); auto: horovod where it loads, else tf_distribute
    backend: str = "auto"
    num_proc: int | None = None  # ranks (workers); None: Spark's default parallelism, capped by the row groups
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
    keep_checkpoints: int = 2  # the newest epochs' checkpoint folders kept in the run folder; older ones are deleted
    resume: bool = True  # an unfinished run with the same settings continues from its last epoch
    threads_per_rank: int | None = None  # None: the driver's cores divided by the ranks, at least 1
    fp16_allreduce: bool = False  # Horovod: send gradients as float16 (half the bytes per allreduce)
    backward_passes_per_step: int = 1  # Horovod: accumulate this many batches' gradients per allreduce
    # Each rank on a host is bound to its own block of threads_per_rank cores (auto: when the host's ranks
    # take all the cores this process may use; always: whenever the blocks fit; never: the OS places them).
    bind_cores: str = "auto"
    nics: list[str] = field(default_factory=lambda: ["lo"])  # Horovod/Gloo interfaces; [] lets Horovod pick
    start_timeout_s: int = 120
    # Every rank (worker) needs its own task slot at the same moment; when other jobs hold them, wait this
    # long for them to free up, then fail naming the busy slots (instead of a barrier stage that waits)
    slots_wait_s: float = 10.0
    # tf_distribute: a collective (gradient all-reduce) that waits longer than this fails, naming the worker;
    # longer than the slowest step plus the workers' start-up skew
    collective_timeout_s: float = 600.0
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
    champion_alias: str = "champion"  # the alias evaluation moves and inference (and retraining) score with
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
    # for parquet arrays of pixel values: 0-255 (integers, as MNIST) | 0-1 (floats, scaled to 0-255 here).
    # A value outside the scale, a fraction under 0-255, NaN or infinity makes its row a reject.
    pixel_scale: str = "0-255"
    # The model is models:/<mlflow.registered_model>@<promote.champion_alias> (the alias evaluation moves),
    model_version: str | None = None  # unless a version is given
    output: str = "data/predictions/mnist"  # predictions/ and rejects/ and summary.json under it
    output_format: str = "parquet"  # parquet | delta
    skip_without_champion: bool = False  # true: no version holds the alias yet -> skip (exit 0), not fail
    # batch: score infer.input whole and replace the output. incremental: score the files (images, idx or
    # parquet) that arrived in the infer.input folder since the last run, exactly once, appending to the
    # output (Structured Streaming, trigger availableNow, checkpoint under infer.checkpoint)
    mode: str = "batch"
    checkpoint: str | None = None  # incremental: the stream's checkpoint; None: <infer.output>/_checkpoint
    max_files_per_trigger: int | None = None  # incremental: files per micro-batch; None: all new files at once


@dataclass
class MonitorConfig:
    enabled: bool = True  # every batch inference measures itself against the scoring version's reference
    path: str = "data/monitoring/mnist"  # inference_log/ (a row per scored input) and runs/ (a row per run)
    experiment: str | None = None  # MLflow experiment of the monitoring runs; None: <mlflow.experiment>-monitoring
    # Verdict from the largest PSI of the batch against the reference: below psi_moderate stable, above
    # psi_drift drift, else moderate (the common PSI convention).
    psi_moderate: float = 0.1
    psi_drift: float = 0.25
    # The false-alarm level of a run: a figure counts as a change only above its noise bound, the PSI
    # two samples of one distribution exceed by chance with probability false_alarm / 4 (assess/drift.py).
    false_alarm: float = 0.01
    # Fewer scored rows than this: the figures are kept but not judged (verdict too_few_rows).
    min_rows: int = 200
    # A run rejecting more than this share of its inputs gets the verdict rejects, whatever its figures.
    max_reject_share: float = 0.05
    last: int = 20  # mnist-pipeline monitor: how many runs to show


@dataclass
class RetrainConfig:
    infer: bool = True  # score infer.input with the champion after promotion
    # always: retrain on every call; drift: only when drift_runs of the champion's last window_runs
    # monitored inference runs were drift (otherwise exit 0, saying why)
    when: str = "always"
    drift_runs: int = 2
    window_runs: int = 5
    # One retrain of a data.root at a time: a second waits this long for the first, then skips (exit 0).
    lock_wait_s: float = 60.0


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
    monitor: MonitorConfig = field(default_factory=MonitorConfig)
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
    cfg._sources = {}  # dotted key -> the file or override that set it last (named in range errors)
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
    """Checks values that are the right type but cannot work: every numeric key against ``BOUNDS``,
    every enumerated key against its allowed values, and the keys that must agree with each other."""
    _validate_core(cfg)
    _validate_tune(cfg)


def _validate_core(cfg: PipelineConfig) -> None:
    for key, interval in BOUNDS.items():
        value = _get_dotted(cfg, key)
        for item in value if isinstance(value, list) else [value]:
            if item is not None and not _inside(item, interval):
                kind = "an integer" if isinstance(item, int) else "a number"
                raise ConfigError(f"{_source_of(cfg, key)}{key} is {value!r}; expected {kind} in {interval}")
    for key, allowed in (("ingest.format", INGEST_FORMATS), ("ingest.csv_header", CSV_HEADER_MODES),
                         ("model.activation", ACTIVATIONS), ("model.loss", LOSSES),
                         ("optimizer.name", OPTIMIZERS), ("optimizer.schedule", SCHEDULES),
                         ("train.cache_in_memory", TRAIN_CACHE_MODES), ("train.bind_cores", BIND_CORES_MODES),
                         ("train.backend", TRAIN_BACKENDS),
                         ("infer.input_format", INFER_INPUT_FORMATS), ("infer.output_format", INFER_OUTPUT_FORMATS),
                         ("infer.pixel_scale", PIXEL_SCALES), ("infer.mode", INFER_MODES),
                         ("retrain.when", RETRAIN_WHEN),
                         ("tune.metric", TUNE_METRICS),
                         ("tune.sampler", TUNE_SAMPLERS), ("tune.pruner", TUNE_PRUNERS),
                         ("lr_find.suggest", LR_FIND_SUGGESTIONS)):
        value = _get_dotted(cfg, key)
        if value not in allowed:
            raise ConfigError(f"{_source_of(cfg, key)}{key} is {value!r}; expected one of {', '.join(allowed)}")
    model = cfg.model
    if model.conv_filters:  # each conv layer (no padding) takes kernel_size - 1 pixels off each side's length
        side = 28 - len(model.conv_filters) * (model.kernel_size - 1)
        if side < model.pool_size:
            raise ConfigError(
                f"{_source_of(cfg, 'model.kernel_size')}model.kernel_size {model.kernel_size} with "
                f"{len(model.conv_filters)} conv layers (model.conv_filters) leaves a {max(side, 0)}x{max(side, 0)} "
                f"feature map, smaller than model.pool_size {model.pool_size}; expected 28 - layers x "
                "(kernel_size - 1) >= pool_size")
    if cfg.infer.mode == "incremental" and cfg.infer.input_format == "dataset":
        raise ConfigError(f"{_source_of(cfg, 'infer.mode')}infer.mode is incremental but infer.input_format is "
                          "dataset; expected a folder new files arrive in: images, idx or parquet")
    if cfg.infer.mode == "incremental" and cfg.infer.output_format != "parquet":
        raise ConfigError(f"{_source_of(cfg, 'infer.output_format')}infer.output_format is "
                          f"{cfg.infer.output_format} but infer.mode=incremental appends Parquet; expected parquet")
    if cfg.monitor.psi_moderate > cfg.monitor.psi_drift:
        raise ConfigError(f"{_source_of(cfg, 'monitor.psi_moderate')}monitor.psi_moderate {cfg.monitor.psi_moderate:g} "
                          f"is above monitor.psi_drift {cfg.monitor.psi_drift:g}; expected moderate <= drift")
    if cfg.monitor.min_rows < MIN_JUDGED_ROWS:
        raise ConfigError(
            f"{_source_of(cfg, 'monitor.min_rows')}monitor.min_rows is {cfg.monitor.min_rows}; expected "
            f"{MIN_JUDGED_ROWS} or more: below that the noise bounds grow past what a drifted batch reaches (at 50 "
            "rows, half a batch of another image source was seen in 65% of runs, every pixel dimmed to 60% in 6%; "
            "at 100 rows and more, every named shift in every run: bench/drift_bench.py)")
    _validate_extra(cfg)
    if cfg.retrain.drift_runs > cfg.retrain.window_runs:
        raise ConfigError(f"{_source_of(cfg, 'retrain.drift_runs')}retrain.drift_runs {cfg.retrain.drift_runs} is "
                          f"above retrain.window_runs {cfg.retrain.window_runs}; expected k of the last n runs, k <= n")
    opt = cfg.optimizer
    if opt.schedule in ("cosine", "plateau") and opt.min_learning_rate > opt.learning_rate:
        raise ConfigError(f"{_source_of(cfg, 'optimizer.min_learning_rate')}optimizer.min_learning_rate "
                          f"{opt.min_learning_rate:g} is above optimizer.learning_rate {opt.learning_rate:g}; "
                          f"the {opt.schedule} schedule decays from the rate down to this floor")


def _validate_extra(cfg: PipelineConfig) -> None:
    for i, entry in enumerate(cfg.ingest.extra):
        where = f"{_source_of(cfg, 'ingest.extra')}ingest.extra[{i}]"
        unknown = set(entry) - EXTRA_KEYS
        if unknown:
            raise ConfigError(f"{where} has unknown keys {', '.join(sorted(unknown))}; expected "
                              f"{', '.join(sorted(EXTRA_KEYS))}")
        if entry.get("format") not in EXTRA_FORMATS:
            raise ConfigError(f"{where}.format is {entry.get('format')!r}; expected one of {', '.join(EXTRA_FORMATS)}")
        if not entry.get("path"):
            raise ConfigError(f"{where} has no path; expected a file, folder or glob of labelled data")
        if entry["format"] != "parquet" and ({"image_column", "label_column"} & set(entry)):
            raise ConfigError(f"{where}: image_column and label_column are for format parquet, not {entry['format']}")


def _validate_tune(cfg: PipelineConfig) -> None:
    t, lf = cfg.tune, cfg.lr_find
    if t.pruner == "threshold" and t.prune_threshold is None:
        raise ConfigError("tune.pruner is threshold but tune.prune_threshold is not set; expected the metric value "
                          "below which (val_accuracy) or above which (val_loss) a trial is pruned")
    if not lf.min_learning_rate < lf.max_learning_rate:
        raise ConfigError(f"lr_find.min_learning_rate {lf.min_learning_rate} and lr_find.max_learning_rate "
                          f"{lf.max_learning_rate}: expected 0 < min < max")
    check_space(t.space, cfg)


def _inside(value: float, interval: str) -> bool:
    low, high = (float(end) for end in interval[1:-1].split(","))
    above = value >= low if interval[0] == "[" else value > low
    below = value <= high if interval[-1] == "]" else value < high
    return above and below  # NaN is inside no interval


def _get_dotted(cfg: Any, key: str) -> Any:
    node = cfg
    for part in key.split("."):
        node = getattr(node, part)
    return node


def _source_of(cfg: Any, key: str) -> str:
    source = (getattr(cfg, "_sources", None) or {}).get(key)
    return f"{source}: " if source else ""


# The search space of ``mnist-pipeline tune`` (``tune.space``) maps a config key to a distribution. It is
# checked here, when the config loads: every key must exist, and its lowest, highest and every listed
# value must be a valid setting of that key, so a typo fails before any trial starts.
_SPACE_FIELDS = {
    "float": {"type", "low", "high", "log", "step"},
    "int": {"type", "low", "high", "log", "step"},
    "categorical": {"type", "choices"},
}


def check_space(space: dict, cfg: PipelineConfig) -> None:
    """Raises ``ConfigError`` naming ``tune.space.<key>`` for anything that could not be sampled or set."""
    for key, spec in space.items():
        where = f"tune.space.{key}"
        if not isinstance(spec, dict):
            raise ConfigError(f"{where} must be a mapping such as {{type: float, low: 0.1, high: 0.5}}, got {spec!r}")
        kind = spec.get("type")
        if kind not in TUNE_DISTRIBUTIONS:
            raise ConfigError(f"{where}.type is {kind!r}; expected one of {', '.join(TUNE_DISTRIBUTIONS)}")
        unknown = set(spec) - _SPACE_FIELDS[kind]
        if unknown:
            raise ConfigError(f"{where} has {', '.join(sorted(unknown))}, which a {kind} distribution does not take; "
                              f"expected {', '.join(sorted(_SPACE_FIELDS[kind] - {'type'}))}")
        if kind == "categorical":
            choices = spec.get("choices")
            if not isinstance(choices, list) or not choices:
                raise ConfigError(f"{where}.choices must be a non-empty list, got {choices!r}")
            values = choices
        else:
            values = _space_range(where, kind, spec)
        for value in values:
            try:
                apply_overrides(cfg, {key: value}, source=where, name_settings=False)
            except ConfigError as exc:
                raise ConfigError(f"{where}: the value {value!r} is not a valid setting: {exc}") from None


def _space_range(where: str, kind: str, spec: dict) -> list:
    number = (int,) if kind == "int" else (int, float)
    low, high = spec.get("low"), spec.get("high")
    for name, value in (("low", low), ("high", high)):
        if not isinstance(value, number) or isinstance(value, bool):
            raise ConfigError(f"{where}.{name} is {value!r}; expected {'an integer' if kind == 'int' else 'a number'}")
    if not low < high:
        raise ConfigError(f"{where}: low {low} must be below high {high}")
    log, step = spec.get("log", False), spec.get("step")
    if not isinstance(log, bool):
        raise ConfigError(f"{where}.log is {log!r}; expected true or false")
    if log and low <= 0:
        raise ConfigError(f"{where}: a log distribution needs low > 0, got {low}")
    if log and step is not None:
        raise ConfigError(f"{where}: log and step cannot be combined")
    if step is not None and (not isinstance(step, number) or isinstance(step, bool) or step <= 0):
        raise ConfigError(f"{where}.step is {step!r}; expected a positive {'integer' if kind == 'int' else 'number'}")
    return [low, high]


def apply_overrides(cfg: PipelineConfig, overrides: dict[str, Any], source: str,
                    name_settings: bool = True) -> PipelineConfig:
    """A copy of ``cfg`` with ``{dotted.key: value}`` set (``key.N`` sets element N of a list), validated.

    Used for search-space values, which arrive as Python values rather than YAML text."""
    import copy

    out = copy.deepcopy(cfg)
    out._sources = None  # an error names these settings (below), not the files of the base config
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
            _merge_entries(node, {".".join(parts[i:]): value}, _field_types(parent)[name], ".".join(parts[:i]), source)
            return
        if isinstance(node, list) and part.isdigit() and i == len(parts) - 1:
            # key.N: element N of a list-valued key (model.conv_filters.1=128)
            parent, name = _parent_field(cfg, parts[:-1])
            if int(part) >= len(node):
                raise ConfigError(f"{source}: {'.'.join(parts[:-1])} has {len(node)} elements; there is no element "
                                  f"{part}")
            node[int(part)] = _coerce(value, typing.get_args(_field_types(parent)[name])[0], key, source)
            _record(cfg, ".".join(parts[:-1]), source)
            return
        if not dataclasses.is_dataclass(node) or part not in _field_types(node):
            raise ConfigError(f"{source}: unknown config key {key!r}; {_known(node, parts[:i], key)}")
        if i == len(parts) - 1:
            _assign(node, part, value, key, source)
            _record(cfg, key, source)
            return
        node = getattr(node, part)


def _parent_field(cfg: Any, parts: list[str]) -> tuple[Any, str]:
    node = cfg
    for part in parts[:-1]:
        node = getattr(node, part)
    return node, parts[-1]


def _merge(node: Any, data: dict, source: str, prefix: str, root: Any = None) -> None:
    """Applies a file's mapping to ``node``: each key it names is set, every other key keeps its value,
    whether it is a section (``model:``) or a mapping-valued key (``spark.conf:``), as a command-line
    override of one key would."""
    root = node if root is None else root
    for k, v in data.items():
        key = f"{prefix}{k}"
        if not dataclasses.is_dataclass(node) or k not in _field_types(node):
            raise ConfigError(f"{source}: unknown config key {key!r}; {_known(node, key.split('.')[:-1], key)}")
        child = getattr(node, k)
        if dataclasses.is_dataclass(child):
            if not isinstance(v, dict):
                raise ConfigError(f"{source}: {key!r} must be a mapping of keys, got {v!r}")
            _merge(child, v, source, f"{key}.", root)
        elif isinstance(child, dict):
            if not isinstance(v, dict):
                raise ConfigError(f"{source}: {key!r} must be a mapping, got {v!r}")
            _merge_entries(child, v, _field_types(node)[k], key, source)
        else:
            _assign(node, k, v, key, source)
            _record(root, key, source)


def _merge_entries(target: dict, entries: dict, typ: Any, key: str, source: str) -> None:
    """Sets each entry of a mapping-valued key; an entry set to null is removed (``tune.space`` loses a
    default dimension that way)."""
    value_type = typing.get_args(typ)[1]
    for name, value in entries.items():
        if value is None:
            target.pop(str(name), None)
        else:
            target[str(name)] = _coerce(value, value_type, f"{key}.{name}", source)


def _record(cfg: Any, key: str, source: str) -> None:
    if isinstance(getattr(cfg, "_sources", None), dict):
        cfg._sources[key] = source


def _assign(node: Any, name: str, value: Any, key: str, source: str) -> None:
    if isinstance(getattr(node, name), dict) and isinstance(value, dict):
        _merge_entries(getattr(node, name), value, _field_types(node)[name], key, source)
        return
    setattr(node, name, _coerce(value, _field_types(node)[name], key, source))


def _field_types(node: Any) -> dict[str, Any]:
    hints = typing.get_type_hints(type(node))
    return {f.name: hints[f.name] for f in dataclasses.fields(node)}


def _known(node: Any, parts: list[str], key: str = "") -> str:
    if key in RENAMED_KEYS:
        return f"it was replaced by {RENAMED_KEYS[key]}"
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
