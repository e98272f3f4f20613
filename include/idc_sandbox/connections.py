"""The Airflow connections that point the pipeline at a running sandbox (demo, tests, `make demo-up`).

Production uses the same connection ids with real endpoints and secrets; only these values differ.
The credentials are the sandbox seed's fake ones, read from the seed itself so they never drift.
"""

from __future__ import annotations

import json
from typing import Any

from idc_sandbox.core import Sandbox
from idc_sandbox.seed import load_named_seed, load_seed


def sandbox_credentials(sandbox: Sandbox) -> dict[str, Any]:
    world = sandbox.world
    apps = {str(app.id): app.api_tokens[0] for app in world.kintone.apps.values() if app.api_tokens}
    client_id, client_secret = next(iter(world.entra.clients.items()), ("", ""))
    webhook = sorted(world.slack.webhooks)[0] if world.slack.webhooks else "/services/T0/B0/demo"
    return {
        "kintone_tokens": apps,
        "graph": {
            "tenant_id": world.entra.tenant_id,
            "client_id": client_id,
            "client_secret": client_secret,
            "service_principal_id": world.entra.service_principal_id,
        },
        "slack_webhook_path": webhook,
    }


def connections(base_url: str, creds: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Connection id -> Airflow connection (JSON form) for a sandbox at ``base_url``."""
    graph = creds["graph"]
    return {
        "aws_default": {
            "conn_type": "aws",
            "login": "testing",
            "password": "testing",
            "extra": {
                "region_name": "us-east-1",
                "endpoint_url": base_url,
                "config_kwargs": {"retries": {"mode": "standard", "max_attempts": 8}},
            },
        },
        "kintone_default": {
            "conn_type": "http",
            "host": base_url,
            "password": ",".join(f"{app}:{tok}" for app, tok in sorted(creds["kintone_tokens"].items())),
        },
        "slack_idc_sync": {"conn_type": "slackwebhook", "password": base_url + creds["slack_webhook_path"]},
        "graph_default": {
            "conn_type": "generic",
            "login": graph["client_id"],
            "password": graph["client_secret"],
            "extra": {
                "tenant_id": graph["tenant_id"],
                "service_principal_id": graph["service_principal_id"],
                "authority_host": base_url,
                "graph_base_url": base_url,
            },
        },
    }


def airflow_connection_env(
    base_url: str,
    *,
    seed: str = "demo",
    sandbox: Sandbox | None = None,
    airflow_url: str | None = None,
    airflow_password: str | None = None,
) -> dict[str, str]:
    """``AIRFLOW_CONN_*`` environment variables for the sandbox (seeded ``sandbox`` or a named seed)."""
    if sandbox is None:
        sandbox = Sandbox()
        load_seed(sandbox, load_named_seed(seed))
    conns = connections(base_url, sandbox_credentials(sandbox))
    if airflow_url and airflow_password:
        conns["airflow_api"] = {
            "conn_type": "http",
            "host": airflow_url,
            "login": "admin",
            "password": airflow_password,
        }
    return {f"AIRFLOW_CONN_{conn_id.upper()}": json.dumps(conn) for conn_id, conn in conns.items()}


def object_storage_xcom_env(folder: str, *, threshold_bytes: int = 65_536) -> dict[str, str]:
    """Airflow settings that keep large XComs (the observed state: megabytes at scale) out of the metadata
    database: Airflow's object-storage XCom backend writes values above ``threshold_bytes`` under
    ``folder`` (a local path here; ``s3://<conn_id>@bucket/prefix`` in production) and stores the path."""
    return {
        "AIRFLOW__CORE__XCOM_BACKEND": "airflow.providers.common.io.xcom.backend.XComObjectStorageBackend",
        "AIRFLOW__COMMON_IO__XCOM_OBJECTSTORAGE_PATH": f"file://{folder}",
        "AIRFLOW__COMMON_IO__XCOM_OBJECTSTORAGE_THRESHOLD": str(threshold_bytes),
        "AIRFLOW__COMMON_IO__XCOM_OBJECTSTORAGE_COMPRESSION": "gzip",
    }
