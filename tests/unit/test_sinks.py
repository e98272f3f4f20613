"""Issue 9 defects 8, 9, 10, 12 and the comment length limit: what each sink shows is true and safe.

sanitize (escaping per sink), failures (which task failed first and what it means), outbox (an
undelivered Slack message is kept and sent late), outcome counts (from results, not from the plan), the
audit artifact per try and kintone's 65,535-character comment limit.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest

from idc_sync import feedback, outbox
from idc_sync.audit import AuditStore
from idc_sync.failures import (
    LOST,
    NOTHING_CHANGED,
    PARTLY_APPLIED,
    TaskFailure,
    describe_error,
    explain,
    first_failure,
    run_failing,
)
from idc_sync.model import AssignmentOp, Cause, OpKind, OpResult, Plan, Problem, RecordRef, Skipped
from idc_sync.sanitize import PROBLEM_TEXT_LIMIT, CleanTextFilter, scrub_secrets, slack_escape, strip_control
from idc_sync.slack_summary import approval_message, duration_text, summary_message, withheld_lines

HOSTILE = "<!channel> <https://evil|click> \x1b[31m\x07"


# --------------------------------------------------------------------------- 12: escaping
def test_slack_escape_neutralises_mentions_links_and_control_chars() -> None:
    out = slack_escape(HOSTILE + " a&b")
    assert out == "&lt;!channel&gt; &lt;https://evil|click&gt;  a&amp;b"
    assert "<" not in out and ">" not in out and "\x1b" not in out and "\x07" not in out


def test_strip_control_keeps_newlines_and_tabs_drops_escapes() -> None:
    assert strip_control("a\x1b[1;31mred\x1b[0m\tb\nc\x07\x00\r\x9b2Jd\x1b]0;title\x07e") == "ared\tb\ncde"


def test_slack_message_escapes_record_text_everywhere() -> None:
    op = AssignmentOp(
        key=f"create:{HOSTILE}",
        kind=OpKind.CREATE_ASSIGNMENT,
        permission_set_name="P",
        account_id="1",
        principal_type="USER",
        principal_id="u",
        principal_name=HOSTILE,
        cause=Cause.DRIFT_CHANGED,  # a drift op's reason is in the Slack message: its detail is escaped
        detail=HOSTILE,
    )
    plan = Plan(operations=[op])
    results = [OpResult(key=op.key, kind=op.kind, status="failed", message=f"AccessDenied {HOSTILE}")]
    problems = [Problem(code="task_failed", message=f"group {HOSTILE} missing")]
    summary = feedback.run_summary_text(
        dag_run_id="r1", plan=plan, results=results, problems=problems, dry_run=False, scim=None
    )
    payload = summary_message(run_id="r1", summary=summary, results=results, problems=problems, plan=plan)
    texts = [payload["text"]] + [_block_text(b) for b in payload["blocks"]]
    for text in texts:
        assert "<!channel>" not in text and "<https://evil" not in text
        assert "\x1b" not in text and "\x07" not in text
    shown = {t.split("\n", 1)[0]: t for t in texts}
    for title in (
        "*Failed (1)*",
        "*Needs an admin (1)*",
        "*Drift (changed by hand in IAM Identity Center) (1)*",
    ):
        assert "&lt;!channel&gt;" in shown[title], title


def _block_text(block: dict[str, Any]) -> str:
    if block["type"] == "context":
        return " ".join(e["text"] for e in block["elements"])
    return str(block["text"]["text"])


def test_comment_and_note_carry_no_control_characters() -> None:
    ref = RecordRef(app="assignments", app_id="2", record_id="7")
    hostile = Problem(code="unreadable_record", message=HOSTILE, record=ref, params={"error": HOSTILE})
    text = feedback.render_comment(ref, [hostile], "en")
    assert "\x1b" not in text and "\x07" not in text
    summary = feedback.run_summary_text(
        dag_run_id="r\x1b[2J1", plan=Plan(), results=[], problems=[], dry_run=False, scim=None
    )
    assert "\x1b" not in summary


def test_log_filter_cleans_message_and_args(caplog: pytest.LogCaptureFixture) -> None:
    logger = logging.getLogger("idc_sync.test_sinks_probe")
    logger.addFilter(CleanTextFilter())
    with caplog.at_level(logging.INFO, logger=logger.name):
        logger.info("record %s: %s", "7", HOSTILE)
    [record] = [r for r in caplog.records if r.name == logger.name]
    assert "\x1b" not in record.getMessage() and "\x07" not in record.getMessage()
    assert "<!channel>" in record.getMessage()  # logs are plain text: only control characters go


def test_install_log_filter_covers_module_loggers_created_later() -> None:
    from idc_sync.sanitize import install_log_filter

    install_log_filter()
    install_log_filter()  # idempotent
    for name in ("idc_sync", "idc_sync.apply", "idc_sync.records", "idc_sync_airflow.steps"):
        filters = [f for f in logging.getLogger(name).filters if isinstance(f, CleanTextFilter)]
        assert len(filters) == 1, name


def test_scrub_secrets() -> None:
    text = (
        "POST http://x/services/T0/B0/sandboxwebhooksecret0001 failed; X-Cybozu-API-Token: tok-123456 "
        "password=hunter22 Authorization: Bearer eyJabc.def https://u:pw1234@host/ known-secret-value"
    )
    out = scrub_secrets(text, ["known-secret-value"])
    for secret in (
        "sandboxwebhooksecret0001",
        "tok-123456",
        "hunter22",
        "eyJabc.def",
        "pw1234",
        "known-secret",
    ):
        assert secret not in out, out


# --------------------------------------------------------------------------- 8: first failure
def test_first_failure_by_time_with_meaning() -> None:
    states = {
        "scim_health": "failed",
        "snapshot_idc": "failed",
        "compute_diff": "upstream_failed",
        "extract_kintone": "success",
    }
    records = {
        "snapshot_idc": TaskFailure(task_id="snapshot_idc", at="2026-12-01T10:00:05+00:00", error="boom"),
        "scim_health": TaskFailure(
            task_id="scim_health",
            at="2026-12-01T10:00:01+00:00",
            error_type="AirflowSensorTimeout",
            error="t",
        ),
    }
    task, record = first_failure(states, records, order=list(states)) or ("", None)
    assert task == "scim_health"
    text = explain(task, record)
    assert "scim_health" in text and "AirflowSensorTimeout: t" in text and "the run went on" in text
    assert NOTHING_CHANGED not in text  # the SCIM check is advisory (DESIGN: never a failed run)
    assert run_failing(["scim_health", "snapshot_idc"]) == ["snapshot_idc"]
    assert run_failing(["scim_health"]) == []


def test_failure_meaning_per_step_and_lost_process() -> None:
    rec = TaskFailure(task_id="apply_assignments", error_type="RuntimeError", error="x")
    assert PARTLY_APPLIED in explain("apply_assignments", rec)
    assert NOTHING_CHANGED in explain("extract_kintone", rec)
    lost = first_failure({"snapshot_idc": "failed", "notify": "failed"}, {}, order=["snapshot_idc"])
    assert lost == ("snapshot_idc", None)
    assert LOST in explain("snapshot_idc", None)
    assert first_failure({"a": "success", "b": "upstream_failed"}, {}) is None


def test_describe_error_scrubs_and_clips() -> None:
    kind, text = describe_error(RuntimeError("token=abcdef123 " + "x" * 2000 + "\x1b[31m"))
    assert kind == "RuntimeError" and "abcdef123" not in text and len(text) <= 500 and "\x1b" not in text


# --------------------------------------------------------------------------- 9: outbox
def _msg(run: str, text: str = "hello") -> outbox.PendingMessage:
    return outbox.PendingMessage(
        run_id=run, created="2026-12-01T10:00:00+00:00", kind="summary", payload={"text": text, "blocks": []}
    )


def test_outbox_keeps_a_failed_message_and_delivers_it_late_first() -> None:
    def down(_: dict) -> None:
        raise RuntimeError("500 internal_error")

    box, delivered, errors = outbox.deliver(outbox.Outbox(), down, _msg("run-1", "first"))
    assert delivered is False and len(box.pending) == 1 and errors

    sent: list[dict] = []
    box, delivered, errors = outbox.deliver(box, sent.append, _msg("run-2", "second"))
    assert delivered is True and box.pending == [] and errors == []
    assert [p["text"] for p in sent] == [
        "late: from run run-1 at 2026-12-01T10:00:00+00:00: first",
        "second",
    ]
    assert "late: from run run-1" in sent[0]["blocks"][0]["elements"][0]["text"]


def test_outbox_is_bounded_and_counts_dropped() -> None:
    box = outbox.Outbox()
    for i in range(5):
        box = outbox.enqueue(box, _msg(f"run-{i}"), max_pending=3)
    assert [m.run_id for m in box.pending] == ["run-2", "run-3", "run-4"] and box.dropped == 2
    sent: list[dict] = []
    box, _, _ = outbox.deliver(box, sent.append)
    assert "2 older undelivered message(s) were dropped" in sent[0]["text"] and box.dropped == 0


def test_outbox_stops_at_first_failure_and_keeps_order() -> None:
    calls: list[str] = []

    def down(p: dict) -> None:
        calls.append(p["text"])
        raise RuntimeError("down")

    box = outbox.enqueue(outbox.enqueue(outbox.Outbox(), _msg("a")), _msg("b"))
    box, delivered, _ = outbox.deliver(box, down, _msg("c"))
    assert len(calls) == 1 and delivered is False
    assert [m.run_id for m in box.pending] == ["a", "b", "c"]


# --------------------------------------------------------------------------- 10: true counts
def _op(key: str, kind: OpKind = OpKind.DELETE_ASSIGNMENT) -> AssignmentOp:
    return AssignmentOp(
        key=key,
        kind=kind,
        permission_set_name="P",
        account_id="1",
        principal_type="USER",
        principal_id="u",
        principal_name="u",
    )


def test_rejected_deletions_are_withheld_not_applied() -> None:
    plan = Plan(operations=[_op(f"d{i}") for i in range(19)])
    summary = feedback.run_summary_text(
        dag_run_id="r", plan=plan, results=[], problems=[], dry_run=False, scim=None, withheld=19
    )
    assert "applied 0" in summary and "withheld 19" in summary
    assert "applied 19" not in summary


def test_noops_are_already_in_place_not_succeeded() -> None:
    plan = Plan(operations=[_op(f"c{i}", OpKind.CREATE_ASSIGNMENT) for i in range(29)])
    results = [
        OpResult(key=f"c{i}", kind=OpKind.CREATE_ASSIGNMENT, status="already_in_place") for i in range(29)
    ]
    counts = feedback.outcome_counts(results, plan)
    assert counts == {
        "applied": 0,
        "already_in_place": 29,
        "deferred": 0,
        "withheld": 0,
        "skipped": 0,
        "failed": 0,
    }
    summary = feedback.run_summary_text(
        dag_run_id="r", plan=plan, results=results, problems=[], dry_run=False, scim=None
    )
    assert "already in place 29" in summary and "succeeded" not in summary
    payload = summary_message(run_id="r", summary=summary, results=results, problems=[], plan=plan)
    assert payload["blocks"][0]["text"]["text"] == "Nothing changed"
    assert "already in place 29" in _block_text(payload["blocks"][-1])


def test_deferred_operations_are_counted_apart_and_are_no_failure() -> None:
    plan = Plan(operations=[_op(f"c{i}", OpKind.CREATE_ASSIGNMENT) for i in range(3)])
    results = [
        OpResult(key="c0", kind=OpKind.CREATE_ASSIGNMENT, status="succeeded"),
        OpResult(key="c1", kind=OpKind.CREATE_ASSIGNMENT, status="deferred", attempts=0),
        OpResult(key="c2", kind=OpKind.CREATE_ASSIGNMENT, status="deferred", attempts=0),
    ]
    counts = feedback.outcome_counts(results, plan)
    assert counts["deferred"] == 2 and counts["applied"] == 1 and counts["failed"] == 0
    summary = feedback.run_summary_text(
        dag_run_id="r", plan=plan, results=results, problems=[], dry_run=False, scim=None
    )
    assert "deferred to the next run 2" in summary


def test_plan_skipped_items_count_as_skipped() -> None:
    plan = Plan(operations=[], skipped=[Skipped(key="k", reason="blocked")])
    assert feedback.outcome_counts([], plan)["skipped"] == 1


def test_audit_artifact_per_try_never_overwritten(tmp_path: Path) -> None:
    store = AuditStore(str(tmp_path))
    a = store.write_run("manual__2026-12-01T10:00:00+00:00", {"n": 1}, try_number=1)
    b = store.write_run("manual__2026-12-01T10:00:00+00:00", {"n": 2}, try_number=2)
    c = store.write_run("manual__2026-12-01T10:00:00+00:00", {"n": 3}, try_number=2)
    assert len({a, b, c}) == 3 and len(store.list_runs()) == 3
    assert Path(a).read_text().strip().endswith("}") and '"n": 1' in Path(a).read_text()


# --------------------------------------------------------------------------- comment length
@pytest.mark.parametrize("language", ["en", "ja"])
def test_comment_fits_kintone_limit_whatever_the_number_of_problems(language: str) -> None:
    ref = RecordRef(app="assignments", app_id="2", record_id="7")
    texts = ["m" * 300 + str(i) for i in range(1000)]
    problems = [Problem(code="unreadable_record", message=t, record=ref, params={"error": t}) for t in texts]
    url = "http://airflow.example/dags/idc_sync/runs/r1"
    text = feedback.render_comment(ref, problems, language, run_url=url)
    assert len(text) <= feedback.KINTONE_COMMENT_LIMIT
    shown = sum(1 for line in text.splitlines() if line.startswith("- [") and "m" * 300 in line)
    assert shown > 100
    assert (f"{1000 - shown}" in text) and url in text
    assert text.splitlines()[-1] == "" or "10" in text.splitlines()[-1]  # footer kept


def test_comment_with_one_enormous_problem_is_cut_cleanly() -> None:
    ref = RecordRef(app="assignments", app_id="2", record_id="7")
    huge_text = "y" * 100_000
    huge = Problem(code="unreadable_record", message=huge_text, record=ref, params={"error": huge_text})
    text = feedback.render_comment(ref, [huge], "en")
    # each problem is clipped where it is rendered (sanitize.visible), long before the comment's limit
    assert len(text) <= feedback.KINTONE_COMMENT_LIMIT and len(text) < 2 * PROBLEM_TEXT_LIMIT
    assert "y" * PROBLEM_TEXT_LIMIT not in text and "y…" in text


def test_short_comment_is_unchanged() -> None:
    ref = RecordRef(app="assignments", app_id="2", record_id="7")
    short = Problem(code="unreadable_record", message="short", record=ref, params={"error": "short"})
    text = feedback.render_comment(ref, [short], "en")
    assert "more" not in text and "short" in text


def test_slack_hears_about_a_standing_need_for_an_admin_once() -> None:
    """A withheld deletion (or drift) that stays is said once, not every ten minutes; a change or a
    failure is always said; a new need is said again."""
    withheld = Problem(code="deletions_withheld", message="2 deletion(s) were withheld", severity="warning")
    fp = feedback.attention_fingerprint([withheld], [])
    assert fp and feedback.attention_fingerprint([], []) == ""
    assert feedback.should_post_summary(changed=False, failed=False, attention=fp, last_attention="")
    assert not feedback.should_post_summary(changed=False, failed=False, attention=fp, last_attention=fp)
    assert feedback.should_post_summary(changed=True, failed=False, attention=fp, last_attention=fp)
    assert feedback.should_post_summary(changed=False, failed=True, attention="", last_attention="")
    other = feedback.attention_fingerprint([withheld], ["delete_assignment:1:X:USER:u"])
    assert other != fp
    assert feedback.should_post_summary(changed=False, failed=False, attention=other, last_attention=fp)
    assert not feedback.should_post_summary(changed=False, failed=False, attention="", last_attention=fp)


# --------------------------------------------------------------------------- Block Kit summary
def test_summary_is_block_kit_with_a_headline_lists_and_links() -> None:
    rec = RecordRef(app="assignments", app_id="2", record_id="7")
    made = AssignmentOp(
        key="create_assignment:123456789012:Dev:USER:alice",
        kind=OpKind.CREATE_ASSIGNMENT,
        permission_set_name="Dev",
        account_id="123456789012",
        principal_type="USER",
        principal_id="u-1",
        principal_name="alice",
        records=[rec],
    )
    broken = made.model_copy(
        update={"key": "create_assignment:123456789013:Dev:USER:alice", "account_id": "123456789013"}
    )
    plan = Plan(operations=[made, broken])
    results = [
        OpResult(key=made.key, kind=made.kind, status="succeeded"),
        OpResult(
            key=broken.key, kind=broken.kind, status="failed", message="AccessDeniedException: not allowed"
        ),
    ]
    problems = [Problem(code="invalid_target", message="bad target", record=rec, params={"value": "x"})]
    payload = summary_message(
        run_id="scheduled__1",
        summary="the note",
        plan=plan,
        results=results,
        problems=problems,
        run_url="https://airflow.example.com/dags/idc_sync/runs/scheduled__1",
    )
    header, *sections, context = payload["blocks"]
    assert header == {
        "type": "header",
        "text": {
            "type": "plain_text",
            "text": "1 access change applied, 1 change failed, 1 record needs a fix",
        },
    }
    assert payload["text"] == header["text"]["text"]
    texts = [_block_text(s) for s in sections]
    assert texts == [
        "*Applied (1)*\n• granted *Dev* to alice on `123456789012`",
        "*Failed (1)*\n• `create_assignment:123456789013:Dev:USER:alice`\n    AccessDeniedException: not allowed",
        "*Records to fix (1)*\n• assignment record 7: bad target",
    ]
    assert _block_text(context).startswith(
        "<https://airflow.example.com/dags/idc_sync/runs/scheduled__1|Run in Airflow> · run `scheduled__1`"
    )


def test_long_lists_are_cut_and_counted() -> None:
    ops = [
        AssignmentOp(
            key=f"create_assignment:1000000{i:05d}:Dev:GROUP:all",
            kind=OpKind.CREATE_ASSIGNMENT,
            permission_set_name="Dev",
            account_id=f"1000000{i:05d}",
            principal_type="GROUP",
            principal_id="g-1",
            principal_name="all",
        )
        for i in range(400)
    ]
    results = [OpResult(key=op.key, kind=op.kind, status="succeeded") for op in ops]
    payload = summary_message(
        run_id="r", summary="s", plan=Plan(operations=ops), results=results, problems=[]
    )
    assert payload["blocks"][0]["text"]["text"] == "400 access changes applied"
    applied = _block_text(payload["blocks"][1])
    assert applied.count("\n• granted") == 15 and applied.endswith("• … and 385 more (see the run)")
    assert all(len(_block_text(b)) <= 3000 for b in payload["blocks"])


def test_the_note_reads_as_a_summary_outcome_counts_then_what_needs_a_human() -> None:
    rec = RecordRef(app="assignments", app_id="2", record_id="7")
    op = _op("c0", OpKind.CREATE_ASSIGNMENT)
    results = [OpResult(key="c0", kind=OpKind.CREATE_ASSIGNMENT, status="succeeded")]
    problems = [
        Problem(code="invalid_target", message="bad", record=rec, params={"value": "x"}),
        Problem(code="principal_not_found", message="group ops is not in IdC", params={"name": "ops"}),
    ]
    note = feedback.run_summary_text(
        dag_run_id="scheduled__1",
        plan=Plan(operations=[op]),
        results=results,
        problems=problems,
        dry_run=False,
        scim={"status": "healthy"},
        withheld=2,
    )
    assert note.splitlines() == [
        "1 access change applied, 2 deletions waiting for approval, 1 record needs a fix, 1 admin alert.",
        "Planned 1 change(s) (1 create assignment); applied 1, already in place 0, withheld 2, skipped 0, failed 0.",
        "Needs a human: 1 record(s) to fix (told on the record); 2 deletion(s) to approve or reject "
        "(DAG idc_sync_approval); group ops is not in IdC.",
        "SCIM healthy. Run scheduled__1.",
    ]
    rejected = feedback.run_summary_text(
        dag_run_id="r",
        plan=Plan(operations=[op]),
        results=[],
        problems=[],
        dry_run=False,
        scim=None,
        withheld=1,
    )
    assert rejected.splitlines()[0] == "1 deletion waiting for approval."  # never "applied" after a Reject


def test_approval_request_lists_the_deletions_with_reasons_link_and_readable_timeout() -> None:
    ops = [
        AssignmentOp(
            key=f"delete_assignment:1000000{i:05d}:Legacy:USER:u-{i}",
            kind=OpKind.DELETE_ASSIGNMENT,
            permission_set_name="Legacy",
            account_id=f"1000000{i:05d}",
            principal_type="USER",
            principal_id=f"u-{i}",
            principal_name=f"<!here> user{i}",
            reason="no record asks for it",
        )
        for i in range(40)
    ]
    plan = Plan(operations=ops)
    lines = withheld_lines(plan, [op.key for op in ops[:30]])
    assert len(lines) == 30 and lines[0].startswith("• removed *Legacy* from")
    link = (
        "https://airflow.example.com/dags/idc_sync_approval/runs/d1/tasks/approve_deletions/required_actions"
    )
    payload = approval_message(
        deletions=30,
        reasons=["30 deletions > max_deletions 20", "<!channel>"],
        lines=lines[:15],
        link=link,
        timeout_seconds=4 * 3600,
        requested_by="scheduled__2026-12-04T00:00:00+00:00",
    )
    assert payload["blocks"][0] == {
        "type": "header",
        "text": {"type": "plain_text", "text": "30 deletion(s) wait for your approval"},
    }
    text = "\n".join(_block_text(b) for b in payload["blocks"])
    assert "• 30 deletions &gt; max_deletions 20" in text and "<!channel>" not in text  # a list, escaped
    assert "<!here>" not in text and "&lt;!here&gt; user0" in text
    assert "• … and 15 more (see the run)" in text  # 15 listed of 30
    assert f"<{link}|Approve or reject in Airflow>" in text and "within 4 hours" in text
    assert "|---|" not in text and "4:00:00" not in text  # no pipe table, no raw timedelta
    assert link in payload["text"]


@pytest.mark.parametrize(
    ("seconds", "words"),
    [
        (14400, "4 hours"),
        (5400, "1 hour 30 minutes"),
        (90000, "1 day 1 hour"),
        (60, "1 minute"),
        (20, "20 seconds"),
    ],
)
def test_duration_text(seconds: float, words: str) -> None:
    assert duration_text(seconds) == words
