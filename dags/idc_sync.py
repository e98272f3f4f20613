"""
### idc_sync: keep AWS IAM Identity Center equal to the access requests kept in kintone

Every ten minutes: read both kintone apps, observe IAM Identity Center and AWS Organizations
(incrementally, from the last observed state), compute a
plan (desired vs observed), validate the policies, apply the plan from the delegated-administrator
account, and tell people: kintone comments for requesters, Slack for admins, the run summary as this
run's note, the plan and results as an audit artifact.

Trigger it by hand with the form to do a **dry run**, limit the **scope** to some accounts or permission
sets, or **approve a large deletion** up front. See the project README for connections and settings.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from airflow.sdk import Param, TriggerRule, dag, task

from idc_sync_airflow import settings
from idc_sync_airflow.approval import RequestApprovalOperator, check_sync_dag
from idc_sync_airflow.failures import record_failure
from idc_sync_airflow.sensors import ScimHealthSensor

DEFAULT_ARGS: dict[str, Any] = {
    "owner": "platform",
    "retries": 2,
    "retry_delay": settings.retry_delay(),
    "retry_exponential_backoff": True,
    "max_retry_delay": dt.timedelta(minutes=3),
    "execution_timeout": dt.timedelta(minutes=15),
    # each failed try leaves its error (scrubbed) as XCom "failure": notify names the first failed task
    "on_failure_callback": record_failure,
    "on_retry_callback": record_failure,
}
# Reading IdC and applying are the long steps (at scale a full snapshot takes ~20 min).
LONG = dt.timedelta(minutes=30)
SHORT = dt.timedelta(minutes=5)


def _list_param(title: str, description: str, section: str, pattern: str | None = None) -> Param:
    """An optional trigger-form field that takes a list of strings, one per line (empty: not set)."""
    items = {"type": "string"} if pattern is None else {"type": "string", "pattern": pattern}
    return Param(
        None, type=["null", "array"], items=items, title=title, description=description, section=section
    )


def _switch(title: str, section: str, *, description: str = "", description_md: str = "") -> Param:
    """An on/off trigger-form field, off by default. Nullable: a switch always has a value, so the form
    shows no "required" mark on it (null, from the REST API, means off)."""
    nullable = ["boolean", "null"]
    if description_md:  # rendered as Markdown in the form
        return Param(False, type=nullable, title=title, section=section, description_md=description_md)
    return Param(False, type=nullable, title=title, section=section, description=description)


SCOPE, SAFETY, DANGER, ADVANCED = "Scope", "Safety", "Dangerous: skips a safety check", "Advanced"


@dag(
    dag_id="idc_sync",
    schedule="*/10 * * * *",
    start_date=dt.datetime(2026, 1, 1, tzinfo=dt.UTC),
    catchup=False,
    max_active_runs=1,
    is_paused_upon_creation=False,
    default_args=DEFAULT_ARGS,
    # Longer than the worst case of every task's own bounds (checked below, check_sync_dag): the scheduler
    # never cuts a run whose tasks are within their bounds (that would skip notify). Nothing here waits
    # for a human: an approval runs in the DAG idc_sync_approval.
    dagrun_timeout=dt.timedelta(hours=9),
    tags=["iam-identity-center", "kintone", "access"],
    params={
        "dry_run": _switch(
            "Dry run",
            SAFETY,
            description="Compute, validate and show the plan; change nothing in AWS, kintone or Slack.",
        ),
        "drift_mode": Param(  # one of two, always set: the only field the form marks as required
            "enforce",
            type="string",
            enum=["enforce", "report"],
            values_display={"enforce": "Enforce: revert hand-made changes", "report": "Report only"},
            title="Drift",
            description="What to do with changes made by hand in IAM Identity Center.",
            section=SAFETY,
        ),
        "scope_accounts": _list_param(
            "Only these accounts",
            "12-digit AWS account ids, one per line. Empty: every account.",
            SCOPE,
            pattern="^[0-9]{12}$",
        ),
        "scope_permission_sets": _list_param(
            "Only these permission sets",
            "Permission set names, one per line. Empty: every permission set.",
            SCOPE,
        ),
        "allow_mass_delete": _switch(
            "Approve a large deletion",
            DANGER,
            description_md=(
                "Apply deletions even when they exceed the **deletion guard** (`max_deletions`, "
                "`max_deletion_ratio`), without asking in the DAG `idc_sync_approval`. Leave off unless you "
                "have read the plan of a dry run."
            ),
        ),
        "full_resync": _switch(
            "Full resync",
            ADVANCED,
            description="Re-read everything and re-provision every managed permission set.",
        ),
        "adopt_permission_sets": _list_param(
            "Adopt existing permission sets",
            "Names of existing permission sets WITHOUT the ownership tag to hand over to idc-sync "
            "(one per line). Each is tagged managed-by=idc-sync before the plan, only if a kintone record "
            "defines it and it is not provisioned to the management account; from then on it and its "
            "assignments follow kintone. Logged and kept in the audit artifact.",
            ADVANCED,
        ),
        "skip_scim_check": _switch(
            "Skip the SCIM check",
            ADVANCED,
            description="Do not ask Microsoft Graph; missing users stay pending.",
        ),
    },
    doc_md=__doc__,
)
def idc_sync() -> None:
    scim_health = ScimHealthSensor(
        task_id="scim_health",
        graph_conn_id=settings.GRAPH_CONN_ID,
        poke_interval=30,
        timeout=240,
        retries=0,
        execution_timeout=SHORT,
    )

    @task(
        trigger_rule=TriggerRule.ALL_DONE,
        multiple_outputs=False,
        execution_timeout=SHORT,
        show_return_value_in_logs=False,
    )
    def scim_verdict() -> dict[str, Any]:
        """The SCIM verdict for later tasks: scim_health's, or "unknown" when the check itself failed
        (missing principals stay pending); the check never stops the run."""
        from idc_sync_airflow import steps

        return steps.scim_verdict()

    @task(multiple_outputs=False, show_return_value_in_logs=False)
    def extract_kintone() -> dict[str, Any]:
        """Read both kintone apps into typed desired state; bad records become problems."""
        from idc_sync_airflow import steps

        return steps.extract_kintone()

    @task(multiple_outputs=False, execution_timeout=LONG, show_return_value_in_logs=False)
    def observe_idc(desired: dict[str, Any]) -> dict[str, Any]:
        """Observe AWS Organizations and IAM Identity Center incrementally: the cached last state, new items,
        the sweep's share, and a fresh read of everything the plan touches."""
        from idc_sync_airflow import steps

        return steps.observe_idc(desired)

    @task(multiple_outputs=False, show_return_value_in_logs=False)
    def compute_diff(
        desired: dict[str, Any], observed: dict[str, Any], scim: dict[str, Any] | None
    ) -> dict[str, Any]:
        """Desired vs observed into an ordered plan (shown in this task's log); pure, no AWS call."""
        from idc_sync_airflow import steps

        return steps.compute_diff(desired, observed, scim)

    @task(multiple_outputs=False, show_return_value_in_logs=False)
    def validate_policies(desired: dict[str, Any], diff: dict[str, Any]) -> dict[str, Any]:
        """Check names, sizes, managed policies (iam:GetPolicy) and inline JSON (Access Analyzer)."""
        from idc_sync_airflow import steps

        return steps.validate_policies(desired, diff)

    @task(multiple_outputs=False, execution_timeout=SHORT, show_return_value_in_logs=False)
    def deletion_guard(diff: dict[str, Any], validated: dict[str, Any]) -> dict[str, Any]:
        """Which deletions this run applies: all within the guard; beyond it only approved ones (the rest
        is withheld and asked about in idc_sync_approval). Never waits."""
        from idc_sync_airflow import steps

        return steps.deletion_guard(diff, validated)

    # Starts idc_sync_approval with the withheld deletions (skipped when nothing is to be asked).
    request_approval = RequestApprovalOperator(task_id="request_approval", execution_timeout=SHORT)

    @task(multiple_outputs=False, execution_timeout=LONG, show_return_value_in_logs=False)
    def apply_permission_sets(
        diff: dict[str, Any], validated: dict[str, Any], observed: dict[str, Any]
    ) -> dict[str, Any]:
        """Create, update and re-provision permission sets (idempotent; async operations polled)."""
        from idc_sync_airflow import steps

        return steps.apply_permission_sets(diff, validated, observed)

    @task(multiple_outputs=False, execution_timeout=LONG, show_return_value_in_logs=False)
    def apply_assignments(
        diff: dict[str, Any],
        validated: dict[str, Any],
        observed: dict[str, Any],
        applied_sets: dict[str, Any],
        guard: dict[str, Any],
    ) -> dict[str, Any]:
        """Create and delete account assignments, then delete permission sets no record wants."""
        from idc_sync_airflow import steps

        return steps.apply_assignments(diff, validated, observed, applied_sets, guard)

    @task(trigger_rule=TriggerRule.ALL_DONE, retries=0, multiple_outputs=False)
    def notify() -> dict[str, Any]:
        """Comment on records with new/changed/resolved problems, post to Slack, write the note and audit.

        Downstream of every task (all_done): runs once all of them are final, so every failure is
        reported; fails the run when any operation failed, so Airflow shows it and the next run retries
        what is still needed.
        """
        from idc_sync_airflow import steps

        return steps.notify()

    # Here a task's output is an XComArg, which Airflow resolves to the task's return value before a
    # downstream task runs. @task's typing wants that value itself (a dict), so the outputs are typed Any
    # (as Airflow's own mypy plugin treats XComArgs).
    desired: Any = extract_kintone()
    observed: Any = observe_idc(desired)
    scim: Any = scim_verdict()
    scim_health >> scim
    # IdC's users and groups are read after the SCIM check: people Entra provisions while it waits for a
    # stale job are seen by this run, not the next one (the check never stops the run: ALL_DONE).
    scim >> observed
    diff: Any = compute_diff(desired, observed, scim)
    validated: Any = validate_policies(desired, diff)
    guard: Any = deletion_guard(diff, validated)
    guard >> request_approval
    applied_sets: Any = apply_permission_sets(diff, validated, observed)
    applied_assignments = apply_assignments(diff, validated, observed, applied_sets, guard)
    final = notify()
    # notify runs whatever happened before it, once every task is final, and reads the XComs that exist.
    [
        scim_health,
        scim,
        desired,
        observed,
        diff,
        validated,
        guard,
        request_approval,
        applied_sets,
        applied_assignments,
    ] >> final


check_sync_dag(idc_sync())
