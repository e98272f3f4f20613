"""ScimHealthSensor / ScimHealthTrigger against the sandbox's Graph, without a scheduler or triggerer.

``trigger.run()`` is driven with asyncio (what the triggerer does), ``execute`` is checked to defer with a
serializable trigger, ``execute_complete`` to return the verdict, and the non-deferrable fallback to poke.
The Graph connection comes from an ``AIRFLOW_CONN_*`` environment variable, as in a real deployment.
No metadata database is needed.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import tempfile
import time
from types import SimpleNamespace
from typing import Any

import pytest

os.environ.setdefault("AIRFLOW_HOME", tempfile.mkdtemp(prefix="airflow-home-"))

from airflow.sdk.exceptions import TaskDeferred

from idc_sandbox import graph
from idc_sandbox.core import FaultRule, Sandbox
from idc_sync_airflow import triggers
from idc_sync_airflow.sensors import TRIGGERER_GRACE_SECONDS, ScimHealthSensor
from idc_sync_airflow.triggers import ScimHealthTrigger

CLIENT_ID = "0c6a1e52-7f4b-4a8e-9d2c-3b5e6f7a8b9c"
CLIENT_SECRET = "sensor-test-graph-secret"
CONN_ID = "graph_sensor_test"


@pytest.fixture
def graph_conn(sandbox: Sandbox, sandbox_url: str, monkeypatch: pytest.MonkeyPatch) -> str:
    entra = sandbox.world.entra
    entra.clients[CLIENT_ID] = CLIENT_SECRET
    graph.set_job(sandbox, last_success_minutes_ago=5)
    conn = {
        "conn_type": "generic",
        "login": CLIENT_ID,
        "password": CLIENT_SECRET,
        "extra": {
            "tenant_id": entra.tenant_id,
            "service_principal_id": entra.service_principal_id,
            "authority_host": sandbox_url,
            "graph_base_url": sandbox_url,
        },
    }
    monkeypatch.setenv(f"AIRFLOW_CONN_{CONN_ID.upper()}", json.dumps(conn))
    return CONN_ID


async def _events(trigger: ScimHealthTrigger) -> list[dict[str, Any]]:
    return [event.payload async for event in trigger.run()]


def _trigger(deadline_in: float = 5.0, **kwargs: Any) -> ScimHealthTrigger:
    return ScimHealthTrigger(
        graph_conn_id=CONN_ID, deadline=time.time() + deadline_in, poke_interval=0.1, **kwargs
    )


# --------------------------------------------------------------------------- trigger
def test_trigger_serialize_round_trip() -> None:
    trigger = _trigger(max_staleness_seconds=600, service_principal_id="sp")
    path, kwargs = trigger.serialize()
    assert path == "idc_sync_airflow.triggers.ScimHealthTrigger"
    json.dumps(kwargs)  # stored in the metadata DB: plain JSON, no secret
    assert CLIENT_SECRET not in json.dumps(kwargs)
    assert ScimHealthTrigger(**kwargs).serialize() == (path, kwargs)


def test_trigger_healthy_first_poll(graph_conn: str) -> None:
    [event] = asyncio.run(_events(_trigger()))
    assert event["verdict"]["status"] == "healthy"
    assert event["timed_out"] is False and event["polls"] == 1
    assert CLIENT_SECRET not in json.dumps(event)


def test_trigger_times_out_with_unhealthy_verdict(
    graph_conn: str, sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The trigger reads the clock once per poll; a clock that moves 0.1 s per read makes the number of
    polls before the deadline exact, whatever the machine's load."""
    graph.set_job(sandbox, status_code="Paused", schedule_state="Paused")
    now = [1_000.0]

    def tick() -> float:
        now[0] += 0.1
        return now[0]

    monkeypatch.setattr(triggers, "time", SimpleNamespace(time=tick))
    trigger = ScimHealthTrigger(graph_conn_id=CONN_ID, deadline=1_000.25, poke_interval=0.01)
    [event] = asyncio.run(_events(trigger))
    assert event["timed_out"] is True and event["polls"] == 3  # at +0.1, +0.2 (waits) and +0.3 (late)
    assert event["verdict"]["status"] == "unhealthy" and "paused" in event["verdict"]["reason"]


def test_trigger_waits_until_healthy(graph_conn: str, sandbox: Sandbox) -> None:
    graph.set_job(sandbox, fail_next_cycles=1)
    graph.run_scim_cycle(sandbox)  # quarantined (invalid SCIM credentials)

    async def scenario() -> list[dict[str, Any]]:
        async def admin_fixes_it() -> None:
            # after the trigger's first poll has seen the quarantine (an event, not a delay)
            while not sandbox.calls.calls("graph", "listJobs"):
                await asyncio.sleep(0.01)
            graph.set_job(sandbox, quarantine=None, status_code="Active")
            graph.run_scim_cycle(sandbox)

        fixer = asyncio.create_task(admin_fixes_it())
        events = await _events(_trigger(deadline_in=600))  # the deadline is a safety net only
        await fixer
        return events

    [event] = asyncio.run(scenario())
    assert event["verdict"]["status"] == "healthy" and event["timed_out"] is False
    assert event["polls"] >= 2


def test_trigger_stops_at_once_on_bad_credentials(graph_conn: str, sandbox: Sandbox) -> None:
    sandbox.world.entra.clients[CLIENT_ID] = "rotated-secret"
    [event] = asyncio.run(_events(_trigger(deadline_in=30)))
    assert event["polls"] == 1 and event["timed_out"] is False
    assert event["verdict"]["error_status"] == 401 and event["verdict"]["error_code"] == "invalid_client"


def test_trigger_rides_out_throttling(graph_conn: str, sandbox: Sandbox) -> None:
    sandbox.faults.add(FaultRule(service="graph", kind="throttle", operation="listJobs", count=4))
    [event] = asyncio.run(_events(_trigger(deadline_in=20)))
    assert event["verdict"]["status"] == "healthy"


def test_trigger_missing_connection_is_a_verdict(sandbox: Sandbox) -> None:
    trigger = ScimHealthTrigger(graph_conn_id="graph_does_not_exist", deadline=time.time() + 5)
    [event] = asyncio.run(_events(trigger))
    assert event["verdict"]["status"] == "unhealthy" and "graph_does_not_exist" in event["verdict"]["reason"]


# --------------------------------------------------------------------------- sensor, deferrable
def test_sensor_defaults() -> None:
    sensor = ScimHealthSensor(task_id="scim_health")
    assert sensor.deferrable is True
    assert sensor.timeout == 240 and sensor.poke_interval == 30
    assert sensor.graph_conn_id == "graph_default"


def test_sensor_healthy_returns_without_deferring(graph_conn: str) -> None:
    sensor = ScimHealthSensor(task_id="scim_health", graph_conn_id=graph_conn)
    verdict = sensor.execute({})
    assert verdict["status"] == "healthy"
    assert set(verdict) >= {"status", "reason", "checked_at", "jobs", "interval_minutes"}
    assert CLIENT_SECRET not in json.dumps(verdict)


def test_sensor_defers_when_unhealthy(graph_conn: str, sandbox: Sandbox) -> None:
    graph.set_job(sandbox, last_success_minutes_ago=200)
    sensor = ScimHealthSensor(task_id="scim_health", graph_conn_id=graph_conn, timeout=120, poke_interval=15)
    with pytest.raises(TaskDeferred) as deferred:
        sensor.execute({})
    trigger = deferred.value.trigger
    assert isinstance(trigger, ScimHealthTrigger)
    assert deferred.value.method_name == "execute_complete"
    assert deferred.value.timeout == dt.timedelta(seconds=120 + TRIGGERER_GRACE_SECONDS)
    assert trigger.poke_interval == 15 and trigger.max_staleness_seconds == 90 * 60
    assert 100 < trigger.deadline - time.time() <= 120
    assert CLIENT_SECRET not in json.dumps(trigger.serialize()[1])


def test_sensor_always_defers_without_inline_check(graph_conn: str, sandbox: Sandbox) -> None:
    sensor = ScimHealthSensor(task_id="scim_health", graph_conn_id=graph_conn, check_before_defer=False)
    with pytest.raises(TaskDeferred):
        sensor.execute({})
    assert sandbox.calls.calls("graph") == []  # nothing checked on the worker


def test_sensor_permanent_failure_does_not_defer(graph_conn: str, sandbox: Sandbox) -> None:
    sandbox.faults.add(FaultRule(service="graph", kind="access_denied"))
    verdict = ScimHealthSensor(task_id="scim_health", graph_conn_id=graph_conn).execute({})
    assert verdict["status"] == "unhealthy" and verdict["error_status"] == 403


def test_execute_complete_returns_verdict_even_when_timed_out(graph_conn: str, sandbox: Sandbox) -> None:
    graph.set_job(sandbox, status_code="Paused", schedule_state="Paused")
    sensor = ScimHealthSensor(task_id="scim_health", graph_conn_id=graph_conn, check_before_defer=False)
    with pytest.raises(TaskDeferred) as deferred:
        sensor.execute({})
    trigger = deferred.value.trigger
    trigger.deadline = time.time() + 0.2
    trigger.poke_interval = 0.1
    [event] = asyncio.run(_events(trigger))
    verdict = sensor.execute_complete({}, event)
    assert verdict["status"] == "unhealthy" and "paused" in verdict["reason"]
    with pytest.raises(Exception, match="unexpected event"):
        sensor.execute_complete({}, None)


# --------------------------------------------------------------------------- sensor, reschedule fallback
class FakeTI:
    def __init__(self, first: dt.datetime | None) -> None:
        self.first = first

    def get_first_reschedule_date(self, context: Any) -> dt.datetime | None:
        return self.first


def test_reschedule_poke(graph_conn: str, sandbox: Sandbox) -> None:
    sensor = ScimHealthSensor(
        task_id="scim_health", graph_conn_id=graph_conn, deferrable=False, timeout=240, poke_interval=60
    )
    assert sensor.mode == "reschedule"
    healthy = sensor.poke({"ti": FakeTI(None)})
    assert healthy.is_done and healthy.xcom_value["status"] == "healthy"

    graph.set_job(sandbox, status_code="Paused", schedule_state="Paused")
    early = sensor.poke({"ti": FakeTI(None)})  # first try
    assert not early.is_done
    later = sensor.poke({"ti": FakeTI(dt.datetime.now(dt.UTC) - dt.timedelta(seconds=100))})
    assert not later.is_done
    last = sensor.poke({"ti": FakeTI(dt.datetime.now(dt.UTC) - dt.timedelta(seconds=200))})
    assert last.is_done  # the next poke would pass the timeout: return the verdict, do not fail
    assert last.xcom_value["status"] == "unhealthy" and "paused" in last.xcom_value["reason"]


def test_poke_mode_execute_returns_unhealthy_instead_of_timing_out(graph_conn: str, sandbox: Sandbox) -> None:
    graph.set_job(sandbox, last_success_minutes_ago=500)
    sensor = ScimHealthSensor(
        task_id="scim_health",
        graph_conn_id=graph_conn,
        deferrable=False,
        mode="poke",
        timeout=0.5,
        poke_interval=0.1,
    )
    verdict = sensor.execute({})
    assert verdict["status"] == "unhealthy" and "stale" in verdict["reason"]
    assert len(sandbox.calls.calls("graph", "listJobs")) >= 3


# --------------------------------------------------------------------------- params and config
def test_skip_scim_check_param(graph_conn: str, sandbox: Sandbox) -> None:
    for deferrable in (True, False):
        sensor = ScimHealthSensor(task_id="scim_health", graph_conn_id=graph_conn, deferrable=deferrable)
        verdict = sensor.execute({"params": {"skip_scim_check": True}})
        assert verdict["status"] == "unknown" and "skip_scim_check" in verdict["reason"]
    assert sandbox.calls.calls("graph") == []


def test_max_staleness_from_config(
    graph_conn: str, sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    graph.set_job(sandbox, last_success_minutes_ago=60)
    assert (
        ScimHealthSensor(task_id="scim_health", graph_conn_id=graph_conn).execute({})["status"] == "healthy"
    )
    monkeypatch.setenv("IDC_SYNC_CONFIG", json.dumps({"scim_max_staleness_minutes": 30}))
    sensor = ScimHealthSensor(task_id="scim_health", graph_conn_id=graph_conn, check_before_defer=False)
    with pytest.raises(TaskDeferred) as deferred:
        sensor.execute({})
    assert deferred.value.trigger.max_staleness_seconds == 30 * 60
