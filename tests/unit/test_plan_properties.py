"""Generated cases for the planner's promises (hypothesis): for random requests in kintone and random
assignments in IAM Identity Center, applying the plan gives exactly what the records ask for on every active
member account, changes nothing on the management account nor outside the managed permission sets, deletes
nothing a record asks for, and a second plan is empty.

The expected state is computed here independently of the planner: the OU closure, expiry, missing
principals and the management-account rule written out directly.
"""

from __future__ import annotations

import datetime as dt

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from idc_sync.config import SyncConfig
from idc_sync.model import AssignmentOp, AssignmentState, DesiredState, OpKind, Plan
from idc_sync.plan import compute_plan
from tests.unit.builders import (
    A1,
    A2,
    A3,
    A4,
    A5,
    MGMT,
    NESTED,
    PROD,
    TODAY,
    asg,
    observed,
    ps_arn,
    spec,
    state,
)

SETS = {"Dev": 1, "Ops": 2}  # managed, in kintone and in IdC
UNMANAGED = ("Hand", 3)  # in IdC only, not tagged: never touched
PRINCIPALS = {("USER", "alice"): "u-alice", ("USER", "bob"): "u-bob", ("GROUP", "Admins"): "g-admins"}
GHOST = ("USER", "ghost")  # named in kintone, not (yet) in IdC
ACCOUNTS = (MGMT, A1, A2, A3, A4, A5)
ACTIVE_MEMBERS = {A1, A2, A3, A5}  # A4 is SUSPENDED; MGMT is never a target
OU_ACCOUNTS = {PROD: {A2, A5, A3, A4}, NESTED: {A3, A4}}
TARGETS = (*ACCOUNTS, PROD, NESTED)
EXPIRY = (None, TODAY - dt.timedelta(days=1), TODAY, TODAY + dt.timedelta(days=30))

Grant = tuple[str, str, str, str]  # account, permission set, principal type, principal id

requests = st.lists(
    st.tuples(
        st.sampled_from(TARGETS),
        st.sampled_from(sorted(SETS)),
        st.sampled_from([*PRINCIPALS, GHOST]),
        st.sampled_from(EXPIRY),
    ),
    max_size=12,
)
held_now = st.sets(
    st.tuples(st.sampled_from(ACCOUNTS), st.sampled_from(sorted(SETS)), st.sampled_from(sorted(PRINCIPALS))),
    max_size=15,
)


def _desired(rows: list[tuple[str, str, tuple[str, str], dt.date | None]]) -> DesiredState:
    return DesiredState(
        permission_sets={name: spec(name) for name in SETS},
        assignments=[
            asg(target, ps, name=who[1], ptype=who[0], rid=str(10 + i), expires_on=expires)
            for i, (target, ps, who, expires) in enumerate(rows)
        ],
    )


def _observed(grants: set[Grant]) -> object:
    states = [state(name, n) for name, n in SETS.items()] + [state(UNMANAGED[0], UNMANAGED[1], managed=False)]
    arn = {name: ps_arn(n) for name, n in SETS.items()}
    held = [
        AssignmentState(account_id=a, permission_set_arn=arn[ps], principal_type=t, principal_id=pid)  # type: ignore[arg-type]
        for a, ps, t, pid in sorted(grants)
    ]
    return observed(states, held, missing=[f"{GHOST[0]}:{GHOST[1]}"])


def _wanted(rows: list[tuple[str, str, tuple[str, str], dt.date | None]]) -> set[Grant]:
    """What the records ask for on active member accounts, written out without the planner."""
    return {g for g in _named(rows) if g[0] in ACTIVE_MEMBERS}


def _named(rows: list[tuple[str, str, tuple[str, str], dt.date | None]]) -> set[Grant]:
    """What unexpired records name on any account (suspended ones included)."""
    out: set[Grant] = set()
    for target, ps, who, expires in rows:
        if who == GHOST or (expires is not None and expires < TODAY):
            continue
        for account in OU_ACCOUNTS.get(target, {target}):
            out.add((account, ps, who[0], PRINCIPALS[who]))
    return out


def _apply(plan: Plan, grants: set[Grant]) -> set[Grant]:
    world = set(grants)
    for op in plan.of_type(AssignmentOp):
        grant = (op.account_id, op.permission_set_name, op.principal_type, op.principal_id)
        if op.kind is OpKind.CREATE_ASSIGNMENT:
            world.add(grant)
        else:
            world.discard(grant)
    return world


def _grants(cells: set[tuple[str, str, tuple[str, str]]]) -> set[Grant]:
    return {(a, ps, who[0], PRINCIPALS[who]) for a, ps, who in cells}


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rows=requests, cells=held_now)
def test_applying_the_plan_converges_inside_the_managed_scope_and_touches_nothing_else(rows, cells) -> None:
    before = _grants(cells)
    desired = _desired(rows)
    plan, _ = compute_plan(desired, _observed(before), SyncConfig(), today=TODAY)  # type: ignore[arg-type]
    ops = plan.of_type(AssignmentOp)

    # never the management account, never the unmanaged set, never a set operation (specs match IdC)
    assert not [op for op in ops if op.account_id == MGMT]
    assert not [op for op in plan.operations if op.permission_set_name == UNMANAGED[0]]
    assert [
        op.kind
        for op in plan.operations
        if op.kind not in (OpKind.CREATE_ASSIGNMENT, OpKind.DELETE_ASSIGNMENT)
    ] == []

    after = _apply(plan, before)
    wanted = _wanted(rows)
    # exactly what the records ask for on every active member account
    assert {g for g in after if g[0] in ACTIVE_MEMBERS} == wanted
    # the management account: nothing changed
    assert {g for g in after if g[0] == MGMT} == {g for g in before if g[0] == MGMT}
    # a suspended account: nothing created; what a record still names is kept, the rest removed
    assert {g for g in after if g[0] == A4} == {g for g in before if g[0] == A4} & _named(rows)
    # nothing a record asks for is ever deleted
    deleted = {
        (op.account_id, op.permission_set_name, op.principal_type, op.principal_id)
        for op in ops
        if op.kind is OpKind.DELETE_ASSIGNMENT
    }
    assert not deleted & wanted

    # a second plan on the result changes nothing
    again, _ = compute_plan(desired, _observed(after), SyncConfig(), today=TODAY)  # type: ignore[arg-type]
    assert again.of_type(AssignmentOp) == []


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    rows=requests,
    cells=held_now,
    max_deletions=st.integers(0, 8),
    ratio=st.sampled_from([0.05, 0.1, 0.5, 1.0]),
    floor=st.integers(0, 5),
)
def test_without_an_approval_no_run_deletes_more_than_the_guard_allows(
    rows, cells, max_deletions, ratio, floor
) -> None:
    from idc_sync.approval import deletions_this_run
    from idc_sync.guard import DELETIONS, evaluate_guard
    from idc_sync.verdicts import DeletionVerdict, plan_to_apply

    config = SyncConfig(max_deletions=max_deletions, max_deletion_ratio=ratio, deletion_ratio_floor=floor)
    desired = _desired(rows)
    desired.records_read = {"permission_sets": len(SETS), "assignments": len(rows)}
    plan, _ = compute_plan(desired, _observed(_grants(cells)), config, today=TODAY)  # type: ignore[arg-type]
    verdict = evaluate_guard(plan, desired, config)
    deletes = [op.key for op in plan.of_kind(*DELETIONS)]
    # what deletion_guard lets this run delete with no approval recorded (first run: nothing pending)
    allowed, _ = deletions_this_run(
        deletes,
        tripped=verdict.tripped,
        held=verdict.held,
        allow_mass_delete=False,
        dry_run=False,
        requests={},
        decisions={},
        now=dt.datetime(2025, 6, 15, tzinfo=dt.UTC),
        grant_ttl=dt.timedelta(hours=24),
        pending_ttl=dt.timedelta(hours=5),
    )
    applied = plan_to_apply(plan, None, DeletionVerdict(allowed=allowed) if verdict.tripped else None).plan
    removed = len(applied.of_type(AssignmentOp, OpKind.DELETE_ASSIGNMENT))
    managed = plan.managed_assignment_count
    assert removed <= max_deletions
    assert removed <= floor or not managed or removed / managed <= ratio
    if deletes and not rows:  # an empty assignments app never deletes anything
        assert removed == 0


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(read_then=requests, asked_now=requests, cache=held_now)
def test_a_plan_from_old_reads_confirmed_against_kintone_now_never_deletes_what_kintone_asks_for(
    read_then, asked_now, cache
) -> None:
    """The plan was made from kintone as it was read (``read_then``) and a cached observed state that may
    be stale (``cache``); just before deleting, kintone is read again (``asked_now``) and planned against
    the same observed state. Whatever the three are, no deletion that survives the confirmation removes
    an assignment a record asks for now."""
    from idc_sync.guard import DELETIONS, NOT_CONFIRMED, confirm_deletions

    observed_state = _observed(_grants(cache))
    plan, _ = compute_plan(_desired(read_then), observed_state, SyncConfig(), today=TODAY)  # type: ignore[arg-type]
    fresh, _ = compute_plan(_desired(asked_now), observed_state, SyncConfig(), today=TODAY)  # type: ignore[arg-type]
    confirmed, dropped = confirm_deletions(plan, fresh)

    deleting = {
        (op.account_id, op.permission_set_name, op.principal_type, op.principal_id)
        for op in confirmed.of_type(AssignmentOp)
        if op.kind is OpKind.DELETE_ASSIGNMENT
    }
    assert not deleting & _named(asked_now)
    # nothing but deletions is dropped, and each dropped one is told why
    assert [op for op in plan.operations if op.kind not in DELETIONS] == [
        op for op in confirmed.operations if op.kind not in DELETIONS
    ]
    assert {s.key for s in confirmed.skipped if s.reason == NOT_CONFIRMED} == set(dropped)
