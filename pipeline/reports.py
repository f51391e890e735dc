"""What each stage prints when it is done: short, human summaries of its result."""

from __future__ import annotations

from pipeline.config import PipelineConfig


def format_manifest(manifest: dict, root: str) -> str:
    """A human summary of an ingest manifest: rows, class balance and row groups per split."""
    lines = [f"dataset {root}  (schema v{manifest['schema_version']}, seed {manifest['seed']})"]
    lines.append(f"  rows parsed {manifest['rows_parsed']:,}; exact duplicates dropped "
                 f"{manifest['duplicates']['dropped']:,} ({manifest['duplicates']['label_conflicts']} with conflicting labels)")
    lines.append(f"  {'split':6} {'rows':>8} {'row groups':>11}  class balance (% per digit 0-9)")
    for split, info in manifest["splits"].items():
        total = max(info["rows"], 1)
        balance = " ".join(f"{100 * info['classes'].get(str(d), 0) / total:4.1f}" for d in range(10))
        lines.append(f"  {split:6} {info['rows']:>8,} {info['row_groups']:>11}  {balance}")
    lines.append(f"  took {manifest['seconds']:.1f} s")
    return "\n".join(lines)


def format_training(result, cfg: PipelineConfig) -> str:
    uri = cfg.mlflow.tracking_uri
    lines = [
        f"model {result.model_name} version {result.model_version}: test accuracy {result.test_accuracy:.4f} "
        f"after {len(result.epochs)} epochs (MLflow run {result.run_id})",
    ]
    if getattr(result, "backend", None):
        lines.append(f"  trained with {result.backend} (train.backend={cfg.train.backend})")
    if getattr(result, "fit", None):
        lines.append(f"  fit: {result.fit}")
    if uri.startswith(("http://", "https://")):
        # MLflow 3's UI opens in its GenAI view unless the link says otherwise (older UIs ignore the parameter)
        lines.append(f"  the run: {uri.rstrip('/')}/#/experiments/{result.experiment_id}/runs/{result.run_id}"
                     "?workflowType=machine_learning")
    elif uri.startswith(("sqlite:", "file:", "/")) or "://" not in uri and not uri.startswith("databricks"):
        lines.append(f"  open the MLflow UI on these results: .venv/bin/mlflow ui --backend-store-uri {uri} "
                     "--host 127.0.0.1 --port 5000  (then http://127.0.0.1:5000)")
    else:
        lines.append(f"  the run is in experiment {cfg.mlflow.experiment} of {uri}")
    return "\n".join(lines)


def format_tune(result, cfg: PipelineConfig) -> str:
    lines = [f"tune: study {result.study}: {result.complete} complete, {result.pruned} pruned, {result.failed} failed "
             f"({result.storage})"]
    if result.best_number is None:
        lines.append("  no trial completed yet")
    else:
        settings = " ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in result.best_params.items())
        lines.append(f"  best: trial {result.best_number}, {result.metric} {result.best_value:.4f}: {settings}")
        lines.append(f"  its settings: {result.best_config}  (mnist-pipeline train -c {result.best_config})")
    lines.append(f"  MLflow: parent run {result.parent_run_id}, one nested run per trial")
    if result.registered is not None:
        lines.append(format_training(result.registered, cfg))
    return "\n".join(lines)


def format_decision(decision, cfg: PipelineConfig) -> str:
    verdict = "promoted to" if decision.promote else "not promoted; the champion stays"
    champion = f" (champion was version {decision.champion_version})" if decision.champion_version else ""
    return f"evaluate: version {decision.version} {verdict} @{cfg.promote.champion_alias}{champion}: {decision.reason}"


def format_inference(summary: dict | None, cfg: PipelineConfig | None = None) -> str:
    if summary is None:
        alias = cfg.promote.champion_alias if cfg else "champion"
        return f"infer: skipped, no version holds @{alias} yet"
    accuracy = f", accuracy {summary['accuracy']:.4f} on {summary['labelled_rows']:,} labelled rows" \
        if summary["accuracy"] is not None else ""
    histogram = " ".join(f"{k}:{v}" for k, v in summary["predicted_histogram"].items())
    text = (f"infer: {summary['inputs']:,} inputs: {summary['rows_scored']:,} scored, {summary['rejects']:,} rejected, "
            f"{summary['rows_per_sec']:,.0f} rows/s{accuracy}\n"
            f"  predicted classes {histogram}\n"
            f"  model {summary['model_uri']} -> {summary['output']}")
    if summary.get("mode") == "incremental":
        text = (f"infer (incremental): {summary['micro_batches']} new micro-batch(es) of {summary['input']}"
                + (f" (ids {', '.join(map(str, summary['batch_ids']))})" if summary["batch_ids"] else
                   "; no new files since the last run") + "\n" + text)
    watched = summary.get("monitoring")
    if watched:
        text += f"\n  monitoring: {watched.get('description') or watched['verdict']}"
    return text


def format_pipeline(report, cfg: PipelineConfig) -> str:
    if report.skipped:
        return f"retrain: skipped {report.skipped}"
    parts = [format_manifest(report.manifest, cfg.data.root), format_training(report.training, cfg),
             format_decision(report.decision, cfg)]
    if report.trigger:
        parts.insert(0, f"retrain (retrain.when=drift): {report.trigger}")
    if report.inference is not None:
        parts.append(format_inference(report.inference, cfg))
    elif cfg.retrain.infer:
        parts.append(f"infer: skipped, no version holds @{cfg.promote.champion_alias} yet")
    return "\n".join(parts)
