"""The real DAG against the sandbox: first sync, no-change run, record edits, policy change, dry run,
and an interrupted apply that converges on the next run."""

from __future__ import annotations

import json

import pytest
from demo_grants import BY_RECORD, LEGACY, SEEDED, WANTED, WORKLOADS, grants

from idc_sandbox import kintone as kintone_sandbox
from idc_sandbox.core import FaultRule

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]


def _state(run):
    return str(run.state).split(".")[-1].lower()


def test_first_sync_from_empty_creates_everything_and_reports(harness, caplog):
    before = harness.assignments()
    with caplog.at_level("INFO"):
        run = harness.run()
    after = harness.assignments()

    assert _state(run) == "success"
    assert before == SEEDED
    # exactly what the records ask for, and nothing lost: the managed LegacyDeveloper no record wants keeps
    # its assignment (deleting a set with assignments waits for a human, DESIGN safety rule 3); unmanaged
    # sets are untouched
    assert after == SEEDED | WANTED, (after - SEEDED - WANTED, (SEEDED | WANTED) - after)
    assert harness.permission_set("LegacyDeveloper") is not None
    assert any("LegacyDeveloper" in w["key"] for w in harness.last_audit()["deletions_withheld"])
    assert harness.permission_set("AWSAdministratorAccess") is not None
    # managed permission sets carry the ownership tag
    ps = harness.permission_set("ReadOnly")
    assert ps is not None and ps.tags.get("managed-by") == "idc-sync"
    # nothing ever targeted the management account
    mgmt = harness.sandbox.world.organization.management_account_id
    assert not [
        c
        for c in harness.sandbox.calls.calls("sso-admin")
        if mgmt in (c.params.get("AccountId"), c.params.get("TargetId"))
    ]
    # records with mistakes got a comment, with a mention
    comments = harness.comments()
    assert comments, "records with mistakes should be commented"
    assert all(mentions for *_, mentions in comments)
    # one Slack message summarizing the run, with the link to approve the withheld LegacyDeveloper deletion
    # (the question itself is posted by idc_sync_approval's HITL notifier: test_real_scheduler shows it)
    [summary] = harness.slack()
    assert "required_actions" in json.dumps(summary), summary
    # the log says why a set is blocked, and shows the plan apply was given (blocked sets' operations skipped)
    logged = [r.getMessage() for r in caplog.records]
    blocked = {m.split()[2]: m for m in logged if "is blocked by validation" in m}
    assert set(blocked) == {"DataAnalyst", "NetworkAdmin"}, sorted(blocked)
    assert all(m.split("this run): ", 1)[1] for m in blocked.values()), blocked
    [validated] = [m for m in logged if m.startswith("validated plan (what apply is given")]
    assert "DataAnalyst" not in validated.split("Skipped (")[0]
    # an audit artifact with plan and results, without secrets
    audit = harness.last_audit()
    assert audit["results"] and audit["plan"]["operations"]
    text = harness.audit_files()[-1].read_text()
    for secret in _secrets(harness):
        assert secret not in text


def test_second_run_without_changes_writes_nothing_and_says_nothing(harness):
    harness.run(allow_mass_delete=True)  # the seed's LegacyDeveloper (a set with an assignment) goes
    comments, slack = len(harness.comments()), len(harness.slack())
    harness.sandbox.calls.clear()
    run = harness.run()
    assert _state(run) == "success"
    assert harness.writes() == []
    assert len(harness.comments()) == comments
    assert len(harness.slack()) == slack


def test_dry_run_writes_nothing_but_the_audit(harness):
    before = harness.assignments()
    run = harness.run(dry_run=True)
    assert _state(run) == "success"
    assert harness.assignments() == before
    assert harness.writes() == []
    assert harness.comments() == []
    assert harness.slack() == []
    assert harness.last_audit()["plan"]["operations"]


def test_record_added_edited_and_deleted_reach_idc(harness):
    harness.run(allow_mass_delete=True)  # the seed's LegacyDeveloper (a set with an assignment) goes
    sb = harness.sandbox
    # added: frank gets Developer in the tooling account
    new_id = kintone_sandbox.add_record(
        sb,
        2,
        {
            "principal_type": "USER",
            "users": ["frank@example.com"],
            "targets": "444444444444",
            "permission_set": "Developer",
        },
        user_code="frank@example.com",
    )
    # edited: the auditors' record loses its OU target and keeps one account
    kintone_sandbox.update_record(sb, 2, 4, {"targets": "101010101010"}, user_code="erin@example.com")
    # deleted: the billing viewers' record
    kintone_sandbox.delete_record(sb, 2, 17)
    before = harness.assignments()
    # 7 of 23 managed assignments go: above the deletion guard's ratio, so this manual run approves it
    run = harness.run(allow_mass_delete=True)
    after = harness.assignments()

    assert _state(run) == "success", new_id
    assert before == (SEEDED - {LEGACY}) | WANTED
    added = {("444444444444", "Developer", "USER", "frank@example.com")}
    # the auditors keep SecurityAudit on 101010101010 only; the billing viewers' record takes its three
    removed = grants("SecurityAudit", "GROUP", ("auditors",), WORKLOADS[:-1]) | BY_RECORD[17]
    assert len(removed) == 7
    assert (after - before, before - after) == (added, removed)
    assert len(harness.slack()) == 2  # one per run that changed something


def test_policy_change_updates_and_reprovisions_every_account(harness):
    harness.run()
    kintone_sandbox.update_record(
        harness.sandbox,
        1,
        1,
        {"managed_policies": "ReadOnlyAccess\njob-function/ViewOnlyAccess"},
        user_code="alice@example.com",
    )
    run = harness.run()
    assert _state(run) == "success"
    ps = harness.permission_set("ReadOnly")
    assert "arn:aws:iam::aws:policy/job-function/ViewOnlyAccess" in ps.managed_policies
    ic = harness.sandbox.world.identity_center
    accounts = {a.account_id for a in ic.assignments if a.permission_set_arn == ps.arn}
    assert accounts == {account for account, name, *_ in SEEDED | WANTED if name == "ReadOnly"}
    for account in accounts:
        assert ic.provisioned[(account, ps.arn)] == ps.version, account
    ops = {op["kind"] for op in harness.last_audit()["plan"]["operations"]}
    assert {"update_permission_set", "provision_permission_set"} <= ops


def test_interrupted_apply_fails_the_run_and_the_next_run_converges(harness):
    harness.sandbox.faults.add(
        FaultRule(service="sso-admin", kind="outage", operation="CreateAccountAssignment", count=200)
    )
    run = harness.run()
    assert _state(run) == "failed"
    audit = harness.last_audit()
    assert [r for r in audit["results"] if r["status"] == "failed"]
    partial = harness.assignments()
    assert SEEDED <= partial < SEEDED | WANTED  # some of what the records ask for is missing, nothing else

    harness.sandbox.faults.clear()
    run = harness.run()
    assert _state(run) == "success"
    final = harness.assignments()
    assert final == SEEDED | WANTED, (final - SEEDED - WANTED, (SEEDED | WANTED) - final)
    # converged: a third run has nothing to do
    harness.sandbox.calls.clear()
    assert _state(harness.run()) == "success"
    assert harness.writes() == []
    # no duplicates: every (account, set, principal) exactly once in IdC
    ic = harness.sandbox.world.identity_center
    assert len(ic.assignments) == len(
        {(a.account_id, a.permission_set_arn, a.principal_id) for a in ic.assignments}
    )


def _secrets(harness):
    w = harness.sandbox.world
    out = [tok for app in w.kintone.apps.values() for tok in app.api_tokens]
    out += list(w.entra.clients.values())
    return [s for s in out if s]


def test_large_xcoms_are_stored_by_reference_and_the_second_run_reads_from_the_cache(harness, monkeypatch):
    """State by reference: with Airflow's object-storage XCom backend (tests/conftest.py lowers its
    threshold to 2 KB so the demo's observed state counts as large), the metadata database holds only small values; the cache of the
    observed state makes the second run read a fraction of the first run's assignment lists."""
    import json

    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    sweep = {"sweep_min_calls_per_run": 3, "sweep_max_calls_per_run": 3}
    monkeypatch.setenv("IDC_SYNC_CONFIG", json.dumps({"audit_path": str(harness.audit), **sweep}))
    assert _state(harness.run(allow_mass_delete=True)) == "success"
    assert _state(harness.run()) == "success"  # re-reads what the first run changed
    harness.sandbox.calls.clear()
    run = harness.run()
    assert _state(run) == "success"
    assert harness.writes() == []

    with create_session() as session:
        rows = session.query(XComModel).filter(XComModel.run_id == run.run_id).all()
        sizes = {(r.task_id, r.key): len(str(r.value)) for r in rows}
    observed = sizes[("observe_idc", "return_value")]
    assert observed < 1024, sizes  # a path to the object store, not the state itself
    assert sum(sizes.values()) < 64 * 1024, sizes
    # each value is written once (no multiple_outputs copies of the keys beside return_value)
    assert not {"plan", "observed", "problems", "results", "report"} & {k[1] for k in sizes}, sizes
    # the no-change run re-read only what the sweep picked (3 calls' worth), not every pair
    cache = json.loads((harness.audit / "state" / "observed_cache.json").read_text())
    incremental_reads = len(harness.sandbox.calls.calls("sso-admin", "ListAccountAssignments"))
    assert incremental_reads <= 3 < len(cache["pairs"]), (incremental_reads, len(cache["pairs"]))


def test_a_sync_cut_by_the_apply_budget_is_continued_by_the_next_run_without_duplicates(harness, monkeypatch):
    """Apply across runs: a first sync larger than apply's time budget applies what fits, defers the rest
    (not a failure) and the next run continues from the observed-state cache; every assignment is
    created exactly once, and the requester's newest record goes first."""
    import json
    from collections import Counter

    harness.sandbox.config.async_latency_seconds = 0.3
    budget = {"audit_path": str(harness.audit), "apply_budget_seconds": 0.5}
    monkeypatch.setenv("IDC_SYNC_CONFIG", json.dumps(budget))
    run = harness.run(allow_mass_delete=True)
    assert _state(run) == "success"
    first = harness.last_audit()
    statuses = Counter(r["status"] for r in first["results"] if r["kind"] == "create_assignment")
    assert statuses["deferred"] > 0 and statuses["failed"] == 0, statuses
    assert first["outcome"]["deferred"] == sum(r["status"] == "deferred" for r in first["results"])

    monkeypatch.setenv("IDC_SYNC_CONFIG", json.dumps({"audit_path": str(harness.audit)}))
    runs = 1
    while harness.last_audit()["outcome"]["deferred"] and runs < 5:
        assert _state(harness.run(allow_mass_delete=True)) == "success"
        runs += 1
    assert harness.last_audit()["outcome"]["deferred"] == 0

    creates = Counter(
        (c.params.get("TargetId"), c.params.get("PermissionSetArn"), c.params.get("PrincipalId"))
        for c in harness.sandbox.calls.calls("sso-admin", "CreateAccountAssignment")
        if c.status == 200
    )
    assert creates and max(creates.values()) == 1, [k for k, n in creates.items() if n > 1]
    harness.sandbox.calls.clear()
    assert _state(harness.run()) == "success"
    assert harness.writes() == []  # converged


def test_a_requester_hears_that_access_is_live_with_portal_links(harness, monkeypatch):
    """Issue 13: the record whose access was applied gets one comment (its people mentioned) with the access
    portal's shortcut link per account and permission set; a run that changes nothing says nothing."""
    import json

    portal = "https://d-sandbox.awsapps.com/start"
    config = {"audit_path": str(harness.audit), "portal_url": portal, "language": "en"}
    monkeypatch.setenv("IDC_SYNC_CONFIG", json.dumps(config))
    harness.run(allow_mass_delete=True)
    sb = harness.sandbox
    record_id = kintone_sandbox.add_record(
        sb,
        2,
        {
            "principal_type": "USER",
            "users": ["frank@example.com"],
            "targets": "444444444444, 101010101010",
            "permission_set": "Developer",
        },
        user_code="frank@example.com",
    )
    before = len(harness.comments())
    run = harness.run()
    assert _state(run) == "success"
    new = harness.comments()[before:]
    assert [(app, rid) for app, rid, *_ in new] == [(2, record_id)], new
    [(_, _, text, mentions)] = new
    assert mentions == ["frank@example.com"]
    lines = text.splitlines()
    assert lines[0] == "Your access is live in AWS IAM Identity Center."
    assert "- Granted: permission set Developer to user frank@example.com" in lines
    for account in ("101010101010", "444444444444"):
        link = f"{portal}/#/console?account_id={account}&role_name=Developer"
        assert f"  - {account}: {link}" in lines, text
    # nothing changed: nothing said
    harness.run()
    assert len(harness.comments()) == before + 1


def test_a_dry_run_works_with_read_only_aws_credentials(harness):
    """The first step of the deployment checklist: read-only credentials, a dry run that plans everything."""
    from tests.unit.test_iam_policy import used_actions

    writes = sorted(
        action.split(":", 1)[1]
        for action in used_actions()
        if action.startswith("sso:") and not action.split(":", 1)[1].startswith(("List", "Describe", "Get"))
    )
    assert "CreateAccountAssignment" in writes and "TagResource" in writes
    for operation in writes:  # what a read-only role would answer
        harness.sandbox.faults.add(FaultRule(service="sso-admin", kind="access_denied", operation=operation))
    run = harness.run(dry_run=True)
    assert _state(run) == "success"
    audit = harness.last_audit()
    assert len(audit["plan"]["operations"]) > 20 and audit["results"] == []
    assert harness.writes() == []
