"""Airflow plugin: the runs page (``/idc-sync/runs/``), linked from the UI's Browse menu.

The app is in ``idc_sync_airflow.runs_page_app``; the tables in ``idc_sync.runs_page``.
"""

from __future__ import annotations

from airflow.plugins_manager import AirflowPlugin

from idc_sync_airflow.runs_page_app import app


class IdcSyncRunsPagePlugin(AirflowPlugin):
    name = "idc_sync_runs_page"
    fastapi_apps = [{"app": app, "url_prefix": "/idc-sync/runs", "name": "idc-sync runs"}]
    external_views = [
        {
            "name": "idc-sync runs",
            "href": "/idc-sync/runs/",
            "destination": "nav",
            "category": "browse",
            "url_route": "idc-sync-runs",
        }
    ]
