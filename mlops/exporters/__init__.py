"""Plain files for other engines' own tools: the pipeline as an Airflow DAG or an Argo Workflow
(pipeline.py side), a model as a bundle, a container build context, Kubernetes and KServe
manifests (serving side), alert rules for Prometheus.

An exporter reads the core rooms below it and returns what it would write (paths and text);
it never runs an engine and imports none: the files it writes import only their engine.
"""
