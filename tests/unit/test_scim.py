"""SCIM health rules alone: job evaluation, grace periods, pending vs error, escalation and alerts (safety
rule 4). The same verdicts through the Graph HTTP path: tests/component/test_scim_graph.py."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from idc_sync.model import Problem, RecordRef
from idc_sync.scim import (
    SCIM_ALERT_PREFIX,
    GraphSettings,
    ScimVerdict,
    escalate_missing_principals,
    evaluate_jobs,
    grace_period,
    parse_duration,
    principal_pending_or_error,
    scim_alert_text,
    scim_state_after,
    scim_transition,
)

STALENESS = dt.timedelta(minutes=90)


def test_settings_from_connection_parts() -> None:
    s = GraphSettings.from_connection_parts(
        "cid",
        "top-secret",
        {"tenant_id": "t", "service_principal_id": "sp", "graph_base_url": "http://x/v1.0"},
    )
    assert s.authority_host == "https://login.microsoftonline.com"
    assert "top-secret" not in repr(s) and "top-secret" not in s.model_dump_json()
    assert s.client().graph_base == "http://x/v1.0"
    with pytest.raises(ValueError, match=r"password \(client secret\).*extra.tenant_id") as err:
        GraphSettings.from_connection_parts("cid", "", {"service_principal_id": "sp"})
    assert "top-secret" not in str(err.value)


# --------------------------------------------------------------------------- evaluate_jobs alone
def _job(**status: Any) -> dict[str, Any]:
    return {
        "id": "AWSSingleSignOn.x.y",
        "schedule": {"interval": "PT1H", "state": "Active"},
        "status": status,
    }


def test_evaluate_never_and_min_value_times() -> None:
    now = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    never = {"timeBegan": "0001-01-01T00:00:00Z", "timeEnded": "0001-01-01T00:00:00Z", "state": "Succeeded"}
    v = evaluate_jobs([_job(code="Active", lastSuccessfulExecution=never)], now, STALENESS)
    assert v.status == "unhealthy" and "never completed" in v.reason
    assert v.interval_minutes == 60


def test_evaluate_all_jobs_must_be_healthy() -> None:
    now = dt.datetime(2026, 1, 1, 12, tzinfo=dt.UTC)
    ok = {"timeEnded": "2026-01-01T11:50:00Z", "state": "Succeeded"}
    v = evaluate_jobs([_job(code="Active", lastSuccessfulExecution=ok), _job(code="NotRun")], now, STALENESS)
    assert v.status == "unhealthy" and "first provisioning cycle" in v.reason


def test_parse_duration() -> None:
    assert parse_duration("PT40M") == dt.timedelta(minutes=40)
    assert parse_duration("P1DT2H") == dt.timedelta(days=1, hours=2)
    assert parse_duration("garbage") is None and parse_duration(None) is None


# --------------------------------------------------------------------------- safety rule 4
NOW = dt.datetime(2026, 3, 1, 12, 0, tzinfo=dt.UTC)


def _verdict(status: str, interval: int | None = 40) -> ScimVerdict:
    return ScimVerdict(status=status, reason="x", checked_at=NOW, interval_minutes=interval)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("status", "age_minutes", "expected"),
    [
        ("healthy", 10, "pending"),  # young record: SCIM has not had its cycles yet
        ("healthy", 79, "pending"),  # inside 2 x 40 min
        ("healthy", 81, "error"),  # grace passed while SCIM works: the name is wrong
        ("unhealthy", 600, "pending"),  # SCIM broken: never the requester's fault
        ("unknown", 600, "pending"),  # check skipped
    ],
)
def test_pending_or_error(status: str, age_minutes: int, expected: str) -> None:
    record_time = NOW - dt.timedelta(minutes=age_minutes)
    assert principal_pending_or_error(_verdict(status), record_time, NOW) == expected
    # the XCom (dict) form gives the same answer
    assert principal_pending_or_error(_verdict(status).to_xcom(), record_time, NOW) == expected


def test_grace_follows_interval_and_config() -> None:
    assert grace_period(_verdict("healthy", 60), grace_cycles=3) == dt.timedelta(minutes=180)
    assert grace_period(_verdict("healthy", None)) == dt.timedelta(minutes=80)
    assert grace_period(None) == dt.timedelta(minutes=80)
    assert principal_pending_or_error(None, NOW - dt.timedelta(days=3), NOW) == "pending"
    naive = (NOW - dt.timedelta(minutes=100)).replace(tzinfo=None)
    assert principal_pending_or_error(_verdict("healthy", 60), naive, NOW) == "pending"  # 2 x 60 min


# --------------------------------------------------------------------------- escalation of missing principals
def _missing(
    name: str, age_minutes: int, principal_type: str = "USER", updated: int | None = None
) -> Problem:
    ref = RecordRef(
        app="assignments",
        app_id="2",
        record_id=name,
        created_at=NOW - dt.timedelta(minutes=age_minutes),
        updated_at=NOW - dt.timedelta(minutes=updated) if updated is not None else None,
    )
    return Problem(
        code="principal_not_found",
        message=f"User {name} is not in IAM Identity Center yet (...); the assignment will be made once it arrives.",
        severity="pending",
        record=ref,
        params={"principal_type": principal_type, "principal_name": name},
    )


def test_escalate_only_old_records_while_healthy() -> None:
    young, old = _missing("taro", 30), _missing("victor", 3 * 24 * 60)
    other = Problem(code="invalid_target", message="x", record=young.record)
    out = escalate_missing_principals([young, old, other], _verdict("healthy").to_xcom(), NOW)
    assert [p.severity for p in out] == ["pending", "error", "error"]
    assert out[0] == young and out[2] == other
    error = out[1].message
    # an error that reads as one and says what to do, not "waiting"
    assert "yet" not in error and "will be made" not in error
    assert (
        "exists in Entra ID" in error
        and "assigned to the AWS IAM Identity Center enterprise application" in error
    )
    assert "80 min" in error and out[1].code == "principal_not_found" and out[1].record == old.record
    for status in ("unhealthy", "unknown"):
        assert [p.severity for p in escalate_missing_principals([young, old], _verdict(status), NOW)] == [
            "pending",
            "pending",
        ]
    assert escalate_missing_principals([old], None, NOW)[0].severity == "pending"


def test_escalate_uses_last_update_and_names_the_group() -> None:
    edited = _missing("victor", 3 * 24 * 60, updated=20)  # the name was corrected 20 min ago: new grace
    assert escalate_missing_principals([edited], _verdict("healthy"), NOW)[0].severity == "pending"
    group = _missing("data-team", 3 * 24 * 60, principal_type="GROUP")
    [out] = escalate_missing_principals([group], _verdict("healthy", 60), NOW, grace_cycles=3)
    assert out.severity == "error"
    assert out.message.startswith("Group data-team is not in IAM Identity Center")
    assert "group name" in out.message and "3 h 0 min" in out.message


# --------------------------------------------------------------------------- alert once per change
@pytest.mark.parametrize(
    ("previous", "status", "expected"),
    [
        (None, "healthy", None),
        (None, "unhealthy", "turned_unhealthy"),  # broken at the very first check: say it
        ("healthy", "unhealthy", "turned_unhealthy"),
        ("unhealthy", "unhealthy", None),  # still broken: already said
        ("unhealthy", "healthy", "recovered"),
        ("healthy", "healthy", None),
        ("unhealthy", "unknown", None),  # skipped check: no news either way
        ("healthy", "unknown", None),
    ],
)
def test_scim_transition(previous: str | None, status: str, expected: str | None) -> None:
    assert scim_transition(previous, _verdict(status)) == expected
    assert scim_transition(previous, _verdict(status).to_xcom()) == expected
    assert scim_transition(previous, None) is None


def test_state_and_alert_text_across_runs() -> None:
    later = NOW + dt.timedelta(minutes=30)
    broken = ScimVerdict(status="unhealthy", reason="job Okta is in quarantine (X)", checked_at=NOW)
    state = scim_state_after({}, broken, NOW)
    assert state["status"] == "unhealthy" and state["since"] == NOW.isoformat()
    text = scim_alert_text("turned_unhealthy", broken, {})
    assert (
        text.startswith(SCIM_ALERT_PREFIX) and "UNHEALTHY" in text and "job Okta is in quarantine (X)" in text
    )
    # a persisting status keeps its "since"; an unknown verdict keeps the state
    assert scim_state_after(state, broken, later)["since"] == NOW.isoformat()
    assert scim_state_after(state, ScimVerdict.unknown("skipped"), later) == state
    healthy = _verdict("healthy")
    recovered = scim_alert_text("recovered", healthy, state)
    assert recovered.startswith(SCIM_ALERT_PREFIX) and "recovered" in recovered
    assert "unhealthy since 2026-03-01 12:00 UTC" in recovered
    assert scim_state_after(state, healthy, later)["status"] == "healthy"
