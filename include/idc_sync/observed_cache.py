"""The last observed state of IAM Identity Center, kept between runs so a run re-reads only what may differ.

A full read of a large organization costs one ListAccountAssignments per (account, managed permission
set) pair: ~48,000 calls at 2,000 accounts, 40 minutes at IdC's 20 requests/s. The cache keeps every
permission set and every pair with the time it was read; ``idc_sync.observe`` starts from it and re-reads
new items, items a plan touches (confirmed fresh before anything is changed), and a rolling **sweep** of
the oldest items (so hand-made changes are still found within a bounded period).

Everything here is pure: choosing what the sweep re-reads, what it costs, and assembling an
``ObservedState`` from the cache.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

from pydantic import BaseModel, Field

from idc_sync.model import (
    AssignmentOp,
    AssignmentState,
    OpKind,
    OpResult,
    PermissionSetState,
    Plan,
    PrincipalType,
    Scope,
    pair_key,
    split_pair,
)

CACHE_VERSION = 1
UNREAD = 0.0  # read time of an invalidated item: the next observe reads it first, outside the sweep
# Estimated sso-admin calls to re-read one item (the sweep budget is spent in calls).
PAIR_COST = 1  # ListAccountAssignments (one page holds 100 assignments)
UNMANAGED_PS_COST = 2  # DescribePermissionSet + ListTagsForResource
# + 4 policy reads + stale-provisioning list + provisioned-accounts pages (100 a page)
DETAILED_PS_BASE_COST = 7


class CachedPermissionSet(BaseModel):
    state: PermissionSetState
    read_at: float  # epoch seconds; 0 = re-read at the next run (a plan touched it)
    detailed: bool  # policies and provisioned accounts were read (managed, or named by kintone)

    @property
    def cost(self) -> int:
        if not self.detailed:
            return UNMANAGED_PS_COST
        return DETAILED_PS_BASE_COST + math.ceil(len(self.state.provisioned_accounts) / 100)


class CachedPair(BaseModel):
    principals: list[tuple[PrincipalType, str]] = Field(default_factory=list)  # (type, principal id)
    read_at: float


class ObservedCache(BaseModel):
    """What earlier runs read, per item, with when. Saved in the state store after each observe."""

    version: int = CACHE_VERSION
    instance_arn: str = ""
    identity_store_id: str = ""
    permission_sets: dict[str, CachedPermissionSet] = Field(default_factory=dict)  # by ARN
    pairs: dict[str, CachedPair] = Field(default_factory=dict)  # by pair_key
    principal_ids: dict[str, str] = Field(default_factory=dict)  # "USER:alice" -> id
    principal_names: dict[str, str] = Field(default_factory=dict)  # id -> "USER:alice"
    principals_read_at: float = 0.0  # when users and groups were last listed in full

    def usable_for(self, instance_arn: str) -> bool:
        return self.version == CACHE_VERSION and self.instance_arn == instance_arn

    def invalidate(self, arns: Iterable[str] = (), pairs: Iterable[str] = ()) -> None:
        """Mark items as changed: the next observe reads them whatever the sweep's budget."""
        for arn in arns:
            if arn in self.permission_sets:
                self.permission_sets[arn].read_at = UNREAD
        for key in pairs:
            if key in self.pairs:
                self.pairs[key].read_at = UNREAD

    def sweep_cost(self) -> int:
        """sso-admin calls to re-read every cached item once."""
        return sum(c.cost for c in self.permission_sets.values()) + PAIR_COST * len(self.pairs)

    def oldest_read(self) -> float | None:
        times = [c.read_at for c in self.permission_sets.values()] + [p.read_at for p in self.pairs.values()]
        return min(times) if times else None


def sweep_budget(
    total_cost: int, *, period_minutes: float, cadence_minutes: float, floor: int, cap: int
) -> int:
    """Calls a run spends on the sweep so everything is re-read within ``period_minutes``.

    The share each run must read is total / (period / cadence); a 5% margin covers runs that start late.
    A small organization gets at least ``floor`` calls (re-read whole every run or two); ``cap`` keeps a
    run inside its request budget (then the period cannot be held: ``sweep_period_holds`` says so).
    """
    runs = max(1.0, period_minutes / max(cadence_minutes, 1e-9))
    needed = math.ceil(total_cost / runs * 1.05)
    return max(floor, min(cap, needed))


def sweep_period_holds(
    total_cost: int, budget: int, *, period_minutes: float, cadence_minutes: float
) -> bool:
    runs = max(1.0, period_minutes / max(cadence_minutes, 1e-9))
    return budget * runs >= total_cost


def pick_sweep(
    permission_sets: dict[str, CachedPermissionSet],
    pairs: dict[str, CachedPair],
    budget: int,
    *,
    exclude_arns: set[str] | frozenset[str] = frozenset(),
    exclude_pairs: set[str] | frozenset[str] = frozenset(),
) -> tuple[list[str], list[str]]:
    """The oldest-read items that fit in ``budget`` calls: (permission set ARNs, pair keys).

    Oldest first (never-read and invalidated items have ``read_at`` 0), ties broken by key so the choice
    is deterministic; the oldest item is always taken, even alone over the budget, so none is starved.
    Items already being read this run are left out.
    """
    queue: list[tuple[float, int, str, int]] = [
        (c.read_at, 0, arn, c.cost) for arn, c in permission_sets.items() if arn not in exclude_arns
    ]
    queue += [(p.read_at, 1, key, PAIR_COST) for key, p in pairs.items() if key not in exclude_pairs]
    queue.sort()
    arns: list[str] = []
    keys: list[str] = []
    spent = 0
    for _, kind, key, cost in queue:
        if spent + cost > budget and spent > 0:
            continue  # a smaller item may still fit; this one is first in line next run (never starved)
        spent += cost
        (arns if kind == 0 else keys).append(key)
    return arns, keys


def managed_pairs(
    permission_sets: Iterable[PermissionSetState], management_account_id: str, scope: Scope
) -> set[str]:
    """Every (account, managed permission set) pair whose assignments the plan compares: provisioned
    accounts of managed sets, never the management account, within the scope."""
    return {
        pair_key(account, s.arn)
        for s in permission_sets
        if s.managed
        for account in s.provisioned_accounts
        if account != management_account_id and scope.includes_account(account)
    }


def assignments_of(pairs: dict[str, CachedPair], keys: Iterable[str]) -> list[AssignmentState]:
    out: list[AssignmentState] = []
    for key in keys:
        entry = pairs.get(key)
        if entry is None:
            continue
        account, arn = split_pair(key)
        out.extend(
            AssignmentState(account_id=account, permission_set_arn=arn, principal_type=t, principal_id=pid)
            for t, pid in entry.principals
        )
    out.sort(key=lambda a: (a.account_id, a.permission_set_arn, a.principal_type, a.principal_id))
    return out


def in_scope_states(
    permission_sets: dict[str, CachedPermissionSet], scope: Scope
) -> dict[str, PermissionSetState]:
    """Name -> state of the cached permission sets within the scope (what ObservedState carries)."""
    return dict(
        sorted(
            (c.state.name, c.state)
            for c in permission_sets.values()
            if scope.includes_permission_set(c.state.name)
        )
    )


def describe_age(oldest: float | None, now: float) -> str:
    if oldest is None:
        return "nothing cached"
    if oldest <= 0:
        return "some items wait for their first read"
    minutes = (now - oldest) / 60
    return f"oldest item read {minutes:,.0f} min ago"


def record_applied(cache: ObservedCache, plan: Plan, results: Iterable[OpResult], *, now: float) -> int:
    """Fold what apply did into the cache, so the next run plans on it without reading it again.

    An assignment created or deleted (or found already in place) changes its pair; a creation also
    provisions its set to the account, so the set's provisioned accounts gain it (else the next observe
    would drop the pair as "not provisioned"). A pair new to the cache counts as read now: its content
    is what apply wrote (anything made there by hand is found by the sweep, like anywhere else). A
    permission set written is read again next run (its provisioning status changed). Safe if lost: what
    the cache misses, the next plan tries again (a create that exists is "already in place"; a deletion
    is always confirmed on a fresh read). Returns the number of results folded in.
    """
    ops = {op.key: op for op in plan.operations}
    changed = 0
    for result in results:
        op = ops.get(result.key)
        if op is None or not result.done:
            continue
        arn = result.permission_set_arn or op.permission_set_arn
        if isinstance(op, AssignmentOp):
            if not arn:
                continue
            key = pair_key(op.account_id, arn)
            entry = cache.pairs.setdefault(key, CachedPair(read_at=now))
            who = (op.principal_type, op.principal_id)
            if op.kind == OpKind.CREATE_ASSIGNMENT:
                if who not in entry.principals:
                    entry.principals = sorted([*entry.principals, who])
                ps = cache.permission_sets.get(arn)
                if ps is not None and op.account_id not in ps.state.provisioned_accounts:
                    ps.state.provisioned_accounts = sorted([*ps.state.provisioned_accounts, op.account_id])
            else:
                entry.principals = [p for p in entry.principals if p != who]
            changed += 1
        elif arn:
            cache.invalidate(arns=[arn])
            changed += 1
    return changed
