"""A task writes its run's note through Airflow's stable REST API: the Task SDK has no call for it.

Connection ``airflow_api`` (HTTP): host = the api-server URL, login/password = a user allowed to edit
DAG runs. Without that connection the note is skipped (and says so in the log).
"""

from __future__ import annotations

import requests
from airflow.sdk import BaseHook


def set_dag_run_note(conn_id: str, dag_id: str, run_id: str, note: str, timeout: float = 10.0) -> None:
    conn = BaseHook.get_connection(conn_id)
    base = (conn.host or "").rstrip("/")
    if "://" not in base:
        base = f"{conn.schema or 'http'}://{base}"
    if conn.port:
        base = f"{base}:{conn.port}"
    token_resp = requests.post(
        f"{base}/auth/token", json={"username": conn.login, "password": conn.password}, timeout=timeout
    )
    token_resp.raise_for_status()
    token = token_resp.json()["access_token"]
    resp = requests.patch(
        f"{base}/api/v2/dags/{dag_id}/dagRuns/{run_id}",
        params={"update_mask": "note"},
        json={"note": note[:1000]},
        headers={"Authorization": f"Bearer {token}"},
        timeout=timeout,
    )
    resp.raise_for_status()
