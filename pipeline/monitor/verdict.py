"""A scoring run's verdict, from its figures.

In order, the first that applies:

- ``rejects``: more than ``monitor.max_reject_share`` of the run's inputs were rejected (a reference has
  none). The input changed in the most extreme way there is (another image size, floats where bytes
  were, files that do not decode), whatever the rows that could be scored look like. Retraining cannot
  mend it, so it never counts towards ``retrain.when=drift``: the producer upstream needs fixing.
- ``no_reference``: the scoring version was registered without a monitoring reference;
- ``too_few_rows``: fewer than ``monitor.min_rows`` rows were scored: the figures are kept, not judged;
- ``stable`` / ``moderate`` / ``drift``: ``assess.drift.compare``'s rule, sized to the batch: a figure
  counts only above its noise bound at ``monitor.false_alarm``, and then by the PSI convention.

Only the last three are *judged*: only they count in ``retrain.when=drift``'s window.
"""

from __future__ import annotations

from pipeline.assess import drift
from pipeline.config import PipelineConfig

REJECTS = "rejects"
NO_REFERENCE = "no_reference"
TOO_FEW_ROWS = "too_few_rows"
JUDGED = drift.VERDICTS  # stable, moderate, drift
ALL = (*JUDGED, REJECTS, NO_REFERENCE, TOO_FEW_ROWS)


def judge(cfg: PipelineConfig, reference: dict | None, batch: dict, rejects: int = 0) -> dict:
    """The figures and the verdict of a run that scored ``batch`` (a profile) and rejected ``rejects`` rows.

    The figures a run lacks (no reference, no scored row) are None; ``decided_by`` says in words what
    decided a verdict that no figure did.
    """
    m = cfg.monitor
    mine = drift.summary(batch)
    inputs = batch["rows"] + rejects
    share = rejects / inputs if inputs else 0.0
    empty = {name: None for name in drift.FIGURES} | {drift.bound_name(n): None for n in drift.FIGURES}
    base = {**empty, "mean_confidence": mine["mean_confidence"], "mean_ink": mine["mean_ink"],
            "accuracy": mine["accuracy"], "reference_accuracy": None, "reference_mean_confidence": None,
            "reference_mean_ink": None, "decisive": None, "threshold": None, "reject_share": share}
    if reference is not None:
        theirs = drift.summary(reference)
        base.update(reference_accuracy=theirs["accuracy"], reference_mean_confidence=theirs["mean_confidence"],
                    reference_mean_ink=theirs["mean_ink"])
        if batch["rows"]:
            base.update(drift.compare(reference, batch, m.psi_moderate, m.psi_drift, m.false_alarm))
    if share > m.max_reject_share:
        return {**base, "verdict": REJECTS,
                "decided_by": f"{rejects:,} of {inputs:,} inputs rejected ({share:.1%} > monitor.max_reject_share "
                              f"{m.max_reject_share:.1%})"}
    if reference is None:
        return {**base, "verdict": NO_REFERENCE, "decided_by": None}
    if batch["rows"] < m.min_rows:
        return {**base, "verdict": TOO_FEW_ROWS, "decided_by": f"{batch['rows']} rows < monitor.min_rows {m.min_rows}"}
    return base


def describe(row: dict, markdown: bool = False) -> str:
    """One paragraph on a run: plain text for the log and the console, ``markdown`` (the verdict in bold)
    for the MLflow run's description."""
    verdict = row["verdict"]
    shown = f"**{verdict}**" if markdown else verdict
    if verdict == REJECTS:
        judged = (f"verdict {shown}: {row['decided_by']}; the input itself changed (see the rejects' reasons), "
                  "which retraining cannot mend")
    elif verdict == NO_REFERENCE:
        judged = (f"version {row['model_version']} has no monitoring reference (registered before monitoring), "
                  "so no drift figures")
    elif row["decisive"] is None:
        judged = "no rows were scored, so nothing to compare"
    elif verdict == TOO_FEW_ROWS:
        judged = (f"verdict too_few_rows ({row['decided_by']}): largest PSI {row['decisive']:.3f}, not judged")
    else:
        judged = (f"verdict {shown}: {row['decided_by']} = {row['decisive']:.3f} against {row['threshold']:.3f} "
                  f"(the larger of monitor.psi_moderate {row['psi_moderate']:g} and the noise bound at "
                  f"{row['rows']:,} rows)")
    accuracy = f"; accuracy {row['accuracy']:.4f}" if row.get("accuracy") is not None else ""
    confidence = (f"; mean top-class probability {row['mean_confidence']:.3f}"
                  if row.get("mean_confidence") is not None else "")
    if row.get("reference_mean_confidence") is not None and row.get("mean_confidence") is not None:
        confidence += f" (reference {row['reference_mean_confidence']:.3f})"
    return (f"{row['model_name']} version {row['model_version']} scored {row['rows']:,} rows "
            f"({row['rejects']:,} rejects) of {row['source']}: {judged}{confidence}{accuracy}.")
