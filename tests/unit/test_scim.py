"""SCIM health verdicts through the real token + Graph HTTP path (against the sandbox), and safety rule 4."""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any

import pytest

from idc_sandbox import graph
from idc_sandbox.core import FaultRule, Sandbox
from idc_sync.model import Problem, RecordRef
from idc_sync.scim import (
    SCIM_ALERT_PREFIX,
    GraphClient,
    GraphError,
    GraphSettings,
    ScimVerdict,
    check_scim_health,
    escalate_missing_principals,
    evaluate_jobs,
    grace_period,
    parse_duration,
    principal_pending_or_error,
    scim_alert_text,
    scim_state_after,
    scim_transition,
)

CLIENT_ID = "0c6a1e52-7f4b-4a8e-9d2c-3b5e6f7a8b9c"
CLIENT_SECRET = "unit-test-graph-client-secret"
STALENESS = dt.timedelta(minutes=90)


@pytest.fixture
def sleeps() -> list[float]:
    return []


@pytest.fixture
def client(sandbox_url: str, sandbox: Sandbox, sleeps: list[float]) -> GraphClient:
    entra = sandbox.world.entra
    entra.clients[CLIENT_ID] = CLIENT_SECRET
    graph.set_job(sandbox, last_success_minutes_ago=10)
    return GraphClient(
        sandbox_url, sandbox_url, entra.tenant_id, CLIENT_ID, CLIENT_SECRET, sleep=sleeps.append
    )


def verdict_of(client: GraphClient, sandbox: Sandbox) -> ScimVerdict:
    now = dt.datetime.now(dt.UTC)
    return check_scim_health(client, sandbox.world.entra.service_principal_id, now, STALENESS)


# --------------------------------------------------------------------------- verdicts via HTTP
def test_healthy(client: GraphClient, sandbox: Sandbox) -> None:
    v = verdict_of(client, sandbox)
    assert v.status == "healthy", v.reason
    assert v.interval_minutes == 40
    assert "Active" in v.reason and "10 min ago" in v.reason
    [job] = v.jobs
    assert job.status_code == "Active" and job.template_id == "AWSSingleSignOn"
    dumped = v.to_xcom()
    assert dumped["status"] == "healthy" and isinstance(dumped["checked_at"], str)
    assert ScimVerdict.model_validate(dumped) == v


def test_quarantined(client: GraphClient, sandbox: Sandbox) -> None:
    graph.set_job(sandbox, fail_next_cycles=1)
    graph.run_scim_cycle(sandbox)
    v = verdict_of(client, sandbox)
    assert v.status == "unhealthy"
    assert "quarantine" in v.reason
    assert "EncounteredQuarantineException" in v.reason
    assert "SystemForCrossDomainIdentityManagementInvalidCredentials" in v.reason
    assert "SCIM access token" in v.reason
    assert v.jobs[0].quarantine_error_code == "SystemForCrossDomainIdentityManagementInvalidCredentials"


def test_stale(client: GraphClient, sandbox: Sandbox) -> None:
    graph.set_job(sandbox, last_success_minutes_ago=180)
    v = verdict_of(client, sandbox)
    assert v.status == "unhealthy"
    assert "stale" in v.reason and "3 h 0 min ago" in v.reason and "limit 90 min" in v.reason


def test_stale_after_failures_names_the_error(client: GraphClient, sandbox: Sandbox) -> None:
    graph.set_job(
        sandbox, last_success_minutes_ago=100, fail_next_cycles=1, fail_error_code="SomeTransientError"
    )
    graph.run_scim_cycle(sandbox)
    v = verdict_of(client, sandbox)
    assert v.status == "unhealthy"
    assert "stale" in v.reason and "SomeTransientError" in v.reason


def test_paused(client: GraphClient, sandbox: Sandbox) -> None:
    graph.set_job(sandbox, status_code="Paused", schedule_state="Paused")
    v = verdict_of(client, sandbox)
    assert v.status == "unhealthy" and "paused" in v.reason


def test_not_configured(client: GraphClient, sandbox: Sandbox) -> None:
    graph.set_job(sandbox, status_code="NotConfigured", last_successful_execution=None)
    v = verdict_of(client, sandbox)
    assert v.status == "unhealthy" and "not configured" in v.reason


def test_no_jobs(client: GraphClient, sandbox: Sandbox) -> None:
    sandbox.world.entra.jobs.clear()
    v = verdict_of(client, sandbox)
    assert v.status == "unhealthy" and "not set up" in v.reason


def test_401_bad_secret(sandbox_url: str, sandbox: Sandbox, client: GraphClient, caplog: Any) -> None:
    entra = sandbox.world.entra
    bad = GraphClient(
        sandbox_url, sandbox_url, entra.tenant_id, CLIENT_ID, "wrong-secret-123", sleep=lambda s: None
    )
    with caplog.at_level(logging.DEBUG):
        v = check_scim_health(bad, entra.service_principal_id, dt.datetime.now(dt.UTC), STALENESS)
    assert v.status == "unhealthy"
    assert v.error_status == 401 and v.error_code == "invalid_client"
    assert "AADSTS7000215" in v.reason and "client id/secret" in v.reason
    assert v.permanent_failure
    assert "wrong-secret-123" not in v.model_dump_json() and "wrong-secret-123" not in caplog.text
    assert "wrong-secret-123" not in repr(bad)


def test_401_from_graph_after_token_refresh(client: GraphClient, sandbox: Sandbox) -> None:
    assert verdict_of(client, sandbox).healthy
    graph.expire_tokens(sandbox)  # the cached token dies early: the client fetches a new one once
    assert verdict_of(client, sandbox).healthy
    assert len(sandbox.calls.calls("graph", "token")) == 2


def test_403(client: GraphClient, sandbox: Sandbox) -> None:
    sandbox.faults.add(FaultRule(service="graph", kind="access_denied", operation="listJobs"))
    v = verdict_of(client, sandbox)
    assert v.status == "unhealthy" and v.error_status == 403
    assert "Authorization_RequestDenied" in v.reason and "Synchronization.Read.All" in v.reason


def test_404_unknown_service_principal(client: GraphClient, sandbox: Sandbox) -> None:
    v = check_scim_health(client, "no-such-sp", dt.datetime.now(dt.UTC), STALENESS)
    assert v.status == "unhealthy" and v.error_code == "Request_ResourceNotFound" and v.permanent_failure


def test_429_retried_then_healthy(client: GraphClient, sandbox: Sandbox, sleeps: list[float]) -> None:
    sandbox.faults.add(FaultRule(service="graph", kind="throttle", operation="listJobs", count=2))
    v = verdict_of(client, sandbox)
    assert v.healthy
    assert sleeps == [1.0, 1.0]  # Retry-After respected
    assert [c.status for c in sandbox.calls.calls("graph", "listJobs")] == [429, 429, 200]


def test_429_after_retries_is_unhealthy(client: GraphClient, sandbox: Sandbox, sleeps: list[float]) -> None:
    sandbox.faults.add(FaultRule(service="graph", kind="throttle", operation="listJobs"))
    v = verdict_of(client, sandbox)
    assert v.status == "unhealthy"
    assert v.error_status == 429 and v.error_code == "TooManyRequests"
    assert not v.permanent_failure
    assert len(sandbox.calls.calls("graph", "listJobs")) == client.max_attempts
    assert len(sleeps) == client.max_attempts - 1


def test_5xx_and_outage_retried(client: GraphClient, sandbox: Sandbox) -> None:
    sandbox.faults.add(FaultRule(service="graph", kind="error5xx", operation="listJobs", count=1))
    sandbox.faults.add(FaultRule(service="graph", kind="outage", operation="listJobs", count=1))
    assert verdict_of(client, sandbox).healthy
    sandbox.faults.add(FaultRule(service="graph", kind="error5xx", operation="listJobs"))
    v = verdict_of(client, sandbox)
    assert v.status == "unhealthy" and v.error_status == 503 and "serviceNotAvailable" in v.reason


def test_no_connection_is_unhealthy() -> None:
    c = GraphClient(
        "http://127.0.0.1:9", "http://127.0.0.1:9", "t", "c", "s", max_attempts=2, sleep=lambda s: None
    )
    v = check_scim_health(c, "sp", dt.datetime.now(dt.UTC), STALENESS)
    assert v.status == "unhealthy" and v.error_code == "ConnectionError" and v.error_status is None


def test_token_is_cached(client: GraphClient, sandbox: Sandbox) -> None:
    for _ in range(3):
        client.list_sync_jobs(sandbox.world.entra.service_principal_id)
    assert len(sandbox.calls.calls("graph", "token")) == 1


def test_token_errors_raise_graph_error(sandbox_url: str, sandbox: Sandbox) -> None:
    c = GraphClient(sandbox_url, sandbox_url, "unknown-tenant", "c", "s3cret-value")
    with pytest.raises(GraphError) as err:
        c.token()
    assert (
        err.value.status == 400 and err.value.code == "invalid_request" and "AADSTS90002" in err.value.message
    )
    assert "s3cret-value" not in str(err.value)


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
    other = Problem(code="bad_target", message="x", record=young.record)
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
