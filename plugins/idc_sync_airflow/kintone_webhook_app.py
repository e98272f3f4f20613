"""The kintone webhook endpoint, served by the api-server (``plugins/idc_sync_kintone_webhook.py``):
``POST /idc-sync/webhooks/kintone?token=<secret>``.

Airflow applies no authentication to plugin apps, and kintone webhooks carry no signature or custom header:
the secret travels in the URL and is compared in constant time with the password of the Airflow connection
``idc_sync_webhook``. Anything else gets 401/404/405 and a log line (never the token); bodies over 1 MB are
refused unread. A record change or a ``/sync`` comment starts an ``idc_sync`` run at once, coalesced: while
a run is already queued, no other is queued. A ``/sync`` is stored (one file per request in the state
store) and answered at once on the record ("sync started"); ``notify`` answers it after the run. The
decisions are ``idc_sync.kintone_webhook``'s; this module is the I/O around them.
"""

from __future__ import annotations

import datetime as dt
import hmac
import json
import logging
import re
from typing import Any

from fastapi import BackgroundTasks, FastAPI, Request
from fastapi.responses import JSONResponse

from idc_sync import kintone_webhook
from idc_sync.config import SyncConfig
from idc_sync_airflow import api_server

log = logging.getLogger("idc_sync.webhook")

MAX_BODY = 1_048_576  # kintone never sends more than 1 MB
DAG_ID = "idc_sync"
WEBHOOK_CONN_ID = "idc_sync_webhook"

app = FastAPI(title="idc-sync webhooks", docs_url=None, redoc_url=None, openapi_url=None)


class RedactToken(logging.Filter):
    """Removes ``token=...`` from access-log lines (uvicorn logs the query string)."""

    _TOKEN = re.compile(r"(token=)[^&\s\"']+")

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(
                self._TOKEN.sub(r"\1***", a) if isinstance(a, str) else a for a in record.args
            )
        if isinstance(record.msg, str):
            record.msg = self._TOKEN.sub(r"\1***", record.msg)
        return True


def install_redaction() -> None:
    for name in ("uvicorn.access", "uvicorn.error", "gunicorn.access", "idc_sync.webhook"):
        logger = logging.getLogger(name)
        if not any(isinstance(f, RedactToken) for f in logger.filters):
            logger.addFilter(RedactToken())


def _secret() -> str | None:
    try:
        return api_server.connection(WEBHOOK_CONN_ID).password or None
    except Exception as exc:
        log.error(
            "kintone webhook refused: connection %s is not set (%s)", WEBHOOK_CONN_ID, type(exc).__name__
        )
        return None


async def _body(request: Request) -> bytes | None:
    """The body, or None when it is over :data:`MAX_BODY` (not read beyond it)."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > MAX_BODY:
        return None
    data = bytearray()
    async for chunk in request.stream():
        data += chunk
        if len(data) > MAX_BODY:
            return None
    return bytes(data)


def _queued_run_exists() -> bool:
    from airflow.models.dagrun import DagRun
    from airflow.utils.session import create_session
    from airflow.utils.state import DagRunState

    with create_session() as session:
        return (
            session.query(DagRun.id)
            .filter(DagRun.dag_id == DAG_ID, DagRun.state == DagRunState.QUEUED)
            .first()
            is not None
        )


def _trigger(reason: str, now: dt.datetime) -> str | None:
    """Queue an idc_sync run unless one is already queued; its run id (None: coalesced)."""
    from airflow.api.common.trigger_dag import trigger_dag
    from airflow.exceptions import DagRunAlreadyExists
    from airflow.utils.types import DagRunTriggeredByType

    if _queued_run_exists():
        return None
    run_id = f"webhook__{now:%Y-%m-%dT%H:%M:%S}"  # one per second at most: concurrent webhooks coalesce
    try:
        trigger_dag(
            DAG_ID,
            triggered_by=DagRunTriggeredByType.REST_API,
            run_id=run_id,
            conf={},
            logical_date=None,
            note=f"started by a kintone webhook ({reason})",
        )
    except DagRunAlreadyExists:
        return None
    return run_id


def _store(config: SyncConfig) -> Any:
    from idc_sync_airflow import settings

    return settings.state_store(config)


def _acknowledge(config: SyncConfig, request: kintone_webhook.SyncRequest) -> None:
    """Store the /sync request (answered by notify after the run) and say on the record that it started."""
    from idc_sync.kintone_client import KintoneClient
    from idc_sync_airflow import settings
    from idc_sync_airflow.hooks import parse_app_tokens

    try:
        _store(config).write_state(request.name, request.model_dump(mode="json"))
        conn = api_server.connection(settings.KINTONE_CONN_ID)
        host = (conn.host or "").rstrip("/")
        if "://" not in host:
            host = f"{conn.schema or 'https'}://{host}"
        if conn.port:
            host = f"{host}:{conn.port}"
        mentions = [{"code": request.requested_by, "type": "USER"}] if request.requested_by else []
        with KintoneClient(host, parse_app_tokens(conn.password), language=config.api_language) as client:
            client.add_comment(
                request.app_id, request.record_id, kintone_webhook.started_text(config.language), mentions
            )
    except Exception as exc:  # the run still starts; notify answers the stored request
        log.error("could not acknowledge /sync on record %s: %s", request.record_id, type(exc).__name__)


@app.post("/kintone")
async def kintone(request: Request, background: BackgroundTasks) -> JSONResponse:
    secret = _secret()
    token = request.query_params.get("token") or ""
    if not secret or not hmac.compare_digest(token.encode(), secret.encode()):
        log.warning("kintone webhook refused: missing or wrong token (from %s)", request.client)
        return JSONResponse({"error": "unauthorized"}, status_code=401)
    body = await _body(request)
    if body is None:
        log.warning("kintone webhook refused: body over %d bytes", MAX_BODY)
        return JSONResponse({"error": "body too large"}, status_code=413)
    try:
        payload = json.loads(body)
    except ValueError:
        log.warning("kintone webhook refused: the body is not JSON")
        return JSONResponse({"error": "malformed JSON"}, status_code=400)
    config = api_server.config()
    now = dt.datetime.now(dt.UTC)
    decision = kintone_webhook.decide(payload, config, now=now)
    if decision.webhook_id:
        store = _store(config)
        new, seen = kintone_webhook.remember(
            store.read_state(kintone_webhook.SEEN_STATE), decision.webhook_id
        )
        if not new:
            log.info("kintone webhook %s ignored: already received", decision.webhook_id)
            return JSONResponse({"triggered": False, "reason": "already received"})
        store.write_state(kintone_webhook.SEEN_STATE, seen)
    if not decision.trigger:
        log.info("kintone webhook ignored: %s", decision.reason)
        return JSONResponse({"triggered": False, "reason": decision.reason})
    run_id = _trigger(decision.reason, now)
    log.info(
        "kintone webhook (%s): %s",
        decision.reason,
        f"run {run_id} queued" if run_id else "a run is already queued",
    )
    if decision.request is not None:
        background.add_task(_acknowledge, config, decision.request)
    return JSONResponse({"triggered": run_id is not None, "run_id": run_id, "reason": decision.reason})
