"""The Spark side of monitoring: a scoring pass's profile from the scored rows, summed by the one
aggregation that also counts the run's summary (no second pass, no row on the driver), and the scored
rows in the inference-log shape. ``pipeline.monitor`` judges what this measures."""

from __future__ import annotations

from pipeline.assess import drift
from pipeline.infer.scoring import PIXEL_COLUMNS


def count_columns(with_stats: bool):
    """The group-by keys and aggregates of the one aggregation over the scored rows."""
    from pyspark.sql import functions as F

    keys = [F.col("reject_reason").isNull().alias("ok"), "predicted_label",
            F.col("label").isNotNull().alias("labelled"),
            (F.col("label") == F.col("predicted_label")).alias("correct")]
    aggs = [F.count(F.lit(1)).alias("count")]
    if with_stats:
        keys += ["conf_bin", "entropy_bin"]
        aggs += [F.sum("probability").alias("confidence_sum"), F.sum("ink").alias("ink_sum"),
                 *(F.sum(c).alias(c) for c in PIXEL_COLUMNS)]
    return keys, aggs


def profile_from_counts(counts) -> dict:
    """The batch's profile from the aggregation's rows (``count_columns(True)``), rejects left out."""
    p = drift.empty_profile()
    for r in counts:
        if not r.ok:
            continue
        n = r["count"]
        p["rows"] += n
        p["classes"][int(r.predicted_label)] += n
        p["confidence"][int(r.conf_bin)] += n
        p["entropy"][int(r.entropy_bin)] += n
        for b, c in enumerate(PIXEL_COLUMNS):  # null: no row of this group carried its Arrow batch's totals
            p["pixels"][b] += int(r[c] or 0)
        p["confidence_sum"] += float(r.confidence_sum)
        p["ink_sum"] += float(r.ink_sum)
        if r.labelled:
            p["labelled"] += n
            p["correct"] += n if r.correct else 0
    return p


def rejects_of(counts) -> int:
    """The rejected rows among the aggregation's rows."""
    return sum(r["count"] for r in counts if not r.ok)


def inference_log(predictions, source: str):
    """The scored rows in the inference-log shape (``predictions``: the rows inference writes)."""
    from pyspark.sql import functions as F

    return predictions.select(
        F.col("scored_at").alias("timestamp"),
        F.concat_ws("/", "model_name", "model_version").alias("model_id"),
        "model_name", "model_version", F.col("predicted_label").alias("prediction"), "probability", "label",
        "id", F.lit(source).alias("source"))
