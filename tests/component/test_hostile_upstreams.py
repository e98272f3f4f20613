"""The hostile-input catalog, upstream side (issue 14): what a broken or hostile server answers to the
clients, over real HTTP. A tiny server answers each request with a crafted response (truncated, mistyped,
HTML instead of JSON, huge, a cursor that expires mid-read). Each must end in a clear, bounded error that
names the service (never a half-read that looks complete, never a hang, never a secret in the message).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from idc_sync.kintone_client import KintoneClient, KintoneError
from tests.component.hostile_server import Answer, HostileServer

TOKEN = "hostile-test-token-SECRET"


@pytest.fixture
def server() -> Iterator[HostileServer]:
    s = HostileServer()
    yield s
    s.close()


def _json(status: int, body: Any) -> Callable[[int], Answer]:
    return lambda _n: (status, {}, json.dumps(body).encode())


def _raw(status: int, body: bytes, content_type: str = "application/json") -> Callable[[int], Answer]:
    return lambda _n: (status, {"Content-Type": content_type}, body)


def _client(server: HostileServer) -> KintoneClient:
    return KintoneClient(server.url, {"1": TOKEN}, sleep=lambda _s: None)


def _record(i: int) -> dict[str, Any]:
    return {
        "$id": {"type": "__ID__", "value": str(i)},
        "name": {"type": "SINGLE_LINE_TEXT", "value": f"r{i}"},
    }


CURSOR = "/k/v1/records/cursor.json"

# (kind, what the cursor page GET answers)
KINTONE_PAGES: list[tuple[str, Callable[[int], Answer]]] = [
    ("truncated JSON", _raw(200, b'{"records": [{"$id": {"type": "__ID__", "val')),
    ("HTML error page with 200", _raw(200, b"<html><body>Bad gateway</body></html>", "text/html")),
    ("records is a string", _json(200, {"records": "not a list", "next": False})),
    ("records hold strings", _json(200, {"records": ["a", "b"], "next": False})),
    ("records is null and next true forever", _json(200, {"records": None, "next": True})),
    ("a JSON list instead of an object", _json(200, [_record(1)])),
    (
        "cursor expired mid-read (GAIA_RE03)",
        lambda n: (
            (200, {}, json.dumps({"records": [_record(1)], "next": True}).encode())
            if n == 0
            else (400, {}, json.dumps({"code": "GAIA_RE03", "id": "x", "message": "cursor expired"}).encode())
        ),
    ),
    ("fewer records than totalCount", _json(200, {"records": [_record(1)], "next": False})),
    (
        "a huge page: 20,000 records where 500 were asked and 3 announced",
        _json(200, {"records": [_record(i) for i in range(20_000)], "next": False}),
    ),
    (
        "an error that echoes the token",
        _json(400, {"code": "CB_IJ01", "id": "x", "message": f"bad token {TOKEN}"}),
    ),
]


@pytest.mark.parametrize(("kind", "page"), KINTONE_PAGES, ids=[k for k, _ in KINTONE_PAGES])
def test_a_hostile_kintone_page_is_a_clear_error_never_a_partial_read(
    server: HostileServer, kind: str, page: Callable[[int], Answer]
) -> None:
    server.routes[f"POST {CURSOR}"] = _json(200, {"id": "c1", "totalCount": "3"})
    server.routes[f"GET {CURSOR}"] = page
    server.routes[f"DELETE {CURSOR}"] = _json(200, {})
    with pytest.raises(KintoneError) as exc:
        _client(server).get_all_records("1")
    text = str(exc.value)
    assert "kintone" in text.lower() and TOKEN not in text, text
    assert len(text) < 2_000
    assert server.counts[f"GET {CURSOR}"] <= 20  # bounded: no endless paging, a few retries at most


# --------------------------------------------------------------------------- Microsoft Graph (SCIM check)
GRAPH_SECRET = "graph-client-secret-SECRET"
SP = "sp-1"
JOBS = f"/v1.0/servicePrincipals/{SP}/synchronization/jobs"
TOKEN_PATH = "/tenant-1/oauth2/v2.0/token"
GOOD_TOKEN = _json(200, {"access_token": "at", "expires_in": 3600, "token_type": "Bearer"})

# (kind, token endpoint answer, jobs answer)
GRAPH: list[tuple[str, Callable[[int], Answer], Callable[[int], Answer]]] = [
    ("token answer truncated", _raw(200, b'{"access_tok'), _json(200, {"value": []})),
    ("token answer without a token", _json(200, {"token_type": "Bearer"}), _json(200, {"value": []})),
    (
        "token error echoing the secret",
        _json(401, {"error": "invalid_client", "error_description": GRAPH_SECRET}),
        _json(200, {}),
    ),
    ("jobs answer is HTML", GOOD_TOKEN, _raw(200, b"<html>maintenance</html>", "text/html")),
    ("jobs value is not a list", GOOD_TOKEN, _json(200, {"value": "oops"})),
    ("jobs hold strings", GOOD_TOKEN, _json(200, {"value": ["job"]})),
    ("job status of the wrong type", GOOD_TOKEN, _json(200, {"value": [{"id": "j", "status": "broken"}]})),
    ("429 forever with a huge Retry-After", GOOD_TOKEN, lambda _n: (429, {"Retry-After": "999999"}, b"{}")),
    (
        "jobs answer of 8 MB that is not JSON",
        GOOD_TOKEN,
        _raw(200, b"{" + b"x" * 8_000_000, "application/json"),
    ),
]


@pytest.mark.parametrize(("kind", "token", "jobs"), GRAPH, ids=[k for k, _, _ in GRAPH])
def test_a_hostile_graph_answer_is_an_unhealthy_verdict_with_its_reason(
    server: HostileServer, kind: str, token: Callable[[int], Answer], jobs: Callable[[int], Answer]
) -> None:
    import datetime as dt

    from idc_sync.scim import GraphClient, check_scim_health

    server.routes[f"POST {TOKEN_PATH}"] = token
    server.routes[f"GET {JOBS}"] = jobs
    slept: list[float] = []
    client = GraphClient(server.url, server.url, "tenant-1", "client-1", GRAPH_SECRET, sleep=slept.append)
    verdict = check_scim_health(client, SP, dt.datetime.now(dt.UTC), dt.timedelta(minutes=90))
    assert verdict.status != "healthy", verdict
    assert verdict.reason and GRAPH_SECRET not in verdict.reason and len(verdict.reason) < 2_000
    assert sum(slept) <= 4 * 30  # Retry-After is capped: a hostile server cannot park the sensor
    assert server.counts.get(f"GET {JOBS}", 0) <= 4


# ---------------------------------------------------------------------------------------------- Slack
SLACK_PATH = "/services/T0/B0/hostile-SECRET"
SLACK_ANSWERS: list[tuple[str, Callable[[int], Answer]]] = [
    ("a proxy's HTML page with 200", _raw(200, b"<html><body>Access blocked</body></html>", "text/html")),
    ("an empty body with 200", _raw(200, b"", "text/plain")),
    ("an error word with 200", _raw(200, b"invalid_payload", "text/plain")),
    ("a huge body with 200", _raw(200, b"x" * 5_000_000, "text/plain")),
    ("a 500 with an HTML page", _raw(500, b"<html>oops</html>", "text/html")),
]


@pytest.mark.parametrize(("kind", "answer"), SLACK_ANSWERS, ids=[k for k, _ in SLACK_ANSWERS])
def test_a_slack_answer_that_is_not_ok_keeps_the_message_for_later(
    server: HostileServer,
    kind: str,
    answer: Callable[[int], Answer],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Any,
) -> None:
    """Through the real SlackWebhookHook: only Slack's own ``ok`` is a delivery; anything else keeps the
    message in the outbox (delivered late by a later run) and logs why, without the webhook's secret."""
    from idc_sync import outbox
    from idc_sync.audit import AuditStore
    from idc_sync_airflow.slack_outbox import deliver_slack

    conn = json.dumps({"conn_type": "slackwebhook", "password": server.url + SLACK_PATH})
    monkeypatch.setenv("AIRFLOW_CONN_SLACK_IDC_SYNC", conn)
    server.routes[f"POST {SLACK_PATH}"] = answer
    store = AuditStore(str(tmp_path))

    records: list[logging.LogRecord] = []
    handler = logging.Handler(logging.ERROR)
    handler.emit = records.append  # type: ignore[method-assign]
    logger = logging.getLogger("idc_sync_airflow.slack_outbox")  # Airflow's logging may stop propagation
    logger.addHandler(handler)
    try:
        delivered = deliver_slack({"text": "run summary"}, kind="summary", run_id="r1", store=store)
    finally:
        logger.removeHandler(handler)

    assert delivered is False
    pending = outbox.load(store.read_state(outbox.OUTBOX_STATE)).pending
    assert [(m.run_id, m.payload["text"]) for m in pending] == [("r1", "run summary")]
    logged = "\n".join(r.getMessage() for r in records)
    assert "could not post to Slack" in logged and "hostile-SECRET" not in logged
    assert len(logged) < 2_000  # a huge answer is not copied into the log

    server.routes[f"POST {SLACK_PATH}"] = _raw(200, b"ok", "text/plain")
    assert deliver_slack(None, kind="summary", run_id="r2", store=store) is None
    assert outbox.load(store.read_state(outbox.OUTBOX_STATE)).pending == []
