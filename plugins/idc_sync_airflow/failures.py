"""Task failure callback: each failed try leaves its error (scrubbed) for ``notify`` to name.

``notify`` runs after every task of the run is final and must say which task failed first and why
(``idc_sync.failures``). The error object only exists in the failing task's process, so the task's
``on_failure_callback`` / ``on_retry_callback`` (set in the DAG's default_args) pushes it as the XCom
``failure``: task id, try number, time, error type and message with secrets scrubbed. Nothing heavy is
imported at DAG parse time: this module only needs the standard library until a task fails.
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any

log = logging.getLogger(__name__)

FAILURE_XCOM_KEY = "failure"


def _known_secrets() -> list[str]:
    """Passwords/tokens of the project's connections, so an error that echoes one is scrubbed."""
    from airflow.sdk import BaseHook

    from idc_sync_airflow import settings

    out: list[str] = []
    for conn_id in (
        settings.AWS_CONN_ID,
        settings.KINTONE_CONN_ID,
        settings.GRAPH_CONN_ID,
        settings.SLACK_CONN_ID,
        settings.AIRFLOW_API_CONN_ID,
    ):
        try:
            conn = BaseHook.get_connection(conn_id)
        except Exception:  # a missing connection has no secret to hide
            continue
        out += [conn.password or ""]
        out += [p for p in (conn.password or "").replace(":", ",").split(",") if len(p) >= 8]
        extra = conn.extra_dejson if isinstance(conn.extra_dejson, dict) else {}
        for key, value in extra.items():
            if isinstance(value, str) and any(w in key.lower() for w in ("secret", "token", "password")):
                out.append(value)
    return [s for s in out if s]


def record_failure(context: Any) -> None:
    """on_failure_callback / on_retry_callback: push this try's error as XCom ``failure``. Never raises
    (a broken callback must not hide the task's own failure)."""
    try:
        from idc_sync.failures import TaskFailure, describe_error

        ti = context["ti"]
        kind, text = describe_error(context.get("exception"), _known_secrets())
        failure = TaskFailure(
            task_id=ti.task_id,
            try_number=int(getattr(ti, "try_number", 1) or 1),
            at=dt.datetime.now(dt.UTC).isoformat(timespec="microseconds"),
            error_type=kind,
            error=text,
        )
        ti.xcom_push(key=FAILURE_XCOM_KEY, value=failure.model_dump(mode="json"))
    except Exception as exc:
        log.warning("could not record the task failure for notify: %s", type(exc).__name__)
