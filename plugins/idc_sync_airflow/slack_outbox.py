"""Every Slack message of the pipeline goes out through here: the outbox (``idc_sync.outbox``).

A message that the webhook refuses (500, timeout, Slack down) is kept in the shared audit store and
delivered by a later run, marked late; each failure is logged at ERROR in the task log. Callers: the
run summary and the SCIM alert (``steps.notify``) and the approval messages.
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any

from idc_sync import outbox
from idc_sync.audit import AuditStore
from idc_sync.failures import describe_error
from idc_sync_airflow import settings

log = logging.getLogger(__name__)


def _sender() -> Any:
    from airflow.providers.slack.hooks.slack_webhook import SlackWebhookHook

    hook = SlackWebhookHook(slack_webhook_conn_id=settings.SLACK_CONN_ID)

    def send(payload: dict[str, Any]) -> None:
        # the hook raises on a status >= 300 only; a 200 that is not Slack's "ok" was not delivered either
        response = hook.send(text=payload.get("text", ""), blocks=payload.get("blocks"))
        refusal = outbox.webhook_refusal(response.status_code, response.body or "")
        if refusal:
            raise RuntimeError(refusal)

    return send


def deliver_slack(
    payload: dict[str, Any] | None,
    *,
    kind: str,
    run_id: str,
    store: AuditStore | None = None,
    send: Any = None,
) -> bool | None:
    """Deliver pending messages (late) then ``payload``; keep what fails for the next run.

    Returns whether ``payload`` was delivered now (None when there was none: only the pending ones
    were tried). Never raises: Slack being down must not hide the run's real outcome."""
    store = store or settings.state_store(settings.load_config())
    try:
        box = outbox.load(store.read_state(outbox.OUTBOX_STATE))
    except Exception as exc:
        log.error("Slack outbox unreadable (%s): sending without it", type(exc).__name__)
        box = outbox.Outbox()
    if payload is None and not box.pending:
        return None
    new = None
    if payload is not None:
        new = outbox.PendingMessage(
            run_id=run_id,
            created=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            kind=kind,
            payload=payload,
        )
    try:
        sender = send or _sender()
    except Exception as exc:  # no connection: everything stays pending
        sender = None
        reason = describe_error(exc)[1]

    def failing(_: dict[str, Any]) -> None:
        raise RuntimeError(f"no Slack connection {settings.SLACK_CONN_ID!r}: {reason}")

    before = len(box.pending)
    after, delivered, errors = outbox.deliver(
        box, sender or failing, new, describe_error=lambda e: ": ".join(p for p in describe_error(e) if p)
    )
    for error in errors:
        log.error("could not post to Slack (%s): %s; kept for the next run", settings.SLACK_CONN_ID, error)
    remaining_old = len(after.pending) - (1 if new is not None and delivered is False else 0)
    if before - remaining_old > 0:
        log.info("delivered %d late Slack message(s) from earlier runs", before - remaining_old)
    if after.pending or box.pending or after.dropped != box.dropped:
        try:
            store.write_state(outbox.OUTBOX_STATE, after.model_dump(mode="json"))
        except Exception as exc:
            log.error("could not save the Slack outbox: %s", type(exc).__name__)
    if after.pending:
        log.warning("%d Slack message(s) wait in the outbox for a later run", len(after.pending))
    return delivered
