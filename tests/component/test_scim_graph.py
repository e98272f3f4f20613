"""GraphClient and the SCIM health verdict through the real token + Graph HTTP path, against the sandbox's
Entra (the verdict rules alone: tests/unit/test_scim.py)."""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any

import pytest

from idc_sandbox import graph
from idc_sandbox.core import FaultRule, Sandbox
from idc_sync.scim import GraphClient, GraphError, ScimVerdict, check_scim_health

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
