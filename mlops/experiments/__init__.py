"""Experiments: the pipeline run with changed params in a workspace of its own, recorded, compared, kept.

``params`` (what ``-S`` says, grids and random samples), ``run`` (one experiment, a sweep, the
queue), ``store`` (records and queue under ``.mlops/experiments/``), ``keep`` (show, apply,
branch, remove, gc, and the objects gc must keep). See docs/experiments.md.
"""
