"""The runs page, served by the api-server (``plugins/idc_sync_runs_page.py``): ``GET /idc-sync/runs/``.

Airflow applies no authentication to plugin apps by itself: the route asks for the same thing as the runs
list of the DAG ``idc_sync`` in the UI (a logged-in user allowed to read its runs; the browser's session
cookie or a bearer token). Read only. The tables are ``idc_sync.runs_page``'s; this module reads the newest
audit artifacts (bounded: a few days' folders, newest files first) and nothing else.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from typing import Any

from fastapi import Depends, FastAPI, Request
from fastapi.responses import HTMLResponse

from idc_sync import runs_page
from idc_sync.audit import AuditStore

log = logging.getLogger("idc_sync.runs_page")

DAG_ID = "idc_sync"
MAX_FILES = 200  # artifacts read per page view, newest first
MAX_DAYS = 14

app = FastAPI(title="idc-sync runs", docs_url=None, redoc_url=None, openapi_url=None)


async def can_read_runs(request: Request) -> None:
    """The check the UI's runs list of ``idc_sync`` makes (401 without a session, 403 without the right):
    Airflow's own dependencies, imported here so that loading the plugin elsewhere stays light."""
    from airflow.api_fastapi.auth.managers.models.resource_details import DagAccessEntity
    from airflow.api_fastapi.core_api.security import get_user, requires_access_dag
    from fastapi.security import HTTPBearer

    bearer = await HTTPBearer(auto_error=False)(request)
    user = await get_user(request, None, bearer)
    requires_access_dag("GET", DagAccessEntity.RUN, param_dag_id=DAG_ID)(request, user)


def newest_artifacts(store: AuditStore, max_runs: int = runs_page.MAX_RUNS) -> list[dict[str, Any]]:
    """The last try of each of the newest ``max_runs`` runs (a bad file is skipped with a log line)."""
    root = store.root / "runs"
    if not root.exists():
        return []
    days = sorted((d for d in root.iterdir() if d.is_dir()), key=lambda d: d.name, reverse=True)[:MAX_DAYS]
    files = []
    for day in days:
        files += sorted(day.glob("*.json"), key=lambda p: p.stat().st_mtime, reverse=True)
        if len(files) >= MAX_FILES:
            break
    seen: dict[str, dict[str, Any]] = {}
    for path in files[:MAX_FILES]:
        try:
            artifact = json.loads(path.read_text())
            if not isinstance(artifact, dict):
                raise ValueError("not an object")
            written = dt.datetime.fromtimestamp(path.stat().st_mtime, dt.UTC)
        except (OSError, ValueError) as exc:
            log.warning("runs page: skipped unreadable artifact %s (%s)", path.name, type(exc).__name__)
            continue
        artifact.setdefault("written_at", f"{written:%Y-%m-%d %H:%M} UTC")
        run_id = str(artifact.get("run_id") or path.stem)
        if run_id not in seen:  # newest first: the run's last try
            seen[run_id] = artifact
        if len(seen) >= max_runs:
            break
    return list(seen.values())


def _summary(artifact: dict[str, Any]) -> runs_page.RunView | None:
    """The artifact's tables; None (and a log line) when it is JSON but not an artifact's shape."""
    try:
        return runs_page.summarize(artifact)
    except (AttributeError, TypeError, ValueError) as exc:
        log.warning(
            "runs page: skipped malformed artifact of run %r (%s)",
            str(artifact.get("run_id"))[:200],
            type(exc).__name__,
        )
        return None


def _kintone_url() -> str | None:
    from idc_sync_airflow import settings
    from idc_sync_airflow.api_server import connection

    try:
        conn = connection(settings.KINTONE_CONN_ID)
    except Exception:  # no connection here: the page shows record ids without links
        return None
    host = (conn.host or "").rstrip("/")
    if not host:
        return None
    if "://" not in host:  # as KintoneHook.base_url reads the connection (a bare host: https)
        host = f"{conn.schema or 'https'}://{host}"
    return f"{host}:{conn.port}" if conn.port else host


@app.get("/", response_class=HTMLResponse, dependencies=[Depends(can_read_runs)])
def runs() -> HTMLResponse:
    from airflow.configuration import conf

    from idc_sync_airflow import settings
    from idc_sync_airflow.api_server import config

    store = settings.state_store(config())
    views = [v for v in map(_summary, newest_artifacts(store)) if v is not None]
    page = runs_page.render(
        views, kintone_url=_kintone_url(), airflow_url=conf.get("api", "base_url", fallback=None)
    )
    return HTMLResponse(page)
