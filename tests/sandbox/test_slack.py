"""Slack incoming-webhook sink: answers like Slack (plain text) and captures what was sent."""

from __future__ import annotations

import requests

from idc_sandbox.core import FaultRule, Sandbox
from idc_sandbox.seed import CREDENTIALS, load_named_seed, load_seed

HOOK = CREDENTIALS["slack"]["webhook_path"]


def test_capture_and_errors(sandbox: Sandbox, sandbox_url: str) -> None:
    r = requests.post(f"{sandbox_url}/services/T1/B1/any", json={"text": "hello"}, timeout=10)
    assert (r.status_code, r.text) == (200, "ok")  # no webhooks configured: any path is accepted
    r = requests.post(f"{sandbox_url}/services/T1/B1/any", data=b"{nope", timeout=10)
    assert (r.status_code, r.text) == (400, "invalid_payload")
    r = requests.post(f"{sandbox_url}/services/T1/B1/any", json={"text": "  "}, timeout=10)
    assert (r.status_code, r.text) == (400, "no_text")
    blocks = [{"type": "section", "text": {"type": "mrkdwn", "text": "*idc-sync*"}}]
    assert (
        requests.post(f"{sandbox_url}/services/T1/B1/any", json={"blocks": blocks}, timeout=10).text == "ok"
    )
    messages = requests.get(f"{sandbox_url}/_sandbox/slack/messages", timeout=10).json()["messages"]
    assert [m["payload"] for m in messages] == [{"text": "hello"}, {"blocks": blocks}]
    assert messages[0]["path"] == "/services/T1/B1/any"
    statuses = [c.status for c in sandbox.calls.calls("slack")]
    assert statuses == [200, 400, 400, 200]
    requests.delete(f"{sandbox_url}/_sandbox/slack/messages", timeout=10)
    assert sandbox.world.slack.messages == []


def test_unknown_webhook_and_faults(sandbox: Sandbox, sandbox_url: str) -> None:
    load_seed(sandbox, load_named_seed("demo"))
    r = requests.post(f"{sandbox_url}/services/T1/B1/wrong", json={"text": "x"}, timeout=10)
    assert (r.status_code, r.text) == (404, "no_service")
    assert requests.post(f"{sandbox_url}{HOOK}", json={"text": "x"}, timeout=10).text == "ok"
    sandbox.faults.add(FaultRule("slack", "error5xx", count=1))
    r = requests.post(f"{sandbox_url}{HOOK}", json={"text": "x"}, timeout=10)
    assert r.status_code == 500
    sandbox.faults.add(FaultRule("slack", "throttle", count=1))
    r = requests.post(f"{sandbox_url}{HOOK}", json={"text": "x"}, timeout=10)
    assert r.status_code == 429 and r.headers["Retry-After"] == "1"
    assert len(sandbox.world.slack.messages) == 1
