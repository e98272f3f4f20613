"""``idc_sync.outcome.decide_outcome``: what a finished run tells people, decided without Airflow."""

from __future__ import annotations

from idc_sync import feedback
from idc_sync.failures import TaskFailure
from idc_sync.model import (
    AssignmentSpec,
    DesiredState,
    OpKind,
    OpResult,
    Plan,
    Problem,
    RecordRef,
    Skipped,
)
from idc_sync.outcome import RunFacts, decide_outcome, feedback_state_after
from tests.unit.builders import A1, observed, plan_of, spec, state

REF = RecordRef(app="assignments", app_id="2", record_id="7", mentions=("alice",))
WANTS = AssignmentSpec(
    principal_type="USER", principal_name="alice", target=A1, permission_set_name="Dev", record=REF
)
BAD = Problem(code="unknown_permission_set", message="no such set", record=REF, params={"name": "Nope"})


def _plan() -> Plan:
    """A real plan: alice gets Dev on one account."""
    plan, _ = plan_of(
        DesiredState(permission_sets={"Dev": spec()}, assignments=[WANTS]), observed([state("Dev")])
    )
    return plan


def _facts(**kw: object) -> RunFacts:
    base: dict[str, object] = dict(
        run_id="scheduled__1",
        desired=DesiredState(assignments=[]),
        diff_problems=[],
        validation_problems=[],
        app_ids={"permission_sets": "1", "assignments": "2"},
    )
    base.update(kw)
    return RunFacts.model_validate(base)


def test_a_quiet_run_says_nothing_anywhere():
    out = decide_outcome(_facts())
    assert out.comments == [] and out.feedback_state == {}
    assert out.post_slack is False and out.slack is None
    assert out.error is None and out.attention == ""


def test_a_record_problem_is_commented_once_then_not_again():
    desired = DesiredState(problems=[BAD])
    first = decide_outcome(_facts(desired=desired))
    assert [c.record_key for c in first.comments] == ["assignments:7"]
    assert first.comments[0].mentions == [{"code": "alice", "type": "USER"}]
    said = feedback_state_after({}, first, posted={"assignments:7"})
    again = decide_outcome(_facts(desired=desired, previous_feedback=said))
    assert again.comments == []
    # fixed: one "resolved" comment on the record that still exists
    resolved = decide_outcome(_facts(desired=DesiredState(assignments=[WANTS]), previous_feedback=said))
    assert [(c.record_key, c.fingerprint) for c in resolved.comments] == [
        ("assignments:7", feedback.RESOLVED)
    ]


def test_a_comment_that_could_not_be_posted_is_tried_again():
    desired = DesiredState(problems=[BAD])
    first = decide_outcome(_facts(desired=desired))
    said = feedback_state_after({}, first, posted=set())  # kintone refused it
    assert "assignments:7" not in said
    assert [
        c.record_key for c in decide_outcome(_facts(desired=desired, previous_feedback=said)).comments
    ] == ["assignments:7"]


def test_no_comments_from_a_scoped_run_or_a_run_whose_steps_failed():
    desired = DesiredState(problems=[BAD])
    for facts in (
        _facts(desired=desired, full_scope=False),
        _facts(desired=desired, validation_problems=None),
        _facts(desired=desired, diff_problems=None),
        _facts(desired=None),
    ):
        out = decide_outcome(facts)
        assert out.feedback_state is None and out.comments == []
        assert "scoped" in out.comments_withheld_because


def test_an_unchecked_policy_never_reads_as_resolved():
    said = {"assignments:7": "abc123"}
    unavailable = Problem(code="access_analyzer_unavailable", message="down", severity="warning")
    out = decide_outcome(
        _facts(
            desired=DesiredState(problems=[]),
            validation_problems=[unavailable],
            previous_feedback=said,
        )
    )
    assert out.comments == []


def test_a_dry_run_decides_nothing_to_deliver():
    out = decide_outcome(_facts(desired=DesiredState(problems=[BAD]), dry_run=True))
    assert out.comments == [] and out.feedback_state is None and out.slack is None
    assert out.summary.startswith("DRY RUN: nothing was changed")


def test_applied_changes_post_to_slack_and_failures_fail_the_run():
    plan = _plan()
    op = plan.of_kind(OpKind.CREATE_ASSIGNMENT)[0]
    ok = decide_outcome(_facts(plan=plan, results=[OpResult(key=op.key, kind=op.kind, status="succeeded")]))
    assert ok.post_slack and ok.slack is not None and ok.error is None
    assert ok.counts["applied"] == 1

    bad = decide_outcome(
        _facts(plan=plan, results=[OpResult(key=op.key, kind=op.kind, status="failed", message="Conflict")])
    )
    assert bad.post_slack and bad.error is not None and f"{op.key}: Conflict" in bad.error
    failed = [p for p in bad.problems if p.code == "apply_failed"]
    assert [(p.record, p.params["key"]) for p in failed] == [(REF, op.key)]


def test_the_first_failed_task_is_named_first_with_its_error():
    error = TaskFailure(
        task_id="observe_idc", error_type="ClientError", error="AccessDenied", at="2026-01-01"
    )
    out = decide_outcome(
        _facts(
            failed_tasks=["apply_assignments", "observe_idc"],
            first_failure="observe_idc",
            first_error=error,
        )
    )
    assert out.failed_tasks == ["observe_idc", "apply_assignments"]
    assert out.cause is not None and "AccessDenied" in out.cause and out.summary.startswith(out.cause)
    tasks = [p for p in out.problems if p.code == "task_failed"]
    assert [p.params["task_id"] for p in tasks] == ["observe_idc", "apply_assignments"]
    assert out.error is not None and out.post_slack


def test_an_advisory_check_failing_does_not_fail_the_run():
    out = decide_outcome(_facts(failed_tasks=["scim_health"], first_failure="scim_health"))
    assert out.error is None


def test_withheld_deletions_need_an_admin_once():
    withheld = [Skipped(key="delete_assignment:x", reason="deletion guard: not approved")]
    first = decide_outcome(_facts(withheld=withheld))
    assert [p.code for p in first.problems] == ["deletions_withheld"]
    assert first.post_slack and first.attention
    again = decide_outcome(_facts(withheld=withheld, last_attention=first.attention))
    assert not again.post_slack and again.attention == first.attention
    assert first.counts["withheld"] == 1


def test_a_record_with_a_problem_and_access_news_gets_one_comment():
    from idc_sync.access_news import record_news, render_news
    from idc_sync.model import AssignmentOp, OpKind, OpResult, Problem, RecordRef, op_key

    def out_results(op: AssignmentOp) -> list[OpResult]:
        return [OpResult(key=op.key, kind=op.kind, status="succeeded")]

    ref = RecordRef(app="assignments", app_id="2", record_id="9", mentions=("alice",))
    op = AssignmentOp(
        key=op_key(
            OpKind.CREATE_ASSIGNMENT, "Dev", account_id=A1, principal_type="USER", principal_name="alice"
        ),
        kind=OpKind.CREATE_ASSIGNMENT,
        permission_set_name="Dev",
        account_id=A1,
        principal_type="USER",
        principal_id="u-alice",
        principal_name="alice",
        records=[ref],
    )
    warning = Problem(code="invalid_target", message="row 2 ignored", record=ref, params={"value": "x"})
    desired = DesiredState(problems=[warning])
    out = decide_outcome(
        _facts(
            desired=desired,
            diff_problems=[],
            validation_problems=[],
            plan=Plan(operations=[op]),
            results=out_results(op),
            language="en",
        )
    )
    [comment] = out.comments
    assert out.access_comments == [] and out.access_in_comments == [ref.key]
    assert comment.record_key == ref.key
    problem_text = feedback.render_comment(ref, [warning], "en")
    news = render_news(record_news(Plan(operations=[op]), out_results(op))[ref.key], "en")
    assert comment.text == f"{problem_text}\n\n{news}"
