"""Triggers (run in the triggerer, not in a worker slot).

``ScimHealthTrigger`` polls Entra's provisioning jobs until they are healthy, the check fails in a way
polling cannot fix (credentials, permission, wrong service principal), or its deadline passes; then it
yields ONE event carrying the verdict. It never fails the task for an unhealthy SCIM: the run goes on and
later tasks keep missing principals pending (safety rule 4).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from collections.abc import AsyncIterator
from typing import Any

from airflow.triggers.base import BaseTrigger, TriggerEvent

from idc_sync.scim import GraphClient, ScimVerdict, check_scim_health

TRIGGER_PATH = "idc_sync_airflow.triggers.ScimHealthTrigger"


class ScimHealthTrigger(BaseTrigger):
    """Poll SCIM health every ``poke_interval`` seconds until healthy or ``deadline`` (epoch seconds).

    Only non-secret settings are serialized (they are stored in the metadata database): the connection id
    is resolved inside ``run()`` through the async connection API, so the secret stays in the connection.

    Event payload: ``{"verdict": <ScimVerdict JSON>, "timed_out": bool, "polls": int}``.
    """

    def __init__(
        self,
        graph_conn_id: str,
        deadline: float,
        *,
        max_staleness_seconds: float = 90 * 60,
        poke_interval: float = 30.0,
        service_principal_id: str | None = None,
        request_timeout: float = 20.0,
    ) -> None:
        super().__init__()
        self.graph_conn_id = graph_conn_id
        self.deadline = float(deadline)
        self.max_staleness_seconds = float(max_staleness_seconds)
        self.poke_interval = float(poke_interval)
        self.service_principal_id = service_principal_id
        self.request_timeout = float(request_timeout)

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            TRIGGER_PATH,
            {
                "graph_conn_id": self.graph_conn_id,
                "deadline": self.deadline,
                "max_staleness_seconds": self.max_staleness_seconds,
                "poke_interval": self.poke_interval,
                "service_principal_id": self.service_principal_id,
                "request_timeout": self.request_timeout,
            },
        )

    async def _client(self) -> tuple[GraphClient, str]:
        from idc_sync_airflow.graph_hook import GraphHook

        settings = await GraphHook.aget_settings(self.graph_conn_id)
        # Retries inside one poll stay short: the trigger's own loop is the long-term retry.
        client = settings.client(
            max_attempts=3, max_retry_after=min(30.0, self.poke_interval), timeout=self.request_timeout
        )
        return client, self.service_principal_id or settings.service_principal_id

    async def run(self) -> AsyncIterator[TriggerEvent]:
        max_staleness = dt.timedelta(seconds=self.max_staleness_seconds)
        try:
            client, sp_id = await self._client()
        except Exception as exc:  # a broken connection is a verdict, not a crashed trigger
            verdict = ScimVerdict(
                status="unhealthy",
                reason=f"cannot use Graph connection {self.graph_conn_id!r}: {type(exc).__name__}: {exc}",
                checked_at=dt.datetime.now(dt.UTC),
                error_code="ConnectionConfig",
            )
            self.log.warning("SCIM health: %s", verdict.reason)
            yield TriggerEvent({"verdict": verdict.to_xcom(), "timed_out": False, "polls": 0})
            return
        polls = 0
        while True:
            polls += 1
            # The sync client (requests) runs in a thread so the triggerer's event loop never blocks.
            verdict = await asyncio.to_thread(
                check_scim_health, client, sp_id, dt.datetime.now(dt.UTC), max_staleness
            )
            remaining = self.deadline - time.time()
            if verdict.healthy or verdict.permanent_failure:
                self.log.info("SCIM health after %d poll(s): %s (%s)", polls, verdict.status, verdict.reason)
                yield TriggerEvent({"verdict": verdict.to_xcom(), "timed_out": False, "polls": polls})
                return
            if remaining <= 0:
                self.log.warning("SCIM still %s at the deadline: %s", verdict.status, verdict.reason)
                yield TriggerEvent({"verdict": verdict.to_xcom(), "timed_out": True, "polls": polls})
                return
            self.log.info(
                "SCIM %s (%s); polling again in %.0f s", verdict.status, verdict.reason, self.poke_interval
            )
            await asyncio.sleep(max(0.0, min(self.poke_interval, remaining)))
