"""Airflow side of the deletion approval: the request operator, the approval DAG's task body, and the
timing checks run when the DAG files are parsed. Decisions live in ``idc_sync.approval`` (pure)."""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any

from airflow.providers.standard.operators.hitl import ApprovalOperator, HITLOperator
from airflow.providers.standard.operators.trigger_dagrun import TriggerDagRunOperator
from airflow.sdk import BaseNotifier, BaseSensorOperator, get_current_context
from airflow.sdk.exceptions import AirflowSkipException

from idc_sync import approval
from idc_sync_airflow import settings

log = logging.getLogger(__name__)

REQUEST_XCOM_KEY = "approval_request"
ANSWER_XCOM_KEY = "answer"


# --------------------------------------------------------------------------- timings (parse time)
def task_timings(dag: Any) -> list[approval.TaskTiming]:
    """Each task's bound from its operator: sensor timeout (+ the deferral grace), HITL response timeout,
    else ``execution_timeout`` (required: a task without a bound makes the run unbounded)."""
    from idc_sync_airflow.sensors import TRIGGERER_GRACE_SECONDS

    out = []
    for task in dag.tasks:
        execution = task.execution_timeout
        if isinstance(task, BaseSensorOperator):
            attempt = dt.timedelta(seconds=float(task.timeout) + TRIGGERER_GRACE_SECONDS) + (
                execution or dt.timedelta(0)
            )
        elif isinstance(task, HITLOperator):
            if task.response_timeout is None:
                raise approval.TimingError(f"{dag.dag_id}.{task.task_id} has no response_timeout")
            attempt = task.response_timeout + (execution or dt.timedelta(0))
        elif execution is None:
            raise approval.TimingError(f"{dag.dag_id}.{task.task_id} has no execution_timeout")
        else:
            attempt = execution
        delay = task.retry_delay
        if task.retry_exponential_backoff and task.retries:
            delay = task.max_retry_delay or delay * (2 ** (task.retries - 1))
        out.append(
            approval.TaskTiming(
                task_id=task.task_id,
                attempt=attempt,
                retries=int(task.retries or 0),
                retry_delay=delay if isinstance(delay, dt.timedelta) else dt.timedelta(seconds=float(delay)),
                upstream=tuple(sorted(task.upstream_task_ids)),
            )
        )
    return out


def check_sync_dag(dag: Any) -> dt.timedelta:
    """Called by ``dags/idc_sync.py`` once the DAG is built: a TimingError is an import error in the UI."""
    worst = approval.check_run_timing(
        dag.dag_id, task_timings(dag), dag.dagrun_timeout, settings.SCHEDULING_SLACK
    )
    approval.check_approval_timing(
        response_timeout=settings.approval_timeout(),
        approval_worst=settings.approval_run_bound(),
        pending_ttl=settings.approval_run_bound(),
        grant_ttl=settings.approval_grant_ttl(),
        sync_worst=worst,
        sync_waits_for=[t.task_id for t in dag.tasks if isinstance(t, HITLOperator)],
    )
    return worst


def check_approval_dag(dag: Any) -> dt.timedelta:
    """Called by ``dags/idc_sync_approval.py``: its run always reaches and records the default answer."""
    worst = approval.check_run_timing(
        dag.dag_id, task_timings(dag), dag.dagrun_timeout, settings.SCHEDULING_SLACK
    )
    if worst < settings.approval_timeout():
        raise approval.TimingError(f"{dag.dag_id} does not wait for the response timeout")
    return worst


# --------------------------------------------------------------------------- idc_sync: ask
class RequestApprovalOperator(TriggerDagRunOperator):
    """Starts an ``idc_sync_approval`` run with the question ``deletion_guard`` prepared, or skips itself
    when there is nothing to ask (guard not tripped, already pending, rejected, dry run)."""

    def __init__(self, *, guard_task_id: str = "deletion_guard", **kwargs: Any) -> None:
        super().__init__(trigger_dag_id=approval.APPROVAL_DAG_ID, **kwargs)
        self.guard_task_id = guard_task_id

    def execute(self, context: Any) -> Any:
        request = context["ti"].xcom_pull(task_ids=self.guard_task_id, key=REQUEST_XCOM_KEY)
        if not request:
            raise AirflowSkipException("no approval to ask for in this run")
        self.conf = request
        self.trigger_run_id = request["approval_run_id"]
        self.logical_date = None
        return super().execute(context)


# --------------------------------------------------------------------------- approval DAG: ask, record
class ApprovalSlackNotifier(BaseNotifier):
    """The HITL operator's notifier (``notifiers=``): when ``approve_deletions`` starts waiting, admins get
    a Block Kit message with the reasons, the withheld deletions as a list and the link to the approval
    page (``generate_link_to_ui`` from ``[api] base_url``).

    Delivered through the Slack outbox rather than ``SlackWebhookNotifier``: a request Slack refuses
    (500, timeout) is kept and sent late by the next idc_sync run instead of being lost."""

    def notify(self, context: Any) -> None:
        from idc_sync.slack_summary import approval_message
        from idc_sync_airflow.slack_outbox import deliver_slack

        request = dict(context["dag_run"].conf or {})
        task = context["task"]
        try:
            link = HITLOperator.generate_link_to_ui_from_context(context=context)
        except ValueError:  # no [api] base_url: the same page on the default address
            from idc_sync_airflow.steps import approval_link

            ti = context["task_instance"]
            link = approval_link(ti.dag_id, ti.run_id)
        timeout = task.response_timeout.total_seconds() if task.response_timeout else 0.0
        message = approval_message(
            deletions=int(request.get("deletions") or 0),
            reasons=[str(r) for r in request.get("reasons") or []],
            lines=[str(line) for line in request.get("lines") or []],
            link=link,
            timeout_seconds=timeout,
            requested_by=str(request.get("requested_by") or ""),
        )
        deliver_slack(message, kind="approval", run_id=str(request.get("requested_by") or ""))


class DeletionApprovalOperator(ApprovalOperator):
    """``ApprovalOperator`` that also keeps the answer as XCom ``answer``, whatever it is.

    On Reject (or the timeout's default), ApprovalOperator skips its downstream tasks by raising inside
    ``execute_complete``, so its return value is never stored: record_decision would not know who
    rejected, nor whether it was a timeout. The answer is pushed before that."""

    def execute_complete(self, context: Any, event: dict[str, Any]) -> Any:
        if "error" not in event:
            by = event.get("responded_by_user")
            context["ti"].xcom_push(
                key=ANSWER_XCOM_KEY,
                value={
                    "chosen_options": list(event.get("chosen_options") or []),
                    "responded_by_user": dict(by) if by else None,
                    "responded_at": str(event.get("responded_at") or ""),
                    "timedout": bool(event.get("timedout")) or not by,
                },
            )
        return super().execute_complete(context, event)


# --------------------------------------------------------------------------- approval DAG: record
def record_decision() -> dict[str, Any]:
    """Store the answer of ``approve_deletions`` (who, when, Approve / Reject / timeout) in the shared
    state and tell admins on Slack. Returns ``{"approved": bool, ...}``."""
    from idc_sync_airflow.slack_outbox import deliver_slack

    ctx = get_current_context()
    conf = dict(ctx["dag_run"].conf or {})
    answer = ctx["ti"].xcom_pull(task_ids=approval.APPROVAL_TASK_ID, key=ANSWER_XCOM_KEY)
    if not isinstance(answer, dict) or "chosen_options" not in answer:
        # approve_deletions failed (not a decision): the request stays pending until it expires, then
        # idc_sync asks again.
        raise RuntimeError(
            f"{approval.APPROVAL_TASK_ID} produced no answer ({type(answer).__name__}: {str(answer)[:300]}); nothing recorded"
        )
    fp, keys = str(conf["fingerprint"]), [str(k) for k in conf.get("keys") or []]
    by = answer.get("responded_by_user")
    responded_by = (by.get("name") or by.get("id")) if isinstance(by, dict) else (str(by) if by else None)
    if answer.get("timedout"):
        responded_by = None
    at = answer.get("responded_at")
    when = approval.parse_time(at) or dt.datetime.now(dt.UTC)
    store = settings.state_store(settings.load_config())
    decisions = approval.record_decision(
        store.read_state(approval.DECISIONS_STATE),
        fp,
        keys,
        chosen=answer.get("chosen_options"),
        responded_by=responded_by,
        at=when,
        approval_run_id=ctx["dag_run"].run_id,
    )
    store.write_state(approval.DECISIONS_STATE, decisions)
    decision = decisions[fp]
    log.info("deletion set %s (%d deletion(s)): %s", fp, len(keys), decision)
    text = approval.decision_text(decision, len(keys), str(conf.get("requested_by") or "?"))
    # recorded anyway (the sync acts on the state, not on Slack); an undelivered message waits in the
    # Slack outbox for the next idc_sync run
    deliver_slack(
        {"text": text, "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": text[:2900]}}]},
        kind="approval_decision",
        run_id=ctx["dag_run"].run_id,
        store=store,
    )
    return {"approved": decision["answer"] == "approve", **decision}
