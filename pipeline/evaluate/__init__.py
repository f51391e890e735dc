"""Evaluation stage: metrics, plots, and champion/challenger promotion."""
