"""Airflow's stable REST API (``/api/v2``) as one user. A task writes its run's note through it (the Task SDK
has no call for that); ``make demo`` and the real-scheduler test drive Airflow with the same client.

Connection ``airflow_api`` (HTTP): host = the api-server URL, login/password = a user allowed to edit
DAG runs. Without that connection the note is skipped (and says so in the log).
"""

from __future__ import annotations

from typing import Any

import requests


class AirflowApiError(requests.HTTPError):
    """An answer from HTTP 400 on, with the start of its body."""


class AirflowApi:
    """The REST API at ``url`` (the api-server), logged in with :meth:`login` (a JWT from ``/auth/token``)."""

    def __init__(self, url: str, *, timeout: float = 30.0) -> None:
        self.url = url.rstrip("/")
        self.timeout = timeout
        self.session = requests.Session()

    def login(self, username: str, password: str) -> None:
        resp = self.session.post(
            f"{self.url}/auth/token", json={"username": username, "password": password}, timeout=self.timeout
        )
        resp.raise_for_status()
        self.session.headers["Authorization"] = f"Bearer {resp.json()['access_token']}"

    def __call__(self, method: str, path: str, **kwargs: Any) -> Any:
        """``method`` on ``/api/v2{path}``: the JSON answer (None when empty); raises AirflowApiError."""
        resp = self.session.request(method, f"{self.url}/api/v2{path}", timeout=self.timeout, **kwargs)
        if resp.status_code >= 400:
            raise AirflowApiError(
                f"{method} {path}: HTTP {resp.status_code} {resp.text[:500]}", response=resp
            )
        return resp.json() if resp.content else None

    def trigger(self, dag_id: str, conf: dict[str, Any] | None = None) -> str:
        """A manual run of ``dag_id`` now; its run id."""
        run = self("POST", f"/dags/{dag_id}/dagRuns", json={"logical_date": None, "conf": conf or {}})
        return str(run["dag_run_id"])

    def task_states(self, dag_id: str, run_id: str) -> dict[str, str | None]:
        tis = self("GET", f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances")["task_instances"]
        return {t["task_id"]: t["state"] for t in tis}


def set_dag_run_note(conn_id: str, dag_id: str, run_id: str, note: str, timeout: float = 10.0) -> None:
    from airflow.sdk import BaseHook

    conn = BaseHook.get_connection(conn_id)
    base = (conn.host or "").rstrip("/")
    if "://" not in base:
        base = f"{conn.schema or 'http'}://{base}"
    if conn.port:
        base = f"{base}:{conn.port}"
    api = AirflowApi(base, timeout=timeout)
    api.login(conn.login or "", conn.password or "")
    api(
        "PATCH",
        f"/dags/{dag_id}/dagRuns/{run_id}",
        params={"update_mask": "note"},
        json={"note": note[:1000]},
    )
