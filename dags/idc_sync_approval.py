"""
### idc_sync_approval: a human decides about deletions that idc_sync withheld

Started by `idc_sync` (task `request_approval`) when its deletion guard trips. `idc_sync` never waits
for this: creations and updates are already applied and later runs keep serving new requests; only the
listed deletions wait. **Approve** records a grant and starts an `idc_sync` run, which re-reads kintone
and IAM Identity Center and deletes the granted set (only what is still planned). **Reject**, or no
answer within the response timeout (default Reject), records the refusal: that same set is not asked
about again; trigger `idc_sync` with `allow_mass_delete` to apply it anyway.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from airflow.providers.standard.operators.empty import EmptyOperator
from airflow.providers.standard.operators.trigger_dagrun import TriggerDagRunOperator
from airflow.sdk import TriggerRule, dag, task

from idc_sync_airflow import settings
from idc_sync_airflow.approval import ApprovalSlackNotifier, DeletionApprovalOperator, check_approval_dag

STEP_ARGS: dict[str, Any] = {
    "execution_timeout": settings.APPROVAL_STEP_TIMEOUT,
    "retries": settings.APPROVAL_STEP_RETRIES,
    "retry_delay": settings.APPROVAL_STEP_RETRY_DELAY,
}


@dag(
    dag_id="idc_sync_approval",
    schedule=None,
    start_date=dt.datetime(2026, 1, 1, tzinfo=dt.UTC),
    catchup=False,
    is_paused_upon_creation=False,
    default_args={"owner": "platform", **STEP_ARGS},
    # By construction: the response timeout plus the other steps, so the default is always recorded.
    dagrun_timeout=settings.approval_run_bound(),
    tags=["iam-identity-center", "access", "approval"],
    doc_md=__doc__,
)
def idc_sync_approval() -> None:
    approve_deletions = DeletionApprovalOperator(
        task_id="approve_deletions",
        subject="idc-sync wants to delete {{ dag_run.conf['deletions'] }} assignment(s) / permission set(s)",
        body="{{ dag_run.conf['body'] }}",
        defaults="Reject",
        assigned_users=settings.approvers(),  # None: anyone who can use this DAG
        notifiers=[ApprovalSlackNotifier()],  # admins get the question on Slack, with the page's link
        response_timeout=settings.approval_timeout(),
        retries=0,  # a retry would ask again; a failure leaves the request pending until it expires
    )
    # Skipped by approve_deletions on Reject / timeout, so run_sync is skipped too.
    deletions_approved = EmptyOperator(task_id="deletions_approved")

    @task(trigger_rule=TriggerRule.ALL_DONE, max_active_tis_per_dag=1)
    def record_decision() -> dict[str, Any]:
        """Store who answered what and when (shared state, read by idc_sync) and post it to Slack."""
        from idc_sync_airflow import approval

        return approval.record_decision()

    run_sync = TriggerDagRunOperator(
        task_id="run_sync",
        trigger_dag_id="idc_sync",
        conf={},
        logical_date=None,
        note="started by an approval of withheld deletions",
    )

    recorded = record_decision()
    approve_deletions >> deletions_approved >> recorded
    [deletions_approved, recorded] >> run_sync


check_approval_dag(idc_sync_approval())
