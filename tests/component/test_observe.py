"""Incremental observation (idc_sync.observe) against the sandbox through real HTTP.

A generated organization in steady state (kintone and IdC agree), read once in full to fill the cache;
then: a no-change observe reads only the sweep's share; hand-made changes are found within the sweep
period; a stale cache never causes a deletion; what the plan touches is re-read and confirmed.
"""

from __future__ import annotations

import math
from typing import Any

import boto3
import pytest

from idc_sandbox import seed as seeding
from idc_sandbox.state import Assignment
from idc_sync.aws_clients import IdcClients
from idc_sync.config import SyncConfig
from idc_sync.guard import withhold_unread_deletions
from idc_sync.kintone_client import KintoneClient
from idc_sync.model import (
    AssignmentOp,
    AssignmentSpec,
    DesiredState,
    ObservedState,
    OpKind,
    OpResult,
    Plan,
    RecordRef,
)
from idc_sync.observe import ObserveOptions, Touches, observe, plan_touches
from idc_sync.observed_cache import ObservedCache, pair_key, record_applied
from idc_sync.plan import compute_plan
from idc_sync.records import parse_desired_state
from idc_sync.snapshot import take_snapshot

MANAGED_POLICY = "arn:aws:iam::aws:policy/AdministratorAccess"


@pytest.fixture
def world(sandbox: Any, sandbox_url: str) -> dict[str, Any]:
    seeding.generate_seed(
        sandbox, accounts=24, ous=6, users=40, groups=4, permission_sets=5, assignments=120, seed=7
    )
    sandbox.config.rate_limits = {k: 0.0 for k in sandbox.config.rate_limits}  # count calls, not time
    sandbox.config.async_latency_seconds = 0.0
    session = boto3.Session(
        aws_access_key_id="testing", aws_secret_access_key="testing", region_name="us-east-1"
    )
    clients = IdcClients.from_session(
        session,
        endpoint_url=sandbox_url,
        max_rps={k: None for k in ("sso_admin", "identitystore", "organizations", "iam", "accessanalyzer")},
    )
    tokens = seeding.CREDENTIALS["kintone"]["tokens"]
    apps = sorted(sandbox.world.kintone.apps.values(), key=lambda a: a.id)
    config = SyncConfig(
        permission_sets_app_id=str(apps[0].id),
        assignments_app_id=str(apps[1].id),
        language="en",
        # a small sweep so the period is several runs long
        sweep_min_calls_per_run=10,
        sweep_max_calls_per_run=10,
    )
    with KintoneClient(sandbox_url, {str(apps[0].id): tokens["1"], str(apps[1].id): tokens["2"]}) as kc:
        desired = parse_desired_state(
            kc.get_all_records(config.permission_sets_app_id),
            kc.get_all_records(config.assignments_app_id),
            config,
        )
    return {"sandbox": sandbox, "clients": clients, "config": config, "desired": desired}


def _touches(desired: DesiredState, config: SyncConfig) -> Any:
    def touches(observed: ObservedState) -> Touches:
        plan, _ = compute_plan(desired, observed, config)
        return plan_touches(plan, observed)

    return touches


def _observe(
    w: dict[str, Any], cache: ObservedCache | None, **kw: Any
) -> tuple[ObservedState, ObservedCache, Any]:
    return observe(
        w["clients"],
        w["desired"],
        w["config"],
        cache,
        plan_touches=_touches(w["desired"], w["config"]),
        options=ObserveOptions(**kw),
    )


def _calls(sandbox: Any, operation: str) -> int:
    return sum(1 for c in sandbox.calls.calls("sso-admin") if c.operation == operation)


def _plan(w: dict[str, Any], observed: ObservedState) -> Plan:
    return compute_plan(w["desired"], observed, w["config"])[0]


def test_first_observe_is_a_full_read_equal_to_the_snapshot(world: dict[str, Any]) -> None:
    observed, cache, stats = _observe(world, None)
    full = take_snapshot(world["clients"], world["desired"], world["config"])
    assert stats.mode == "full" and observed.complete
    assert observed.assignments == full.assignments
    assert observed.permission_sets.keys() == full.permission_sets.keys()
    assert {(a.account_id, a.permission_set_arn) for a in full.assignments} <= {
        tuple(k.split("|", 1)) for k in cache.pairs
    }
    assert _plan(world, observed).operations == []


def test_a_no_change_observe_reads_only_the_sweep_share(world: dict[str, Any]) -> None:
    sandbox = world["sandbox"]
    first, cache, _ = _observe(world, None)
    pairs = len(cache.pairs)
    sandbox.calls.clear()

    second, _, stats = _observe(world, cache)

    assert stats.mode == "incremental" and not second.complete
    assert second.assignments == first.assignments
    assert _plan(world, second).operations == []
    # 10 calls of sweep at most (the budget), against one ListAccountAssignments per pair for a full read
    assert _calls(sandbox, "ListAccountAssignments") <= 10 < pairs
    assert stats.sweep_budget == 10 and stats.pairs_read + stats.permission_sets_read > 0


def test_the_sweep_re_reads_everything_within_its_period(world: dict[str, Any]) -> None:
    _, cache, _ = _observe(world, None, now=lambda: 1_000.0)
    first_read = {k: p.read_at for k, p in cache.pairs.items()}
    runs = math.ceil(cache.sweep_cost() / 10)
    now = 1_000.0
    for i in range(runs):
        _, cache, _ = _observe(world, cache, now=lambda i=i: now + 60.0 * (i + 1))
    assert all(p.read_at > first_read.get(k, 0) for k, p in cache.pairs.items())
    assert all(c.read_at > 1_000.0 for c in cache.permission_sets.values())


def test_a_hand_made_assignment_is_found_and_removed_within_the_sweep_period(world: dict[str, Any]) -> None:
    sandbox = world["sandbox"]
    observed, cache, _ = _observe(world, None, now=lambda: 1_000.0)
    a = observed.assignments[0]
    intruder = next(u for u in sandbox.world.identity_store.users.values() if u.user_id != a.principal_id)
    with sandbox.lock:  # an admin adds an assignment by hand, outside kintone
        sandbox.world.identity_center.assignments.add(
            Assignment(a.account_id, a.permission_set_arn, "USER", intruder.user_id)
        )
    period = math.ceil(cache.sweep_cost() / 10) + 1
    found_after = None
    for run in range(1, period + 1):
        observed, cache, _ = _observe(world, cache, now=lambda run=run: 10_000.0 + 600 * run)
        deletions = [op for op in _plan(world, observed).operations if op.kind == OpKind.DELETE_ASSIGNMENT]
        if deletions:
            found_after = run
            assert [op.principal_id for op in deletions] == [intruder.user_id]
            # the deletion stands on a read of its pair in this very run
            assert observed.confirms(a.account_id, a.permission_set_arn)
            break
    assert found_after is not None, f"not found within {period} runs"


def test_a_hand_made_permission_set_change_is_found_within_the_sweep_period(world: dict[str, Any]) -> None:
    sandbox = world["sandbox"]
    observed, cache, _ = _observe(world, None, now=lambda: 1_000.0)
    name, state = next((n, s) for n, s in observed.permission_sets.items() if s.managed)
    with sandbox.lock:  # a managed policy attached by hand
        ps = sandbox.world.identity_center.permission_sets[state.arn]
        ps.managed_policies = [*ps.managed_policies, MANAGED_POLICY]
    period = math.ceil(cache.sweep_cost() / 10) + 1
    for run in range(1, period + 1):
        observed, cache, _ = _observe(world, cache, now=lambda run=run: 10_000.0 + 600 * run)
        updates = [op for op in _plan(world, observed).operations if op.kind == OpKind.UPDATE_PERMISSION_SET]
        if updates:
            assert [op.permission_set_name for op in updates] == [name]
            return
    pytest.fail(f"the hand-made change of {name} was not found within {period} runs")


def test_a_stale_cache_never_deletes(world: dict[str, Any]) -> None:
    """The cache says a pair holds an extra principal (removed by hand since): the plan on the cache would
    delete it; observe re-reads the pair first, so the plan deletes nothing."""
    observed, cache, _ = _observe(world, None)
    a = observed.assignments[0]
    key = pair_key(a.account_id, a.permission_set_arn)
    ghost = next(pid for pid in observed.principal_names if pid != a.principal_id)
    cache.pairs[key].principals.append(("USER", ghost))
    cache.pairs[key].read_at = 9e12  # "just read": the sweep would not pick it
    world["sandbox"].calls.clear()

    observed2, _, stats = _observe(world, cache)

    assert _plan(world, observed2).operations == []  # the cache alone would have deleted the ghost
    assert stats.confirm_rounds == 1
    assert any(  # the pair was read again in this run
        c.operation == "ListAccountAssignments"
        and c.params.get("AccountId") == a.account_id
        and c.params.get("PermissionSetArn") == a.permission_set_arn
        for c in world["sandbox"].calls.calls("sso-admin")
    )
    assert ("USER", ghost) not in {
        (x.principal_type, x.principal_id)
        for x in observed2.assignments
        if (x.account_id, x.permission_set_arn) == (a.account_id, a.permission_set_arn)
    }


def test_a_kintone_removal_is_confirmed_on_a_fresh_read(world: dict[str, Any]) -> None:
    _, cache, _ = _observe(world, None, now=lambda: 1_000.0)
    desired: DesiredState = world["desired"]
    world["desired"] = desired.model_copy(update={"assignments": desired.assignments[1:]})

    observed2, cache2, _ = _observe(world, cache, now=lambda: 5_000.0)
    plan = _plan(world, observed2)
    deletions = [op for op in plan.operations if op.kind == OpKind.DELETE_ASSIGNMENT]

    assert deletions, "the record's removal plans deletions"
    assert all(observed2.confirms(op.account_id, op.permission_set_arn) for op in deletions)
    assert withhold_unread_deletions(plan, observed2)[1] == []
    keys = {pair_key(op.account_id or "", op.permission_set_arn or "") for op in deletions}
    assert all(cache2.pairs[k].read_at == 5_000.0 for k in keys)  # read in this run


def test_apply_results_are_folded_into_the_cache(world: dict[str, Any]) -> None:
    """A cold sync deferred over many runs re-reads nothing: what apply did is recorded in the cache."""
    observed, cache, _ = _observe(world, None)
    victim = observed.assignments[0]
    key = pair_key(victim.account_id, victim.permission_set_arn)
    newcomer = next(
        pid for pid in observed.principal_names if ("USER", pid) not in cache.pairs[key].principals
    )
    plan = Plan(
        operations=[
            AssignmentOp(
                key="d",
                kind=OpKind.DELETE_ASSIGNMENT,
                permission_set_name="x",
                permission_set_arn=victim.permission_set_arn,
                account_id=victim.account_id,
                principal_type=victim.principal_type,
                principal_id=victim.principal_id,
                principal_name=victim.principal_id,
            ),
            AssignmentOp(
                key="c",
                kind=OpKind.CREATE_ASSIGNMENT,
                permission_set_name="x",
                permission_set_arn=victim.permission_set_arn,
                account_id=victim.account_id,
                principal_type="USER",
                principal_id=newcomer,
                principal_name=newcomer,
            ),
            AssignmentOp(
                key="later",
                kind=OpKind.CREATE_ASSIGNMENT,
                permission_set_name="x",
                permission_set_arn=victim.permission_set_arn,
                account_id="999999999999",
                principal_type="USER",
                principal_id=newcomer,
                principal_name=newcomer,
            ),
        ]
    )
    results = [
        OpResult(key="d", kind=OpKind.DELETE_ASSIGNMENT, status="succeeded"),
        OpResult(key="c", kind=OpKind.CREATE_ASSIGNMENT, status="already_in_place"),
        OpResult(key="later", kind=OpKind.CREATE_ASSIGNMENT, status="deferred"),
    ]

    assert record_applied(cache, plan, results, now=7.0) == 2
    assert (victim.principal_type, victim.principal_id) not in cache.pairs[key].principals
    assert ("USER", newcomer) in cache.pairs[key].principals
    assert pair_key("999999999999", victim.permission_set_arn) not in cache.pairs  # deferred: not done


def test_created_assignments_survive_the_next_observe_without_a_re_read(world: dict[str, Any]) -> None:
    """A creation on an account the set was not provisioned to: the cache learns the provisioning too, so
    the next observe keeps the pair (and the plan does not create it again) without reading it."""
    sandbox = world["sandbox"]
    _, cache, _ = _observe(world, None, now=lambda: 1_000.0)
    state = next(c.state for c in cache.permission_sets.values() if c.state.managed)
    org = sandbox.world.organization
    account = next(
        a
        for a, acct in sorted(org.accounts.items())
        if a not in state.provisioned_accounts and a != org.management_account_id and acct.state == "ACTIVE"
    )
    user = next(iter(sandbox.world.identity_store.users.values()))
    with sandbox.lock:  # what apply did in IdC: the assignment, which provisions the set to the account
        ic = sandbox.world.identity_center
        ic.assignments.add(Assignment(account, state.arn, "USER", user.user_id))
        ic.provisioned[(account, state.arn)] = ic.permission_sets[state.arn].version
    op = AssignmentOp(
        key="c",
        kind=OpKind.CREATE_ASSIGNMENT,
        permission_set_name=state.name,
        permission_set_arn=state.arn,
        account_id=account,
        principal_type="USER",
        principal_id=user.user_id,
        principal_name=user.user_id,
    )
    record_applied(
        cache,
        Plan(operations=[op]),
        [OpResult(key="c", kind=OpKind.CREATE_ASSIGNMENT, status="succeeded")],
        now=1_000.5,  # after the first read: the sweep (10 calls) has older items to read first
    )
    sandbox.calls.clear()

    desired: DesiredState = world["desired"]
    wanted = AssignmentSpec(
        principal_type="USER",
        principal_name=user.user_name,
        target=account,
        permission_set_name=state.name,
        record=RecordRef(app="assignments", app_id="2", record_id="9999"),
    )
    world["desired"] = desired.model_copy(update={"assignments": [*desired.assignments, wanted]})

    observed, cache2, _ = _observe(world, cache, now=lambda: 1_001.0)

    assert pair_key(account, state.arn) in cache2.pairs
    assert not [op for op in _plan(world, observed).operations if op.account_id == account]  # no re-create
    assert any(a.account_id == account and a.principal_id == user.user_id for a in observed.assignments)
    assert not any(
        c.operation == "ListAccountAssignments" and c.params.get("AccountId") == account
        for c in sandbox.calls.calls("sso-admin")
    )


def test_apply_withholds_a_deletion_on_a_pair_not_read_this_run(world: dict[str, Any]) -> None:
    observed, _, _ = _observe(world, None)
    desired: DesiredState = world["desired"]
    world["desired"] = desired.model_copy(update={"assignments": desired.assignments[1:]})
    plan = _plan(world, observed)  # a plan the observe step never confirmed
    incremental = observed.model_copy(update={"complete": False, "confirmed_pairs": []})

    kept, withheld = withhold_unread_deletions(plan, incremental)

    assert withheld and all("not read fresh" in s.reason for s in withheld)
    assert not [op for op in kept.operations if op.kind == OpKind.DELETE_ASSIGNMENT]
