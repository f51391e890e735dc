"""Judging a trained model: test-split scoring, metrics, plots and the fit verdict. A shared leaf: training,
evaluation/promotion and tuning all use it, and it imports no stage."""
