"""The Slack outbox: a message that could not be delivered is kept and sent by a later run.

DESIGN rule 6 ("a message that could not be delivered is sent later"): with the webhook down, a run that
changed things would otherwise tell nobody, ever. Every Slack message (run summary, SCIM alert,
approval request) goes through the outbox: pending messages are delivered first, oldest first, each
marked ``late: from run X at T``; a message that fails joins them. The outbox is a small JSON state in
the shared audit store (``OUTBOX_STATE``), bounded: the newest ``MAX_PENDING`` are kept and the number
of dropped ones is counted and said in the next delivered message.

Pure functions over the state dict; the plugin layer does the sending.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

from pydantic import BaseModel, Field

from idc_sync.sanitize import slack_escape, visible

OUTBOX_STATE = "state/slack_outbox.json"
MAX_PENDING = 50


class PendingMessage(BaseModel):
    run_id: str
    created: str  # ISO-8601 UTC, when the message was first written
    kind: str  # "summary" | "scim_alert" | "approval" ...
    payload: dict[str, Any]
    attempts: int = 1
    last_error: str = ""


class Outbox(BaseModel):
    pending: list[PendingMessage] = Field(default_factory=list)
    dropped: int = 0  # messages given up because the outbox was full (oldest first)


def load(state: dict[str, Any]) -> Outbox:
    """The outbox from its stored state; an unreadable state is an empty outbox (never a failed run)."""
    try:
        return Outbox.model_validate(state or {})
    except ValueError:
        return Outbox()


def enqueue(outbox: Outbox, message: PendingMessage, *, max_pending: int = MAX_PENDING) -> Outbox:
    """``outbox`` with ``message`` added, keeping the newest ``max_pending`` (older ones counted)."""
    pending = [*outbox.pending, message]
    overflow = max(len(pending) - max_pending, 0)
    return Outbox(pending=pending[overflow:], dropped=outbox.dropped + overflow)


def late_payload(message: PendingMessage, *, dropped: int = 0) -> dict[str, Any]:
    """The message as it is delivered late: ``late: from run X at T`` before the text and as the first
    block, plus how many older messages were dropped when the outbox was full."""
    mark = f"late: from run {message.run_id} at {message.created}"
    if dropped:
        mark += f" ({dropped} older undelivered message(s) were dropped)"
    payload = copy.deepcopy(message.payload)
    payload["text"] = f"{slack_escape(mark)}: {payload.get('text', '')}"[:3000]
    head = {"type": "context", "elements": [{"type": "mrkdwn", "text": f":hourglass: {slack_escape(mark)}"}]}
    payload["blocks"] = [head, *(payload.get("blocks") or [])][:50]  # Slack: at most 50 blocks
    return payload


def webhook_refusal(status: int, body: str) -> str | None:
    """Why a Slack incoming webhook's answer is not a delivery, or None when it is one.

    Slack answers exactly ``ok`` with 200 when it took the message and an error word with a 4xx/5xx
    otherwise. A 200 with anything else (a proxy's or captive portal's HTML page, an empty body) did not
    reach Slack: counting it as delivered would lose the message, so it stays in the outbox."""
    if status == 200 and body.strip() == "ok":
        return None
    shown = visible(body.strip(), 80) or "an empty body"
    return f"Slack's webhook answered HTTP {status} with {shown!r} instead of 'ok'"


def deliver(
    outbox: Outbox,
    send: Callable[[dict[str, Any]], None],
    new: PendingMessage | None = None,
    *,
    describe_error: Callable[[Exception], str] = str,
    max_pending: int = MAX_PENDING,
) -> tuple[Outbox, bool | None, list[str]]:
    """Deliver the pending messages (oldest first, marked late), then ``new`` (as is).

    The first failure stops the delivery (Slack is down: the rest would fail too, and order is kept);
    what was not delivered stays, ``new`` included. Returns (outbox after, whether ``new`` was
    delivered (None without one), error texts to log)."""
    errors: list[str] = []
    left: list[PendingMessage] = []
    dropped = outbox.dropped
    failing = False
    for item in outbox.pending:
        if failing:
            left.append(item)
            continue
        try:
            send(late_payload(item, dropped=dropped))
            dropped = 0  # said once, with the first late message
        except Exception as exc:
            failing = True
            error = describe_error(exc)
            errors.append(f"late message from run {item.run_id} ({item.kind}): {error}")
            left.append(item.model_copy(update={"attempts": item.attempts + 1, "last_error": error[:500]}))
    after = Outbox(pending=left, dropped=dropped)
    if new is None:
        return after, None, errors
    if not failing:
        try:
            send(new.payload)
            return after, True, errors
        except Exception as exc:
            error = describe_error(exc)
            errors.append(f"{new.kind} message of run {new.run_id}: {error}")
            new = new.model_copy(update={"last_error": error[:500]})
    else:
        errors.append(f"{new.kind} message of run {new.run_id}: kept for later (Slack is failing)")
    return enqueue(after, new, max_pending=max_pending), False, errors
