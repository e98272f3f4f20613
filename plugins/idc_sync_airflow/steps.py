"""The bodies of the DAG's tasks: connections and context in, domain calls, JSON out.

Each function is what one task does; the DAG file only wires them. Everything that decides anything
lives in the domain package ``idc_sync`` (no Airflow there); this module only fetches clients from
connections, reads trigger params and run context, and moves models through XComs as JSON.
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any
from zoneinfo import ZoneInfo

from airflow.sdk import get_current_context

from idc_sync import feedback, guard
from idc_sync.audit import FEEDBACK_STATE, SCIM_STATE, AuditStore
from idc_sync.config import SyncConfig
from idc_sync.model import (
    DesiredState,
    ObservedState,
    OpKind,
    OpResult,
    Plan,
    Problem,
    Scope,
    ValidationReport,
)
from idc_sync_airflow import settings
from idc_sync_airflow.hooks import IdcHook, KintoneHook

log = logging.getLogger(__name__)


# --------------------------------------------------------------------------- context helpers
def _params() -> dict[str, Any]:
    return dict(get_current_context()["params"])


def _scope(params: dict[str, Any]) -> Scope:
    return Scope(
        accounts=[a.strip() for a in params.get("scope_accounts") or [] if a.strip()],
        permission_sets=[p.strip() for p in params.get("scope_permission_sets") or [] if p.strip()],
    )


def _config() -> SyncConfig:
    return settings.load_config()


def _today(config: SyncConfig) -> dt.date:
    return dt.datetime.now(ZoneInfo(config.timezone)).date()


# --------------------------------------------------------------------------- tasks
def extract_kintone() -> dict[str, Any]:
    from idc_sync.records import parse_desired_state

    config = _config()
    with KintoneHook(settings.KINTONE_CONN_ID, language=config.language).get_client() as client:
        ps_records = client.get_all_records(config.permission_sets_app_id)
        asg_records = client.get_all_records(config.assignments_app_id)
    desired = parse_desired_state(ps_records, asg_records, config)
    log.info(
        "read %d permission set record(s) and %d assignment record(s): %d permission set(s), "
        "%d assignment(s), %d record problem(s)",
        len(ps_records),
        len(asg_records),
        len(desired.permission_sets),
        len(desired.assignments),
        len(desired.problems),
    )
    for problem in desired.problems:
        log.warning("record %s: %s", problem.record.key if problem.record else "-", problem.message)
    return desired.model_dump(mode="json")


def snapshot_idc() -> dict[str, Any]:
    from idc_sync.snapshot import take_snapshot

    config = _config()
    clients = IdcHook(settings.AWS_CONN_ID).get_clients()
    observed = take_snapshot(clients, None, config, _scope(_params()))
    log.info(
        "observed %d account(s), %d permission set(s) (%d managed), %d managed assignment(s)",
        len(observed.org.accounts),
        len(observed.permission_sets),
        sum(1 for ps in observed.permission_sets.values() if ps.managed),
        len(observed.assignments),
    )
    return observed.model_dump(mode="json")


def compute_diff(
    desired_json: dict[str, Any], observed_json: dict[str, Any], scim: dict[str, Any] | None
) -> dict[str, Any]:
    from idc_sync.plan import compute_plan, render_plan
    from idc_sync.snapshot import resolve_principals

    params = _params()
    config = _config()
    desired = DesiredState.model_validate(desired_json)
    observed = ObservedState.model_validate(observed_json)
    clients = IdcHook(settings.AWS_CONN_ID).get_clients()
    observed, adopted = _adopt(clients, observed, desired, params, config)
    observed = resolve_principals(clients, observed, desired)
    store = AuditStore(config.audit_path)
    memory = _plan_memory(store)
    plan, problems = compute_plan(
        desired,
        observed,
        config,
        scope=_scope(params),
        today=_today(config),
        drift_mode=params.get("drift_mode", "enforce"),
        full_resync=bool(params.get("full_resync")),
        memory=memory,
    )
    problems = _pending_or_error(problems, scim, config)
    log.info("plan:\n%s", render_plan(plan))
    if not params.get("dry_run"):
        _save_plan_memory(store, memory, desired, observed, config, params)
    return {
        "plan": plan.model_dump(mode="json"),
        "problems": [p.model_dump(mode="json") for p in problems],
        "observed": observed.model_dump(mode="json"),
        "adopted": [r.model_dump(mode="json") for r in adopted],
    }


PLAN_MEMORY_STATE = "state/plan_memory.json"


def _plan_memory(store: AuditStore) -> Any:
    """What earlier runs saw (``idc_sync.plan.PlanMemory``): tells hand-made changes (drift) from kintone
    edits. Missing or unreadable: nothing is called drift this run."""
    from idc_sync.plan import PlanMemory

    try:
        raw = store.read_state(PLAN_MEMORY_STATE)
        return PlanMemory.model_validate(raw) if raw else None
    except Exception as exc:
        log.warning("plan memory unreadable (%s): drift is not told apart this run", exc)
        return None


def _save_plan_memory(
    store: AuditStore,
    memory: Any,
    desired: DesiredState,
    observed: ObservedState,
    config: SyncConfig,
    params: dict[str, Any],
) -> None:
    from idc_sync.plan import next_memory

    try:
        new = next_memory(memory, desired, observed, config, scope=_scope(params), today=_today(config))
        store.write_state(PLAN_MEMORY_STATE, new.model_dump(mode="json"))
    except Exception as exc:  # losing the memory only weakens drift labels, never a run
        log.warning("could not save the plan memory: %s", exc)


def _adopt(
    clients: Any, observed: ObservedState, desired: DesiredState, params: dict[str, Any], config: SyncConfig
) -> tuple[ObservedState, list[Any]]:
    """Trigger param ``adopt_permission_sets``: tag those existing untagged sets (kintone defines them)
    before the plan, so this run already manages them (``idc_sync.adopt``). Logged and audited."""
    from idc_sync.adopt import adopt_into_observed

    names = [n for n in params.get("adopt_permission_sets") or [] if n and n.strip()]
    if not names:
        return observed, []
    observed, results = adopt_into_observed(
        clients, observed, desired, names, config, dry_run=bool(params.get("dry_run"))
    )
    for r in results:
        level = logging.WARNING if r.status in ("adopted", "would_adopt") else logging.ERROR
        if r.status == "already_managed":
            level = logging.INFO
        log.log(level, "adopt permission set %s: %s (%s)", r.name, r.status, r.message)
    return observed, results


def _remember_applied(store: AuditStore, plan: Plan, results: list[OpResult]) -> None:
    """Permission sets this run created/updated are in place now (``idc_sync.plan.remember_applied``)."""
    from idc_sync.plan import remember_applied

    memory = _plan_memory(store)
    if memory is None:
        return
    done = {r.key for r in results if r.status == "succeeded"}
    try:
        store.write_state(PLAN_MEMORY_STATE, remember_applied(memory, plan, done).model_dump(mode="json"))
    except Exception as exc:
        log.warning("could not save the plan memory: %s", exc)


def _pending_or_error(
    problems: list[Problem], scim: dict[str, Any] | None, config: SyncConfig
) -> list[Problem]:
    """Safety rule 4: a missing principal is pending until SCIM is healthy and the grace has passed;
    then an error that says what to check (``idc_sync.scim.escalate_missing_principals``)."""
    from idc_sync.scim import escalate_missing_principals

    return escalate_missing_principals(
        problems, scim, dt.datetime.now(dt.UTC), grace_cycles=config.scim_grace_cycles
    )


def validate_policies(desired_json: dict[str, Any], diff: dict[str, Any]) -> dict[str, Any]:
    from idc_sync.validation import apply_validation, validate_permission_sets

    config = _config()
    desired = DesiredState.model_validate(desired_json)
    plan = Plan.model_validate(diff["plan"])
    touched = {op.permission_set_name for op in plan.operations}
    clients = IdcHook(settings.AWS_CONN_ID).get_clients()
    # Every set is checked every run (stable problems = no repeated comments); Access Analyzer answers are
    # cached by policy text across runs, so an unchanged inline policy costs no call.
    store = AuditStore(config.audit_path)
    cache = _analyzer_cache(store)
    size = len(cache)
    report: ValidationReport = validate_permission_sets(
        desired, clients, config, only=touched | set(desired.permission_sets), analyzer_cache=cache
    )
    _save_analyzer_cache(store, cache, desired, changed=len(cache) != size)
    plan = apply_validation(plan, report)
    for name in report.blocked:
        log.warning("permission set %s is blocked by validation: its operations are skipped this run", name)
    log.info(
        "validated %d permission set(s); %d blocked; %d finding(s)",
        report.checked,
        len(report.blocked),
        len(report.problems),
    )
    return {"plan": plan.model_dump(mode="json"), "report": report.model_dump(mode="json")}


ANALYZER_CACHE_STATE = "state/access_analyzer_cache.json"
ANALYZER_CACHE_TTL = dt.timedelta(days=7)  # Access Analyzer's checks evolve: ask again now and then


def _analyzer_cache(store: AuditStore) -> dict[str, Any]:
    import time

    try:
        cache = store.read_state(ANALYZER_CACHE_STATE)
    except Exception as exc:  # a broken cache costs calls, never a run
        log.warning("Access Analyzer cache unreadable (%s): validating every inline policy", exc)
        return {}
    limit = time.time() - ANALYZER_CACHE_TTL.total_seconds()
    return {k: v for k, v in cache.items() if isinstance(v, dict) and float(v.get("at") or 0) >= limit}


def _save_analyzer_cache(
    store: AuditStore, cache: dict[str, Any], desired: DesiredState, *, changed: bool
) -> None:
    from idc_sync.validation import analyzer_cache_key

    wanted = {
        analyzer_cache_key(ps.inline_policy) for ps in desired.permission_sets.values() if ps.inline_policy
    }
    kept = {k: v for k, v in cache.items() if k in wanted}  # only policies still in kintone
    if changed or len(kept) != len(cache):
        try:
            store.write_state(ANALYZER_CACHE_STATE, kept)
        except Exception as exc:
            log.warning("could not save the Access Analyzer cache: %s", exc)


def deletion_guard(validated: dict[str, Any]) -> list[str]:
    params = _params()
    ti = get_current_context()["ti"]
    config = _config()
    plan = Plan.model_validate(validated["plan"])
    desired = DesiredState.model_validate(ti.xcom_pull(task_ids="extract_kintone"))
    verdict = guard.evaluate_guard(plan, desired, config)
    ti.xcom_push(key="verdict", value=verdict.model_dump(mode="json"))
    ti.xcom_push(key="deletions", value=verdict.deletions)
    ti.xcom_push(
        key="table",
        value="\n".join(["Guard tripped:", *[f"- {r}" for r in verdict.reasons], "", verdict.table]),
    )
    if not verdict.tripped:
        log.info("deletion guard: %d deletion(s) within limits", verdict.deletions)
        return ["apply_permission_sets"]
    if params.get("dry_run"):
        log.warning(
            "deletion guard tripped (dry run, nothing will be deleted): %s", "; ".join(verdict.reasons)
        )
        return ["apply_permission_sets"]
    if params.get("allow_mass_delete"):
        log.warning("deletion guard tripped but allow_mass_delete=true: %s", "; ".join(verdict.reasons))
        return ["apply_permission_sets"]
    log.warning("deletion guard tripped, asking for approval: %s", "; ".join(verdict.reasons))
    _announce_approval(verdict)
    return ["approve_deletions", "apply_permission_sets"]


APPROVAL_TASK_ID = "approve_deletions"


def approval_link(dag_id: str, run_id: str, base_url: str | None = None) -> str:
    """The "required actions" page of this run's approval (same URL as HITLOperator.generate_link_to_ui)."""
    from urllib.parse import quote

    if base_url is None:
        from airflow.sdk.configuration import conf

        base_url = conf.get("api", "base_url", fallback=None) or "http://localhost:8080"
    return (
        f"{base_url.rstrip('/')}/dags/{quote(dag_id)}/runs/{quote(run_id, safe=':+')}/tasks/{APPROVAL_TASK_ID}"
        "/required_actions?map_index=-1"
    )


def _announce_approval(verdict: guard.GuardVerdict) -> bool:
    """Tell admins on Slack that deletions wait for them, with the link to answer (default: Reject)."""
    from airflow.providers.slack.hooks.slack_webhook import SlackWebhookHook

    ctx = get_current_context()
    dag_run = ctx["dag_run"]
    link = approval_link(dag_run.dag_id, dag_run.run_id)
    timeout = settings.approval_timeout()
    text = (
        f":warning: idc-sync {dag_run.run_id} wants to delete {verdict.deletions} assignment(s) / permission "
        f"set(s) and waits for approval: {'; '.join(verdict.reasons)}. Approve or reject: {link} "
        f"(without an answer within {timeout}, the deletions are skipped; creations and updates go ahead)."
    )
    table = verdict.table if len(verdict.table) < 2800 else verdict.table[:2800] + "\n…"
    blocks = [
        {"type": "section", "text": {"type": "mrkdwn", "text": text[:2900]}},
        {"type": "section", "text": {"type": "mrkdwn", "text": f"```{table}```"}},
    ]
    try:
        SlackWebhookHook(slack_webhook_conn_id=settings.SLACK_CONN_ID).send(text=text, blocks=blocks)
    except Exception as exc:  # the approval task still waits; the UI shows it
        log.error("could not post the approval request to Slack (%s): %s", settings.SLACK_CONN_ID, exc)
        return False
    return True


def deletions_allowed() -> tuple[bool, str]:
    """Whether this run may delete: guard not tripped, allow_mass_delete, or an Approve answer."""
    ctx = get_current_context()
    ti = ctx["ti"]
    params = ctx["params"]
    verdict = ti.xcom_pull(task_ids="deletion_guard", key="verdict") or {}
    if not verdict.get("tripped"):
        return True, ""
    if params.get("allow_mass_delete"):
        return True, ""
    answer = ti.xcom_pull(task_ids="approve_deletions") or {}
    chosen = answer.get("chosen_options") if isinstance(answer, dict) else None
    if chosen and "Approve" in chosen:
        return True, ""
    return False, "deletion guard: not approved (" + "; ".join(verdict.get("reasons", [])) + ")"


def _dry_run() -> bool:
    return bool(_params().get("dry_run"))


def apply_permission_sets(validated: dict[str, Any], diff: dict[str, Any]) -> dict[str, Any]:
    """Applies against the observed state the plan was computed from (``diff["observed"]``: principals
    resolved, adopted sets already marked managed)."""
    from idc_sync.apply import apply_permission_sets as apply_sets
    from idc_sync.apply import permission_set_arns

    plan = Plan.model_validate(validated["plan"])
    ops = plan.of_kind(
        OpKind.CREATE_PERMISSION_SET, OpKind.UPDATE_PERMISSION_SET, OpKind.PROVISION_PERMISSION_SET
    )
    if _dry_run():
        log.info("dry run: %d permission set operation(s) not applied", len(ops))
        return {"results": [], "ps_arns": {}}
    config = _config()
    observed = ObservedState.model_validate(diff["observed"])
    clients = IdcHook(settings.AWS_CONN_ID).get_clients()
    results = apply_sets(clients, plan, observed, config, log=log)
    ps_arns = permission_set_arns(plan, observed, results)  # observed + creates that fully succeeded
    _log_results("permission set", results)
    return {"results": [r.model_dump(mode="json") for r in results], "ps_arns": ps_arns}


def apply_assignments(
    validated: dict[str, Any], diff: dict[str, Any], applied_sets: dict[str, Any]
) -> dict[str, Any]:
    from idc_sync.apply import apply_assignments as apply_asg

    plan = Plan.model_validate(validated["plan"])
    allowed, reason = deletions_allowed()
    if not allowed:
        plan = guard.withhold_deletions(plan, reason)
        log.warning("%s: deletions skipped this run", reason)
    ops = plan.of_kind(OpKind.CREATE_ASSIGNMENT, OpKind.DELETE_ASSIGNMENT, OpKind.DELETE_PERMISSION_SET)
    if _dry_run():
        log.info("dry run: %d assignment operation(s) not applied", len(ops))
        return {"results": [], "withheld": not allowed, "skipped": []}
    config = _config()
    observed = ObservedState.model_validate(diff["observed"])
    clients = IdcHook(settings.AWS_CONN_ID).get_clients()
    results = apply_asg(clients, plan, observed, config, ps_arns=applied_sets.get("ps_arns", {}), log=log)
    _log_results("assignment", results)
    return {
        "results": [r.model_dump(mode="json") for r in results],
        "withheld": not allowed,
        "skipped": [s.model_dump(mode="json") for s in plan.skipped if s.reason == reason]
        if not allowed
        else [],
    }


def _log_results(what: str, results: list[OpResult]) -> None:
    counts = feedback.summarize_results(results)
    log.info("%s operations: %s", what, counts or "none")
    for r in results:
        if r.status == "failed":
            log.error("FAILED %s: %s", r.key, r.message)


# --------------------------------------------------------------------------- notify
def notify() -> dict[str, Any]:
    ctx = get_current_context()
    ti = ctx["ti"]
    params = ctx["params"]
    dag_run = ctx["dag_run"]
    config = _config()
    dry_run = bool(params.get("dry_run"))

    def pull(task_id: str) -> Any:
        return ti.xcom_pull(task_ids=task_id)

    desired_json, diff, validated = pull("extract_kintone"), pull("compute_diff"), pull("validate_policies")
    sets_out, asg_out, scim = (
        pull("apply_permission_sets") or {},
        pull("apply_assignments") or {},
        pull("scim_health"),
    )
    problems: list[Problem] = []
    upstream_failed: list[str] = []
    desired = DesiredState.model_validate(desired_json) if desired_json else None
    if desired is None:
        upstream_failed.append("extract_kintone")
    else:
        problems += desired.problems
    if diff:
        problems += [Problem.model_validate(p) for p in diff["problems"]]
    if validated:
        problems += ValidationReport.model_validate(validated["report"]).problems
    plan = Plan.model_validate(validated["plan"]) if validated else Plan()
    results = [
        OpResult.model_validate(r) for r in [*sets_out.get("results", []), *asg_out.get("results", [])]
    ]
    for task_id in (
        "snapshot_idc",
        "compute_diff",
        "validate_policies",
        "apply_permission_sets",
        "apply_assignments",
    ):
        if not pull(task_id) and desired is not None:
            upstream_failed.append(task_id)
    if asg_out.get("withheld"):
        problems.append(
            Problem(
                code="deletions_withheld",
                severity="warning",
                message="Deletions were withheld by the deletion guard (not approved); approve them by triggering with allow_mass_delete.",
            )
        )
    problems += _failure_problems(plan, results)
    # SCIM health reaches admins through _scim_alert (once per change), not as a problem every run.
    for task_id in upstream_failed:
        problems.append(
            Problem(
                code="task_failed",
                message=f"task {task_id} failed or produced nothing: see its log",
                params={"task_id": task_id},
            )
        )

    store = AuditStore(config.audit_path)
    if not dry_run and results:
        _remember_applied(store, plan, results)
    summary = feedback.run_summary_text(
        dag_run_id=dag_run.run_id, plan=plan, results=results, problems=problems, dry_run=dry_run, scim=scim
    )
    comments_sent = 0
    # Record comments only from runs that saw every record's whole problem set: a failed step or a scoped
    # run (plan problems only inside the scope) would otherwise read as "resolved" (DESIGN rule 5).
    if not dry_run and desired is not None and diff and validated and _scope(dict(params)).is_full:
        comments_sent = _send_comments(store, config, problems, desired)
    elif not dry_run:
        log.info("record comments skipped (a step failed or the run is scoped): the next full run says it")
    scim_alert = None if dry_run else _scim_alert(store, scim)
    slack_sent = False
    failed = [r for r in results if r.status == "failed"]
    changed = [r for r in results if r.status == "succeeded"]
    admin = [p for p in problems if p.record is None]
    drift = [op for op in plan.operations if op.reason.startswith("drift")] + [
        s for s in plan.skipped if s.reason.startswith("drift")
    ]
    if not dry_run and (changed or failed or admin or drift):
        slack_sent = _send_slack(summary, results, problems, plan)
    artifact = {
        "run_id": dag_run.run_id,
        "params": dict(params),
        "summary": summary,
        "scim": scim,
        "desired": {
            "records_read": desired.records_read if desired else {},
            "permission_sets": len(desired.permission_sets) if desired else 0,
            "assignments": len(desired.assignments) if desired else 0,
        },
        "plan": plan.model_dump(mode="json"),
        "results": [r.model_dump(mode="json") for r in results],
        "problems": [p.model_dump(mode="json") for p in problems],
        "comments_sent": comments_sent,
        "slack_sent": slack_sent,
        "scim_alert": scim_alert,
        "adopted": (diff or {}).get("adopted", []),
        "deletions_withheld": asg_out.get("skipped", []),
    }
    location = store.write_run(dag_run.run_id, artifact)
    log.info("%s", summary)
    log.info("audit artifact: %s", location)
    _set_note(dag_run.dag_id, dag_run.run_id, summary)
    if failed or upstream_failed:
        raise RuntimeError(
            f"{len(failed)} operation(s) failed"
            + (f" and task(s) {', '.join(upstream_failed)} failed" if upstream_failed else "")
            + "; the next run retries what is still needed. Failures: "
            + "; ".join(f"{r.key}: {r.message}" for r in failed[:20])
        )
    return {"summary": summary, "audit": location, "comments": comments_sent, "slack": slack_sent}


def _failure_problems(plan: Plan, results: list[OpResult]) -> list[Problem]:
    ops = {op.key: op for op in plan.operations}
    out = []
    for r in results:
        if r.status != "failed":
            continue
        op = ops.get(r.key)
        for ref in (op.records if op else [])[:1]:
            out.append(
                Problem(
                    code="apply_failed",
                    message=f"{r.kind.value.replace('_', ' ')} failed: {r.message}",
                    record=ref,
                    params={"operation": r.kind.value, "key": r.key, "error": r.message[:500]},
                )
            )
    return out


def _send_comments(
    store: AuditStore, config: SyncConfig, problems: list[Problem], desired: DesiredState
) -> int:
    previous = store.read_state(FEEDBACK_STATE)
    refs = {ref.key: ref for ref in _live_records(desired)}
    app_ids = {"permission_sets": config.permission_sets_app_id, "assignments": config.assignments_app_id}
    # A check that could not run (Access Analyzer / IAM down) must not read as "resolved".
    unchecked = {"access_analyzer_unavailable", "managed_policy_check_unavailable"}
    fb = feedback.plan_feedback(
        problems,
        previous,
        language=config.language,
        live_records=set(refs),
        app_ids=app_ids,
        refs=refs,
        complete=not any(p.code in unchecked for p in problems),
    )
    sent = 0
    state = dict(previous)
    with KintoneHook(settings.KINTONE_CONN_ID, language=config.language).get_client() as client:
        for comment in fb.comments:
            try:
                _post_comment(client, comment)
            except Exception as exc:  # one unreachable record never stops the others
                log.error("could not comment on %s: %s", comment.record_key, exc)
                continue
            state[comment.record_key] = comment.fingerprint
            sent += 1
    # forget records that no longer have problems nor a pending "resolved" message
    state = {k: v for k, v in state.items() if k in fb.state}
    store.write_state(FEEDBACK_STATE, state)
    log.info("posted %d kintone comment(s)", sent)
    return sent


def _post_comment(client: Any, comment: feedback.Comment) -> None:
    """Posts one comment; a mentioned user that kintone no longer knows (GAIA_IL26: left the company,
    renamed) is dropped and the comment posted anyway, so the rest of the people still hear about it."""
    mentions = list(comment.mentions)
    while True:
        try:
            client.add_comment(comment.app_id, comment.record_id, comment.text, mentions)
            return
        except Exception as exc:
            if getattr(exc, "code", None) != "GAIA_IL26" or not mentions:
                raise
            text = str(exc)
            unknown = [m for m in mentions if m["code"] in text] or mentions
            log.warning(
                "record %s: kintone does not know %s; commenting without that mention",
                comment.record_key,
                ", ".join(m["code"] for m in unknown),
            )
            mentions = [m for m in mentions if m not in unknown]


def _live_records(desired: DesiredState) -> list[Any]:
    refs = [ps.record for ps in desired.permission_sets.values() if ps.record]
    refs += [a.record for a in desired.assignments]
    refs += [p.record for p in desired.problems if p.record]
    return refs


def _send_slack(summary: str, results: list[OpResult], problems: list[Problem], plan: Plan) -> bool:
    from airflow.providers.slack.hooks.slack_webhook import SlackWebhookHook

    payload = feedback.slack_message(summary, results=results, problems=problems, plan=plan)
    try:
        SlackWebhookHook(slack_webhook_conn_id=settings.SLACK_CONN_ID).send(
            text=payload["text"], blocks=payload["blocks"]
        )
    except Exception as exc:  # Slack down must not hide the run's real outcome
        log.error("could not post to Slack (%s): %s", settings.SLACK_CONN_ID, exc)
        return False
    return True


def _scim_alert(store: AuditStore, scim: dict[str, Any] | None) -> str | None:
    """One Slack message when SCIM turns unhealthy and one when it recovers, not one every run.

    The last known status lives in the audit store (``SCIM_STATE``), so it survives runs and workers. If
    the message cannot be posted, the new status is not remembered: the next run tries again.
    """
    from airflow.providers.slack.hooks.slack_webhook import SlackWebhookHook

    from idc_sync.scim import scim_alert_text, scim_state_after, scim_transition

    previous = store.read_state(SCIM_STATE)
    transition = scim_transition(previous.get("status"), scim)
    if transition is not None:
        text = scim_alert_text(transition, scim, previous)
        log.log(logging.WARNING if transition == "turned_unhealthy" else logging.INFO, "%s", text)
        try:
            SlackWebhookHook(slack_webhook_conn_id=settings.SLACK_CONN_ID).send(
                text=text, blocks=[{"type": "section", "text": {"type": "mrkdwn", "text": text[:2900]}}]
            )
        except Exception as exc:
            log.error("could not post the SCIM alert to Slack (%s): %s", settings.SLACK_CONN_ID, exc)
            return None
    store.write_state(SCIM_STATE, scim_state_after(previous, scim, dt.datetime.now(dt.UTC)))
    return transition


def _set_note(dag_id: str, run_id: str, note: str) -> None:
    """Write the run summary as the DagRun note through the stable REST API (no other way from a task)."""
    from idc_sync_airflow.airflow_api import set_dag_run_note

    try:
        set_dag_run_note(settings.AIRFLOW_API_CONN_ID, dag_id, run_id, note)
    except Exception as exc:
        log.warning("could not set the DagRun note (%s): %s", settings.AIRFLOW_API_CONN_ID, exc)
