"""Where the DAG's settings come from: connection ids and the ``idc_sync_config`` Variable."""

from __future__ import annotations

import datetime as dt
import os

from airflow.sdk import Variable

from idc_sync.config import SyncConfig

AWS_CONN_ID = os.environ.get("IDC_SYNC_AWS_CONN_ID", "aws_default")
KINTONE_CONN_ID = os.environ.get("IDC_SYNC_KINTONE_CONN_ID", "kintone_default")
SLACK_CONN_ID = os.environ.get("IDC_SYNC_SLACK_CONN_ID", "slack_idc_sync")
GRAPH_CONN_ID = os.environ.get("IDC_SYNC_GRAPH_CONN_ID", "graph_default")
AIRFLOW_API_CONN_ID = os.environ.get("IDC_SYNC_AIRFLOW_API_CONN_ID", "airflow_api")
CONFIG_VARIABLE = "idc_sync_config"


def approval_timeout() -> dt.timedelta:
    """How long ``approve_deletions`` waits before its default (Reject) applies.

    Read when the DAG file is parsed, so only from the environment (cheap, no metadata-DB access):
    ``$IDC_SYNC_APPROVAL_TIMEOUT_MINUTES``, else ``approval_timeout_minutes`` in ``$IDC_SYNC_CONFIG``, else
    4 hours. (The ``idc_sync_config`` Variable is read by tasks only.)
    """
    raw = os.environ.get("IDC_SYNC_APPROVAL_TIMEOUT_MINUTES")
    try:
        minutes = float(raw) if raw else SyncConfig.from_env().approval_timeout_minutes
    except ValueError:
        minutes = SyncConfig().approval_timeout_minutes
    return dt.timedelta(minutes=max(minutes, 0.01))


def load_config() -> SyncConfig:
    """The Variable ``idc_sync_config`` (JSON) if set, else ``$IDC_SYNC_CONFIG``, else the defaults."""
    raw = Variable.get(CONFIG_VARIABLE, default=None)
    if raw is None:
        return SyncConfig.from_env()
    return SyncConfig.from_json(raw)
