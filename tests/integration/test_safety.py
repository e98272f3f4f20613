"""DESIGN "Safety rules" against the sandbox, through the real DAG (``dag.test()``).

Deletion guard with a Human-in-the-loop approval answered through Airflow's real REST API (the api-server
app served in-process on the same metadata DB), source outages, ownership and adoption, the management
account, drift, expiring access and partial failures.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from types import SimpleNamespace
from typing import Any
from zoneinfo import ZoneInfo

import boto3
import pytest
from botocore.config import Config

from idc_sandbox import kintone as kintone_sandbox
from idc_sandbox.core import FaultRule
from idc_sandbox.state import Assignment

pytestmark = [pytest.mark.integration, pytest.mark.timeout(420)]

MGMT = "111111111111"
DAG_ID = "idc_sync"
APPROVAL = "approve_deletions"
MEMBER_ACCOUNTS = [
    "222222222222",
    "333333333333",
    "444444444444",
    "555555555555",
    "666666666666",
    "777777777777",
    "101010101010",
    "888888888888",
]


def _state(obj: Any) -> str:
    return str(obj.state).split(".")[-1].lower() if obj is not None else "none"


# --------------------------------------------------------------------------- sandbox helpers
def _aws(harness: Any, service: str) -> Any:
    return boto3.client(
        service,
        endpoint_url=harness.url,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        config=Config(retries={"mode": "standard", "max_attempts": 8}),
    )


def _ps_arn(harness: Any, name: str) -> str:
    ps = harness.permission_set(name)
    assert ps is not None, name
    return ps.arn


def _user_id(harness: Any, user_name: str) -> str:
    return next(
        u.user_id for u in harness.sandbox.world.identity_store.users.values() if u.user_name == user_name
    )


def _wait_settled(sso: Any, instance: str) -> None:
    for _ in range(100):
        pending = sso.list_account_assignment_creation_status(
            InstanceArn=instance, Filter={"Status": "IN_PROGRESS"}
        )["AccountAssignmentsCreationStatus"]
        if not pending:
            return
        time.sleep(0.1)
    raise AssertionError("sandbox assignment requests did not settle")


def _hand_assign(harness: Any, ps_name: str, account: str, user: str) -> None:
    """An assignment made by hand in IdC (console/CLI): a plain CreateAccountAssignment, no kintone."""
    sso = _aws(harness, "sso-admin")
    instance = harness.sandbox.world.identity_center.instance_arn
    sso.create_account_assignment(
        InstanceArn=instance,
        TargetId=account,
        TargetType="AWS_ACCOUNT",
        PermissionSetArn=_ps_arn(harness, ps_name),
        PrincipalType="USER",
        PrincipalId=_user_id(harness, user),
    )
    _wait_settled(sso, instance)


def _thirty_unwanted_assignments(harness: Any) -> set[tuple[str, str, str, str]]:
    """30 hand-made assignments of the managed LegacyDeveloper set (no kintone record wants it)."""
    users = ["carol@example.com", "dave@example.com", "grace@example.com", "judy@example.com"]
    sso = _aws(harness, "sso-admin")
    instance = harness.sandbox.world.identity_center.instance_arn
    arn = _ps_arn(harness, "LegacyDeveloper")
    made = set()
    for user in users:
        for account in MEMBER_ACCOUNTS:
            if len(made) == 30:
                break
            sso.create_account_assignment(
                InstanceArn=instance,
                TargetId=account,
                TargetType="AWS_ACCOUNT",
                PermissionSetArn=arn,
                PrincipalType="USER",
                PrincipalId=_user_id(harness, user),
            )
            made.add((account, "LegacyDeveloper", "USER", user))
            _wait_settled(sso, instance)  # one operation at a time per account, like IdC wants
    assert made <= harness.assignments()
    return made


def _writes_naming(harness: Any, arns: set[str]) -> list[Any]:
    return [
        c
        for c in harness.writes()
        if c.params.get("PermissionSetArn") in arns or c.params.get("ResourceArn") in arns
    ]


def _mgmt_calls(harness: Any) -> list[Any]:
    return [
        c
        for c in harness.sandbox.calls.calls("sso-admin")
        if MGMT in (c.params.get("AccountId"), c.params.get("TargetId"))
    ]


def _record_comments(harness: Any, app_id: int, record_id: int) -> list[str]:
    return [text for a, r, text, _ in harness.comments() if a == app_id and r == record_id]


def _problems(audit: dict[str, Any], code: str) -> list[dict[str, Any]]:
    return [p for p in audit["problems"] if p["code"] == code]


def _slack_text(message: dict[str, Any]) -> str:
    parts = [message.get("text", "")]
    for block in message.get("blocks") or []:
        parts.append((block.get("text") or {}).get("text", ""))
    return "\n".join(parts)


def _task_states(run: Any) -> dict[str, str]:
    from airflow.models.taskinstance import TaskInstance as TI
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        tis = session.scalars(select(TI).where(TI.dag_id == DAG_ID, TI.run_id == run.run_id)).all()
        return {ti.task_id: _state(ti) for ti in tis}


# --------------------------------------------------------------------------- the human, through REST
class Approver(threading.Thread):
    """Waits until ``approve_deletions`` is parked in AWAITING_INPUT, then answers it through the
    api-server's public REST API (``PATCH .../hitlDetails``), or, with ``answer=None``, lets the response
    timeout pass and runs the scheduler's own timeout sweep (default: Reject)."""

    def __init__(self, answer: str | None, *, wait: float = 300) -> None:
        super().__init__(daemon=True)
        self.answer = answer
        self.wait = wait
        self.run_id: str | None = None
        self.detail: dict[str, Any] | None = None
        self.response: Any = None
        self.error: BaseException | None = None

    def _waiting_ti(self) -> Any:
        from airflow.models.taskinstance import TaskInstance as TI
        from airflow.utils.session import create_session
        from airflow.utils.state import TaskInstanceState
        from sqlalchemy import select

        with create_session() as session:
            ti = session.scalars(
                select(TI).where(
                    TI.dag_id == DAG_ID,
                    TI.task_id == APPROVAL,
                    TI.state == TaskInstanceState.AWAITING_INPUT,
                )
            ).first()
            return None if ti is None else SimpleNamespace(run_id=ti.run_id, timeout=ti.trigger_timeout)

    def run(self) -> None:
        try:
            self._run()
        except BaseException as exc:  # reported by the test
            self.error = exc

    def _run(self) -> None:
        from airflow.api_fastapi.app import create_app
        from fastapi.testclient import TestClient

        deadline = time.monotonic() + self.wait
        waiting = None
        while waiting is None:
            if time.monotonic() > deadline:
                raise TimeoutError("approve_deletions never waited for input")
            time.sleep(0.5)
            waiting = self._waiting_ti()
        self.run_id = waiting.run_id
        path = f"/api/v2/dags/{DAG_ID}/dagRuns/{self.run_id}/taskInstances/{APPROVAL}/-1/hitlDetails"
        with TestClient(create_app(apps="core")) as api:
            got = api.get(path)
            assert got.status_code == 200, got.text
            self.detail = got.json()
            if self.answer is not None:
                self.response = api.patch(path, json={"chosen_options": [self.answer]})
                return
        # No answer: wait out the response timeout, then the scheduler's sweep applies the defaults.
        from airflow.jobs.scheduler_job_runner import SchedulerJobRunner

        assert waiting.timeout is not None, "approve_deletions has no response timeout"
        while dt.datetime.now(dt.UTC) <= waiting.timeout.replace(tzinfo=waiting.timeout.tzinfo or dt.UTC):
            time.sleep(0.2)
        time.sleep(0.5)
        SchedulerJobRunner.check_awaiting_input_timeouts(SimpleNamespace(log=logging.getLogger("sweep")))


@pytest.fixture
def rest_api(monkeypatch: pytest.MonkeyPatch) -> None:
    """The api-server's SimpleAuthManager lets this in-process client in as an admin."""
    monkeypatch.setenv("AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS", "True")


def _run_with(harness: Any, approver: Approver, **params: Any) -> Any:
    approver.start()
    try:
        return harness.run(**params)
    finally:
        approver.join(timeout=60)
        assert approver.error is None, repr(approver.error)


def _hitl_record(run_id: str) -> Any:
    from airflow.models.hitl import HITLDetail
    from airflow.models.log import Log
    from airflow.models.taskinstance import TaskInstance as TI
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        ti = session.scalars(
            select(TI).where(TI.dag_id == DAG_ID, TI.run_id == run_id, TI.task_id == APPROVAL)
        ).one()
        detail = session.scalars(select(HITLDetail).where(HITLDetail.ti_id == ti.id)).one()
        logs = session.scalars(select(Log).where(Log.dag_id == DAG_ID, Log.run_id == run_id)).all()
        return SimpleNamespace(
            chosen=detail.chosen_options,
            responded_by=detail.responded_by,
            events=[lg.event for lg in logs],
        )


# --------------------------------------------------------------------------- 1. deletion guard
def test_mass_deletion_waits_and_is_approved_through_the_rest_api(harness, rest_api):
    unwanted = _thirty_unwanted_assignments(harness)
    approver = Approver("Approve")
    run = _run_with(harness, approver)

    assert _state(run) == "success"
    # it waited for a human, with the deletions as a readable Markdown table
    assert approver.run_id == run.run_id
    assert "32" in approver.detail["subject"]  # 31 assignments + the LegacyDeveloper set
    body = approver.detail["body"]
    assert "| what | account | permission set | principal | why |" in body
    assert "| assignment | 444444444444 | LegacyDeveloper | USER carol@example.com |" in body
    assert approver.detail["defaults"] == ["Reject"]
    # answered through the REST route (HTTP 200, the api-server's user and its action log)
    assert approver.response.status_code == 200, approver.response.text
    hitl = _hitl_record(run.run_id)
    assert hitl.chosen == ["Approve"] and hitl.responded_by  # a direct DB write has no user
    assert any("hitl" in (e or "") for e in hitl.events), hitl.events
    # the approval was announced on Slack with the link to answer it
    asks = [m for m in harness.slack() if "required_actions" in _slack_text(m)]
    assert asks, harness.slack()
    assert f"/dags/{DAG_ID}/runs/{run.run_id}/tasks/{APPROVAL}/required_actions" in _slack_text(asks[0])
    # and the deletions happened in this run
    states = _task_states(run)
    assert states[APPROVAL] == "success" and states["deletions_approved"] == "success"
    after = harness.assignments()
    assert not unwanted & after
    assert harness.permission_set("LegacyDeveloper") is None
    assert ("444444444444", "ReadOnly", "USER", "bob@example.com") in after  # creations too


def test_rejected_approval_applies_creations_but_no_deletions(harness, rest_api):
    unwanted = _thirty_unwanted_assignments(harness)
    approver = Approver("Reject")
    run = _run_with(harness, approver)

    assert _state(run) == "success"
    assert approver.response.status_code == 200
    _assert_withheld(harness, run, unwanted)
    assert _hitl_record(run.run_id).chosen == ["Reject"]


def test_unanswered_approval_times_out_to_reject(harness, rest_api, monkeypatch):
    """A short response timeout (config read when the DAG is parsed); the scheduler's sweep applies the
    default answer, Reject."""
    from airflow.dag_processing.dagbag import DagBag

    from tests.integration.conftest import REPO

    monkeypatch.setenv("IDC_SYNC_APPROVAL_TIMEOUT_MINUTES", "0.05")
    dag = DagBag(dag_folder=str(REPO / "dags")).get_dag(DAG_ID)
    assert dag.get_task(APPROVAL).response_timeout == dt.timedelta(seconds=3)
    harness.dag = dag
    unwanted = _thirty_unwanted_assignments(harness)
    approver = Approver(None)
    run = _run_with(harness, approver)

    assert _state(run) == "success"
    _assert_withheld(harness, run, unwanted)
    hitl = _hitl_record(run.run_id)
    assert hitl.chosen == ["Reject"] and not hitl.responded_by


def _assert_withheld(harness: Any, run: Any, unwanted: set[tuple[str, str, str, str]]) -> None:
    states = _task_states(run)
    assert states[APPROVAL] == "success" and states["deletions_approved"] == "skipped"
    assert states["apply_assignments"] == "success"
    after = harness.assignments()
    assert unwanted <= after  # nothing deleted
    assert ("666666666666", "LegacyDeveloper", "USER", "bob@example.com") in after
    assert harness.permission_set("LegacyDeveloper") is not None
    assert not harness.sandbox.calls.calls("sso-admin", "DeleteAccountAssignment")
    assert not harness.sandbox.calls.calls("sso-admin", "DeletePermissionSet")
    # creations and updates still went ahead
    assert ("444444444444", "ReadOnly", "USER", "bob@example.com") in after
    assert harness.permission_set("Developer") is not None
    assert harness.permission_set("ReadOnly").session_duration == "PT4H"
    # reported: in the audit and to admins on Slack
    audit = harness.last_audit()
    assert _problems(audit, "deletions_withheld")
    assert len(audit["deletions_withheld"]) == 32  # 31 assignments + the LegacyDeveloper set
    assert "deletions_withheld" in str(audit) and any(
        "withheld" in _slack_text(m).lower() or "削除" in _slack_text(m) for m in harness.slack()
    )


def test_allow_mass_delete_skips_the_question(harness):
    unwanted = _thirty_unwanted_assignments(harness)
    safety_net = Approver("Reject", wait=400)  # answers only if the DAG wrongly asks
    safety_net.start()
    run = harness.run(allow_mass_delete=True)

    assert _state(run) == "success"
    assert safety_net.run_id is None
    assert _task_states(run)[APPROVAL] == "skipped"
    assert not unwanted & harness.assignments()
    assert harness.permission_set("LegacyDeveloper") is None


# --------------------------------------------------------------------------- 2. source outage
def test_kintone_outage_fails_the_run_before_any_write(harness):
    harness.sandbox.faults.add(FaultRule(service="kintone", kind="outage", count=1000))
    before = harness.assignments()
    run = harness.run()

    assert _state(run) == "failed"
    states = _task_states(run)
    assert states["extract_kintone"] == "failed"
    assert states["compute_diff"] == "upstream_failed"
    assert harness.writes() == []
    assert harness.assignments() == before


def test_empty_assignments_app_is_a_guard_breach_and_deletes_nothing(harness, rest_api):
    app = harness.sandbox.world.kintone.apps[2]
    for record_id in list(app.records):
        kintone_sandbox.delete_record(harness.sandbox, 2, record_id)
    before = harness.assignments()
    approver = Approver("Reject")
    run = _run_with(harness, approver)

    assert _state(run) == "success"
    assert approver.run_id == run.run_id  # the guard asked
    assert "returned no records" in approver.detail["body"]
    assert harness.assignments() == before
    assert not harness.sandbox.calls.calls("sso-admin", "DeleteAccountAssignment")
    assert not harness.sandbox.calls.calls("sso-admin", "DeletePermissionSet")


# --------------------------------------------------------------------------- 3. ownership and adoption
def test_unmanaged_sets_are_never_touched_and_adoption_hands_one_over(harness):
    sb = harness.sandbox
    sso = _aws(harness, "sso-admin")
    instance = sb.world.identity_center.instance_arn
    # a hand-made, untagged set with one hand-made assignment
    handmade = sso.create_permission_set(InstanceArn=instance, Name="HandMade", SessionDuration="PT1H")[
        "PermissionSet"
    ]["PermissionSetArn"]
    sso.attach_managed_policy_to_permission_set(
        InstanceArn=instance,
        PermissionSetArn=handmade,
        ManagedPolicyArn="arn:aws:iam::aws:policy/ReadOnlyAccess",
    )
    _hand_assign(harness, "HandMade", "444444444444", "carol@example.com")
    control_tower = {_ps_arn(harness, "AWSAdministratorAccess"), _ps_arn(harness, "AWSReadOnlyAccess")}
    # kintone records named like the existing untagged sets
    hm_id = kintone_sandbox.add_record(
        sb,
        1,
        {
            "name": "HandMade",
            "description": "Handed over",
            "session_duration": "PT2H",
            "managed_policies": "ReadOnlyAccess",
        },
        user_code="dave@example.com",
    )
    ct_id = kintone_sandbox.add_record(
        sb,
        1,
        {"name": "AWSReadOnlyAccess", "session_duration": "PT1H", "managed_policies": "ViewOnlyAccess"},
        user_code="dave@example.com",
    )
    kintone_sandbox.add_record(
        sb,
        2,
        {
            "principal_type": "USER",
            "users": ["dave@example.com"],
            "targets": "555555555555",
            "permission_set": "HandMade",
        },
        user_code="dave@example.com",
    )
    sb.calls.clear()
    run = harness.run()

    assert _state(run) == "success"
    not_managed = {
        int(p["record"]["record_id"]) for p in _problems(harness.last_audit(), "permission_set_not_managed")
    }
    assert {int(hm_id), int(ct_id)} <= not_managed
    assert _record_comments(harness, 1, int(hm_id)) and _record_comments(harness, 1, int(ct_id))
    assert _writes_naming(harness, control_tower | {handmade}) == []
    assert ("555555555555", "HandMade", "USER", "dave@example.com") not in harness.assignments()
    assert harness.permission_set("HandMade").tags == {}

    # the admin adopts both: HandMade is handed over, AWSReadOnlyAccess (on the management account) is not
    run = harness.run(adopt_permission_sets=["HandMade", "AWSReadOnlyAccess"])
    assert _state(run) == "success"
    adopted = {r["name"]: r["status"] for r in harness.last_audit()["adopted"]}
    assert adopted == {"HandMade": "adopted", "AWSReadOnlyAccess": "refused"}
    ps = harness.permission_set("HandMade")
    assert ps.tags.get("managed-by") == "idc-sync"
    assert ps.session_duration == "PT2H" and ps.description == "Handed over"  # managed from now on
    after = harness.assignments()
    assert ("555555555555", "HandMade", "USER", "dave@example.com") in after
    assert ("444444444444", "HandMade", "USER", "carol@example.com") not in after
    # Control-Tower-style sets: never a write naming them, in either run
    assert _writes_naming(harness, control_tower) == []
    assert harness.permission_set("AWSReadOnlyAccess").tags == {}
    assert not _mgmt_calls(harness)


# --------------------------------------------------------------------------- 4. management account
def test_set_provisioned_to_the_management_account_is_skipped_and_reported_once(harness):
    sb = harness.sandbox
    readonly = harness.permission_set("ReadOnly")
    alice = _user_id(harness, "alice@example.com")
    with sb.lock:  # as if Terraform had assigned ReadOnly in the management account
        ic = sb.world.identity_center
        ic.assignments.add(Assignment(MGMT, readonly.arn, "USER", alice))
        ic.provisioned[(MGMT, readonly.arn)] = readonly.version
    run = harness.run()

    assert _state(run) == "success"  # skipped, not failed
    assert _writes_naming(harness, {readonly.arn}) == []
    assert harness.permission_set("ReadOnly").session_duration == "PT1H"  # kintone says PT4H: not applied
    audit = harness.last_audit()
    reported = _problems(audit, "provisioned_to_management_account")
    assert [int(p["record"]["record_id"]) for p in reported] == [1]
    assert not [r for r in audit["results"] if r["status"] == "failed"]
    skipped = {s["key"]: s["reason"] for s in audit["plan"]["skipped"]}
    assert skipped["create_assignment:444444444444:ReadOnly:USER:bob@example.com"] == (
        "provisioned to the management account"
    )
    told = _record_comments(harness, 1, 1)
    assert len(told) == 1
    # the next run says nothing new to the record, and nothing ever targeted the management account
    run = harness.run()
    assert _state(run) == "success"
    assert _record_comments(harness, 1, 1) == told
    assert not _mgmt_calls(harness)
    assert (MGMT, "ReadOnly", "USER", "alice@example.com") in harness.assignments()


# --------------------------------------------------------------------------- 5. drift
def test_hand_made_changes_are_reported_then_reverted(harness):
    assert _state(harness.run()) == "success"
    _hand_assign(harness, "ReadOnly", "777777777777", "mallory@example.com")
    sso = _aws(harness, "sso-admin")
    developer = _ps_arn(harness, "Developer")
    sso.attach_managed_policy_to_permission_set(
        InstanceArn=harness.sandbox.world.identity_center.instance_arn,
        PermissionSetArn=developer,
        ManagedPolicyArn="arn:aws:iam::aws:policy/AdministratorAccess",
    )
    hand = ("777777777777", "ReadOnly", "USER", "mallory@example.com")
    admin = "arn:aws:iam::aws:policy/AdministratorAccess"

    # report: nothing reverted, admins told who/what/where
    slack_before = len(harness.slack())
    run = harness.run(drift_mode="report")
    assert _state(run) == "success"
    assert hand in harness.assignments()
    assert admin in harness.permission_set("Developer").managed_policies
    text = _slack_text(harness.slack()[-1])
    assert len(harness.slack()) == slack_before + 1
    assert "Drift" in text and "777777777777:ReadOnly:USER:mallory@example.com" in text
    assert "update_permission_set:Developer" in text

    # enforce: both reverted, within the deletion guard, and listed as drift
    run = harness.run(drift_mode="enforce")
    assert _state(run) == "success"
    assert hand not in harness.assignments()
    assert admin not in harness.permission_set("Developer").managed_policies
    reasons = {op["key"]: op["reason"] for op in harness.last_audit()["plan"]["operations"]}
    assert reasons["delete_assignment:777777777777:ReadOnly:USER:mallory@example.com"].startswith("drift:")
    assert reasons["update_permission_set:Developer"].startswith("drift:")
    text = _slack_text(harness.slack()[-1])
    assert "Drift" in text and "mallory@example.com" in text and "Developer" in text


# --------------------------------------------------------------------------- 6. expiring access
def test_expiring_access_is_reminded_once_and_removed_after_the_day(harness):
    sb = harness.sandbox
    today = dt.datetime.now(ZoneInfo("Asia/Tokyo")).date()
    soon = today + dt.timedelta(days=2)
    kintone_sandbox.update_record(sb, 2, 13, {"expires_on": soon.isoformat()}, user_code="peggy@example.com")
    grant = ("888888888888", "ReadOnly", "USER", "peggy@example.com")

    assert _state(harness.run()) == "success"
    assert grant in harness.assignments()
    reminders = _record_comments(harness, 2, 13)
    assert len(reminders) == 1 and soon.isoformat() in reminders[0]
    assert _problems(harness.last_audit(), "access_expiring")[0]["severity"] == "info"

    assert _state(harness.run()) == "success"  # still within the reminder days: not repeated
    assert _record_comments(harness, 2, 13) == reminders

    yesterday = today - dt.timedelta(days=1)
    kintone_sandbox.update_record(
        sb, 2, 13, {"expires_on": yesterday.isoformat()}, user_code="peggy@example.com"
    )
    assert _state(harness.run()) == "success"
    assert grant not in harness.assignments()
    ops = {op["key"]: op["reason"] for op in harness.last_audit()["plan"]["operations"]}
    assert ops["delete_assignment:888888888888:ReadOnly:USER:peggy@example.com"] == "expired"
    assert _record_comments(harness, 2, 13) == reminders  # exactly once, and no "resolved" after expiry


# --------------------------------------------------------------------------- 7. partial failure
def test_async_failures_finish_the_rest_fail_the_run_and_the_next_run_retries_only_those(harness):
    harness.sandbox.faults.add(
        FaultRule(service="sso-admin", kind="async_failed", operation="CreateAccountAssignment", rate=0.3)
    )
    run = harness.run()
    assert _state(run) == "failed"
    assert _task_states(run)["notify"] == "failed"
    audit = harness.last_audit()
    failed = [r for r in audit["results"] if r["status"] == "failed"]
    succeeded = [
        r for r in audit["results"] if r["status"] == "succeeded" and r["kind"] == "create_assignment"
    ]
    assert failed and succeeded  # the rest finished
    assert all(r["kind"] == "create_assignment" for r in failed)
    slack = _slack_text(harness.slack()[-1])
    for r in failed[:15]:  # the message lists 15 failures, then "and N more" (the audit has them all)
        assert r["key"] in slack
    if len(failed) > 15:
        assert f"and {len(failed) - 15} more" in slack

    harness.sandbox.faults.clear()
    harness.sandbox.calls.clear()
    run = harness.run()
    assert _state(run) == "success"
    assert len(harness.sandbox.calls.calls("sso-admin", "CreateAccountAssignment")) == len(failed)
