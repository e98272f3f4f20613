"""Sandbox Slack incoming webhooks (``POST /services/...``): a sink that answers like Slack does.

Slack answers a webhook in plain text: ``ok`` (200), or an error word with a 4xx (``invalid_payload``,
``no_text``, ``no_service``). The notifier must treat anything but 200 as a failed delivery, so the sandbox
reproduces these and captures what was sent (``GET /_sandbox/slack/messages``) for tests and the demo.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from starlette.requests import Request
from starlette.responses import HTMLResponse, PlainTextResponse, Response
from starlette.routing import BaseRoute, Route

from idc_sandbox.core import Sandbox
from idc_sandbox.state import SlackMessage

SERVICE = "slack"


def _has_content(payload: dict[str, Any]) -> bool:
    text = payload.get("text")
    if isinstance(text, str) and text.strip():
        return True
    return bool(payload.get("blocks") or payload.get("attachments"))


async def webhook(request: Request) -> Response:
    sandbox: Sandbox = request.app.state.sandbox
    path = "/services/" + request.path_params["path"]
    operation = "POST webhook"
    faults = sandbox.faults
    delay = faults.latency_seconds(SERVICE, path)
    if delay:
        await asyncio.sleep(delay)

    def answer(status: int, text: str) -> Response:
        sandbox.calls.record(SERVICE, operation, {"id": path}, status, None if status == 200 else text)
        return PlainTextResponse(text, status_code=status)

    if faults.take(SERVICE, path, ("outage",)):
        return answer(503, "service_unavailable")
    if faults.take(SERVICE, path, ("throttle",)):
        sandbox.calls.record(SERVICE, operation, {"id": path}, 429, "rate_limited")
        return PlainTextResponse("rate_limited", status_code=429, headers={"Retry-After": "1"})
    if faults.take(SERVICE, path, ("error5xx",)):
        return answer(500, "internal_error")
    if faults.take(SERVICE, path, ("garbled",)):  # a proxy's page; Slack never saw the message
        sandbox.calls.record(SERVICE, operation, {"id": path}, 200, "garbled")
        return HTMLResponse("<html><body>Access to this site is blocked</body></html>")
    with sandbox.lock:
        hooks = sandbox.world.slack.webhooks
        if hooks and path not in hooks:
            return answer(404, "no_service")
    raw = await request.body()
    content_type = request.headers.get("content-type", "")
    try:
        if "application/x-www-form-urlencoded" in content_type:
            # legacy form: payload=<json>
            from urllib.parse import parse_qs

            raw = parse_qs(raw.decode("utf-8")).get("payload", [""])[0].encode()
        payload = json.loads(raw)
        if not isinstance(payload, dict):
            raise ValueError("not an object")
    except (ValueError, UnicodeDecodeError):
        return answer(400, "invalid_payload")
    if not _has_content(payload):
        return answer(400, "no_text")
    with sandbox.lock:
        sandbox.world.slack.messages.append(SlackMessage(path=path, payload=payload))
    return answer(200, "ok")


def routes() -> list[BaseRoute]:
    return [Route("/services/{path:path}", webhook, methods=["POST"])]
