"""The bodies of the DAG's tasks: connections and context in, domain calls, JSON out.

Each function is what one task does; the DAG file only wires them. Everything that decides anything
lives in the domain package ``idc_sync`` (no Airflow there); this module only fetches clients from
connections, reads trigger params and run context, and moves models through XComs as JSON.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from typing import Any
from zoneinfo import ZoneInfo

from airflow.sdk import get_current_context

from idc_sync import access_news, feedback, guard, sanitize
from idc_sync.audit import FEEDBACK_STATE, SCIM_STATE, AuditStore
from idc_sync.config import SyncConfig
from idc_sync.model import (
    AssignmentOp,
    DesiredState,
    ObservedState,
    OpKind,
    OpResult,
    OpResults,
    Plan,
    Problem,
    Scope,
    ValidationReport,
    pair_key,
)
from idc_sync_airflow import settings
from idc_sync_airflow.hooks import IdcHook, KintoneHook
from idc_sync_airflow.slack_outbox import deliver_slack

log = logging.getLogger(__name__)
sanitize.install_log_filter()  # record text with ESC/BEL never reaches a task log raw (issue 9, defect 12)


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


def _clients(config: SyncConfig) -> Any:
    """The AWS clients of the delegated administrator's connection, paced as configured."""
    return IdcHook(settings.AWS_CONN_ID).get_clients(max_rps=config.client_max_rps)


def _load_state(store: AuditStore, name: str, model: Any, lost: str) -> Any:
    """A state file of the store as ``model``; missing: None; unreadable: None and a warning that says
    what losing it costs (``lost``): state only ever saves work, a run never depends on it."""
    try:
        raw = store.read_state_bytes(name)
        return model.model_validate_json(raw) if raw and raw.strip() not in (b"", b"{}") else None
    except Exception as exc:
        log.warning("%s unreadable (%s): %s", name, exc, lost)
        return None


def _save_state(store: AuditStore, name: str, value: Any) -> None:
    try:
        store.write_state_bytes(name, value.model_dump_json().encode())
    except Exception as exc:
        log.warning("could not save %s: %s", name, exc)


def _put(config: SyncConfig, model: Any, name: str) -> dict[str, Any]:
    """``model`` written once to the state store; the small reference is what goes to XCom
    (``state_refs``)."""
    from idc_sync_airflow import state_refs

    ti = get_current_context()["ti"]
    return state_refs.put(
        settings.state_store(config),
        model,
        run_id=str(ti.run_id),
        name=f"{ti.task_id}.{name}",
        try_number=int(ti.try_number or 1),
    )


def _get(config: SyncConfig, value: Any, model: Any) -> Any:
    """The model behind an XCom value written by :func:`_put` (or inline JSON)."""
    from idc_sync_airflow import state_refs

    return state_refs.get(settings.state_store(config), value, model)


def plan_of(output: dict[str, Any]) -> Plan:
    """The plan in compute_diff's output (the plan as computed, before the verdicts)."""
    plan: Plan = _get(_config(), output["plan"], Plan)
    return plan


def _today(config: SyncConfig) -> dt.date:
    return dt.datetime.now(ZoneInfo(config.timezone)).date()


# --------------------------------------------------------------------------- tasks
KINTONE_CACHE_STATE = "state/kintone_records.json"


def _read_kintone(config: SyncConfig, *, full: bool) -> tuple[list[Any], list[Any], Any]:
    """Both apps' records, incrementally from the saved copy (``idc_sync.kintone_incremental``: about two
    requests per app when nothing changed), and the copy to save once the records were parsed."""
    from idc_sync.kintone_incremental import RecordCache, read_records

    store = settings.state_store(config)
    cache = _load_state(store, KINTONE_CACHE_STATE, RecordCache, "reading both apps in full")
    now = dt.datetime.now(dt.UTC)
    options: dict[str, Any] = {
        "id_pass_every": dt.timedelta(minutes=config.kintone_id_pass_minutes),
        "overlap": dt.timedelta(minutes=config.kintone_overlap_minutes),
        "full": full,
    }
    with KintoneHook(settings.KINTONE_CONN_ID, language=config.api_language).get_client() as client:
        ps_records, cache, ps_stats = read_records(
            client, config.permission_sets_app_id, cache, now=now, **options
        )
        asg_records, cache, asg_stats = read_records(
            client, config.assignments_app_id, cache, now=now, **options
        )
    for stats in (ps_stats, asg_stats):
        log.info(
            "kintone app %s: %s read, %d request(s), %d record(s) (%d changed, %d deleted)%s",
            stats.app_id,
            stats.mode,
            stats.requests,
            stats.records,
            stats.changed,
            stats.deleted,
            f": {stats.reason}" if stats.reason else "",
        )
    return ps_records, asg_records, cache


def extract_kintone() -> dict[str, Any]:
    from idc_sync.records import parse_desired_state

    config = _config()
    read_at = dt.datetime.now(dt.UTC)  # the plan's age counts from the start of the reads
    full = bool(_params().get("full_resync"))
    ps_records, asg_records, cache = _read_kintone(config, full=full)
    desired = parse_desired_state(ps_records, asg_records, config)
    desired.read_at = read_at
    _save_state(settings.state_store(config), KINTONE_CACHE_STATE, cache)
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
    return _put(config, desired, "desired")


OBSERVED_CACHE_STATE = "state/observed_cache.json"
OBSERVE_SUMMARY_XCOM = "observe_summary"


def observe_idc(desired_json: dict[str, Any]) -> dict[str, Any]:
    """Observe IdC for this run's plan (``idc_sync.observe``): from the cache of the last observed state,
    re-reading new items, the sweep's share and every item the plan touches; adopt the sets the trigger
    names; save the cache."""
    from idc_sync.observe import ObserveOptions, observe, plan_touches

    params = _params()
    config = _config()
    desired = _get(config, desired_json, DesiredState)
    clients = _clients(config)
    store = settings.state_store(config)
    memory = _plan_memory(store)
    read_at = dt.datetime.now(dt.UTC)

    def touches(candidate: ObservedState) -> Any:
        plan, _ = _compute_plan(desired, candidate, config, params, memory)
        return plan_touches(plan, candidate)

    cache = _observed_cache(store)
    journal = _reread_interrupted(store, cache)
    observed, cache, stats = observe(
        clients,
        desired,
        config,
        cache,
        scope=_scope(params),
        plan_touches=touches,
        options=ObserveOptions(full=bool(params.get("full_resync"))),
    )
    observed.read_at = read_at
    observed, adopted = _adopt(clients, observed, desired, params, config)
    adopted_arns = {r.permission_set_arn for r in adopted if r.status == "adopted" and r.permission_set_arn}
    if adopted_arns:  # read fresh by adopt; the cache reads them again (now managed) next run
        cache.invalidate(arns=adopted_arns)
        confirmed = {pair_key(a.account_id, a.permission_set_arn) for a in observed.assignments}
        observed = observed.model_copy(
            update={"confirmed_pairs": sorted(set(observed.confirmed_pairs) | confirmed)}
        )
    _save_state(store, OBSERVED_CACHE_STATE, cache)  # lost: one full read, never a run
    log.info(
        "observed %d account(s), %d permission set(s) (%d managed), %d managed assignment(s)",
        len(observed.org.accounts),
        len(observed.permission_sets),
        sum(1 for ps in observed.permission_sets.values() if ps.managed),
        len(observed.assignments),
    )
    # small facts beside the (large, stored by reference) observed state, for notify and the audit
    summary = {
        "stats": stats.as_dict(),
        "adopted": [r.model_dump(mode="json") for r in adopted],
        "owed_news": _owed_news(journal, observed),
    }
    get_current_context()["ti"].xcom_push(key=OBSERVE_SUMMARY_XCOM, value=summary)
    return {"observed": _put(config, observed, "observed"), **summary}


def _owed_news(journal: Any, observed: ObservedState) -> list[dict[str, Any]]:
    """Creations a killed earlier run made that this run finds in place: notify tells their records."""
    from idc_sync.apply_journal import owed_news

    if journal is None:
        return []
    return [
        op.model_dump(mode="json")
        for op in owed_news(journal, get_current_context()["dag_run"].run_id, observed)
    ]


def _reread_interrupted(store: AuditStore, cache: Any) -> Any:
    """Pairs an earlier run sent requests for without its cache learning the outcome (it was killed
    mid-apply, or they failed) are read again before planning (``idc_sync.apply_journal``). Returns the
    journal (None when there is none)."""
    from idc_sync.apply_journal import JOURNAL_STATE, ApplyJournal, forget_rereads

    journal = _load_state(store, JOURNAL_STATE, ApplyJournal, "the sweep finds what it missed")
    run_id = get_current_context()["dag_run"].run_id
    if cache is not None and journal is not None and (n := forget_rereads(cache, journal, run_id)):
        log.warning(
            "run %s ended mid-apply or with operations in an unknown state: re-reading %d pair(s) it changed",
            journal.run_id,
            n,
        )
    return journal


def _journal_writer(config: SyncConfig, plan: Plan) -> Any:
    """Apply's write-ahead journal and cache checkpoints (``idc_sync.apply_journal.JournalWriter``); a
    retry of this run's apply continues the journal its earlier try left."""
    from idc_sync.apply_journal import JOURNAL_STATE, ApplyJournal, JournalWriter

    store = settings.state_store(config)
    return JournalWriter(
        get_current_context()["dag_run"].run_id,
        plan,
        save_journal=lambda journal: _save_state(store, JOURNAL_STATE, journal),
        load_cache=lambda: _observed_cache(store),
        save_cache=lambda cache: _save_state(store, OBSERVED_CACHE_STATE, cache),
        checkpoint_seconds=config.apply_checkpoint_seconds,
        log=log,
        earlier=_load_state(
            store, JOURNAL_STATE, ApplyJournal, "an earlier try's creations are not announced"
        ),
    )


def _observed_cache(store: AuditStore) -> Any:
    """The last observed state (``idc_sync.observed_cache``); missing or unreadable: a full read."""
    from idc_sync.observed_cache import ObservedCache

    return _load_state(store, OBSERVED_CACHE_STATE, ObservedCache, "reading IAM Identity Center in full")


def compute_diff(
    desired_json: dict[str, Any], observed_out: dict[str, Any], scim: dict[str, Any] | None
) -> dict[str, Any]:
    """Pure: desired vs observed into the plan (no AWS call; the plan memory is read and written)."""
    from idc_sync.freshness import oldest
    from idc_sync.plan import render_plan

    params = _params()
    config = _config()
    desired = _get(config, desired_json, DesiredState)
    observed = _get(config, observed_out["observed"], ObservedState)
    store = settings.state_store(config)
    memory = _plan_memory(store)
    plan, problems = _compute_plan(desired, observed, config, params, memory)
    problems = _pending_or_error(problems, scim, config)
    # The plan is as old as its oldest read: apply refuses it once that is too old (a UI clear of
    # compute_diff re-plans on the original reads' XComs).
    plan = plan.model_copy(update={"inputs_read_at": oldest([desired.read_at, observed.read_at])})
    log.info(
        "plan (before validation; validate_policies logs the plan apply is given):\n%s", render_plan(plan)
    )
    if not params.get("dry_run"):
        _save_plan_memory(store, memory, desired, observed, config, params)
    return {"plan": _put(config, plan, "plan"), "problems": [p.model_dump(mode="json") for p in problems]}


def _compute_plan(
    desired: DesiredState, observed: ObservedState, config: SyncConfig, params: dict[str, Any], memory: Any
) -> tuple[Plan, list[Problem]]:
    """``idc_sync.plan.compute_plan`` with this run's params (compute_diff, and the deletion check)."""
    from idc_sync.plan import compute_plan

    return compute_plan(
        desired,
        observed,
        config,
        scope=_scope(params),
        today=_today(config),
        drift_mode=params.get("drift_mode") or "enforce",
        full_resync=bool(params.get("full_resync")),
        memory=memory,
    )


PLAN_MEMORY_STATE = "state/plan_memory.json"


def _plan_memory(store: AuditStore) -> Any:
    """What earlier runs saw (``idc_sync.plan.PlanMemory``): tells hand-made changes (drift) from kintone
    edits. Missing or unreadable: nothing is called drift this run."""
    from idc_sync.plan import PlanMemory

    return _load_state(store, PLAN_MEMORY_STATE, PlanMemory, "drift is not told apart this run")


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
    except Exception as exc:  # losing the memory only weakens drift labels, never a run
        log.warning("could not compute the plan memory: %s", exc)
        return
    _save_state(store, PLAN_MEMORY_STATE, new)


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
    done = {r.key for r in results if r.done}  # an update already in place (earlier try) is in place too
    _save_state(store, PLAN_MEMORY_STATE, remember_applied(memory, plan, done))


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
    """The validation verdict (problems, blocked sets); the plan itself is not changed (``verdicts``)."""
    from idc_sync.validation import validate_permission_sets

    config = _config()
    desired = _get(config, desired_json, DesiredState)
    plan = _get(config, diff["plan"], Plan)
    touched = {op.permission_set_name for op in plan.operations}
    clients = _clients(config)
    # Every set is checked every run (stable problems = no repeated comments); Access Analyzer answers are
    # cached by policy text across runs, so an unchanged inline policy costs no call.
    store = settings.state_store(config)
    cache = _analyzer_cache(store)
    size = len(cache)
    report: ValidationReport = validate_permission_sets(
        desired, clients, config, only=touched | set(desired.permission_sets), analyzer_cache=cache
    )
    _save_analyzer_cache(store, cache, desired, changed=len(cache) != size)
    for name in report.blocked:
        why = [
            p.message
            for p in report.problems
            if p.severity == "error" and p.params.get("permission_set") == name
        ]
        log.warning(
            "permission set %s is blocked by validation (its operations are skipped this run): %s",
            name,
            sanitize.strip_control(
                "; ".join(why[:5]) + (f"; and {len(why) - 5} more" if len(why) > 5 else "")
            ),
        )
    log.info(
        "validated %d permission set(s); %d blocked; %d finding(s)",
        report.checked,
        len(report.blocked),
        len(report.problems),
    )
    from idc_sync.plan import render_plan
    from idc_sync.verdicts import plan_to_apply

    validated_plan = plan_to_apply(plan, report).plan
    log.info(
        "validated plan (what apply is given, before the deletion guard):\n%s", render_plan(validated_plan)
    )
    return {"report": report.model_dump(mode="json")}


def _plan_to_apply(
    config: SyncConfig,
    diff: dict[str, Any],
    validated: dict[str, Any] | None,
    guard_out: dict[str, Any] | None = None,
    *,
    guarded: bool = False,
) -> Any:
    """compute_diff's plan combined with the verdicts (``idc_sync.verdicts.plan_to_apply``): the plan
    itself, or with ``guarded`` a ``PlanToApply`` (plan and withheld deletions)."""
    from idc_sync.verdicts import DeletionVerdict, plan_to_apply

    report = ValidationReport.model_validate(validated["report"]) if validated else None
    combined = plan_to_apply(
        _get(config, diff["plan"], Plan), report, DeletionVerdict.from_guard(guard_out) if guarded else None
    )
    return combined if guarded else combined.plan


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


def scim_verdict() -> dict[str, Any]:
    """``scim_health``'s verdict, or "unknown" when the check failed in any way (its task failed, was lost
    by the executor, produced nothing): the SCIM check is advisory and never stops the run (DESIGN)."""
    from idc_sync.scim import ScimVerdict

    verdict = get_current_context()["ti"].xcom_pull(task_ids="scim_health")
    if isinstance(verdict, dict) and verdict.get("status") in ("healthy", "unhealthy", "unknown"):
        return verdict
    unknown = ScimVerdict.unknown(
        "the SCIM check failed (scim_health produced no verdict: see its log); missing users and groups "
        "stay pending"
    )
    log.warning("%s", unknown.reason)
    return unknown.to_xcom()


def deletion_guard(diff: dict[str, Any], validated: dict[str, Any]) -> dict[str, Any]:
    """Decide which deletions this run applies (``idc_sync.approval.decide_deletions``); never waits.

    Beyond the guard, only deletions covered by a recorded Approve go; the rest is withheld and, unless
    the same set is pending or was rejected, asked about in ``idc_sync_approval`` (``request_approval``
    starts it with the question pushed here as XCom ``approval_request``)."""
    from idc_sync import approval
    from idc_sync.slack_summary import MAX_LINES, withheld_lines
    from idc_sync_airflow.approval import REQUEST_XCOM_KEY

    ctx = get_current_context()
    params, ti, dag_run = ctx["params"], ctx["ti"], ctx["dag_run"]
    config = _config()
    plan = _plan_to_apply(config, diff, validated)
    desired = _get(config, ti.xcom_pull(task_ids="extract_kintone"), DesiredState)
    verdict = guard.evaluate_guard(plan, desired, config)
    dry_run = bool(params.get("dry_run"))
    store = settings.state_store(config)
    now = dt.datetime.now(dt.UTC)
    requests = store.read_state(approval.REQUESTS_STATE) if verdict.tripped else {}
    allowed, decision = approval.deletions_this_run(
        [op.key for op in plan.of_kind(*guard.DELETIONS)],
        tripped=verdict.tripped,
        held=verdict.held,
        allow_mass_delete=bool(params.get("allow_mass_delete")),
        dry_run=dry_run,
        requests=requests,
        decisions=store.read_state(approval.DECISIONS_STATE) if verdict.tripped else {},
        now=now,
        grant_ttl=settings.approval_grant_ttl(),
        pending_ttl=settings.approval_run_bound(),
    )
    reasons = "; ".join(verdict.reasons)
    if not verdict.tripped:
        log.info("deletion guard: %d deletion(s) within limits", verdict.deletions)
    elif decision.status == "not_needed":
        why = "dry run, nothing will be deleted" if dry_run else "allow_mass_delete=true"
        log.warning("deletion guard tripped (%s): %s", why, reasons)
    else:
        log.warning("deletion guard tripped: %s. %s", reasons, decision.message)
    out = {
        "verdict": verdict.model_dump(mode="json"),
        "status": decision.status,
        "allowed": allowed,
        "withheld": decision.withheld,
        "fingerprint": decision.fingerprint,
        "message": decision.message,
        "grants": decision.grants,
    }
    if decision.ask and decision.fingerprint:
        withheld = set(decision.withheld)
        table = guard.deletions_table(
            plan.model_copy(update={"operations": [op for op in plan.operations if op.key in withheld]})
        )
        run_id = f"deletions_{decision.fingerprint[:12]}_{now:%Y%m%dT%H%M%S}"
        request = {
            "approval_run_id": run_id,
            "fingerprint": decision.fingerprint,
            "keys": decision.withheld,
            "deletions": len(decision.withheld),
            "reasons": verdict.reasons,
            "requested_by": dag_run.run_id,
            "body": "\n".join(["Guard tripped:", *[f"- {r}" for r in verdict.reasons], "", table]),
            "lines": withheld_lines(plan, decision.withheld)[:MAX_LINES],  # Slack's list (the notifier's)
        }
        # Recorded before request_approval starts the run, so the next run (10 min later) never asks twice.
        store.write_state(
            approval.REQUESTS_STATE,
            approval.record_request(
                requests,
                decision.fingerprint,
                decision.withheld,
                now=now,
                run_id=dag_run.run_id,
                reasons=verdict.reasons,
            ),
        )
        ti.xcom_push(key=REQUEST_XCOM_KEY, value=request)
        out["approval_run_id"] = run_id
    return out


def approval_link(dag_id: str, run_id: str, base_url: str | None = None) -> str:
    """The "required actions" page of an approval run (same URL as HITLOperator.generate_link_to_ui)."""
    from urllib.parse import quote

    from idc_sync.approval import APPROVAL_TASK_ID

    if base_url is None:
        from airflow.sdk.configuration import conf

        base_url = conf.get("api", "base_url", fallback=None) or "http://localhost:8080"
    return (
        f"{base_url.rstrip('/')}/dags/{quote(dag_id)}/runs/{quote(run_id, safe=':+')}/tasks/{APPROVAL_TASK_ID}"
        "/required_actions?map_index=-1"
    )


def _confirm_deletions(
    clients: Any, plan: Plan, observed: ObservedState, config: SyncConfig
) -> tuple[Plan, list[str]]:
    """A deletion is confirmed against the current kintone records just before it is made: both apps are
    read again and planned against the same observed state; a deletion that plan no longer has (a
    record added or edited since the reads) is skipped (``guard.confirm_deletions``), the next run sees
    it properly."""
    from idc_sync.records import parse_desired_state
    from idc_sync.snapshot import resolve_principals

    deletions = plan.of_kind(*guard.DELETIONS)
    if not deletions:
        return plan, []
    params = _params()
    ps_records, asg_records, cache = _read_kintone(config, full=False)  # changes since extract_kintone
    desired = parse_desired_state(ps_records, asg_records, config)
    _save_state(settings.state_store(config), KINTONE_CACHE_STATE, cache)
    observed = resolve_principals(clients, observed, desired)
    fresh, _ = _compute_plan(desired, observed, config, params, _plan_memory(settings.state_store(config)))
    confirmed, gone = guard.confirm_deletions(plan, fresh)
    for key in gone:
        log.warning("%s: %s", key, guard.NOT_CONFIRMED)
    return confirmed, gone


def _dry_run() -> bool:
    return bool(_params().get("dry_run"))


def _refuse_stale(plan: Plan, config: SyncConfig) -> None:
    """Apply never acts on a stale view (``idc_sync.freshness``): a plan from old reads is refused."""
    from idc_sync.freshness import stale_plan_refusal

    refusal = stale_plan_refusal(
        plan.inputs_read_at, dt.datetime.now(dt.UTC), dt.timedelta(minutes=config.max_plan_age_minutes)
    )
    if refusal:
        raise RuntimeError(refusal)


def apply_permission_sets(
    diff: dict[str, Any], validated: dict[str, Any], observed_out: dict[str, Any]
) -> dict[str, Any]:
    """Applies against the observed state the plan was computed from (principals resolved, adopted sets
    already marked managed)."""
    from idc_sync.apply import apply_permission_sets as apply_sets
    from idc_sync.apply import permission_set_arns

    config = _config()
    plan = _plan_to_apply(config, diff, validated)
    ops = plan.of_kind(
        OpKind.CREATE_PERMISSION_SET, OpKind.UPDATE_PERMISSION_SET, OpKind.PROVISION_PERMISSION_SET
    )
    if _dry_run():
        log.info("dry run: %d permission set operation(s) not applied", len(ops))
        return {"results": [], "ps_arns": {}}
    _refuse_stale(plan, config)
    observed = _get(config, observed_out["observed"], ObservedState)
    clients = _clients(config)
    results = apply_sets(clients, plan, observed, config, log=log)
    ps_arns = permission_set_arns(plan, observed, results)  # observed + creates that fully succeeded
    _log_results("permission set", results)
    _record_applied(config, plan, results)
    return {"results": [r.model_dump(mode="json") for r in results], "ps_arns": ps_arns}


def apply_assignments(
    diff: dict[str, Any],
    validated: dict[str, Any],
    observed_out: dict[str, Any],
    applied_sets: dict[str, Any],
    guard_out: dict[str, Any] | None = None,
) -> dict[str, Any]:
    from idc_sync.apply import apply_assignments as apply_asg

    config = _config()
    combined = _plan_to_apply(config, diff, validated, guard_out, guarded=True)
    plan, withheld = combined.plan, combined.withheld
    if withheld:
        log.warning("%s", withheld[0].reason)
    ops = plan.of_kind(OpKind.CREATE_ASSIGNMENT, OpKind.DELETE_ASSIGNMENT, OpKind.DELETE_PERMISSION_SET)
    if _dry_run():
        log.info("dry run: %d assignment operation(s) not applied", len(ops))
        return {"results": [], "withheld": bool(withheld), "skipped": []}
    _refuse_stale(plan, config)
    observed = _get(config, observed_out["observed"], ObservedState)
    plan, unread = guard.withhold_unread_deletions(plan, observed)
    for skipped in unread:
        log.error("%s: %s", skipped.key, skipped.reason)
    clients = _clients(config)
    plan, unconfirmed = _confirm_deletions(clients, plan, observed, config)
    from idc_sync.apply import ApplyOptions

    # A retry (or a UI clear) may find its creates done by the earlier try: read them live first so
    # they are reported "already in place", not as changes (issue 9, defect 10).
    retry = int(get_current_context()["ti"].try_number or 1) > 1
    journal = _journal_writer(config, plan)
    results = apply_asg(
        clients,
        plan,
        observed,
        config,
        ps_arns=applied_sets.get("ps_arns", {}),
        log=log,
        options=ApplyOptions(confirm_creates=retry, on_start=journal.on_start, on_result=journal.on_result),
    )
    _log_results("assignment", results)
    owed = journal.close(results)  # the observed-state cache learns what was applied
    if owed:
        log.info("%d assignment(s) made by an earlier try of this run: their records are told", len(owed))
    return {
        "owed_news": [op.model_dump(mode="json") for op in owed],
        "results": _put(config, OpResults(results), "results"),  # 50,000 in a cold sync: by reference
        "withheld": bool(withheld),
        "skipped": [s.model_dump(mode="json") for s in withheld],
        "unconfirmed_deletions": unconfirmed,
        "unread_deletions": [s.key for s in unread],
        "approval": {
            k: (guard_out or {}).get(k) for k in ("status", "message", "fingerprint", "approval_run_id")
        },
    }


def _prune_refs(store: AuditStore) -> None:
    """Old runs' states by reference (``state_refs``) are removed after two days; the audit keeps what
    each run decided."""
    from idc_sync_airflow import state_refs

    try:
        removed = state_refs.prune(store)
        if removed:
            log.info("removed the by-reference states of %d old run(s)", removed)
    except Exception as exc:
        log.warning("could not prune old by-reference states: %s", exc)


def _record_applied(config: SyncConfig, plan: Plan, results: list[OpResult]) -> None:
    """Fold what was applied into the observed-state cache (``observed_cache.record_applied``), so the
    next run plans on it without reading it again. Losing this costs calls, never access."""
    from idc_sync.observed_cache import ObservedCache, record_applied

    if not any(r.done for r in results):
        return
    store = settings.state_store(config)
    cache = _load_state(store, OBSERVED_CACHE_STATE, ObservedCache, "the next run plans those changes again")
    if cache is not None and record_applied(cache, plan, results, now=time.time()):
        _save_state(store, OBSERVED_CACHE_STATE, cache)


def _log_results(what: str, results: list[OpResult]) -> None:
    counts = feedback.summarize_results(results)
    log.info("%s operations: %s", what, counts or "none")
    for r in results:
        if r.status == "failed":
            log.error("FAILED %s: %s", r.key, r.message)


# --------------------------------------------------------------------------- notify
# Tasks in the order a failure is looked for when none left a record (the DAG's order).
TASK_ORDER = (
    "scim_health",
    "scim_verdict",
    "extract_kintone",
    "observe_idc",
    "compute_diff",
    "validate_policies",
    "deletion_guard",
    "request_approval",
    "apply_permission_sets",
    "apply_assignments",
)


def _task_states(ti: Any, dag_run: Any) -> dict[str, str] | None:
    """State of every task instance of this run (Task SDK ``get_task_states``); None if unavailable."""
    try:
        raw = ti.get_task_states(dag_id=dag_run.dag_id, run_ids=[dag_run.run_id])
    except Exception as exc:
        log.warning("could not read the run's task states (%s): judging by XComs", type(exc).__name__)
        return None
    states = raw.get(dag_run.run_id, raw) if isinstance(raw, dict) else {}
    return {str(k): str(v).split(".")[-1].lower() for k, v in states.items() if not isinstance(v, dict)}


def _run_failures(ti: Any, dag_run: Any, task_ids: list[str]) -> tuple[list[str], Any]:
    """(failed task ids, first failure as (task_id, TaskFailure | None) or None)."""
    from idc_sync.failures import FAILED_STATES, TaskFailure, first_failure
    from idc_sync_airflow.failures import FAILURE_XCOM_KEY

    states = _task_states(ti, dag_run)
    records: dict[str, TaskFailure] = {}
    for task_id in task_ids:
        try:
            raw = ti.xcom_pull(task_ids=task_id, key=FAILURE_XCOM_KEY)
        except Exception:
            raw = None
        if isinstance(raw, dict):
            records[task_id] = TaskFailure.model_validate(raw)
    if states is None:  # no states: a task with a failure record and no output failed
        states = {t: "failed" for t in records if ti.xcom_pull(task_ids=t) is None}
    order = [t for t in TASK_ORDER if t in task_ids] + [t for t in task_ids if t not in TASK_ORDER]
    failed = [t for t in order if states.get(t) in FAILED_STATES and t != "notify"]
    return failed, first_failure(states, records, order=order)


def notify() -> dict[str, Any]:
    """Collects the run's facts, lets ``idc_sync.outcome.decide_outcome`` decide, delivers what it says."""
    from idc_sync.outcome import decide_outcome

    ctx = get_current_context()
    ti, dag_run = ctx["ti"], ctx["dag_run"]
    config = _config()
    store = settings.state_store(config)
    facts = _run_facts(ctx, config, store)
    outcome = decide_outcome(facts)
    if not facts.dry_run and facts.results:
        _remember_applied(store, facts.plan, facts.results)
    comments_sent = _deliver_comments(store, config, facts, outcome)
    if not facts.dry_run:
        _journal_news_told(store, dag_run.run_id)
    if not facts.dry_run:
        _answer_sync_requests(store, config, facts, outcome, started=dag_run.start_date)
    scim_alert = None if facts.dry_run else _scim_alert(store, facts.scim, dag_run.run_id)
    slack_sent = _deliver_slack(store, facts, outcome)
    artifact = _audit_artifact(ctx, facts, outcome, comments_sent=comments_sent, slack_sent=slack_sent)
    artifact["scim_alert"] = scim_alert
    location = store.write_run(dag_run.run_id, artifact, try_number=ti.try_number)
    log.info("%s", outcome.summary)
    log.info("audit artifact: %s", location)
    _prune_refs(store)
    _set_note(dag_run.dag_id, dag_run.run_id, outcome.summary)
    if outcome.error:
        raise RuntimeError(outcome.error)
    return {"summary": outcome.summary, "audit": location, "comments": comments_sent, "slack": slack_sent}


def _run_facts(ctx: Any, config: SyncConfig, store: AuditStore) -> Any:
    """Everything notify needs to decide, read from the run's XComs and task states and the store."""
    from idc_sync.model import Skipped
    from idc_sync.outcome import RunFacts

    ti, params, dag_run = ctx["ti"], ctx["params"], ctx["dag_run"]
    pull = ti.xcom_pull
    desired_json, diff = pull(task_ids="extract_kintone"), pull(task_ids="compute_diff")
    validated = pull(task_ids="validate_policies")
    sets_out, asg_out = pull(task_ids="apply_permission_sets") or {}, pull(task_ids="apply_assignments") or {}
    task_ids = [t.task_id for t in ctx["dag"].tasks] if ctx.get("dag") is not None else list(TASK_ORDER)
    failed_tasks, first = _run_failures(ti, dag_run, task_ids)
    report = ValidationReport.model_validate(validated["report"]) if validated else None
    plan = _plan_to_apply(config, diff, validated) if diff else Plan()  # what apply was given
    results = [OpResult.model_validate(r) for r in sets_out.get("results", [])]
    results += _get(config, asg_out.get("results") or [], OpResults).root
    dry_run = bool(params.get("dry_run"))
    return RunFacts(
        run_id=dag_run.run_id,
        dry_run=dry_run,
        full_scope=_scope(dict(params)).is_full,
        desired=_get(config, desired_json, DesiredState) if desired_json else None,
        diff_problems=[Problem.model_validate(p) for p in diff["problems"]] if diff else None,
        validation_problems=report.problems if report is not None else None,
        plan=plan,
        results=results,
        withheld=[Skipped.model_validate(s) for s in asg_out.get("skipped", [])]
        if asg_out.get("withheld")
        else [],
        failed_tasks=failed_tasks,
        first_failure=first[0] if first else None,
        first_error=first[1] if first else None,
        scim=pull(task_ids="scim_verdict") or pull(task_ids="scim_health"),
        previous_feedback={} if dry_run else store.read_state(FEEDBACK_STATE),
        last_attention=str(store.read_state(feedback.ATTENTION_STATE).get("fingerprint") or ""),
        language=config.language,
        app_ids={"permission_sets": config.permission_sets_app_id, "assignments": config.assignments_app_id},
        run_url=_run_url(dag_run.dag_id, dag_run.run_id),
        approval_url=_approval_url(pull(task_ids="deletion_guard")),
        portal_url=config.portal_url,
        access_told=access_news.already_told(store.read_state(access_news.STATE), dag_run.run_id),
        owed_news=[
            AssignmentOp.model_validate(op)
            for op in [
                *(pull(task_ids="observe_idc", key=OBSERVE_SUMMARY_XCOM) or {}).get("owed_news", []),
                *asg_out.get("owed_news", []),
            ]
        ],
    )


def _journal_news_told(store: AuditStore, run_id: str) -> None:
    """This run's access news is told: the apply journal stops owing it (``apply_journal.news_told``)."""
    from idc_sync.apply_journal import JOURNAL_STATE, ApplyJournal, news_told

    journal = _load_state(store, JOURNAL_STATE, ApplyJournal, "the next run may tell this run's news again")
    if (settled := news_told(journal, run_id)) is not None:
        _save_state(store, JOURNAL_STATE, settled)


def _deliver_comments(store: AuditStore, config: SyncConfig, facts: Any, outcome: Any) -> int:
    """Posts the outcome's record comments (problems, then "access is live"); the memory keeps what was
    said, so a failed post is retried and nothing is said twice."""
    from idc_sync.outcome import feedback_state_after

    if facts.dry_run:
        return 0
    problem_comments = outcome.comments if outcome.feedback_state is not None else []
    if outcome.feedback_state is None:
        log.info("problem comments skipped (%s)", outcome.comments_withheld_because)
    posted: set[str] = set()
    told: set[str] = set()
    if problem_comments or outcome.access_comments:
        with KintoneHook(settings.KINTONE_CONN_ID, language=config.api_language).get_client() as client:
            posted = _post_comments(client, problem_comments)
            told = _post_comments(client, outcome.access_comments)
    alone = len(told)
    told |= posted & set(outcome.access_in_comments)  # the news rode in the record's problem comment
    if outcome.feedback_state is not None:
        store.write_state(FEEDBACK_STATE, feedback_state_after(facts.previous_feedback, outcome, posted))
    if told:
        previous = store.read_state(access_news.STATE)
        store.write_state(access_news.STATE, access_news.told_after(previous, facts.run_id, told))
    log.info("posted %d problem comment(s) and %d access comment(s)", len(posted), alone)
    return len(posted) + alone


def _answer_sync_requests(
    store: AuditStore, config: SyncConfig, facts: Any, outcome: Any, *, started: dt.datetime | None
) -> None:
    """Answer each ``/sync`` received before this run started, on its record (``idc_sync.kintone_webhook``):
    applied, nothing to change, something to fix, or failed. An answer that cannot be posted is kept for
    the next run."""
    from idc_sync import kintone_webhook

    names = store.list_states(kintone_webhook.REQUESTS_FOLDER)
    if not names:
        return
    apps = {config.permission_sets_app_id: "permission_sets", config.assignments_app_id: "assignments"}
    changed = set(access_news.record_news(facts.plan, facts.results))
    with_problems = {p.record.key for p in outcome.problems if p.record is not None and p.severity == "error"}
    answered = 0
    with KintoneHook(settings.KINTONE_CONN_ID, language=config.api_language).get_client() as client:
        for name in names:
            try:
                request = kintone_webhook.SyncRequest.model_validate(store.read_state(name))
            except Exception as exc:
                log.error("unreadable /sync request %s dropped: %s", name, exc)
                store.delete_state(name)
                continue
            if started is not None and request.at > started:
                continue  # arrived during this run: the next run answers it
            verdict = kintone_webhook.verdict_for(
                f"{apps.get(request.app_id, request.app_id)}:{request.record_id}",
                changed=changed,
                with_problems=with_problems,
                run_failed=outcome.error is not None,
            )
            text = kintone_webhook.answer_text(verdict, config.language, facts.run_url)
            mentions = [{"code": request.requested_by, "type": "USER"}] if request.requested_by else []
            try:
                client.add_comment(request.app_id, request.record_id, text, mentions)
            except Exception as exc:
                log.error(
                    "could not answer /sync on record %s: %s (tried again next run)", request.record_id, exc
                )
                continue
            store.delete_state(name)
            answered += 1
    log.info("answered %d /sync request(s)", answered)


def _post_comments(client: Any, comments: list[feedback.Comment]) -> set[str]:
    """Posts each comment; returns the record keys posted (one unreachable record never stops the others)."""
    posted: set[str] = set()
    for comment in comments:
        try:
            _post_comment(client, comment)
        except Exception as exc:
            log.error("could not comment on %s: %s", comment.record_key, exc)
            continue
        posted.add(comment.record_key)
    return posted


def _deliver_slack(store: AuditStore, facts: Any, outcome: Any) -> bool:
    """The run's Slack message through the outbox (kept and sent late by a later run if Slack fails)."""
    admin = [p for p in outcome.problems if p.record is None]
    log.info(
        "Slack: %s (attention %s, needs an admin: %s)",
        "posting the summary" if outcome.post_slack else "nothing new to say",
        outcome.attention or "none",
        "; ".join(sorted({f"{p.code}: {p.message}" for p in admin})) or "nothing",
    )
    if facts.dry_run:
        return False
    if outcome.attention != facts.last_attention:
        store.write_state(feedback.ATTENTION_STATE, {"fingerprint": outcome.attention})
    if outcome.slack is None:
        deliver_slack(None, kind="summary", run_id=facts.run_id, store=store)  # late ones still go out
        return False
    return bool(deliver_slack(outcome.slack, kind="summary", run_id=facts.run_id))


def _audit_artifact(
    ctx: Any, facts: Any, outcome: Any, *, comments_sent: int, slack_sent: bool
) -> dict[str, Any]:
    desired = facts.desired
    return {
        "run_id": facts.run_id,
        "try_number": ctx["ti"].try_number,
        "params": dict(ctx["params"]),
        "summary": outcome.summary,
        "outcome": outcome.counts,
        "failure": (
            {
                "task_id": facts.first_failure,
                "error": facts.first_error.model_dump(mode="json") if facts.first_error else None,
                "text": outcome.cause,
            }
            if facts.first_failure
            else None
        ),
        "failed_tasks": outcome.failed_tasks,
        "scim": facts.scim,
        "desired": {
            "records_read": desired.records_read if desired else {},
            "permission_sets": len(desired.permission_sets) if desired else 0,
            "assignments": len(desired.assignments) if desired else 0,
        },
        "plan": facts.plan.model_dump(mode="json"),
        "results": [r.model_dump(mode="json") for r in facts.results],
        "problems": [p.model_dump(mode="json") for p in outcome.problems],
        "comments_sent": comments_sent,
        "slack_sent": slack_sent,
        "adopted": (ctx["ti"].xcom_pull(task_ids="observe_idc", key=OBSERVE_SUMMARY_XCOM) or {}).get(
            "adopted", []
        ),
        "deletions_withheld": [s.model_dump(mode="json") for s in facts.withheld],
    }


def _approval_url(guard_out: dict[str, Any] | None) -> str | None:
    """The approval page of the deletions this run withheld (None: it asked for no approval)."""
    from idc_sync.approval import APPROVAL_DAG_ID

    run_id = (guard_out or {}).get("approval_run_id")
    return approval_link(APPROVAL_DAG_ID, str(run_id)) if run_id else None


def _run_url(dag_id: str, run_id: str) -> str:
    """This run's page in the Airflow UI (``[api] base_url``), for pointers in comments."""
    from urllib.parse import quote

    from airflow.sdk.configuration import conf

    base_url = conf.get("api", "base_url", fallback=None) or "http://localhost:8080"
    return f"{base_url.rstrip('/')}/dags/{quote(dag_id)}/runs/{quote(run_id, safe=':+')}"


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


def _scim_alert(store: AuditStore, scim: dict[str, Any] | None, run_id: str) -> str | None:
    """One Slack message when SCIM turns unhealthy and one when it recovers, not one every run.

    The last known status lives in the audit store (``SCIM_STATE``), so it survives runs and workers.
    The message goes through the Slack outbox: if Slack refuses it, a later run delivers it (late), so
    the new status is remembered either way and the alert is neither lost nor repeated.
    """
    from idc_sync.sanitize import slack_escape
    from idc_sync.scim import scim_alert_text, scim_state_after, scim_transition

    previous = store.read_state(SCIM_STATE)
    transition = scim_transition(previous.get("status"), scim)
    if transition is not None:
        text = scim_alert_text(transition, scim, previous)
        log.log(logging.WARNING if transition == "turned_unhealthy" else logging.INFO, "%s", text)
        safe = slack_escape(text)
        deliver_slack(
            {
                "text": safe[:3000],
                "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": safe[:2900]}}],
            },
            kind="scim_alert",
            run_id=run_id,
            store=store,
        )
    store.write_state(SCIM_STATE, scim_state_after(previous, scim, dt.datetime.now(dt.UTC)))
    return transition


def _set_note(dag_id: str, run_id: str, note: str) -> None:
    """Write the run summary as the DagRun note through the stable REST API (no other way from a task)."""
    from idc_sync_airflow.airflow_api import set_dag_run_note

    try:
        set_dag_run_note(settings.AIRFLOW_API_CONN_ID, dag_id, run_id, note)
    except Exception as exc:
        log.warning("could not set the DagRun note (%s): %s", settings.AIRFLOW_API_CONN_ID, exc)
