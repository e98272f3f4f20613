"""SCIM health through the real DAG (``dag.test()``) against the sandbox: safety rule 4 end to end.

The demo seed names two users Entra has not provisioned yet: taro.tanaka (record 30 min old) and victor
(record 3 days old). The SCIM job is healthy (last cycle 12 min ago) with a 40 min interval, so the grace
period is 2 x 40 = 80 min: taro is *pending*, victor is an *error*, until a SCIM cycle brings them.

- pending -> created: the next SCIM cycle (``graph.run_scim_cycle``) creates the users, the next sync
  creates their assignments and tells the records they are resolved;
- while SCIM is unhealthy (quarantine), both stay pending and admins get ONE Slack alert when it turns
  unhealthy and ONE when it recovers, not one per run; after recovery victor's record gets its error;
- ``skip_scim_check``: verdict "unknown", Graph is not asked, missing principals stay pending.
"""

from __future__ import annotations

import json
import os
from typing import Any

import pytest
from demo_grants import AFTER_SCIM_CYCLE, SEEDED, WANTED

from idc_sandbox import graph
from idc_sync.scim import SCIM_ALERT_PREFIX

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]

TARO = "taro.tanaka@example.com"
VICTOR = "victor@example.com"
QUARANTINE_CODE = "SystemForCrossDomainIdentityManagementInvalidCredentials"


def _state(run: Any) -> str:
    return str(run.state).split(".")[-1].lower()


def _record_id(harness: Any, user: str) -> int:
    app = harness.sandbox.world.kintone.apps[harness.app_id("assignments")]
    [record_id] = [
        rid
        for rid, rec in app.records.items()
        if user in [u.get("code") for u in (rec.get("users", {}).get("value") or [])]
    ]
    return int(record_id)


def _comments_on(harness: Any, user: str) -> list[str]:
    app_id, record_id = harness.app_id("assignments"), _record_id(harness, user)
    return [text for app, rid, text, _ in harness.comments() if app == app_id and rid == record_id]


def _scim_alerts(harness: Any) -> list[str]:
    return [m.get("text", "") for m in harness.slack() if m.get("text", "").startswith(SCIM_ALERT_PREFIX)]


def _missing(harness: Any) -> dict[str, str]:
    """taro/victor -> severity of their principal_not_found problems in the last run's audit."""
    return {
        p["params"]["principal_name"]: p["severity"]
        for p in harness.last_audit()["problems"]
        if p["code"] == "principal_not_found" and p["params"]["principal_name"] in (TARO, VICTOR)
    }


def _missing_message(harness: Any, name: str) -> str:
    [message] = [
        p["message"]
        for p in harness.last_audit()["problems"]
        if p["code"] == "principal_not_found" and p["params"]["principal_name"] == name
    ]
    return str(message)


@pytest.fixture(autouse=True)
def english(harness: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """Record comments in English, so the assertions can read them."""
    config = json.loads(os.environ["IDC_SYNC_CONFIG"])
    monkeypatch.setenv("IDC_SYNC_CONFIG", json.dumps({**config, "language": "en"}))


@pytest.fixture
def quick_sensor(harness: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """An unhealthy SCIM keeps the sensor deferred until its timeout (240 s in the DAG): 4 s here."""
    sensor = harness.dag.get_task("scim_health")
    monkeypatch.setattr(sensor, "timeout", 4.0)
    monkeypatch.setattr(sensor, "poke_interval", 1.0)


def test_pending_user_is_created_after_the_next_scim_cycle(harness: Any) -> None:
    run = harness.run()
    assert _state(run) == "success"
    audit = harness.last_audit()
    assert audit["scim"]["status"] == "healthy" and audit["scim"]["interval_minutes"] == 40
    # taro (30 min): pending, a "waiting" note at most, no error; victor (3 days, SCIM healthy): error
    assert _missing(harness) == {TARO: "pending", VICTOR: "error"}
    assert harness.assignments() == SEEDED | WANTED  # what the records ask for, but taro's and victor's
    [taro_note] = _comments_on(harness, TARO)
    assert "waiting to be applied" in taro_note and "[Pending]" in taro_note and "[Error]" not in taro_note
    [victor_error] = _comments_on(harness, VICTOR)
    assert "[Error]" in victor_error and "not in IAM Identity Center" in victor_error
    assert "enterprise application" in victor_error and " yet " not in victor_error
    # the problem itself (audit, logs) reads as an error and says what to check
    message = _missing_message(harness, VICTOR)
    assert message.startswith(f"User {VICTOR} is not in IAM Identity Center, although")
    assert "exists in Entra ID" in message and "AWS IAM Identity Center enterprise application" in message
    assert _scim_alerts(harness) == []  # healthy from the start: nothing to tell admins

    # Entra's next provisioning cycle creates both users in the identity store ...
    cycle = graph.run_scim_cycle(harness.sandbox)
    assert cycle["provisioned"] and TARO in cycle["users_created"], cycle
    run = harness.run()
    assert _state(run) == "success"
    # ... and the next sync creates their assignments and tells both records they are resolved.
    assert harness.assignments() == SEEDED | WANTED | AFTER_SCIM_CYCLE
    assert _missing(harness) == {}
    assert "Resolved" in _comments_on(harness, TARO)[-1]
    assert "Resolved" in _comments_on(harness, VICTOR)[-1]


def test_unhealthy_scim_keeps_users_pending_and_alerts_admins_once(harness: Any, quick_sensor: None) -> None:
    sb = harness.sandbox
    graph.set_job(sb, quarantine_reason="EncounteredQuarantineException", fail_error_code=QUARANTINE_CODE)

    # skip_scim_check: Graph is not asked, verdict unknown, both pending, no alert (no news is not news)
    run = harness.run(skip_scim_check=True)
    assert _state(run) == "success"
    assert harness.last_audit()["scim"]["status"] == "unknown"
    assert sb.calls.calls("graph", "listJobs") == []
    assert _missing(harness) == {TARO: "pending", VICTOR: "pending"}
    assert _scim_alerts(harness) == []
    comments_before = len(harness.comments())

    # three runs while quarantined: both stay pending, ONE alert with the reason
    for _ in range(3):
        run = harness.run()
        assert _state(run) == "success"
        assert harness.last_audit()["scim"]["status"] == "unhealthy"
        assert _missing(harness) == {TARO: "pending", VICTOR: "pending"}
    [alert] = _scim_alerts(harness)
    assert "UNHEALTHY" in alert and "quarantine" in alert and QUARANTINE_CODE in alert
    assert len(harness.comments()) == comments_before  # requesters heard nothing new (no error)
    assert not [t for t in _comments_on(harness, VICTOR) if "[Error]" in t]

    # an admin issues a new SCIM token: the job is healthy again (no cycle has provisioned anyone yet)
    graph.set_job(sb, quarantine=None, status_code="Active", last_success_minutes_ago=1)
    run = harness.run()
    assert _state(run) == "success"
    alerts = _scim_alerts(harness)
    assert len(alerts) == 2, alerts
    assert "recovered" in alerts[1] and "unhealthy since" in alerts[1]
    # SCIM works and victor's record is 3 days old: now it is an error on his record; taro still waits
    assert _missing(harness) == {TARO: "pending", VICTOR: "error"}
    assert "[Error]" in _comments_on(harness, VICTOR)[-1]
    # run summaries are separate messages; the SCIM ones are exactly the two transitions
    assert len([m for m in harness.slack() if not m.get("text", "").startswith(SCIM_ALERT_PREFIX)]) >= 1
