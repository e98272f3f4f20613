"""access_news: the "your access is live" comment, decided from the plan and apply's results."""

from __future__ import annotations

from idc_sync.access_news import (
    MAX_ACCOUNTS_LISTED,
    access_comments,
    already_told,
    record_news,
    render_news,
    shortcut_link,
    told_after,
)
from idc_sync.model import (
    AssignmentOp,
    Cause,
    OpKind,
    OpResult,
    PermissionSetOp,
    Plan,
    RecordRef,
    op_key,
)

PORTAL = "https://d-123.awsapps.com/start"
REC = RecordRef(app="assignments", app_id="2", record_id="7", mentions=("alice",))
PS_REC = RecordRef(app="permission_sets", app_id="1", record_id="3", mentions=("bob",))


def assignment(
    account: str,
    *,
    kind: OpKind = OpKind.CREATE_ASSIGNMENT,
    ps: str = "Dev",
    who: str = "alice",
    ptype: str = "USER",
    cause: Cause = Cause.NEW_RECORD,
    record: RecordRef = REC,
) -> AssignmentOp:
    return AssignmentOp(
        key=op_key(kind, ps, account_id=account, principal_type=ptype, principal_name=who),
        kind=kind,
        permission_set_name=ps,
        account_id=account,
        principal_type=ptype,  # type: ignore[arg-type]
        principal_id=f"id-{who}",
        principal_name=who,
        cause=cause,
        records=[record],
    )


def ok(*ops: object, status: str = "succeeded") -> list[OpResult]:
    return [OpResult(key=op.key, kind=op.kind, status=status) for op in ops]  # type: ignore[attr-defined]


def test_shortcut_link_quotes_the_permission_set_and_drops_a_trailing_slash() -> None:
    assert shortcut_link(PORTAL + "/", "123456789012", "Data Admin") == (
        "https://d-123.awsapps.com/start/#/console?account_id=123456789012&role_name=Data%20Admin"
    )


def test_only_operations_that_succeeded_now_make_news() -> None:
    made, present, failed = assignment("111111111112"), assignment("111111111113"), assignment("111111111114")
    plan = Plan(operations=[made, present, failed])
    results = ok(made) + ok(present, status="already_in_place") + ok(failed, status="failed")
    news = record_news(plan, results)
    assert list(news) == [REC.key]
    assert news[REC.key].assignments == {("granted", "Dev", "USER", "alice"): ["111111111112"]}


def test_comment_lists_accounts_with_portal_links_in_the_records_language() -> None:
    ops = [assignment("111111111112"), assignment("111111111113", ps="Ops", who="devs", ptype="GROUP")]
    [comment] = access_comments(
        Plan(operations=ops), ok(*ops), language="en", live_records={REC.key}, portal_url=PORTAL
    )
    assert comment.record_key == REC.key and comment.app_id == "2" and comment.record_id == "7"
    assert comment.mentions == [{"code": "alice", "type": "USER"}]
    lines = comment.text.splitlines()
    assert lines[0] == "Your access is live in AWS IAM Identity Center."
    assert "- Granted: permission set Dev to user alice" in lines
    assert f"  - 111111111112: {shortcut_link(PORTAL, '111111111112', 'Dev')}" in lines
    assert "- Granted: permission set Ops to group devs" in lines
    assert f"  - 111111111113: {shortcut_link(PORTAL, '111111111113', 'Ops')}" in lines
    assert lines[-1] == f"AWS access portal: {PORTAL}"
    ja = access_comments(Plan(operations=ops), ok(*ops), language="ja", live_records={REC.key})[0]
    assert ja.text.startswith("アクセス権を AWS IAM Identity Center に反映しました。")
    assert "awsapps" not in ja.text  # no portal configured: no links
    both = access_comments(Plan(operations=ops), ok(*ops), language="ja+en", live_records={REC.key})[0]
    assert both.text.startswith(ja.text) and "Your access is live" in both.text


def test_removals_say_why_and_carry_no_link() -> None:
    expired = assignment("111111111112", kind=OpKind.DELETE_ASSIGNMENT, cause=Cause.EXPIRED)
    edited = assignment("111111111113", kind=OpKind.DELETE_ASSIGNMENT, cause=Cause.NOT_IN_KINTONE)
    [comment] = access_comments(
        Plan(operations=[expired, edited]),
        ok(expired, edited),
        language="en",
        live_records={REC.key},
        portal_url=PORTAL,
    )
    assert "- Removed (expired): permission set Dev of user alice\n  - 111111111112" in comment.text
    assert "- Removed: permission set Dev of user alice\n  - 111111111113" in comment.text
    assert "#/console" not in comment.text


def test_a_large_group_assignment_is_summarised() -> None:
    ops = [assignment(f"1000000{i:05d}", who="everyone", ptype="GROUP") for i in range(250)]
    text = render_news(record_news(Plan(operations=ops), ok(*ops))[REC.key], "en", portal_url=PORTAL)
    assert text.count("#/console") == MAX_ACCOUNTS_LISTED
    assert f"... and {250 - MAX_ACCOUNTS_LISTED} more account(s)" in text


def test_permission_set_changes_are_told_on_the_set_record() -> None:
    created = PermissionSetOp(
        key=op_key(OpKind.CREATE_PERMISSION_SET, "Dev"),
        kind=OpKind.CREATE_PERMISSION_SET,
        permission_set_name="Dev",
        records=[PS_REC],
    )
    [comment] = access_comments(
        Plan(operations=[created]), ok(created), language="en", live_records={PS_REC.key}
    )
    assert comment.record_key == PS_REC.key
    assert "- Permission set Dev was created." in comment.text.splitlines()


def test_deleted_records_and_records_already_told_get_nothing() -> None:
    op = assignment("111111111112", kind=OpKind.DELETE_ASSIGNMENT, cause=Cause.NOT_IN_KINTONE)
    plan, results = Plan(operations=[op]), ok(op)
    assert access_comments(plan, results, language="en", live_records=set()) == []
    assert access_comments(plan, results, language="en", live_records={REC.key}, already_told=[REC.key]) == []


def test_told_state_is_per_run_and_accumulates_over_tries() -> None:
    first = told_after({}, "run-1", ["assignments:7"])
    second = told_after(first, "run-1", ["assignments:8"])
    assert already_told(second, "run-1") == ["assignments:7", "assignments:8"]
    assert already_told(second, "run-2") == []
    assert told_after(second, "run-2", ["assignments:9"]) == {"run_id": "run-2", "told": ["assignments:9"]}
