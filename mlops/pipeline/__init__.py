"""Pipelines: pipeline.yaml (spec), the stage graph, pipeline.lock, out-of-date reasons, the run cache, the executor."""
