"""What a finished run tells people, decided in one pure function: ``decide_outcome(RunFacts) -> RunOutcome``.

``notify`` (the Airflow task) only collects the facts (XComs, task states, the stored memory of what was
said) and delivers the outcome (kintone comments, Slack, the note, the audit artifact). Every decision —
which problems a run has, when a record is commented on, when Slack hears about it, when the run fails —
lives here, so it is unit-tested without Airflow.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from idc_sync import feedback
from idc_sync.access_news import access_comments, including_owed
from idc_sync.failures import TaskFailure, explain, run_failing
from idc_sync.model import AssignmentOp, DesiredState, OpResult, Plan, Problem, Skipped
from idc_sync.slack_summary import summary_message

# Checks that could not run (Access Analyzer / IAM down): a problem missing because of them is only
# unchecked, so no record is told "resolved" in such a run.
UNCHECKED_CODES = frozenset({"access_analyzer_unavailable", "managed_policy_check_unavailable"})


class RunFacts(BaseModel):
    """Everything ``notify`` read about the run: the only input of :func:`decide_outcome`."""

    run_id: str
    dry_run: bool = False
    full_scope: bool = True  # no scope params: every record's whole problem set was seen
    desired: DesiredState | None = None  # None: extract_kintone produced nothing
    diff_problems: list[Problem] | None = None  # None: compute_diff produced nothing
    validation_problems: list[Problem] | None = None  # None: validate_policies produced nothing
    plan: Plan = Field(default_factory=Plan)  # the plan with validation's verdict combined
    results: list[OpResult] = Field(default_factory=list)
    withheld: list[Skipped] = Field(default_factory=list)  # deletions the guard withheld
    failed_tasks: list[str] = Field(default_factory=list)
    first_failure: str | None = None  # the task that failed first
    first_error: TaskFailure | None = None  # its recorded error (None: the process was lost)
    scim: dict[str, Any] | None = None
    previous_feedback: dict[str, str] = Field(default_factory=dict)  # record key -> what was last said
    last_attention: str = ""  # what last needed an admin (Slack says a need once)
    language: str = "ja"
    app_ids: dict[str, str] = Field(default_factory=dict)  # app key -> kintone app id
    run_url: str | None = None
    approval_url: str | None = None  # where withheld deletions are approved (the approval DAG's page)
    portal_url: str | None = None  # the AWS access portal, for the shortcut links of "access is live"
    access_told: list[str] = Field(default_factory=list)  # records a previous try of notify already told
    owed_news: list[AssignmentOp] = Field(default_factory=list)  # made by a killed earlier run, untold


class RunOutcome(BaseModel):
    """What to deliver. ``feedback_state`` is the memory after every comment is posted; a comment that
    cannot be posted keeps its record's previous entry (``feedback_state_after``)."""

    problems: list[Problem]
    cause: str | None  # the first failure and what it means
    failed_tasks: list[str]  # the first failed first
    summary: str  # the note's text and Slack's first line
    counts: dict[str, int]  # feedback.outcome_counts
    comments: list[feedback.Comment] = Field(default_factory=list)
    access_comments: list[feedback.Comment] = Field(default_factory=list)  # "your access is live"
    # records whose "access is live" news rides in their problem comment (one comment per record and run)
    access_in_comments: list[str] = Field(default_factory=list)
    feedback_state: dict[str, str] | None = None  # None: comments are not decided this run
    comments_withheld_because: str = ""
    post_slack: bool = False
    slack: dict[str, Any] | None = None
    attention: str = ""
    error: str | None = None  # the run fails with this message (Airflow shows it; the next run retries)


def decide_outcome(facts: RunFacts) -> RunOutcome:
    """The problems, the comments, Slack's message, the note and the run's verdict of one finished run."""
    cause = explain(facts.first_failure, facts.first_error) if facts.first_failure else None
    failed_tasks = _failed_first(facts)
    problems = run_problems(facts, cause, failed_tasks)
    withheld_keys = {s.key for s in facts.withheld}
    summary = feedback.run_summary_text(
        dag_run_id=facts.run_id,
        plan=facts.plan,
        results=facts.results,
        problems=problems,
        dry_run=facts.dry_run,
        scim=facts.scim,
        withheld=len(facts.withheld),
        withheld_keys=withheld_keys,
        cause=cause,
    )
    out = RunOutcome(
        problems=problems,
        cause=cause,
        failed_tasks=failed_tasks,
        summary=summary,
        counts=feedback.outcome_counts(
            facts.results, facts.plan, withheld=len(facts.withheld), withheld_keys=withheld_keys
        ),
        error=_run_error(facts, cause, failed_tasks),
    )
    if facts.dry_run:
        return out
    _decide_comments(facts, problems, out)
    if facts.desired is not None:
        news_plan, news_results = including_owed(facts.plan, facts.results, facts.owed_news)
        out.access_comments = access_comments(
            news_plan,
            news_results,
            language=facts.language,
            live_records=set(live_record_refs(facts.desired)),
            portal_url=facts.portal_url,
            run_url=facts.run_url,
            already_told=facts.access_told,
        )
        _merge_access_news(out)
    _decide_slack(facts, problems, out)
    return out


def run_problems(facts: RunFacts, cause: str | None, failed_tasks: list[str]) -> list[Problem]:
    """Records' problems (kintone, plan, validation), withheld deletions, failed operations and failed
    tasks (the first failure with its error). SCIM health reaches admins by its own alert, once."""
    problems = [*(facts.desired.problems if facts.desired else [])]
    problems += facts.diff_problems or []
    problems += facts.validation_problems or []
    if facts.withheld:
        problems.append(
            Problem(
                code="deletions_withheld",
                severity="warning",
                message=f"{len(facts.withheld)} deletion(s) were withheld by the deletion guard: they wait for "
                "a decision in the DAG idc_sync_approval (or were rejected there); nothing is deleted until it "
                "is approved or a run is triggered with allow_mass_delete.",
                params={"count": len(facts.withheld)},
            )
        )
    problems += failure_problems(facts.plan, facts.results)
    for task_id in failed_tasks:
        first = task_id == facts.first_failure
        problems.append(
            Problem(
                code="task_failed",
                message=cause if first and cause else explain(task_id, facts.first_error if first else None),
                params={"task_id": task_id},
            )
        )
    return problems


def failure_problems(plan: Plan, results: list[OpResult]) -> list[Problem]:
    """A failed operation is told on the first record that asked for it."""
    ops = {op.key: op for op in plan.operations}
    out = []
    for r in results:
        op = ops.get(r.key)
        if r.status != "failed" or op is None or not op.records:
            continue
        out.append(
            Problem(
                code="apply_failed",
                message=f"{r.kind.value.replace('_', ' ')} failed: {r.message}",
                record=op.records[0],
                params={"operation": r.kind.value, "key": r.key, "error": r.message[:500]},
            )
        )
    return out


def live_record_refs(desired: DesiredState) -> dict[str, Any]:
    """Record key -> ref of every record read this run (a deleted record is told nothing)."""
    refs = [ps.record for ps in desired.permission_sets.values() if ps.record]
    refs += [a.record for a in desired.assignments]
    refs += [p.record for p in desired.problems if p.record]
    return {ref.key: ref for ref in refs}


def _failed_first(facts: RunFacts) -> list[str]:
    if not facts.first_failure:
        return list(facts.failed_tasks)
    return [facts.first_failure, *[t for t in facts.failed_tasks if t != facts.first_failure]]


def _decide_comments(facts: RunFacts, problems: list[Problem], out: RunOutcome) -> None:
    """Record comments only from runs that saw every record's whole problem set: a failed step or a scoped
    run (plan problems only inside the scope) would otherwise read as "resolved" (DESIGN rule 5)."""
    complete_run = facts.desired is not None and facts.diff_problems is not None
    if not (complete_run and facts.validation_problems is not None and facts.full_scope):
        out.comments_withheld_because = "a step failed or the run is scoped: the next full run says it"
        return
    assert facts.desired is not None
    refs = live_record_refs(facts.desired)
    plan = feedback.plan_feedback(
        problems,
        facts.previous_feedback,
        language=facts.language,
        live_records=set(refs),
        app_ids=facts.app_ids,
        refs=refs,
        complete=not any(p.code in UNCHECKED_CODES for p in problems),
        run_url=facts.run_url,
    )
    out.comments = plan.comments
    out.feedback_state = plan.state


def _merge_access_news(out: RunOutcome) -> None:
    """A record that gets a problem comment and access news in the same run gets one comment: the news is
    appended to the problem comment (kintone's limit kept: the news is cut first)."""
    by_record = {c.record_key: c for c in out.comments}
    alone = []
    for news in out.access_comments:
        comment = by_record.get(news.record_key)
        if comment is None:
            alone.append(news)
            continue
        room = feedback.KINTONE_COMMENT_LIMIT - len(comment.text) - 2
        comment.text = f"{comment.text}\n\n{news.text[: max(room, 0)]}".rstrip()
        out.access_in_comments.append(news.record_key)
    out.access_comments = alone


def feedback_state_after(previous: dict[str, str], outcome: RunOutcome, posted: set[str]) -> dict[str, str]:
    """The memory of what was said once the comments in ``posted`` (record keys) went out: a comment that
    failed keeps the record's previous entry, so it is tried again and nothing is said twice."""
    state = dict(previous)
    for comment in outcome.comments:
        if comment.record_key in posted:
            state[comment.record_key] = comment.fingerprint
    wanted = outcome.feedback_state or {}
    # records that no longer have problems nor a pending "resolved" message are forgotten
    return {k: v for k, v in state.items() if k in wanted}


def _decide_slack(facts: RunFacts, problems: list[Problem], out: RunOutcome) -> None:
    """Slack hears about a change, a failure, or a new need for an admin; silence otherwise."""
    admin = [p for p in problems if p.record is None]
    drift_keys = [op.key for op in facts.plan.operations if op.is_drift]
    drift_keys += [s.key for s in facts.plan.skipped if s.is_drift]
    out.attention = feedback.attention_fingerprint(admin, drift_keys)
    changed = any(r.status == "succeeded" for r in facts.results)
    failed = any(r.status == "failed" for r in facts.results) or bool(run_failing(out.failed_tasks))
    out.post_slack = feedback.should_post_summary(
        changed=changed, failed=failed, attention=out.attention, last_attention=facts.last_attention
    )
    if out.post_slack:
        out.slack = summary_message(
            run_id=facts.run_id,
            summary=out.summary,
            plan=facts.plan,
            results=facts.results,
            problems=problems,
            withheld=len(facts.withheld),
            withheld_keys={s.key for s in facts.withheld},
            run_url=facts.run_url,
            approval_url=facts.approval_url,
            cause=out.cause,
        )


def _run_error(facts: RunFacts, cause: str | None, failed_tasks: list[str]) -> str | None:
    """The run fails (so Airflow shows it and the next run retries) when an operation or a task failed."""
    failed = [r for r in facts.results if r.status == "failed"]
    if not failed and not run_failing(failed_tasks):
        return None
    return (
        (f"{cause} " if cause else "")
        + f"{len(failed)} operation(s) failed"
        + (f" and task(s) {', '.join(failed_tasks)} failed" if failed_tasks else "")
        + "; the next run retries what is still needed. Failures: "
        + "; ".join(f"{r.key}: {r.message}" for r in failed[:20])
    )
