"""Airflow plugin: the kintone webhook endpoint on the api-server (``/idc-sync/webhooks/kintone``).

The app and its checks are in ``idc_sync_airflow.kintone_webhook_app``; importing it here costs only FastAPI.
"""

from __future__ import annotations

from airflow.plugins_manager import AirflowPlugin

from idc_sync_airflow.kintone_webhook_app import app, install_redaction

install_redaction()


class IdcSyncWebhookPlugin(AirflowPlugin):
    name = "idc_sync_webhooks"
    fastapi_apps = [{"app": app, "url_prefix": "/idc-sync/webhooks", "name": "idc-sync kintone webhooks"}]
