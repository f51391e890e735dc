"""``mnist-pipeline lr-find``: the learning-rate range test, on the same ranks and data path as ``train``.

The course asks "what is the best learning rate?". This answers it empirically (Smith, "Cyclical
Learning Rates for Training Neural Networks", 2017): train the configured model for ``lr_find.steps``
batches while the rate grows exponentially from ``min_learning_rate`` to ``max_learning_rate``, record
the loss (averaged over ranks) at every step, and stop once it diverges. The loss curve, smoothed,
falls slowly at tiny rates, steeply at useful ones, then blows up. Two common readings of it:

- ``steepest``: the rate where the smoothed loss falls fastest per decade of rate;
- ``min_div_10``: a tenth of the rate at the smoothed loss's minimum.

The sweep runs on N ranks with the gradients averaged, so the rates it measures are the optimizer's
actual rates for that effective batch. ``optimizer.learning_rate`` is the one-rank rate when
``optimizer.scale_by_ranks`` is on, so the suggestion for that key is the measured rate divided by N.
"""

from __future__ import annotations

import logging
import math
import uuid
from dataclasses import dataclass

import numpy as np

from pipeline.config import PipelineConfig
from pipeline.io import storage
from pipeline.io.fs import qualify

log = logging.getLogger(__name__)

_SKIP_START = 0.1  # the first tenth of the sweep is too noisy to read a slope from


@dataclass
class Sweep:
    rates: list[float]
    losses: list[float]
    smoothed: list[float]
    diverged_at: int | None  # step (1-based) where the loss diverged; None: the sweep reached max rate
    steepest: float | None  # effective rate where the smoothed loss falls fastest
    minimum: float  # effective rate at the smoothed loss's minimum
    suggested: float  # effective rate suggested, by ``method``
    method: str  # steepest | min_div_10 (what ``suggested`` is)
    ranks: int
    suggested_setting: float  # the value for optimizer.learning_rate
    note: str = ""


def smooth(losses: list[float], beta: float) -> list[float]:
    """Bias-corrected exponential moving average (the first values are not pulled toward 0)."""
    out, average = [], 0.0
    for i, loss in enumerate(losses, start=1):
        average = beta * average + (1 - beta) * loss
        out.append(average / (1 - beta ** i))
    return out


def analyse(rates: list[float], losses: list[float], diverged_at: int | None, *, beta: float, method: str,
            ranks: int, scale_by_ranks: bool) -> Sweep:
    """Reads the suggestion off a sweep. Points from the divergence on are not used."""
    smoothed = smooth(losses, beta)
    usable = len(rates) if diverged_at is None else max(2, diverged_at - 1)
    r = np.asarray(rates[:usable], dtype=float)
    s = np.asarray(smoothed[:usable], dtype=float)
    finite = np.isfinite(s)
    r, s = r[finite], s[finite]
    lowest = int(np.argmin(s))
    minimum = float(r[lowest])
    steepest, note = None, ""
    start = int(len(r) * _SKIP_START)
    if lowest - start >= 2:
        slope = np.gradient(s, np.log10(r))
        steepest = float(r[start + int(np.argmin(slope[start:lowest + 1]))])
    else:
        note = "the loss did not fall over the sweep's first part; lower lr_find.min_learning_rate"
    chosen = method
    if method == "steepest" and steepest is None:
        chosen = "min_div_10"
    suggested = steepest if chosen == "steepest" else minimum / 10
    setting = suggested / ranks if scale_by_ranks else suggested
    return Sweep(rates=list(rates), losses=list(losses), smoothed=smoothed, diverged_at=diverged_at,
                 steepest=steepest, minimum=minimum, suggested=suggested, method=chosen, ranks=ranks,
                 suggested_setting=setting, note=note)


def lr_find(spark, cfg: PipelineConfig) -> Sweep:
    """Runs the sweep on the configured ranks, logs it to MLflow, returns the reading."""
    import mlflow

    from pipeline.io.tracking import setup_experiment
    from pipeline.train.backends import HOROVOD, resolve_backend
    from pipeline.train.driver import launch_ranks, launch_tf_workers
    from pipeline.train.preflight import preflight
    from pipeline.train.worker import LrFindJob, lr_find_on_rank

    backend = resolve_backend(cfg.train.backend)
    lf = cfg.lr_find
    pre = preflight(spark, cfg)
    run_dir = f"{qualify(cfg.train.checkpoint_dir).rstrip('/')}/lr-find-{uuid.uuid4().hex[:12]}"
    job = LrFindJob(model=cfg.model, optimizer=cfg.optimizer, lr_find=lf, train=cfg.train,
                    dataset_root=qualify(cfg.data.root), run_dir=run_dir, threads_per_rank=pre.threads_per_rank)
    log.info("lr-find: %d ranks x %d threads (%s), %d steps of %d per rank, rate %.1e -> %.1e", pre.num_proc,
             pre.threads_per_rank, backend, lf.steps, cfg.train.batch_size, lf.min_learning_rate, lf.max_learning_rate)
    try:
        if backend == HOROVOD:
            results = launch_ranks(lr_find_on_rank, job, pre.num_proc, run_dir, cfg)
        else:
            results = launch_tf_workers(spark, job, pre.num_proc, run_dir)
    finally:
        storage.delete(run_dir)
    rank0 = next(r for r in results if r and r["rank"] == 0)
    sweep = analyse(rank0["rates"], rank0["losses"], rank0["diverged_at"], beta=lf.smoothing, method=lf.suggest,
                    ranks=rank0["ranks"], scale_by_ranks=cfg.optimizer.scale_by_ranks)

    experiment_id = setup_experiment(cfg.mlflow)
    with mlflow.start_run(experiment_id=experiment_id, run_name="lr-find") as run:
        mlflow.set_tags({"pipeline.kind": "lr-find", "backend": backend, "suggested_method": sweep.method,
                         "suggested_learning_rate": f"{sweep.suggested_setting:.3g}"})
        mlflow.log_params({**{f"lr_find.{k}": v for k, v in vars(lf).items()}, "horovod.num_proc": sweep.ranks,
                           "train.batch_size": cfg.train.batch_size, "optimizer.name": cfg.optimizer.name,
                           "optimizer.scale_by_ranks": cfg.optimizer.scale_by_ranks})
        import time

        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        metrics = []
        for step, (rate, loss, smoothed) in enumerate(zip(sweep.rates, sweep.losses, sweep.smoothed), start=1):
            for key, value in (("lr_find_learning_rate", rate), ("lr_find_loss", loss),
                               ("lr_find_smoothed_loss", smoothed)):
                if math.isfinite(value):
                    metrics.append(Metric(key, float(value), now, step))
        client = mlflow.MlflowClient()
        for i in range(0, len(metrics), 900):  # the REST API takes at most 1000 metrics per batch
            client.log_batch(run.info.run_id, metrics=metrics[i:i + 900])
        mlflow.log_metrics({"suggested_learning_rate": sweep.suggested_setting,
                            "suggested_effective_rate": sweep.suggested, "minimum_loss_rate": sweep.minimum})
        from pipeline.assess.plots import close, lr_find_figure

        figure = lr_find_figure(sweep)
        mlflow.log_figure(figure, "lr_find.png")
        close(figure)
        sweep_run = run.info.run_id
    log.info("lr-find logged to MLflow run %s", sweep_run)
    return sweep


def format_sweep(sweep: Sweep, cfg: PipelineConfig) -> str:
    steps = len(sweep.rates)
    ended = f"stopped at step {sweep.diverged_at}: the loss diverged" if sweep.diverged_at else \
        "reached lr_find.max_learning_rate"
    how = {"steepest": "where the smoothed loss falls fastest", "min_div_10": "a tenth of the rate at the loss's minimum"}
    per_rank = f" = {sweep.suggested:.2e} effective / {sweep.ranks} ranks (optimizer.scale_by_ranks)" \
        if cfg.optimizer.scale_by_ranks and sweep.ranks > 1 else ""
    other = f"minimum/10 {sweep.minimum / 10:.2e}" if sweep.method == "steepest" else \
        (f"steepest {sweep.steepest:.2e}" if sweep.steepest else "no steepest point")
    lines = [
        f"lr-find: {steps} steps on {sweep.ranks} ranks, rate {sweep.rates[0]:.1e} -> {sweep.rates[-1]:.1e} ({ended})",
        f"  lowest smoothed loss {min(sweep.smoothed[:steps]):.4f} at rate {sweep.minimum:.2e}",
        f"  suggested optimizer.learning_rate={sweep.suggested_setting:.2e} ({sweep.method}: {how[sweep.method]}"
        f"{per_rank}; {other} effective)",
    ]
    if sweep.note:
        lines.append(f"  note: {sweep.note}")
    lines.append(f"  apply it: mnist-pipeline train optimizer.learning_rate={sweep.suggested_setting:.2e}")
    return "\n".join(lines)
