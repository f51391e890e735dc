"""``mnist-pipeline tune``: an Optuna study whose every trial is the distributed training.

Optuna runs on the driver. Each trial draws its settings from ``tune.space``, applies them to the
config and calls the training stage (``pipeline.train.driver.train``, handed in by
``pipeline.stages``: the same preflight, reader and ranks as ``train``), without registering a model.
The driver already receives the ranks' epoch records while
they train; each is reported to the trial, and when the pruner says stop, every rank stops at the same
batch (``train.callbacks.StopOnRequest``), so a pruned trial leaves no rank behind.

Tracking: one MLflow parent run for the study, one nested run per trial (its params and per-epoch
metrics, like any training run). The parent gets the best trial's settings (tags ``best.<key>``) and
value (metric), a trials table (``tune/trials.csv``), the best settings as YAML, and the optimisation
history, parameter importances and parallel-coordinates plots.

Resuming: the study lives in a database (SQLite beside the MLflow store by default). Running ``tune``
again with the same ``tune.study`` continues it. A trial that was running when the study was killed is
marked failed and its settings are tried again first; since its checkpoints are kept, that training
resumes after its last completed epoch. One ``tune`` process per study at a time.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from pipeline.config import PipelineConfig, apply_overrides
from pipeline.errors import ConfigError, TrainingError
from pipeline.io import storage
from pipeline.tune import space as search_space

log = logging.getLogger(__name__)

_PARENT_RUN_ATTR = "mlflow_parent_run_id"
_RETRY_ATTR = "retry_of"  # on a trial that re-runs the settings of an interrupted one: that trial's number


@dataclass
class TuneResult:
    study: str
    storage: str
    metric: str
    direction: str
    complete: int
    pruned: int
    failed: int
    best_number: int | None
    best_value: float | None
    best_params: dict = field(default_factory=dict)
    best_config: str | None = None  # the YAML file with the best settings
    parent_run_id: str | None = None
    experiment_id: str | None = None
    registered: object | None = None  # TrainResult of the best settings, when tune.register_best


def study_storage(cfg: PipelineConfig) -> str:
    """``tune.storage``, or SQLite beside the MLflow store: ``<folder of mlflow.db>/optuna.db`` when the
    tracking store is a SQLite file, else ``<tune.output>/optuna.db``."""
    if cfg.tune.storage:
        return cfg.tune.storage
    uri = cfg.mlflow.tracking_uri
    if uri.startswith("sqlite:///"):
        folder = Path(uri.removeprefix("sqlite:///")).parent
    else:
        folder = Path(cfg.tune.output)
    folder.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{folder / 'optuna.db'}"


def _direction(metric: str) -> str:
    return "minimize" if metric == "val_loss" else "maximize"


def _sampler(cfg: PipelineConfig):
    import optuna

    if cfg.tune.sampler == "random":
        return optuna.samplers.RandomSampler(seed=cfg.tune.seed)
    return optuna.samplers.TPESampler(seed=cfg.tune.seed)


def _pruner(cfg: PipelineConfig):
    import optuna

    t = cfg.tune
    if t.pruner == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=t.pruner_startup_trials, n_warmup_steps=t.pruner_warmup_epochs)
    if t.pruner == "threshold":
        if t.metric == "val_loss":
            return optuna.pruners.ThresholdPruner(upper=t.prune_threshold)
        return optuna.pruners.ThresholdPruner(lower=t.prune_threshold)
    return optuna.pruners.NopPruner()


def open_study(cfg: PipelineConfig):
    """Creates or loads the study named ``tune.study``. Fails if it exists with another metric direction."""
    import optuna

    storage_url = study_storage(cfg)
    direction = _direction(cfg.tune.metric)
    try:
        study = optuna.create_study(study_name=cfg.tune.study, storage=storage_url, direction=direction,
                                    sampler=_sampler(cfg), pruner=_pruner(cfg), load_if_exists=True)
    except ValueError as exc:  # optuna: the stored direction differs
        raise ConfigError(f"study {cfg.tune.study!r} in {storage_url}: {exc}; use another tune.study name") from None
    except Exception as exc:  # SQLAlchemy: a malformed URL, a missing driver, a database that does not answer
        raise ConfigError(f"tune.storage {storage_url}: cannot open the study database ({type(exc).__name__}: "
                          f"{str(exc).splitlines()[0]}); expected a SQLAlchemy URL such as sqlite:///path/optuna.db "
                          "or null for SQLite beside the MLflow store") from None
    if study.direction.name.lower() != direction:
        raise ConfigError(f"study {cfg.tune.study!r} in {storage_url} was created to {study.direction.name.lower()} "
                          f"its metric, but tune.metric {cfg.tune.metric} is to {direction}; use another tune.study")
    stored_metric = study.user_attrs.get("metric")
    if stored_metric and stored_metric != cfg.tune.metric:
        raise ConfigError(f"study {cfg.tune.study!r} in {storage_url} optimises {stored_metric}, not "
                          f"tune.metric {cfg.tune.metric}; use another tune.study name")
    study.set_user_attr("metric", cfg.tune.metric)
    return study, storage_url


def _recover_interrupted(study) -> int:
    """Trials left RUNNING by a killed study: marked failed and queued to run again first (the retry
    carries ``retry_of``), through Optuna's public ``tell`` and ``enqueue_trial``."""
    from optuna.trial import TrialState

    count = 0
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        study.tell(trial.number, state=TrialState.FAIL)
        study.enqueue_trial(trial.params, user_attrs={_RETRY_ATTR: trial.number})
        log.info("trial %d was interrupted (the study was stopped while it ran); trying its settings again",
                 trial.number)
        count += 1
    return count


def _finished(study) -> int:
    """Trials that count toward ``tune.trials``: complete, pruned, or failed for a reason of their own
    (an interrupted trial does not count; its retry does)."""
    from optuna.trial import TrialState

    trials = study.get_trials(deepcopy=False)
    retried = {t.user_attrs[_RETRY_ATTR] for t in trials if _RETRY_ATTR in t.user_attrs}
    return sum(1 for t in trials
               if t.state in (TrialState.COMPLETE, TrialState.PRUNED)
               or (t.state == TrialState.FAIL and t.number not in retried))


def trial_config(cfg: PipelineConfig, overrides: dict, number: int) -> PipelineConfig:
    """The config a trial trains with: the sampled settings over ``cfg``, ``tune.epochs`` epochs."""
    out = apply_overrides(cfg, overrides, source=f"trial {number}:")
    if cfg.tune.epochs:
        out.train.epochs = cfg.tune.epochs
    out.mlflow.run_name = f"{cfg.tune.study}-trial-{number}"
    return out


def tune(spark, cfg: PipelineConfig, train) -> TuneResult:
    """Runs (or continues) the study; returns its best trial and where its settings were written.

    ``train`` is the training stage's entry point (``pipeline.train.driver.train``), handed in by the
    caller (``pipeline.stages``), so this stage imports no other stage."""
    import mlflow
    import optuna

    from pipeline.io.tracking import existing_run, setup_experiment

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    t = cfg.tune
    study, storage_url = open_study(cfg)
    _recover_interrupted(study)
    experiment_id = setup_experiment(cfg.mlflow)
    parent_id = study.user_attrs.get(_PARENT_RUN_ATTR)
    if parent_id is not None and existing_run(mlflow.MlflowClient(), parent_id) is None:
        # only a run the store says does not exist; any other failure of the lookup stops here (TrackingError)
        log.warning("the study's MLflow run %s does not exist in %s (deleted?); starting a new parent run",
                    parent_id, cfg.mlflow.tracking_uri)
        parent_id = None
    remaining = max(0, t.trials - _finished(study))
    log.info("study %s (%s, %s %s): %d of %d trials done, %d to run%s", t.study, storage_url, _direction(t.metric),
             t.metric, t.trials - remaining, t.trials, remaining,
             f", budget {t.timeout_s:.0f} s" if t.timeout_s else "")

    with mlflow.start_run(run_id=parent_id, experiment_id=experiment_id,
                          run_name=None if parent_id else f"tune-{t.study}") as parent:
        if parent_id is None:
            study.set_user_attr(_PARENT_RUN_ATTR, parent.info.run_id)
            mlflow.log_params({f"tune.{k}": v for k, v in _study_params(cfg).items()})
            mlflow.log_dict(t.space, "tune/space.json")
            mlflow.set_tags({"tune.study": t.study, "tune.storage": storage_url, "pipeline.kind": "tune"})

        def objective(trial):
            return _run_trial(spark, cfg, trial, train)

        if remaining:
            study.optimize(objective, n_trials=remaining, timeout=t.timeout_s, catch=(TrainingError,),
                           callbacks=[_ProgressLine(t.trials, t.metric)], gc_after_trial=True)
        result = _summarise(study, cfg, storage_url, parent.info.run_id, experiment_id)
        if result.best_number is not None:
            result.best_config = _write_best(cfg, study)
            _log_study(study, cfg, result)
            if t.register_best:
                best_cfg = apply_overrides(cfg, search_space.params_to_overrides(study.best_trial.params),
                                           source=f"best trial {result.best_number}:")
                best_cfg.mlflow.run_name = f"{t.study}-best"
                log.info("training the best settings (trial %d) for %d epochs and registering the model",
                         result.best_number, best_cfg.train.epochs)
                result.registered = train(spark, best_cfg, tags={"tune.study": t.study,
                                                                 "tune.best_trial": str(result.best_number)})
        elif remaining:
            log.warning("no trial of study %s completed; nothing to write", t.study)
    return result


def _study_params(cfg: PipelineConfig) -> dict:
    t = cfg.tune
    return {"study": t.study, "metric": t.metric, "trials": t.trials, "epochs": t.epochs, "sampler": t.sampler,
            "pruner": t.pruner, "timeout_s": t.timeout_s, "seed": t.seed}


def _run_trial(spark, cfg: PipelineConfig, trial, train) -> float:
    import optuna

    overrides = search_space.suggest(trial, cfg.tune.space)
    tcfg = trial_config(cfg, overrides, trial.number)
    metric = cfg.tune.metric
    started = time.monotonic()

    def on_epoch(record: dict) -> bool:
        value = _value(record[metric], metric)
        trial.report(value, record["epoch"])
        return trial.should_prune()

    tags = {"tune.study": cfg.tune.study, "tune.trial": str(trial.number)}
    result = train(spark, tcfg, on_epoch=on_epoch, register=False, tags=tags)
    trial.set_user_attr("mlflow_run_id", result.run_id)
    trial.set_user_attr("seconds", round(time.monotonic() - started, 1))
    if result.stopped_after_epoch is not None:
        trial.set_user_attr("pruned_after_epoch", result.stopped_after_epoch)
        raise optuna.TrialPruned(f"pruned after epoch {result.stopped_after_epoch}")
    if not result.epochs:
        raise TrainingError(f"trial {trial.number} finished without an epoch record")
    return _value(result.epochs[-1][metric], metric)


def _value(value: float, metric: str) -> float:
    """A diverged run (NaN loss) is the worst value, not a failure."""
    if value is None or math.isnan(value):
        return math.inf if metric == "val_loss" else 0.0
    return float(value)


class _ProgressLine:
    """One line per finished trial: number, value, best so far, settings, pruned or not."""

    def __init__(self, total: int, metric: str):
        self._total, self._metric = total, metric

    def __call__(self, study, trial) -> None:
        from optuna.trial import TrialState

        settings = " ".join(f"{k}={_short(v)}" for k, v in search_space.params_to_overrides(trial.params).items())
        seconds = trial.user_attrs.get("seconds")
        took = f" | {seconds:.0f} s" if seconds is not None else ""
        try:
            best = f"best {study.best_value:.4f} (trial {study.best_trial.number})"
        except ValueError:
            best = "no complete trial yet"
        done = _finished(study)
        if trial.state == TrialState.PRUNED:
            last = trial.intermediate_values.get(max(trial.intermediate_values)) if trial.intermediate_values else None
            what = f"pruned after epoch {trial.user_attrs.get('pruned_after_epoch', '?')}" + \
                (f" ({self._metric} {last:.4f})" if last is not None else "")
        elif trial.state == TrialState.COMPLETE:
            what = f"{self._metric} {trial.value:.4f}"
        else:
            what = "failed (see the log)"
        log.info("trial %d [%d/%d]: %s | %s | %s%s", trial.number, done, self._total, what, best, settings, took)


def _short(value) -> str:
    if isinstance(value, float):
        return f"{value:.3g}"
    return str(value)


def _summarise(study, cfg: PipelineConfig, storage_url: str, parent_run_id: str, experiment_id: str) -> TuneResult:
    from optuna.trial import TrialState

    trials = study.get_trials(deepcopy=False)
    count = {s: sum(1 for t in trials if t.state == s) for s in (TrialState.COMPLETE, TrialState.PRUNED,
                                                                  TrialState.FAIL)}
    result = TuneResult(study=cfg.tune.study, storage=storage_url, metric=cfg.tune.metric,
                        direction=_direction(cfg.tune.metric), complete=count[TrialState.COMPLETE],
                        pruned=count[TrialState.PRUNED], failed=count[TrialState.FAIL], best_number=None,
                        best_value=None, parent_run_id=parent_run_id, experiment_id=experiment_id)
    if count[TrialState.COMPLETE]:
        best = study.best_trial
        result.best_number, result.best_value = best.number, best.value
        result.best_params = search_space.params_to_overrides(best.params)
    return result


def best_settings(cfg: PipelineConfig, study) -> dict:
    """The best trial's settings as config sections (what ``train -c best.yaml`` reads)."""
    best = study.best_trial
    best_cfg = apply_overrides(cfg, search_space.params_to_overrides(best.params), source=f"best trial {best.number}:")
    return search_space.as_config_sections(best_cfg, best.params)


def _write_best(cfg: PipelineConfig, study) -> str:
    best = study.best_trial
    header = (f"# Best trial {best.number} of study {cfg.tune.study}: {cfg.tune.metric} {best.value:.4f} after "
              f"{cfg.tune.epochs or cfg.train.epochs} epochs.\n"
              f"# Train with it: mnist-pipeline train -c <this file> [other -c files and overrides]\n")
    path = storage.join(cfg.tune.output, f"{cfg.tune.study}-best.yaml")
    storage.write_text(path, header + yaml.safe_dump(best_settings(cfg, study), sort_keys=False))
    log.info("best settings written to %s", path)
    return path


def _log_study(study, cfg: PipelineConfig, result: TuneResult) -> None:
    """The parent run's record of the study: best settings and value, trials table, plots."""
    import mlflow

    mlflow.set_tags({f"best.{k}": str(v) for k, v in result.best_params.items()})
    mlflow.set_tag("best.trial", str(result.best_number))
    finished = result.complete + result.pruned
    mlflow.log_metrics({f"best_{cfg.tune.metric}": result.best_value, "trials_complete": result.complete,
                        "trials_pruned": result.pruned, "trials_failed": result.failed}, step=finished)
    mlflow.log_text(storage.read_text(result.best_config), "tune/best.yaml")
    table = study.trials_dataframe()
    mlflow.log_text(table.to_csv(index=False), "tune/trials.csv")
    for name, figure in _plots(study):
        mlflow.log_figure(figure, f"tune/{name}.png")


def _plots(study):
    """Optuna's matplotlib plots that the study has enough trials for; a plot that cannot be drawn is skipped."""
    import warnings

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from optuna.visualization import matplotlib as ov

    for name, draw in (("optimization_history", ov.plot_optimization_history),
                       ("param_importances", ov.plot_param_importances),
                       ("parallel_coordinate", ov.plot_parallel_coordinate)):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # optuna marks its matplotlib plots experimental
                axes = draw(study)
        except Exception as exc:  # e.g. importances need two complete trials with different settings
            log.info("plot %s skipped: %s", name, exc)
            continue
        figure = axes.figure if hasattr(axes, "figure") else axes.flat[0].figure
        figure.set_size_inches(10, 6)
        figure.tight_layout()
        yield name, figure
        plt.close(figure)
