"""Microsoft Graph connection -> :class:`idc_sync.scim.GraphSettings` (its ``client()`` calls Graph).

Connection (any type, e.g. ``generic``): login = application (client) id, password = client secret,
extra ``{"tenant_id": ..., "service_principal_id": <object id of the IAM Identity Center enterprise
app's service principal>, "authority_host": "https://login.microsoftonline.com",
"graph_base_url": "https://graph.microsoft.com"}`` (the last two default to Microsoft's public cloud;
the sandbox sets both to its own URL). The secret lives only in the password field (masked everywhere).
"""

from __future__ import annotations

import json
from typing import Any

from airflow.sdk import BaseHook

from idc_sync.scim import GraphSettings


def _extra_of(conn: Any) -> dict[str, Any]:
    raw = conn.extra
    if not raw:
        return {}
    if isinstance(raw, dict):
        return raw
    try:
        data = json.loads(raw)
    except ValueError as exc:
        raise ValueError(f"Graph connection {conn.conn_id!r}: extra is not valid JSON") from exc
    return data if isinstance(data, dict) else {}


class GraphHook(BaseHook):
    """Builds the Graph settings of the SCIM health check from one Airflow connection: ``get_settings``
    for the sensor, ``aget_settings`` for the triggerer."""

    conn_name_attr = "graph_conn_id"
    default_conn_name = "graph_default"
    conn_type = "generic"
    hook_name = "Microsoft Graph (idc-sync, client credentials)"

    @classmethod
    def get_settings(cls, graph_conn_id: str = default_conn_name) -> GraphSettings:
        conn = cls.get_connection(graph_conn_id)
        return GraphSettings.from_connection_parts(conn.login, conn.password, _extra_of(conn))

    @classmethod
    async def aget_settings(cls, graph_conn_id: str = default_conn_name) -> GraphSettings:
        """Async variant for the triggerer: no blocking supervisor call on the event loop.

        The extras carry no secrets (ids and URLs), so they are parsed directly rather than through the
        masking ``extra_dejson``; the password is masked by the connection lookup itself.
        """
        conn = await cls.aget_connection(graph_conn_id)
        return GraphSettings.from_connection_parts(conn.login, conn.password, _extra_of(conn))
