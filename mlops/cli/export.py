"""`mlops export`: write plain files that other engines' own tools run.

Three sides share the group: the pipeline's (Airflow, Argo: ``export_pipeline.py``), the serving
side's (bundle, Docker, Kubernetes, KServe: ``export_serving.py``) and monitoring's (Prometheus
rules: ``export_monitor.py``); each module adds its commands to the one ``export`` group.
"""

from __future__ import annotations

import typer

from . import export_monitor, export_pipeline, export_serving

export_app = typer.Typer(no_args_is_help=True)


def register(app: typer.Typer) -> None:
    export_pipeline.register(export_app)
    export_serving.register(export_app)
    export_monitor.register(export_app)
    app.add_typer(
        export_app, name="export", help="Write plain files for other engines: Airflow, Argo, containers, Kubernetes."
    )
