"""``mnist-pipeline monitor``: the last runs as a table, and the drift-over-time plot beside the history."""

from __future__ import annotations

from pipeline.config import PipelineConfig
from pipeline.io import storage
from pipeline.monitor.history import monitor_root, read_runs
from pipeline.monitor.verdict import JUDGED


def monitor(spark, cfg: PipelineConfig) -> dict:
    """The last ``monitor.last`` runs, and the drift-over-time plot written beside the history."""
    runs = read_runs(cfg)
    plot = None
    if runs:
        import matplotlib.pyplot as plt

        from pipeline.assess import plots

        fig = plots.drift_over_time(runs, cfg.monitor.psi_moderate, cfg.monitor.psi_drift)
        image = plots.png(fig)
        plt.close("all")
        plot = storage.join(monitor_root(cfg), "drift_over_time.png")
        storage.write_bytes(plot, image)
    return {"runs": runs[-cfg.monitor.last:], "total": len(runs), "plot": plot, "root": monitor_root(cfg)}


def format_monitor(result: dict, cfg: PipelineConfig) -> str:
    if not result["total"]:
        return f"no monitored inference runs under {result['root']} yet (batch inference adds one per run)"
    lines = [f"monitored inference runs under {result['root']}: last {len(result['runs'])} of {result['total']}",
             f"{'time (UTC)':<20} {'rows':>8} {'version':>7} {'class':>7} {'conf':>7} {'entropy':>7} {'pixels':>7} "
             f"{'needs':>7} {'mean p':>7} {'accuracy':>8} {'rejects':>7}  verdict"]

    def fig(value, width=7, digits=3):
        return f"{value:>{width}.{digits}f}" if value is not None else f"{'-':>{width}}"

    for r in result["runs"]:
        when = r["timestamp"].strftime("%Y-%m-%d %H:%M:%S") if r["timestamp"] else "?"
        share = f"{r['reject_share']:.1%}" if r["reject_share"] is not None else "-"
        said = ""
        if r["verdict"] in ("moderate", "drift", "rejects"):
            said = f" ({r['decided_by']})"
        if r["purpose"] == "retrain":
            said += " [retrain's own check]"
        lines.append(f"{when:<20} {r['rows']:>8,} {r['model_version']:>7} {fig(r['class_psi'])} "
                     f"{fig(r['confidence_psi'])} {fig(r['entropy_psi'])} {fig(r['pixel_psi'])} "
                     f"{fig(r['threshold'])} {fig(r['mean_confidence'])} {fig(r['accuracy'], 8, 4)} {share:>7}  "
                     f"{r['verdict']}{said}")
    m = cfg.monitor
    lines.append("PSI of predicted classes, confidence, entropy and pixel histograms against the version's reference. "
                 f"A figure is moderate from max({m.psi_moderate:g}, its noise bound) and drift above "
                 f"max({m.psi_drift:g}, its noise bound); the bound grows as batches shrink (false-alarm level "
                 f"{m.false_alarm:g} a run); 'needs' is the deciding figure's threshold at that run's size. "
                 f"Only {', '.join(JUDGED)} runs count towards retrain.when=drift.")
    lines.append(f"drift over time: {result['plot']}")
    return "\n".join(lines)
