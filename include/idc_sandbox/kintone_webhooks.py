"""kintone webhooks in the sandbox: record and comment changes POSTed to registered URLs, as kintone does.

Why: the pipeline starts a run at once when kintone notifies it, so the whole path (kintone change ->
webhook -> triggered run -> answer on the record) must be testable without a real kintone. The rules are
kintone's own, as its documentation states them (summarised in the README's sandbox section):

- a JSON POST per change and registered webhook, with kintone's payloads: ``ADD_RECORD``/``UPDATE_RECORD``
  (``id, type, app{id,name}, record, recordTitle, url``), ``DELETE_RECORD`` (``recordId, deletedBy,
  deletedAt``), ``ADD_RECORD_COMMENT`` (``recordId, comment{id,text,createdAt,creator,mentions}, url``);
  ``UPDATE_STATUS`` can be registered but is never sent (the sandbox has no process management);
- no custom header, no signature, no retry; a short timeout;
- at most 60 notifications per minute per domain: later ones are dropped and logged (``GAIA_WT02``);
- a body over 1 MB is not sent; at most 10 webhooks per app;
- nothing is sent for the bulk REST calls (``records.json``, ``bulkRequest.json``) nor for seeding.

Notifications are decided when the change commits (under ``sandbox.lock``; the rate limit reads the
sandbox's injectable clock) and POSTed later by one background thread per sandbox, so an API call is not
slowed by a slow receiver. Registrations, deliveries and the rate window live in the world, so
``/_sandbox/reset`` clears them.
"""

from __future__ import annotations

import collections
import json
import logging
import threading
import uuid
import weakref
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import httpx

from idc_sandbox.core import Sandbox
from idc_sandbox.state import Kintone, KintoneWebhook

log = logging.getLogger(__name__)

EVENTS = ("ADD_RECORD", "UPDATE_RECORD", "DELETE_RECORD", "UPDATE_STATUS", "ADD_RECORD_COMMENT")
MAX_PER_APP = 10
MAX_PER_MINUTE = 60  # per domain
WINDOW_SECONDS = 60.0
MAX_BODY_BYTES = 1024 * 1024
TIMEOUT_SECONDS = 5.0


class WebhookError(ValueError):
    """A registration kintone's settings would refuse; the message says what to change."""


# --------------------------------------------------------------------------- registration
def _check(url: Any, apps: Any, events: Any) -> tuple[str, list[int] | None, list[str] | None]:
    if not isinstance(url, str) or urlsplit(url).scheme not in ("http", "https") or not urlsplit(url).netloc:
        raise WebhookError(f"url must be an http(s) URL, got {url!r}")
    if apps is not None:
        if (
            not isinstance(apps, list)
            or not apps
            or any(isinstance(a, bool) or not isinstance(a, int) for a in apps)
        ):
            raise WebhookError(f"apps must be a non-empty list of app ids (integers) or null, got {apps!r}")
        apps = sorted(set(apps))
    if events is not None:
        if not isinstance(events, list) or not events or any(e not in EVENTS for e in events):
            raise WebhookError(f"events must be a non-empty list of {list(EVENTS)} or null, got {events!r}")
        events = [e for e in EVENTS if e in events]
    return url, apps, events


def register(
    sandbox: Sandbox, url: str, apps: list[int] | None = None, events: list[str] | None = None
) -> str:
    """Registers a webhook (``apps``/``events`` None: every app / event); returns its id.

    Raises :class:`WebhookError` for a bad URL, an unknown app or event, or an 11th webhook on an app.
    """
    url, apps, events = _check(url, apps, events)
    with sandbox.lock:
        kintone = sandbox.world.kintone
        unknown = [a for a in apps or () if a not in kintone.apps]
        if unknown:
            raise WebhookError(f"no kintone app {unknown}; the sandbox has apps {sorted(kintone.apps)}")
        for app_id in apps if apps is not None else sorted(kintone.apps):
            count = sum(1 for w in kintone.webhooks if w.apps is None or app_id in w.apps)
            if count >= MAX_PER_APP:
                raise WebhookError(f"app {app_id} already has {count} webhooks; kintone allows {MAX_PER_APP}")
        hook = KintoneWebhook(str(kintone.next_webhook_id), url, apps, events)
        kintone.next_webhook_id += 1
        kintone.webhooks.append(hook)
        return hook.id


def webhooks(sandbox: Sandbox) -> list[dict[str, Any]]:
    with sandbox.lock:
        return [
            {"id": w.id, "url": w.url, "apps": w.apps, "events": w.events}
            for w in sandbox.world.kintone.webhooks
        ]


def clear(sandbox: Sandbox) -> None:
    """Removes every webhook (deliveries already made stay in the log)."""
    with sandbox.lock:
        sandbox.world.kintone.webhooks.clear()


def deliveries(sandbox: Sandbox) -> list[dict[str, Any]]:
    """Every notification decided so far, oldest first: ``{webhook, type, app, record_id, status, error,
    dropped, at}``; ``status`` and ``error`` stay None until the POST is made (see :func:`wait_delivered`)."""
    with sandbox.lock:
        return [dict(d) for d in sandbox.world.kintone.webhook_deliveries]


def wait_delivered(sandbox: Sandbox, timeout: float) -> None:
    """Blocks until every queued notification of this sandbox was POSTed (or failed); TimeoutError after
    ``timeout`` seconds. Woken by the worker when its queue empties, no polling."""
    worker = _WORKERS.get(sandbox)
    if worker is not None and not worker.wait_idle(timeout):
        raise TimeoutError(f"kintone webhooks still being delivered after {timeout} s")


# --------------------------------------------------------------------------- emission (kintone.py calls this)
def wanted(sandbox: Sandbox, app_id: int, event: str) -> list[KintoneWebhook]:
    """The webhooks a change of ``event`` in ``app_id`` goes to (caller holds ``sandbox.lock``)."""
    return [
        w
        for w in sandbox.world.kintone.webhooks
        if (w.apps is None or app_id in w.apps) and (w.events is None or event in w.events)
    ]


def emit(
    sandbox: Sandbox, app_id: int, event: str, record_id: int, build: Callable[[], dict[str, Any]]
) -> None:
    """Queues one notification per matching webhook for a committed change (caller holds ``sandbox.lock``).

    ``build`` makes the payload without its ``id`` (only called when some webhook wants the event).
    """
    hooks = wanted(sandbox, app_id, event)
    if not hooks:
        return
    kintone = sandbox.world.kintone
    payload = build()
    now = sandbox.monotonic()
    at = sandbox.now().isoformat()
    for hook in hooks:
        body = json.dumps({"id": str(uuid.uuid4()), **payload}, ensure_ascii=False).encode("utf-8")
        entry: dict[str, Any] = {
            "webhook": hook.id,
            "type": event,
            "app": app_id,
            "record_id": record_id,
            "status": None,
            "error": None,
            "dropped": None,
            "at": at,
        }
        kintone.webhook_deliveries.append(entry)
        if len(body) > MAX_BODY_BYTES:
            entry["dropped"] = "too_large"
            log.warning(
                "kintone webhook %s: %s of app %s record %s not sent: body of %d bytes is over kintone's 1 MB",
                hook.id,
                event,
                app_id,
                record_id,
                len(body),
            )
            continue
        kintone.webhook_sent_at[:] = [t for t in kintone.webhook_sent_at if now - t < WINDOW_SECONDS]
        if len(kintone.webhook_sent_at) >= MAX_PER_MINUTE:
            entry["dropped"] = "rate_limit"
            log.warning(
                "kintone webhook %s: %s of app %s record %s not sent: GAIA_WT02, over %d notifications a minute",
                hook.id,
                event,
                app_id,
                record_id,
                MAX_PER_MINUTE,
            )
            continue
        kintone.webhook_sent_at.append(now)
        _worker(sandbox).put(_Item(sandbox.lock, kintone, hook.url, body, entry))


# --------------------------------------------------------------------------- delivery
class _Item:
    __slots__ = ("body", "entry", "kintone", "lock", "url")

    def __init__(
        self, lock: threading.RLock, kintone: Kintone, url: str, body: bytes, entry: dict[str, Any]
    ) -> None:
        self.lock, self.kintone, self.url, self.body, self.entry = lock, kintone, url, body, entry


class _Worker:
    """One daemon thread POSTing a sandbox's notifications in order; counts what is not yet done."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._queue: collections.deque[_Item] = collections.deque()
        self._pending = 0
        # no proxies from the environment: the receivers are local test servers
        self._client = httpx.Client(timeout=TIMEOUT_SECONDS, trust_env=False, follow_redirects=False)
        threading.Thread(target=self._run, name="kintone-webhooks", daemon=True).start()

    def put(self, item: _Item) -> None:
        with self._cond:
            self._queue.append(item)
            self._pending += 1
            self._cond.notify_all()

    def wait_idle(self, timeout: float) -> bool:
        with self._cond:
            return self._cond.wait_for(lambda: self._pending == 0, timeout)

    def _run(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(lambda: bool(self._queue))
                item = self._queue.popleft()
            try:
                self._send(item)
            finally:
                with self._cond:
                    self._pending -= 1
                    self._cond.notify_all()

    def _send(self, item: _Item) -> None:
        status: int | None = None
        error: str | None = None
        try:
            response = self._client.post(
                item.url, content=item.body, headers={"Content-Type": "application/json; charset=utf-8"}
            )
            status = response.status_code
            if status >= 300:
                error = f"HTTP {status}"
        except httpx.TimeoutException:
            error = f"timeout after {TIMEOUT_SECONDS} s"
        except Exception as err:  # a bad receiver must never stop the worker
            # the URL carries the receiver's secret (kintone has no other way): never in logs
            error = f"{type(err).__name__}: {str(err).replace(item.url, '<webhook url>')}"
        if error:
            # kintone does not retry: the failure is only logged (its webhook log)
            log.warning("kintone webhook %s failed: %s", item.entry["webhook"], error)
        with item.lock:
            item.entry["status"] = status
            item.entry["error"] = error


_WORKERS: weakref.WeakKeyDictionary[Sandbox, _Worker] = weakref.WeakKeyDictionary()
_WORKERS_LOCK = threading.Lock()


def _worker(sandbox: Sandbox) -> _Worker:
    with _WORKERS_LOCK:
        worker = _WORKERS.get(sandbox)
        if worker is None:
            worker = _WORKERS[sandbox] = _Worker()
        return worker
