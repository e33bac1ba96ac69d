"""Experiment tracking: runs, their params, metrics and artifacts (docs/tracking.md)."""
