"""Where the DAG's settings come from: connection ids and the ``idc_sync_config`` Variable."""

from __future__ import annotations

import os

from airflow.sdk import Variable

from idc_sync.config import SyncConfig

AWS_CONN_ID = os.environ.get("IDC_SYNC_AWS_CONN_ID", "aws_default")
KINTONE_CONN_ID = os.environ.get("IDC_SYNC_KINTONE_CONN_ID", "kintone_default")
SLACK_CONN_ID = os.environ.get("IDC_SYNC_SLACK_CONN_ID", "slack_idc_sync")
GRAPH_CONN_ID = os.environ.get("IDC_SYNC_GRAPH_CONN_ID", "graph_default")
AIRFLOW_API_CONN_ID = os.environ.get("IDC_SYNC_AIRFLOW_API_CONN_ID", "airflow_api")
CONFIG_VARIABLE = "idc_sync_config"


def load_config() -> SyncConfig:
    """The Variable ``idc_sync_config`` (JSON) if set, else ``$IDC_SYNC_CONFIG``, else the defaults."""
    raw = Variable.get(CONFIG_VARIABLE, default=None)
    if raw is None:
        return SyncConfig.from_env()
    return SyncConfig.from_json(raw)
