"""Airflow connections -> the domain's clients. The only place that knows about connections.

- ``IdcHook``: the five AWS clients through ``AwsBaseHook`` (credentials, role / web identity, region,
  ``endpoint_url`` / ``service_config`` and ``config_kwargs`` retries all come from the connection extras).
- ``KintoneHook``: an HTTP connection: host = the kintone domain URL, password = ``APPID:TOKEN,APPID:TOKEN``
  (the password field is always masked in the UI and logs, unlike most extras).
"""

from __future__ import annotations

from functools import cached_property

from airflow.providers.amazon.aws.hooks.base_aws import AwsBaseHook
from airflow.sdk import BaseHook

from idc_sync.aws_clients import IdcClients
from idc_sync.kintone_client import KintoneClient


class IdcHook(BaseHook):
    """Builds :class:`IdcClients` from one AWS connection (the delegated administrator's role)."""

    conn_name_attr = "aws_conn_id"
    default_conn_name = "aws_default"
    hook_name = "IAM Identity Center (idc-sync)"

    def __init__(self, aws_conn_id: str = default_conn_name) -> None:
        super().__init__()
        self.aws_conn_id = aws_conn_id

    def get_clients(self, max_rps: dict[str, float | None] | None = None) -> IdcClients:
        """One boto3 session (the connection's credentials / assumed role) shared by the five clients;
        ``max_rps`` overrides the client-side pacing per client (``SyncConfig.client_max_rps``)."""
        base = AwsBaseHook(aws_conn_id=self.aws_conn_id, client_type="sso-admin")
        conn = base.conn_config
        retries = conn.botocore_config.retries if conn.botocore_config else None
        return IdcClients.from_session(
            base.get_session(),
            endpoint_url=conn.get_service_endpoint_url("sso-admin"),
            region_name=base.region_name,
            retry_config=retries,
            max_rps=max_rps,
        )


def parse_app_tokens(secret: str | None) -> dict[str, str]:
    """``"1:tokA,2:tokB"`` -> ``{"1": "tokA", "2": "tokB"}``; raises with a hint (never the secret)."""
    tokens: dict[str, str] = {}
    for part in (secret or "").split(","):
        part = part.strip()
        if not part:
            continue
        app_id, sep, token = part.partition(":")
        if not sep or not app_id.strip() or not token.strip():
            raise ValueError(
                "kintone connection password must be 'APPID:TOKEN[,APPID:TOKEN...]' (one API token per app)"
            )
        tokens[app_id.strip()] = token.strip()
    return tokens


class KintoneHook(BaseHook):
    """A :class:`KintoneClient` from an HTTP connection (host = ``https://<sub>.cybozu.com``)."""

    conn_name_attr = "kintone_conn_id"
    default_conn_name = "kintone_default"
    conn_type = "http"
    hook_name = "kintone (idc-sync)"

    def __init__(self, kintone_conn_id: str = default_conn_name, language: str = "en") -> None:
        super().__init__()
        self.kintone_conn_id = kintone_conn_id
        self.language = language

    @cached_property
    def base_url(self) -> str:
        conn = self.get_connection(self.kintone_conn_id)
        host = (conn.host or "").rstrip("/")
        if "://" not in host:
            host = f"{conn.schema or 'https'}://{host}"
        if conn.port:
            host = f"{host}:{conn.port}"
        return host

    def get_client(self) -> KintoneClient:
        conn = self.get_connection(self.kintone_conn_id)
        return KintoneClient(self.base_url, parse_app_tokens(conn.password), language=self.language)
