"""The sandbox's Microsoft Graph: token endpoint, synchronization jobs, faults and the simulated SCIM cycle."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
import requests

from idc_sandbox import graph
from idc_sandbox.core import FaultRule, Sandbox
from idc_sandbox.state import EntraGroup, EntraUser, User

CLIENT_ID = "0c6a1e52-7f4b-4a8e-9d2c-3b5e6f7a8b9c"
CLIENT_SECRET = "sandbox-graph-secret-value"
GRAPH_SCOPE = "https://graph.microsoft.com/.default"


@pytest.fixture
def entra(sandbox: Sandbox) -> Any:
    e = sandbox.world.entra
    e.clients[CLIENT_ID] = CLIENT_SECRET
    graph.set_job(sandbox, last_success_minutes_ago=5)
    return e


def get_token(url: str, tenant: str, **overrides: str) -> requests.Response:
    form = {
        "client_id": CLIENT_ID,
        "client_secret": CLIENT_SECRET,
        "scope": GRAPH_SCOPE,
        "grant_type": "client_credentials",
        **overrides,
    }
    return requests.post(f"{url}/{tenant}/oauth2/v2.0/token", data=form, timeout=10)


def bearer(url: str, tenant: str) -> dict[str, str]:
    resp = get_token(url, tenant)
    assert resp.status_code == 200, resp.text
    return {"Authorization": f"Bearer {resp.json()['access_token']}"}


def jobs_url(url: str, sp_id: str) -> str:
    return f"{url}/v1.0/servicePrincipals/{sp_id}/synchronization/jobs"


# --------------------------------------------------------------------------- token endpoint
def test_token_client_credentials(sandbox_url: str, sandbox: Sandbox, entra: Any) -> None:
    resp = get_token(sandbox_url, entra.tenant_id)
    assert resp.status_code == 200
    body = resp.json()
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] == body["ext_expires_in"] == 3599
    assert body["access_token"] in entra.tokens
    assert entra.tokens[body["access_token"]] > dt.datetime.now(dt.UTC).timestamp() + 3000
    calls = sandbox.calls.calls("graph", "token")
    assert len(calls) == 1 and calls[0].status == 200
    assert CLIENT_SECRET not in repr(calls[0])


@pytest.mark.parametrize(
    ("overrides", "status", "error", "aadsts"),
    [
        ({"client_secret": "wrong"}, 401, "invalid_client", 7000215),
        ({"client_id": "11111111-2222-3333-4444-555555555555"}, 400, "unauthorized_client", 700016),
        ({"scope": "https://graph.microsoft.com/User.Read"}, 400, "invalid_scope", 1002012),
        ({"grant_type": "password"}, 400, "unsupported_grant_type", 70003),
        ({"grant_type": ""}, 400, "invalid_request", 900144),
    ],
)
def test_token_errors(
    sandbox_url: str, entra: Any, overrides: dict[str, str], status: int, error: str, aadsts: int
) -> None:
    resp = get_token(sandbox_url, entra.tenant_id, **overrides)
    assert resp.status_code == status
    body = resp.json()
    assert body["error"] == error
    assert body["error_description"].startswith(f"AADSTS{aadsts}:")
    assert body["error_codes"] == [aadsts]
    assert CLIENT_SECRET not in resp.text


def test_token_unknown_tenant(sandbox_url: str, entra: Any) -> None:
    resp = get_token(sandbox_url, "00000000-0000-0000-0000-000000000000")
    assert resp.status_code == 400
    assert resp.json()["error"] == "invalid_request"
    assert "AADSTS90002" in resp.json()["error_description"]


# --------------------------------------------------------------------------- jobs
def test_list_jobs_shape(sandbox_url: str, entra: Any) -> None:
    resp = requests.get(
        jobs_url(sandbox_url, entra.service_principal_id),
        headers=bearer(sandbox_url, entra.tenant_id),
        timeout=10,
    )
    assert resp.status_code == 200
    body = resp.json()
    assert "synchronization/jobs" in body["@odata.context"]
    [job] = body["value"]
    assert set(job) == {"id", "templateId", "schedule", "status", "synchronizationJobSettings"}
    assert job["templateId"] == "AWSSingleSignOn"
    assert job["schedule"] == {"expiration": None, "interval": "PT40M", "state": "Active"}
    status = job["status"]
    assert set(status) == {
        "code",
        "countSuccessiveCompleteFailures",
        "escrowsPruned",
        "lastExecution",
        "lastSuccessfulExecution",
        "lastSuccessfulExecutionWithExports",
        "progress",
        "quarantine",
        "steadyStateFirstAchievedTime",
        "steadyStateLastAchievedTime",
        "synchronizedEntryCountByType",
        "troubleshootingUrl",
    }
    assert status["code"] == "Active" and status["quarantine"] is None
    last = status["lastSuccessfulExecution"]
    assert last["state"] == "Succeeded" and last["error"] is None
    ended = dt.datetime.fromisoformat(last["timeEnded"].replace("Z", "+00:00"))
    assert dt.timedelta(minutes=4) < dt.datetime.now(dt.UTC) - ended < dt.timedelta(minutes=6)
    assert {"activityIdentifier", "countEntitled", "countExported", "timeBegan"} <= set(last)
    assert all({"name", "value"} == set(s) for s in job["synchronizationJobSettings"])

    one = requests.get(
        f"{jobs_url(sandbox_url, entra.service_principal_id)}/{job['id']}",
        headers=bearer(sandbox_url, entra.tenant_id),
        timeout=10,
    )
    assert one.status_code == 200
    assert one.json()["id"] == job["id"] and one.json()["status"]["code"] == "Active"


@pytest.mark.parametrize(
    ("headers", "message"),
    [
        ({}, "Access token is empty."),
        ({"Authorization": "Bearer nonsense"}, "IDX14100"),
        ({"Authorization": "Bearer eyJ.fake.token"}, "Invalid signature"),
    ],
)
def test_jobs_need_valid_token(sandbox_url: str, entra: Any, headers: dict[str, str], message: str) -> None:
    resp = requests.get(jobs_url(sandbox_url, entra.service_principal_id), headers=headers, timeout=10)
    assert resp.status_code == 401
    err = resp.json()["error"]
    assert err["code"] == "InvalidAuthenticationToken"
    assert message in err["message"]
    assert {"date", "request-id", "client-request-id"} <= set(err["innerError"])


def test_expired_token(sandbox_url: str, sandbox: Sandbox, entra: Any) -> None:
    headers = bearer(sandbox_url, entra.tenant_id)
    graph.expire_tokens(sandbox)
    resp = requests.get(jobs_url(sandbox_url, entra.service_principal_id), headers=headers, timeout=10)
    assert resp.status_code == 401
    assert "expired" in resp.json()["error"]["message"]


def test_unknown_service_principal_and_job(sandbox_url: str, entra: Any) -> None:
    headers = bearer(sandbox_url, entra.tenant_id)
    resp = requests.get(jobs_url(sandbox_url, "does-not-exist"), headers=headers, timeout=10)
    assert resp.status_code == 404
    assert resp.json()["error"]["code"] == "Request_ResourceNotFound"
    resp = requests.get(
        f"{jobs_url(sandbox_url, entra.service_principal_id)}/nope", headers=headers, timeout=10
    )
    assert resp.status_code == 404


@pytest.mark.parametrize(
    ("kind", "status", "code"),
    [
        ("throttle", 429, "TooManyRequests"),
        ("error5xx", 503, "serviceNotAvailable"),
        ("access_denied", 403, "Authorization_RequestDenied"),
    ],
)
def test_faults(sandbox_url: str, sandbox: Sandbox, entra: Any, kind: str, status: int, code: str) -> None:
    headers = bearer(sandbox_url, entra.tenant_id)
    sandbox.faults.add(FaultRule(service="graph", kind=kind, operation="listJobs", count=1))
    resp = requests.get(jobs_url(sandbox_url, entra.service_principal_id), headers=headers, timeout=10)
    assert resp.status_code == status
    assert resp.json()["error"]["code"] == code
    if kind == "throttle":
        assert int(resp.headers["Retry-After"]) >= 1
    again = requests.get(jobs_url(sandbox_url, entra.service_principal_id), headers=headers, timeout=10)
    assert again.status_code == 200
    calls = sandbox.calls.calls("graph", "listJobs")
    assert [c.status for c in calls] == [status, 200]


def test_outage_and_latency(sandbox_url: str, sandbox: Sandbox, entra: Any) -> None:
    headers = bearer(sandbox_url, entra.tenant_id)
    sandbox.faults.add(FaultRule(service="graph", kind="outage", count=1))
    resp = requests.get(jobs_url(sandbox_url, entra.service_principal_id), headers=headers, timeout=10)
    assert resp.status_code == 503
    sandbox.faults.add(FaultRule(service="graph", kind="latency", latency_ms=300, count=1))
    start = dt.datetime.now()
    resp = requests.get(jobs_url(sandbox_url, entra.service_principal_id), headers=headers, timeout=10)
    assert resp.status_code == 200
    assert (dt.datetime.now() - start).total_seconds() >= 0.28


def test_token_endpoint_faults(sandbox_url: str, sandbox: Sandbox, entra: Any) -> None:
    sandbox.faults.add(FaultRule(service="graph", kind="throttle", operation="token", count=1))
    resp = get_token(sandbox_url, entra.tenant_id)
    assert resp.status_code == 429 and "Retry-After" in resp.headers
    assert get_token(sandbox_url, entra.tenant_id).status_code == 200


# --------------------------------------------------------------------------- SCIM cycle
def _add_people(sandbox: Sandbox) -> None:
    e = sandbox.world.entra
    e.users["e-alice"] = EntraUser("e-alice", "alice@example.com", "Alice A", mail="alice@example.com")
    e.users["e-bob"] = EntraUser(
        "e-bob", "bob@example.com", "Bob B", mail="bob@example.com", assigned_to_app=False
    )
    e.users["e-carol"] = EntraUser("e-carol", "carol@example.com", "Carol C", assigned_to_app=False)
    e.groups["g-eng"] = EntraGroup("g-eng", "Engineering", members=["e-alice", "e-carol"])
    e.groups["g-hidden"] = EntraGroup("g-hidden", "Hidden", members=["e-bob"], assigned_to_app=False)


def test_scim_cycle_provisions_identity_store(sandbox: Sandbox, entra: Any) -> None:
    _add_people(sandbox)
    sandbox.world.identity_store.users["manual"] = User("manual", "root-admin", "Hand made")  # not SCIM's
    result = graph.run_scim_cycle(sandbox)
    assert result["provisioned"] is True
    # alice: assigned; carol: member of an assigned group; bob: out of scope
    assert sorted(result["users_created"]) == ["alice@example.com", "carol@example.com"]
    assert result["groups_created"] == ["Engineering"]
    store = sandbox.world.identity_store
    names = {u.user_name: u for u in store.users.values()}
    assert set(names) == {"alice@example.com", "carol@example.com", "root-admin"}
    assert names["alice@example.com"].external_id == "e-alice"
    assert names["alice@example.com"].display_name == "Alice A"
    [eng] = store.groups.values()
    assert eng.members == {names["alice@example.com"].user_id, names["carol@example.com"].user_id}
    job = sandbox.world.entra.jobs[0]
    assert job.last_execution is not None and job.last_execution["state"] == "Succeeded"
    assert job.last_successful_execution is job.last_execution
    assert job.steady_state_last_achieved is not None

    # second cycle: nothing changes; then unassign alice and remove the group
    again = graph.run_scim_cycle(sandbox)
    assert again["users_created"] == [] and again["users_updated"] == []
    sandbox.world.entra.users["e-alice"].assigned_to_app = False
    sandbox.world.entra.users["e-alice"].display_name = "Alice Renamed"
    sandbox.world.entra.groups["g-eng"].assigned_to_app = False
    third = graph.run_scim_cycle(sandbox)
    assert sorted(third["users_deleted"]) == ["alice@example.com", "carol@example.com"]
    assert third["groups_deleted"] == ["Engineering"]
    assert {u.user_name for u in store.users.values()} == {"root-admin"}


def test_scim_cycle_visible_through_boto3(sandbox: Sandbox, entra: Any, aws_client: Any) -> None:
    _add_people(sandbox)
    client = aws_client("identitystore")
    store_id = sandbox.world.identity_store.id
    ident = {"UniqueAttribute": {"AttributePath": "userName", "AttributeValue": "alice@example.com"}}
    with pytest.raises(client.exceptions.ResourceNotFoundException):
        client.get_user_id(IdentityStoreId=store_id, AlternateIdentifier=ident)
    graph.run_scim_cycle(sandbox)
    user_id = client.get_user_id(IdentityStoreId=store_id, AlternateIdentifier=ident)["UserId"]
    assert sandbox.world.identity_store.users[user_id].external_id == "e-alice"
    group = {"UniqueAttribute": {"AttributePath": "displayName", "AttributeValue": "Engineering"}}
    assert client.get_group_id(IdentityStoreId=store_id, AlternateIdentifier=group)["GroupId"]


def test_failing_cycles_quarantine_the_job(sandbox: Sandbox, entra: Any) -> None:
    _add_people(sandbox)
    graph.set_job(
        sandbox,
        fail_next_cycles=5,
        fail_error_code="SystemForCrossDomainIdentityManagementServiceIncompatible",
    )
    for n in (1, 2):
        result = graph.run_scim_cycle(sandbox)
        assert result["provisioned"] is False and result["jobs"][0]["state"] == "Failed"
        job = sandbox.world.entra.jobs[0]
        assert job.successive_failures == n and job.status_code == "Active" and job.quarantine is None
        assert job.last_execution is not None and job.last_execution["state"] == "Failed"
        assert (
            job.last_execution["error"]["code"] == "SystemForCrossDomainIdentityManagementServiceIncompatible"
        )
    assert sandbox.world.identity_store.users == {}
    graph.run_scim_cycle(sandbox)
    job = sandbox.world.entra.jobs[0]
    assert job.status_code == "Quarantine"
    assert job.quarantine is not None and job.quarantine["reason"] == "EncounteredQuarantineException"
    assert job.quarantine["seriesCount"] == 1
    # still quarantined after the failures run out: lifting it is an admin action
    graph.set_job(sandbox, fail_next_cycles=0)
    graph.run_scim_cycle(sandbox)
    assert sandbox.world.entra.jobs[0].quarantine["seriesCount"] == 2  # type: ignore[index]
    graph.set_job(sandbox, quarantine=None, status_code="Active")
    assert graph.run_scim_cycle(sandbox)["provisioned"] is True
    job = sandbox.world.entra.jobs[0]
    assert job.successive_failures == 0 and job.status_code == "Active"


def test_invalid_credentials_quarantine_at_once(sandbox_url: str, sandbox: Sandbox, entra: Any) -> None:
    graph.set_job(sandbox, fail_next_cycles=1)  # default error: invalid SCIM credentials
    graph.run_scim_cycle(sandbox)
    resp = requests.get(
        jobs_url(sandbox_url, entra.service_principal_id),
        headers=bearer(sandbox_url, entra.tenant_id),
        timeout=10,
    )
    status = resp.json()["value"][0]["status"]
    assert status["code"] == "Quarantine"
    assert status["countSuccessiveCompleteFailures"] == 1
    q = status["quarantine"]
    assert q["reason"] == "EncounteredQuarantineException"
    assert q["error"]["code"] == "SystemForCrossDomainIdentityManagementInvalidCredentials"
    assert {"currentBegan", "nextAttempt", "seriesBegan", "seriesCount"} <= set(q)
    assert status["lastExecution"]["state"] == "Failed"
    assert status["troubleshootingUrl"].startswith("https://")


def test_paused_job_does_not_provision(sandbox: Sandbox, entra: Any) -> None:
    _add_people(sandbox)
    graph.set_job(sandbox, status_code="Paused", schedule_state="Paused")
    result = graph.run_scim_cycle(sandbox)
    assert result["provisioned"] is False and result["jobs"][0]["state"] == "Skipped"
    assert sandbox.world.identity_store.users == {}


def test_set_job_rejects_unknown_fields(sandbox: Sandbox) -> None:
    with pytest.raises(ValueError, match="unknown SyncJob fields"):
        graph.set_job(sandbox, colour="red")
