"""What the project's api-server apps (webhook endpoint, runs page) read: connections and the
configuration, from the api-server process (not the Task SDK, which only exists inside tasks)."""

from __future__ import annotations

from typing import Any

from idc_sync.config import SyncConfig


def connection(conn_id: str) -> Any:
    """An Airflow connection (secrets backends, environment, metadata DB)."""
    from airflow.models.connection import Connection

    return Connection.get_connection_from_secrets(conn_id)


def config() -> SyncConfig:
    """The Variable ``idc_sync_config`` if set, else ``$IDC_SYNC_CONFIG``, else the defaults."""
    from airflow.models.variable import Variable

    from idc_sync_airflow.settings import CONFIG_VARIABLE

    raw = Variable.get(CONFIG_VARIABLE, default_var=None)
    return SyncConfig.from_json(raw) if raw is not None else SyncConfig.from_env()
