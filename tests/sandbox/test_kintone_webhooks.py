"""The sandbox's kintone sends kintone's webhooks: payloads, filters, limits, async delivery, control API."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
import requests

from idc_sandbox import kintone, kintone_webhooks
from idc_sandbox.core import ManualClock, Sandbox
from idc_sandbox.seed import CREDENTIALS, load_named_seed, load_seed

TOKENS = ",".join(CREDENTIALS["kintone"]["tokens"][k] for k in ("1", "2"))
WAIT = 30.0  # generous: an event ends the wait long before


class Receiver:
    """A webhook receiver on 127.0.0.1: keeps every POST; answers ``status``; can hold answers until released."""

    def __init__(self) -> None:
        self.posts: list[dict[str, Any]] = []
        self.status = 200
        self.hold: threading.Event | None = None
        self.arrived = threading.Event()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                receiver.posts.append(
                    {
                        "path": self.path,
                        "content_type": self.headers.get("Content-Type"),
                        "body": json.loads(body),
                    }
                )
                receiver.arrived.set()
                if receiver.hold is not None:
                    receiver.hold.wait(WAIT)
                self.send_response(receiver.status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        # shutdown() is noticed within poll_interval: short, so teardown is quick
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)

    def url(self, path: str = "/hook") -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}{path}"

    def bodies(self) -> list[dict[str, Any]]:
        return [p["body"] for p in self.posts]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    r.thread.start()
    yield r
    if r.hold is not None:
        r.hold.set()
    r.server.shutdown()
    r.server.server_close()


@pytest.fixture
def demo(sandbox: Sandbox, sandbox_url: str) -> Iterator[str]:
    load_seed(sandbox, load_named_seed("demo"))
    yield sandbox_url
    kintone_webhooks.wait_delivered(sandbox, WAIT)  # nothing of this test reaches the next one


def rest(method: str, url: str, path: str, body: dict[str, Any]) -> requests.Response:
    return requests.request(
        method, f"{url}/k/v1/{path}", json=body, headers={"X-Cybozu-API-Token": TOKENS}, timeout=30
    )


def control(method: str, url: str, path: str, body: Any = None) -> requests.Response:
    return requests.request(method, f"{url}/_sandbox/kintone/{path}", json=body, timeout=30)


NEW_ASSIGNMENT = {
    "principal_type": {"value": "USER"},
    "users": {"value": [{"code": "alice@example.com"}]},
    "targets": {"value": "123456789012"},
    "permission_set": {"value": "ReadOnly"},
}


# --------------------------------------------------------------------------- payloads
def test_record_added_edited_deleted_payloads(demo: str, sandbox: Sandbox, receiver: Receiver) -> None:
    hook = kintone_webhooks.register(sandbox, receiver.url())
    r = rest("POST", demo, "record.json", {"app": 2, "record": NEW_ASSIGNMENT})
    assert r.status_code == 200, r.text
    rid = int(r.json()["id"])
    added = rest("GET", demo, "record.json", {"app": 2, "id": rid}).json()["record"]
    assert rest("PUT", demo, "record.json", {"app": 2, "id": rid, "record": {"reason": {"value": "x"}}}).ok
    edited = rest("GET", demo, "record.json", {"app": 2, "id": rid}).json()["record"]
    kintone.delete_record(sandbox, 2, rid, user_code="bob@example.com")
    kintone_webhooks.wait_delivered(sandbox, WAIT)

    add, edit, delete = receiver.bodies()
    url = f"https://example.cybozu.com/k/2/show#record={rid}"
    app = {"id": "2", "name": "IdC assignments"}
    assert set(add) == {"id", "type", "app", "record", "recordTitle", "url"}
    assert (add["type"], add["app"], add["record"], add["url"]) == ("ADD_RECORD", app, added, url)
    assert (edit["type"], edit["record"], edit["record"]["$revision"]["value"]) == (
        "UPDATE_RECORD",
        edited,
        "2",
    )
    assert set(delete) == {"id", "type", "app", "recordId", "deletedBy", "deletedAt"}
    assert (delete["type"], delete["app"], delete["recordId"]) == ("DELETE_RECORD", app, str(rid))
    assert delete["deletedBy"] == {"code": "bob@example.com", "name": "Bob Brown"}
    assert delete["deletedAt"].endswith("Z")
    assert len({add["id"], edit["id"], delete["id"]}) == 3  # one id per notification
    assert {p["content_type"] for p in receiver.posts} == {"application/json; charset=utf-8"}
    keys = ("webhook", "type", "app", "record_id", "status", "error", "dropped")
    assert [tuple(d[k] for k in keys) for d in kintone_webhooks.deliveries(sandbox)] == [
        (hook, "ADD_RECORD", 2, rid, 200, None, None),
        (hook, "UPDATE_RECORD", 2, rid, 200, None, None),
        (hook, "DELETE_RECORD", 2, rid, 200, None, None),
    ]


def test_comment_posted_through_the_rest_api_is_a_webhook(
    demo: str, sandbox: Sandbox, receiver: Receiver
) -> None:
    """The pipeline's own comments come back as webhooks: a receiver must recognise them (creator)."""
    kintone_webhooks.register(sandbox, receiver.url(), apps=[2], events=["ADD_RECORD_COMMENT"])
    mention = [{"code": "grace@example.com", "type": "USER"}]
    body = {"app": 2, "record": 8, "comment": {"text": "Unknown account", "mentions": mention}}
    assert rest("POST", demo, "record/comment.json", body).json() == {"id": "1"}
    kintone.add_comment(sandbox, 2, 8, "/sync", user_code="grace@example.com")
    kintone_webhooks.wait_delivered(sandbox, WAIT)

    stored = rest("GET", demo, "record/comments.json", {"app": 2, "record": 8, "order": "asc"}).json()
    (mine, theirs) = receiver.bodies()
    assert set(mine) == {"id", "type", "app", "recordId", "comment", "url"}
    assert (mine["type"], mine["app"], mine["recordId"]) == (
        "ADD_RECORD_COMMENT",
        {"id": "2", "name": "IdC assignments"},
        "8",
    )
    assert mine["url"] == "https://example.cybozu.com/k/2/show#record=8&comment=1"
    assert [mine["comment"], theirs["comment"]] == stored["comments"]
    assert mine["comment"]["creator"] == {"code": "Administrator", "name": "Administrator"}
    assert mine["comment"]["text"] == "Grace Green \nUnknown account"
    assert (
        theirs["comment"]["creator"]["code"] == "grace@example.com" and theirs["comment"]["text"] == "/sync"
    )


def test_filters_and_what_kintone_does_not_notify(demo: str, sandbox: Sandbox, receiver: Receiver) -> None:
    kintone_webhooks.register(sandbox, receiver.url("/ps"), apps=[1], events=["UPDATE_RECORD"])
    kintone_webhooks.register(sandbox, receiver.url("/all"))
    kintone.update_record(sandbox, 1, 1, {"description": "edited"}, user_code="alice@example.com")
    kintone.add_comment(sandbox, 1, 1, "hello", user_code="alice@example.com")
    # bulk REST calls and bulkRequest send nothing, as in kintone
    assert rest("PUT", demo, "records.json", {"app": 2, "records": [{"id": 8, "record": {}}]}).ok
    bulk = {"requests": [{"method": "PUT", "api": "/k/v1/record.json", "payload": {"app": 2, "id": 8}}]}
    assert rest("POST", demo, "bulkRequest.json", bulk).ok
    kintone_webhooks.wait_delivered(sandbox, WAIT)
    assert sorted((p["path"], p["body"]["type"]) for p in receiver.posts) == [
        ("/all", "ADD_RECORD_COMMENT"),
        ("/all", "UPDATE_RECORD"),
        ("/ps", "UPDATE_RECORD"),
    ]


# --------------------------------------------------------------------------- delivery
def test_delivery_is_asynchronous(demo: str, sandbox: Sandbox, receiver: Receiver) -> None:
    """A receiver that does not answer does not hold the API call: the change is answered first."""
    receiver.hold = threading.Event()
    kintone_webhooks.register(sandbox, receiver.url())
    r = rest("PUT", demo, "record.json", {"app": 2, "id": 8, "record": {"reason": {"value": "x"}}})
    assert r.status_code == 200  # answered while the receiver still holds the notification
    assert receiver.arrived.wait(WAIT)
    assert kintone_webhooks.deliveries(sandbox)[0]["status"] is None  # not answered yet
    receiver.hold.set()
    kintone_webhooks.wait_delivered(sandbox, WAIT)
    assert kintone_webhooks.deliveries(sandbox)[0]["status"] == 200


def test_failures_are_not_retried(demo: str, sandbox: Sandbox, receiver: Receiver) -> None:
    receiver.status = 500
    kintone_webhooks.register(sandbox, receiver.url())
    closed = Receiver()  # a port nobody listens on any more
    dead_url = closed.url()
    closed.server.server_close()
    kintone_webhooks.register(sandbox, dead_url)
    kintone.add_comment(sandbox, 2, 8, "hi", user_code="grace@example.com")
    kintone_webhooks.wait_delivered(sandbox, WAIT)
    assert len(receiver.posts) == 1
    by_hook = {d["webhook"]: d for d in kintone_webhooks.deliveries(sandbox)}
    assert (by_hook["1"]["status"], by_hook["1"]["error"]) == (500, "HTTP 500")
    assert by_hook["2"]["status"] is None and by_hook["2"]["error"].startswith("ConnectError")


def test_sixty_notifications_a_minute_then_dropped(demo: str, sandbox: Sandbox, receiver: Receiver) -> None:
    clock = sandbox.clock = ManualClock()
    kintone_webhooks.register(sandbox, receiver.url())
    for n in range(61):
        kintone.add_comment(sandbox, 2, 8, f"comment {n}", user_code="grace@example.com")
    clock.advance(59)
    kintone.add_comment(sandbox, 2, 8, "still within the minute", user_code="grace@example.com")
    clock.advance(1)
    kintone.add_comment(sandbox, 2, 8, "a minute later", user_code="grace@example.com")
    kintone_webhooks.wait_delivered(sandbox, WAIT)
    dropped = [d["dropped"] for d in kintone_webhooks.deliveries(sandbox)]
    assert dropped == [None] * 60 + ["rate_limit", "rate_limit", None]
    assert [b["comment"]["text"] for b in receiver.bodies()] == [
        *(f"comment {n}" for n in range(60)),
        "a minute later",
    ]


def test_body_over_one_megabyte_is_not_sent(demo: str, sandbox: Sandbox, receiver: Receiver) -> None:
    kintone_webhooks.register(sandbox, receiver.url())
    kintone.update_record(sandbox, 2, 8, {"reason": "x" * (1024 * 1024)}, user_code="grace@example.com")
    kintone.update_record(sandbox, 2, 8, {"reason": "short"}, user_code="grace@example.com")
    kintone_webhooks.wait_delivered(sandbox, WAIT)
    assert [(d["dropped"], d["status"]) for d in kintone_webhooks.deliveries(sandbox)] == [
        ("too_large", None),
        (None, 200),
    ]
    assert [b["record"]["reason"]["value"] for b in receiver.bodies()] == ["short"]


# --------------------------------------------------------------------------- registration and control API
def test_ten_webhooks_per_app(demo: str, sandbox: Sandbox) -> None:
    for n in range(9):
        assert (
            control("POST", demo, "webhooks", {"url": f"http://127.0.0.1:9/{n}", "apps": [1]}).status_code
            == 201
        )
    # a webhook for every app counts on each app: app 1 is full, app 2 has one
    assert control("POST", demo, "webhooks", {"url": "http://127.0.0.1:9/all"}).json() == {"id": "10"}
    r = control("POST", demo, "webhooks", {"url": "http://127.0.0.1:9/late", "apps": [1, 2]})
    assert r.status_code == 400 and r.json()["error"] == "app 1 already has 10 webhooks; kintone allows 10"
    assert (
        control("POST", demo, "webhooks", {"url": "http://127.0.0.1:9/two", "apps": [2]}).status_code == 201
    )
    with pytest.raises(kintone_webhooks.WebhookError, match="app 1 already has 10"):
        kintone_webhooks.register(sandbox, "http://127.0.0.1:9/x")


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"url": "ftp://example.com/x"}, "url must be an http(s) URL"),
        ({"apps": [1]}, "a webhook needs url"),
        ({"url": "http://127.0.0.1:9/", "apps": [7]}, "no kintone app [7]"),
        ({"url": "http://127.0.0.1:9/", "apps": []}, "apps must be a non-empty list"),
        ({"url": "http://127.0.0.1:9/", "events": ["ADD_COMMENT"]}, "events must be a non-empty list"),
        ({"url": "http://127.0.0.1:9/", "secret": "x"}, "unknown webhook fields ['secret']"),
    ],
)
def test_bad_registrations_are_refused(demo: str, body: dict[str, Any], message: str) -> None:
    r = control("POST", demo, "webhooks", body)
    assert r.status_code == 400 and message in r.json()["error"]


def test_control_api_list_delete_deliveries_and_reset(
    demo: str, sandbox: Sandbox, receiver: Receiver
) -> None:
    r = control("POST", demo, "webhooks", {"url": receiver.url(), "apps": [2], "events": ["ADD_RECORD"]})
    assert r.status_code == 201 and r.json() == {"id": "1"}
    assert control("GET", demo, "webhooks").json() == {
        "webhooks": [{"id": "1", "url": receiver.url(), "apps": [2], "events": ["ADD_RECORD"]}]
    }
    body = {
        "app": 2,
        "user": "alice@example.com",
        "fields": {k: v["value"] for k, v in NEW_ASSIGNMENT.items()},
    }
    rid = int(requests.post(f"{demo}/_sandbox/kintone/records", json=body, timeout=30).json()["id"])
    kintone_webhooks.wait_delivered(sandbox, WAIT)
    (d,) = control("GET", demo, "webhooks/deliveries").json()["deliveries"]
    assert {k: v for k, v in d.items() if k != "at"} == {
        "webhook": "1",
        "type": "ADD_RECORD",
        "app": 2,
        "record_id": rid,
        "status": 200,
        "error": None,
        "dropped": None,
    }
    assert receiver.bodies()[0]["record"]["Created_by"]["value"]["code"] == "alice@example.com"
    # a deletion through the control API is a user's deletion in the UI
    kintone_webhooks.register(sandbox, receiver.url("/deleted"), apps=[2], events=["DELETE_RECORD"])
    r = control("DELETE", demo, "records", {"app": 2, "id": rid, "user": "carol@example.com"})
    assert r.json() == {"deleted": str(rid)}
    assert control("DELETE", demo, "records", {"app": 2, "id": rid}).json()["code"] == "GAIA_RE01"
    kintone_webhooks.wait_delivered(sandbox, WAIT)
    assert receiver.posts[-1]["path"] == "/deleted"
    assert receiver.bodies()[-1]["deletedBy"] == {"code": "carol@example.com", "name": "Carol Chen"}
    assert control("DELETE", demo, "webhooks").json() == {"webhooks": []}
    assert control("GET", demo, "webhooks").json() == {"webhooks": []}
    control("POST", demo, "webhooks", {"url": receiver.url()})
    assert requests.post(f"{demo}/_sandbox/reset", timeout=30).ok
    assert control("GET", demo, "webhooks").json() == {"webhooks": []}
    assert control("GET", demo, "webhooks/deliveries").json() == {"deliveries": []}
