"""DESIGN "Safety rules" against the sandbox, through the real DAG (``dag.test()``).

Deletion guard with a Human-in-the-loop approval answered through Airflow's real REST API (the api-server
app served in-process on the same metadata DB), source outages, ownership and adoption, the management
account, drift, expiring access and partial failures.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import threading
import time
from types import SimpleNamespace
from typing import Any
from zoneinfo import ZoneInfo

import boto3
import pytest
from botocore.config import Config
from demo_grants import LEGACY, SEEDED, WANTED

from idc_sandbox import kintone as kintone_sandbox
from idc_sandbox.core import FaultRule
from idc_sandbox.state import Assignment

pytestmark = [pytest.mark.integration, pytest.mark.timeout(420)]

MGMT = "111111111111"
DAG_ID = "idc_sync"
APPROVAL_DAG_ID = "idc_sync_approval"
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
    assert harness.assignments() == SEEDED | made
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
        parts += [e.get("text", "") for e in block.get("elements") or []]  # context lines (links)
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
    """Waits until ``idc_sync_approval.approve_deletions`` is parked in AWAITING_INPUT, then answers it
    through the api-server's public REST API (``PATCH .../hitlDetails``), or, with ``answer=None``, lets
    the response timeout pass and runs the scheduler's own timeout sweep (default: Reject)."""

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
                    TI.dag_id == APPROVAL_DAG_ID,
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
        path = f"/api/v2/dags/{APPROVAL_DAG_ID}/dagRuns/{self.run_id}/taskInstances/{APPROVAL}/-1/hitlDetails"
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


def _approval_dag() -> Any:
    """The approval DAG as parsed now (its response timeout is read from the environment at parse)."""
    from airflow.dag_processing.dagbag import DagBag

    from tests.integration.conftest import REPO

    bag = DagBag(dag_folder=str(REPO / "dags"))
    assert not bag.import_errors, bag.import_errors
    return bag.dags[APPROVAL_DAG_ID]


@pytest.fixture(autouse=True)
def _test_started() -> None:
    """Runs of earlier tests stay in the session's metadata DB: only this test's count."""
    global _STARTED
    _STARTED = dt.datetime.now(dt.UTC)


_STARTED = dt.datetime.now(dt.UTC)


def _approval_runs() -> list[Any]:
    """idc_sync_approval runs started by request_approval in this test (run id, conf), oldest first."""
    from airflow.models.dagrun import DagRun
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        runs = session.scalars(
            select(DagRun)
            .where(DagRun.dag_id == APPROVAL_DAG_ID, DagRun.queued_at >= _STARTED)
            .order_by(DagRun.id)
        ).all()
        return [SimpleNamespace(run_id=r.run_id, conf=dict(r.conf or {}), state=_state(r)) for r in runs]


def _sync_runs_started_by_approval() -> list[str]:
    from airflow.models.dagrun import DagRun
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        runs = session.scalars(
            select(DagRun).where(DagRun.dag_id == DAG_ID, DagRun.queued_at >= _STARTED)
        ).all()
        return [r.run_id for r in runs if _state(r) == "queued"]


def _answer(harness: Any, answer: str | None, *, dag: Any = None) -> Any:
    """Run the approval DAG the last idc_sync run requested, answered by ``answer`` through REST."""
    requested = _approval_runs()
    assert requested, "idc_sync started no approval run"
    conf = requested[-1].conf
    approver = Approver(answer)
    approver.start()
    try:
        run = (dag or _approval_dag()).test(run_conf=conf)
    finally:
        approver.join(timeout=60)
    assert approver.error is None, repr(approver.error)
    return SimpleNamespace(run=run, approver=approver, conf=conf)


def _hitl_record(run_id: str) -> Any:
    from airflow.models.hitl import HITLDetail
    from airflow.models.log import Log
    from airflow.models.taskinstance import TaskInstance as TI
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        ti = session.scalars(
            select(TI).where(TI.dag_id == APPROVAL_DAG_ID, TI.run_id == run_id, TI.task_id == APPROVAL)
        ).one()
        detail = session.scalars(select(HITLDetail).where(HITLDetail.ti_id == ti.id)).one()
        logs = session.scalars(select(Log).where(Log.dag_id == APPROVAL_DAG_ID, Log.run_id == run_id)).all()
        return SimpleNamespace(
            chosen=detail.chosen_options,
            responded_by=detail.responded_by,
            events=[lg.event for lg in logs],
        )


def _decisions(harness: Any) -> dict[str, Any]:
    import json

    path = harness.audit / "state" / "approval_decisions.json"
    return json.loads(path.read_text()) if path.exists() else {}


# --------------------------------------------------------------------------- 1. deletion guard
def _assert_creations_applied_deletions_withheld(harness: Any, run: Any, unwanted: set[Any]) -> None:
    states = _task_states(run)
    assert states["deletion_guard"] == "success" and states["apply_assignments"] == "success", states
    assert states["notify"] == "success", states
    # creations went ahead without waiting for anyone; nothing deleted
    assert harness.assignments() == SEEDED | WANTED | unwanted
    assert harness.permission_set("LegacyDeveloper") is not None
    assert not harness.sandbox.calls.calls("sso-admin", "DeleteAccountAssignment")
    assert not harness.sandbox.calls.calls("sso-admin", "DeletePermissionSet")
    # updates too
    assert harness.permission_set("Developer") is not None
    assert harness.permission_set("ReadOnly").session_duration == "PT4H"
    audit = harness.last_audit()
    assert _problems(audit, "deletions_withheld")
    assert len(audit["deletions_withheld"]) == 32  # 31 assignments + the LegacyDeveloper set


def test_mass_deletion_never_blocks_the_sync_and_is_asked_about_once(harness, rest_api):
    """Issue 9 defect 6: the run applies creations and finishes; only the deletions wait, in a separate
    approval run; the next run does not ask again and keeps serving new requests."""
    unwanted = _thirty_unwanted_assignments(harness)
    run = harness.run()

    assert _state(run) == "success"
    states = _task_states(run)
    assert APPROVAL not in states  # nothing in idc_sync waits for a human
    assert states["request_approval"] == "success"
    _assert_creations_applied_deletions_withheld(harness, run, unwanted)
    requested = _approval_runs()
    assert len(requested) == 1
    conf = requested[0].conf
    assert conf["deletions"] == 32 and len(conf["keys"]) == 32 and conf["requested_by"] == run.run_id
    assert "| assignment | 444444444444 | LegacyDeveloper | USER carol@example.com |" in conf["body"]
    # the question reached Slack with the link to answer it
    asks = [m for m in harness.slack() if "required_actions" in _slack_text(m)]
    assert len(asks) == 1, harness.slack()
    link = f"/dags/{APPROVAL_DAG_ID}/runs/{requested[0].run_id}/tasks/{APPROVAL}/required_actions"
    assert link in _slack_text(asks[0])

    # While it is pending, a new request is served by the next run and nobody is asked again.
    harness.sandbox.calls.clear()
    run2 = harness.run()
    assert _state(run2) == "success"
    assert _task_states(run2)["request_approval"] == "skipped"
    assert len(_approval_runs()) == 1
    assert len([m for m in harness.slack() if "required_actions" in _slack_text(m)]) == 1
    assert harness.assignments() == SEEDED | WANTED | unwanted
    # (run 2 may still speak: with the plan memory it now labels the unwanted assignments as drift.)
    # Nothing changes and the same deletions still wait: Slack stays quiet, no summary every ten minutes.
    posted = len(harness.slack())
    assert _state(harness.run()) == "success"
    assert len(harness.slack()) == posted, harness.slack()[posted:]


def test_approved_deletions_are_applied_by_the_next_run_on_fresh_reads(harness, rest_api):
    _thirty_unwanted_assignments(harness)
    assert _state(harness.run()) == "success"
    answered = _answer(harness, "Approve")

    assert _state(answered.run) == "success"
    assert answered.approver.detail["defaults"] == ["Reject"]
    assert "32" in answered.approver.detail["subject"]
    assert answered.approver.response.status_code == 200, answered.approver.response.text
    hitl = _hitl_record(answered.run.run_id)
    assert hitl.chosen == ["Approve"] and hitl.responded_by  # answered through REST by a user
    decision = _decisions(harness)[answered.conf["fingerprint"]]
    assert decision["answer"] == "approve" and decision["by"] and not decision["timed_out"]
    assert any("approved by" in _slack_text(m) for m in harness.slack())
    assert _sync_runs_started_by_approval(), "Approve did not start an idc_sync run"

    # The run that follows re-reads everything: it deletes the granted set, nothing else.
    run = harness.run()
    assert _state(run) == "success"
    assert harness.assignments() == (SEEDED - {LEGACY}) | WANTED
    assert harness.permission_set("LegacyDeveloper") is None


def test_an_approved_deletion_kintone_wants_again_is_not_deleted(harness, rest_api):
    """The grant does not replay the old plan: a record re-requesting one assignment after the Approve
    keeps it (the deletion is confirmed against the current kintone records)."""
    _thirty_unwanted_assignments(harness)
    assert _state(harness.run()) == "success"
    assert _state(_answer(harness, "Approve").run) == "success"
    # someone asks for one of those assignments again (in kintone) before the next run
    ps_app = harness.app_id("permission_sets")
    asg_app = harness.app_id("assignments")
    kintone_sandbox.add_record(
        harness.sandbox,
        ps_app,
        {"name": "LegacyDeveloper", "session_duration": "PT1H", "managed_policies": "ReadOnlyAccess"},
        user_code="carol@example.com",
    )
    kintone_sandbox.add_record(
        harness.sandbox,
        asg_app,
        {
            "principal_type": "USER",
            "users": ["carol@example.com"],
            "targets": "444444444444",
            "permission_set": "LegacyDeveloper",
        },
        user_code="carol@example.com",
    )
    run = harness.run()

    assert _state(run) == "success"
    wanted_again = ("444444444444", "LegacyDeveloper", "USER", "carol@example.com")
    assert harness.assignments() == (SEEDED - {LEGACY}) | WANTED | {wanted_again}
    assert harness.permission_set("LegacyDeveloper") is not None


def test_rejected_deletions_stay_and_are_not_asked_again(harness, rest_api):
    unwanted = _thirty_unwanted_assignments(harness)
    run = harness.run()
    answered = _answer(harness, "Reject")

    assert _state(answered.run) == "success"
    assert _task_states_of(answered.run, APPROVAL_DAG_ID)["run_sync"] == "skipped"
    decision = _decisions(harness)[answered.conf["fingerprint"]]
    assert decision["answer"] == "reject" and decision["by"]
    assert any("rejected by" in _slack_text(m) for m in harness.slack())
    _assert_creations_applied_deletions_withheld(harness, run, unwanted)

    run2 = harness.run()
    assert _state(run2) == "success"
    assert _task_states(run2)["request_approval"] == "skipped"  # remembered: not asked again
    assert len(_approval_runs()) == 1
    assert harness.assignments() == SEEDED | WANTED | unwanted
    assert "rejected by" in str(harness.last_audit()["deletions_withheld"])


def test_unanswered_approval_times_out_to_reject(harness, rest_api, monkeypatch):
    """A short response timeout (read when the DAG is parsed); the scheduler's sweep applies the default
    answer, Reject, which is recorded as a timeout."""
    unwanted = _thirty_unwanted_assignments(harness)
    harness.run()
    monkeypatch.setenv("IDC_SYNC_APPROVAL_TIMEOUT_SECONDS", "3")
    dag = _approval_dag()
    assert dag.get_task(APPROVAL).response_timeout == dt.timedelta(seconds=3)
    answered = _answer(harness, None, dag=dag)

    assert _state(answered.run) == "success"
    hitl = _hitl_record(answered.run.run_id)
    assert hitl.chosen == ["Reject"] and not hitl.responded_by
    decision = _decisions(harness)[answered.conf["fingerprint"]]
    assert decision["answer"] == "reject" and decision["timed_out"] is True
    assert any("default, Reject" in _slack_text(m) for m in harness.slack())
    assert harness.assignments() == SEEDED | WANTED | unwanted
    assert not harness.sandbox.calls.calls("sso-admin", "DeleteAccountAssignment")


def _task_states_of(run: Any, dag_id: str) -> dict[str, str]:
    from airflow.models.taskinstance import TaskInstance as TI
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        tis = session.scalars(select(TI).where(TI.dag_id == dag_id, TI.run_id == run.run_id)).all()
        return {ti.task_id: _state(ti) for ti in tis}


def test_timeouts_are_consistent_by_construction():
    """Issue 9 defect 6: the approval's wait lives outside idc_sync, whose dagrun_timeout covers its
    worst case; the approval DAG's covers the response timeout (checked again when each DAG is built)."""
    from idc_sync_airflow import approval, settings

    approval_dag = _approval_dag()  # parses both files: a TimingError would be an import error
    assert approval_dag.dagrun_timeout >= settings.approval_timeout()
    assert approval_dag.dagrun_timeout >= approval.check_approval_dag(approval_dag)
    from airflow.dag_processing.dagbag import DagBag

    from tests.integration.conftest import REPO

    idc = DagBag(dag_folder=str(REPO / "dags")).dags[DAG_ID]
    assert idc.dagrun_timeout >= approval.check_sync_dag(idc)


def test_a_deletion_is_confirmed_against_the_current_kintone_records(harness, monkeypatch):
    """Issue 9 defect 11: carol's record is deleted (the plan deletes her access), then saved again
    while the run is applying; the deletion is re-checked against a fresh kintone read and not made."""
    from idc_sync_airflow import steps

    assert _state(harness.run(allow_mass_delete=True)) == "success"  # converge first
    assert harness.assignments() == (SEEDED - {LEGACY}) | WANTED  # carol's Developer on 888888888888 too
    kintone_sandbox.delete_record(harness.sandbox, 2, 3)
    original = steps.apply_permission_sets

    def meanwhile(diff: Any, *rest: Any) -> Any:
        planned = [op.key for op in steps.plan_of(diff).operations]
        assert any(k.startswith("delete_assignment:888888888888:Developer:USER:") for k in planned), planned
        kintone_sandbox.add_record(  # carol's lead saves the record again
            harness.sandbox,
            2,
            {
                "principal_type": "USER",
                "users": ["carol@example.com"],
                "targets": "888888888888",
                "permission_set": "Developer",
            },
            user_code="carol@example.com",
        )
        return original(diff, *rest)

    monkeypatch.setattr(steps, "apply_permission_sets", meanwhile)
    harness.sandbox.calls.clear()
    run = harness.run()

    assert _state(run) == "success"
    assert harness.assignments() == (SEEDED - {LEGACY}) | WANTED  # carol's included
    assert not harness.sandbox.calls.calls("sso-admin", "DeleteAccountAssignment")


def test_allow_mass_delete_skips_the_question(harness):
    _thirty_unwanted_assignments(harness)
    run = harness.run(allow_mass_delete=True)

    assert _state(run) == "success"
    assert _task_states(run)["request_approval"] == "skipped"
    assert not _approval_runs()
    assert harness.assignments() == (SEEDED - {LEGACY}) | WANTED
    assert harness.permission_set("LegacyDeveloper") is None


def test_a_failed_scim_check_never_stops_the_run(harness, monkeypatch):
    """Issue 9 defect 7: scim_health fails (here: its execute raises, like a task lost by the executor);
    the verdict is "unknown", the run still plans and applies."""
    from idc_sync_airflow.sensors import ScimHealthSensor

    def broken(self: Any, context: Any) -> Any:
        raise RuntimeError(
            "Executor reports task instance finished (failed) although the task says it's queued"
        )

    monkeypatch.setattr(ScimHealthSensor, "execute", broken)
    before = harness.assignments()
    run = harness.run()

    states = _task_states(run)
    assert states["scim_health"] == "failed"
    assert states["scim_verdict"] == "success" and states["compute_diff"] == "success", states
    # advisory: the run succeeds (notify is the only leaf), the failure is still reported
    assert states["apply_assignments"] == "success" and states["notify"] == "success", states
    assert run.state == "success", run.state
    assert before == SEEDED
    assert harness.assignments() == SEEDED | WANTED
    audit = harness.last_audit()
    assert audit["scim"]["status"] == "unknown", audit["scim"]
    assert "scim_health" in audit["summary"] and "the run went on" in audit["summary"], audit["summary"]


def test_apply_refuses_a_plan_made_from_old_reads(harness, monkeypatch):
    """Issue 9 defect 11: a plan whose reads are older than max_plan_age_minutes (here: the reads are
    stamped 30 minutes in the past, as when a UI clear re-runs on old XComs) writes nothing."""
    import json

    from idc_sync_airflow import steps

    real_now = dt.datetime.now

    class Clock(dt.datetime):
        @classmethod
        def now(cls, tz: Any = None) -> Any:  # the read stamps only (extract_kintone / observe_idc)
            return real_now(tz) - dt.timedelta(minutes=30)

    original_extract, original_observe = steps.extract_kintone, steps.observe_idc

    old_dt = SimpleNamespace(**{k: getattr(dt, k) for k in dir(dt) if not k.startswith("__")})
    old_dt.datetime = Clock

    def with_old_clock(fn: Any) -> Any:
        def run(*args: Any) -> Any:
            monkeypatch.setattr(steps, "dt", old_dt)  # this module's clock only, while reading
            try:
                return fn(*args)
            finally:
                monkeypatch.setattr(steps, "dt", dt)

        return run

    monkeypatch.setattr(steps, "extract_kintone", with_old_clock(original_extract))
    monkeypatch.setattr(steps, "observe_idc", with_old_clock(original_observe))
    monkeypatch.setenv(
        "IDC_SYNC_CONFIG", json.dumps({"audit_path": str(harness.audit), "max_plan_age_minutes": 20})
    )
    before = harness.assignments()
    run = harness.run()

    states = _task_states(run)
    assert states["compute_diff"] == "success"
    assert states["apply_permission_sets"] == "failed", states
    assert _state(run) == "failed"
    assert harness.writes() == []
    assert harness.assignments() == before


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


def test_short_kintone_read_fails_extract_and_deletes_nothing(harness):
    """A cursor returning fewer records than its totalCount must not look like deleted records."""
    assert _state(harness.run(allow_mass_delete=True)) == "success"  # IdC follows kintone
    before = harness.assignments()
    harness.sandbox.calls.clear()
    harness.sandbox.faults.add(
        FaultRule(service="kintone", kind="short_read", operation="records/cursor.json")
    )

    run = harness.run(full_resync=True)  # a full read goes through the cursor

    assert _state(run) == "failed"
    states = _task_states(run)
    assert states["extract_kintone"] == "failed"
    assert states["compute_diff"] == "upstream_failed"
    assert harness.writes() == []
    assert harness.assignments() == before
    ps_app = harness.app_id("permission_sets")
    audit = str(harness.last_audit())  # the run's record says what happened and what to do
    assert f"kintone announced 6 records in app {ps_app} but the cursor returned 5" in audit
    assert "nothing was planned; re-run" in audit


def test_short_incremental_kintone_read_never_looks_like_deleted_records(harness):
    """The incremental read (records.json pages) returning fewer records than announced falls back to a
    full read; nothing is deleted because of it."""
    assert _state(harness.run(allow_mass_delete=True)) == "success"
    before = harness.assignments()
    harness.sandbox.calls.clear()
    harness.sandbox.faults.add(FaultRule(service="kintone", kind="short_read", operation="records.json"))

    run = harness.run()

    assert _state(run) == "success"
    assert [c for c in harness.writes() if c.operation.startswith("Delete")] == []
    assert harness.assignments() == before


def test_garbled_aws_reads_never_look_like_missing_access(harness):
    """A proxy that cuts IdC's and Organizations' answers in half (200, half a JSON body): botocore alone
    reads that as an empty page — no assignments, an empty OU — and a plan would delete the access.
    The run instead fails at its first garbled read, naming it, and changes nothing."""
    assert _state(harness.run(allow_mass_delete=True)) == "success"
    before = harness.assignments()
    harness.sandbox.calls.clear()
    for service, operation in [
        ("sso-admin", "ListAccountAssignments"),
        ("sso-admin", "ListPermissionSets"),
        ("organizations", "ListAccountsForParent"),
        ("organizations", "ListAccounts"),
    ]:
        harness.sandbox.faults.add(FaultRule(service=service, kind="garbled", operation=operation))

    run = harness.run(full_resync=True)  # a full read: every one of those operations is called

    assert _state(run) == "failed"
    assert [c for c in harness.writes() if c.operation.startswith("Delete")] == []
    assert harness.assignments() == before
    garbled = [
        c
        for c in harness.sandbox.calls.calls()
        if c.status == 200
        and c.operation
        in ("ListAccountAssignments", "ListPermissionSets", "ListAccountsForParent", "ListAccounts")
    ]
    assert garbled, "the run read through the garbling proxy"
    failed = _slack_text(harness.slack()[-1])  # the failed run's message names the garbled read
    assert "MalformedResponse" in failed and "answered HTTP 200 badly" in failed, failed
    assert "nothing was changed in AWS" in failed, failed


def test_a_garbled_answer_to_a_write_is_retried_and_the_access_announced(harness):
    """The create happened but its answer was lost: the retry finds it in place; the run succeeds and
    the requester hears that the access is live once."""
    assert _state(harness.run(allow_mass_delete=True)) == "success"
    record_id = kintone_sandbox.add_record(
        harness.sandbox,
        2,
        {
            "principal_type": "USER",
            "users": ["frank@example.com"],
            "targets": "444444444444",
            "permission_set": "Developer",
        },
        user_code="frank@example.com",
    )
    harness.sandbox.faults.add(
        FaultRule(service="sso-admin", kind="garbled", operation="CreateAccountAssignment", count=1)
    )

    run = harness.run()

    assert _state(run) == "success"
    assert ("444444444444", "Developer", "USER", "frank@example.com") in harness.assignments()
    live = [t for a, r, t, _ in harness.comments() if (a, r) == (2, record_id) and "444444444444" in t]
    assert len(live) == 1, harness.comments()
    assert _state(harness.run()) == "success"
    assert [c for c in harness.writes() if c.operation == "CreateAccountAssignment"] != []
    harness.sandbox.calls.clear()
    assert _state(harness.run()) == "success"
    assert harness.writes() == []


def test_empty_assignments_app_is_a_guard_breach_and_deletes_nothing(harness):
    app = harness.sandbox.world.kintone.apps[2]
    for record_id in list(app.records):
        kintone_sandbox.delete_record(harness.sandbox, 2, record_id)
    before = harness.assignments()
    run = harness.run()

    assert _state(run) == "success"
    requested = _approval_runs()
    assert requested and "returned no records" in requested[-1].conf["body"]  # the guard asked
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
    first = _record_comments(harness, 2, 13)
    # one comment: the reminder, and (the first sync created the grant) the "access is live" news with it
    [reminder] = first
    assert (
        soon.isoformat() in reminder and "アクセス権を AWS IAM Identity Center に反映しました。" in reminder
    )
    assert _problems(harness.last_audit(), "access_expiring")[0]["severity"] == "info"

    assert _state(harness.run()) == "success"  # still within the reminder days: not repeated
    assert _record_comments(harness, 2, 13) == first

    yesterday = today - dt.timedelta(days=1)
    kintone_sandbox.update_record(
        sb, 2, 13, {"expires_on": yesterday.isoformat()}, user_code="peggy@example.com"
    )
    assert _state(harness.run()) == "success"
    assert grant not in harness.assignments()
    ops = {op["key"]: op["reason"] for op in harness.last_audit()["plan"]["operations"]}
    assert ops["delete_assignment:888888888888:ReadOnly:USER:peggy@example.com"] == "expired"
    # no "resolved" after expiry; the removal is told once (issue 13)
    *before, removal = _record_comments(harness, 2, 13)
    assert before == first
    assert (
        "期限切れで削除: ユーザー peggy@example.com の権限セット ReadOnly" in removal
        and "888888888888" in removal
    )
    assert "解消" not in removal


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


# --------------------------------------------------------------------------- 9. renamed / deleted set records
def _guard_verdict(run: Any) -> dict[str, Any]:
    """``deletion_guard``'s verdict: XCom ``verdict``, or the ``verdict`` of its return value."""
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        rows = session.execute(
            select(XComModel.key, XComModel.value).where(
                XComModel.dag_id == DAG_ID,
                XComModel.run_id == run.run_id,
                XComModel.task_id == "deletion_guard",
            )
        ).all()
    values = {key: XComModel.deserialize_value(SimpleNamespace(value=value)) for key, value in rows}
    verdict = values.get("verdict") or (values.get("return_value") or {}).get("verdict")
    assert verdict is not None, values
    return verdict


def _access(harness: Any, ps_names: set[str]) -> set[tuple[str, str, str]]:
    """(account, principal type, principal) that hold any of ``ps_names`` in the sandbox's IdC."""
    return {(a, t, p) for a, ps, t, p in harness.assignments() if ps in ps_names}


def _ps_record_id(harness: Any, name: str) -> int:
    app = harness.sandbox.world.kintone.apps[harness.app_id("permission_sets")]
    return next(rid for rid, rec in app.records.items() if rec["name"]["value"] == name)


def _assignment_records_naming(harness: Any, name: str) -> list[int]:
    app = harness.sandbox.world.kintone.apps[harness.app_id("assignments")]
    return sorted(rid for rid, rec in app.records.items() if rec["permission_set"]["value"] == name)


def test_renamed_permission_set_record_moves_its_access_without_a_gap(harness):
    from idc_sync.model import Plan
    from idc_sync.plan import render_plan

    assert _state(harness.run(allow_mass_delete=True)) == "success"  # the seed's LegacyDeveloper goes
    had = _access(harness, {"Developer"})
    # the developers group on its OU's accounts + carol (taro waits for SCIM)
    assert had == {(account, t, p) for account, ps, t, p in WANTED if ps == "Developer"}
    assert len(had) == 4
    rid = _ps_record_id(harness, "Developer")
    stale = _assignment_records_naming(harness, "Developer")
    kintone_sandbox.update_record(
        harness.sandbox,
        harness.app_id("permission_sets"),
        rid,
        {"name": "Developer2"},
        user_code="bob@example.com",
    )
    # the first new assignment fails: its old one must stay until a later run has made it
    harness.sandbox.faults.add(
        FaultRule(service="sso-admin", kind="async_failed", operation="CreateAccountAssignment", count=1)
    )
    harness.sandbox.calls.clear()
    run = harness.run()

    audit = harness.last_audit()
    plan = Plan.model_validate(audit["plan"])
    assert f"  ~ rename Developer -> Developer2 (record {rid})" in render_plan(plan).splitlines()
    assert not _guard_verdict(run)["tripped"]
    assert _access(harness, {"Developer", "Developer2"}) == had  # nobody lost access
    failed = [r for r in audit["results"] if r["status"] == "failed"]
    assert len(failed) == 1 and failed[0]["kind"] == "create_assignment"
    waiting = [r for r in audit["results"] if "waiting for the renamed set's assignment" in r["message"]]
    assert len(waiting) == 1 and waiting[0]["kind"] == "delete_assignment"
    assert len(_access(harness, {"Developer2"})) == len(had) - 1
    assert harness.permission_set("Developer") is not None  # still holds the waiting assignment
    # every removal came after the creation of its replacement (call log order)
    calls = harness.sandbox.calls.calls("sso-admin")
    names = {arn: ps.name for arn, ps in harness.sandbox.world.identity_center.permission_sets.items()}
    created = {}
    for i, c in enumerate(calls):
        who = (c.params.get("TargetId"), c.params.get("PrincipalId"))
        if c.operation == "CreateAccountAssignment":
            created.setdefault(who, i)
        if c.operation == "DeleteAccountAssignment":
            assert created.get(who, len(calls)) < i, (who, names.get(c.params.get("PermissionSetArn")))
    # records whose lookup still says "Developer" are told to re-select it (a warning)
    told = {p["record"]["record_id"] for p in _problems(audit, "permission_set_renamed")}
    assert told == {str(r) for r in stale}

    harness.sandbox.faults.clear()
    assert _state(harness.run()) == "success"
    assert _access(harness, {"Developer2"}) == had
    assert harness.permission_set("Developer") is None  # gone once every new assignment exists

    # later runs: the lookups still say "Developer", and that still means Developer2
    harness.sandbox.calls.clear()
    assert _state(harness.run()) == "success"
    assert _access(harness, {"Developer2"}) == had
    assert not harness.sandbox.calls.calls("sso-admin", "DeleteAccountAssignment")


def test_deleting_a_permission_set_record_with_assignments_waits_for_a_human(harness, monkeypatch):
    monkeypatch.setenv(
        "IDC_SYNC_CONFIG",
        json.dumps({"audit_path": str(harness.audit), "max_deletions": 1000, "max_deletion_ratio": 1.0}),
    )
    assert _state(harness.run(allow_mass_delete=True)) == "success"  # the seed's LegacyDeveloper goes
    had = _access(harness, {"Developer"})
    assert had
    kintone_sandbox.delete_record(
        harness.sandbox, harness.app_id("permission_sets"), _ps_record_id(harness, "Developer")
    )
    harness.sandbox.calls.clear()

    # Only the permission set record is gone: records still ask for it, so nothing of it is deleted.
    harness.run()
    assert _access(harness, {"Developer"}) == had and harness.permission_set("Developer") is not None
    assert _problems(harness.last_audit(), "unknown_permission_set")

    # Its assignment records go too: a plain deletion of a set with assignments, thresholds far away.
    for rid in _assignment_records_naming(harness, "Developer"):
        kintone_sandbox.delete_record(harness.sandbox, harness.app_id("assignments"), rid)
    run = harness.run()
    verdict = _guard_verdict(run)
    assert verdict["tripped"]
    assert any("permission set Developer still has assignments" in r for r in verdict["reasons"]), verdict
    assert _access(harness, {"Developer"}) == had and harness.permission_set("Developer") is not None
    assert not harness.sandbox.calls.calls("sso-admin", "DeleteAccountAssignment")
    assert not harness.sandbox.calls.calls("sso-admin", "DeletePermissionSet")
