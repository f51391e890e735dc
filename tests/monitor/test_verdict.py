"""A run's verdict: rejects first, then no reference, too few rows, then the sized drift rule."""

import pytest

from pipeline.assess import drift
from pipeline.config import PipelineConfig
from pipeline.monitor.verdict import describe, judge


def _profile(rows: int, shift: bool = False) -> dict:
    p = drift.empty_profile()
    classes = [rows // 10] * 10 if not shift else [0] * 5 + [rows // 5] * 5
    p.update(rows=rows, classes=classes, confidence=[0] * 9 + [rows], entropy=[rows] + [0] * 9,
             pixels=[49 * rows] * 16, confidence_sum=0.9 * rows, ink_sum=0.1 * rows)
    return p


def test_a_clean_batch_is_judged_by_the_sized_rule():
    judged = judge(PipelineConfig(), _profile(2000), _profile(500))
    assert judged["verdict"] == "stable" and judged["reject_share"] == 0
    assert judged["class_bound"] > 0 and judged["threshold"] == pytest.approx(0.1)
    assert judge(PipelineConfig(), _profile(2000), _profile(500, shift=True))["verdict"] == "drift"


def test_rejects_above_the_share_decide_whatever_the_scored_rows_say():
    cfg = PipelineConfig()
    judged = judge(cfg, _profile(2000), _profile(500), rejects=30)  # 30 of 530 = 5.7% > 5%
    assert judged["verdict"] == "rejects" and "30 of 530 inputs rejected (5.7% > monitor.max_reject_share 5.0%)" \
        in judged["decided_by"]
    assert judged["class_psi"] is not None  # the scored rows' figures are kept
    assert judge(cfg, _profile(2000), _profile(500), rejects=26)["verdict"] == "stable"  # 26 of 526 = 4.94%


def test_a_run_with_only_rejects_is_never_too_few_rows():
    nothing = drift.empty_profile()
    for reference in (_profile(2000), None):
        judged = judge(PipelineConfig(), reference, nothing, rejects=400)
        assert judged["verdict"] == "rejects" and judged["reject_share"] == 1.0 and judged["class_psi"] is None
    row = {**judge(PipelineConfig(), _profile(2000), nothing, rejects=400), "model_name": "m", "model_version": "3",
           "rows": 0, "rejects": 400, "source": "/in", "psi_moderate": 0.1}
    line = describe(row)
    assert "verdict rejects: 400 of 400 inputs rejected" in line and "**" not in line
    assert "verdict **rejects**" in describe(row, markdown=True)


def test_no_reference_and_too_few_rows_come_after_rejects():
    cfg = PipelineConfig()
    assert judge(cfg, None, _profile(500))["verdict"] == "no_reference"
    small = judge(cfg, _profile(2000), _profile(150, shift=True))
    assert small["verdict"] == "too_few_rows" and small["decided_by"] == "150 rows < monitor.min_rows 200"
    assert small["class_psi"] > 1  # measured, not judged
