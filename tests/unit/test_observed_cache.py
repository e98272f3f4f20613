"""The sweep's arithmetic and choice (idc_sync.observed_cache): pure functions."""

from __future__ import annotations

import math

from idc_sync.model import PermissionSetState, Scope
from idc_sync.observed_cache import (
    CachedPair,
    CachedPermissionSet,
    ObservedCache,
    managed_pairs,
    pair_key,
    pick_sweep,
    sweep_budget,
    sweep_period_holds,
)


def _ps(n: int, *, managed: bool = True, accounts: int = 3, read_at: float = 100.0) -> CachedPermissionSet:
    state = PermissionSetState(
        arn=f"arn:ps/{n}",
        name=f"ps-{n}",
        managed=managed,
        provisioned_accounts=[f"{100000000000 + i}" for i in range(accounts)],
    )
    return CachedPermissionSet(state=state, read_at=read_at, detailed=managed)


def test_the_budget_spreads_the_whole_sweep_over_the_period() -> None:
    # the design's organization: ~51,000 calls to read everything, 6 hours, a run every 10 minutes
    budget = sweep_budget(51_000, period_minutes=360, cadence_minutes=10, floor=300, cap=2_000)
    assert budget == math.ceil(51_000 / 36 * 1.05)
    assert sweep_period_holds(51_000, budget, period_minutes=360, cadence_minutes=10)


def test_a_small_organization_is_read_whole_every_run_and_the_cap_is_reported() -> None:
    assert sweep_budget(120, period_minutes=360, cadence_minutes=10, floor=300, cap=2_000) == 300
    capped = sweep_budget(500_000, period_minutes=360, cadence_minutes=10, floor=300, cap=2_000)
    assert capped == 2_000
    assert not sweep_period_holds(500_000, capped, period_minutes=360, cadence_minutes=10)


def test_the_oldest_items_go_first_within_the_budget() -> None:
    sets = {"arn:ps/1": _ps(1, read_at=50.0), "arn:ps/2": _ps(2, read_at=500.0)}
    pairs = {
        pair_key("100000000001", "arn:ps/1"): CachedPair(read_at=10.0),
        pair_key("100000000002", "arn:ps/1"): CachedPair(read_at=0.0),  # invalidated: first
        pair_key("100000000003", "arn:ps/1"): CachedPair(read_at=900.0),
    }
    arns, keys = pick_sweep(sets, pairs, budget=10)
    assert keys[:2] == [pair_key("100000000002", "arn:ps/1"), pair_key("100000000001", "arn:ps/1")]
    assert arns == ["arn:ps/1"]  # 8 calls: fits after the two pairs; ps/2 (newer) does not
    assert pair_key("100000000003", "arn:ps/1") not in keys


def test_an_item_larger_than_the_budget_is_never_starved() -> None:
    big = _ps(1, accounts=2_000, read_at=1.0)  # 7 + 20 pages of provisioned accounts
    arns, keys = pick_sweep({"arn:ps/1": big}, {}, budget=5)
    assert arns == ["arn:ps/1"] and keys == []


def test_items_already_read_this_run_are_not_picked_twice() -> None:
    sets = {"arn:ps/1": _ps(1, read_at=0.0)}
    pairs = {pair_key("100000000001", "arn:ps/1"): CachedPair(read_at=0.0)}
    arns, keys = pick_sweep(sets, pairs, 100, exclude_arns={"arn:ps/1"}, exclude_pairs=set(pairs))
    assert arns == [] and keys == []


def test_managed_pairs_leave_out_the_management_account_unmanaged_sets_and_the_scope() -> None:
    managed = _ps(1, accounts=3).state
    unmanaged = _ps(2, managed=False).state
    mgmt = "100000000000"
    pairs = managed_pairs([managed, unmanaged], mgmt, Scope())
    assert pairs == {pair_key("100000000001", "arn:ps/1"), pair_key("100000000002", "arn:ps/1")}
    scoped = managed_pairs([managed], mgmt, Scope(accounts=["100000000002"]))
    assert scoped == {pair_key("100000000002", "arn:ps/1")}


def test_invalidate_marks_items_to_read_first_next_run() -> None:
    cache = ObservedCache(
        permission_sets={"arn:ps/1": _ps(1)},
        pairs={pair_key("100000000001", "arn:ps/1"): CachedPair(read_at=5.0)},
    )
    cache.invalidate(arns=["arn:ps/1", "arn:ps/unknown"], pairs=[pair_key("100000000001", "arn:ps/1")])
    assert cache.permission_sets["arn:ps/1"].read_at == 0.0
    assert cache.oldest_read() == 0.0
    assert cache.sweep_cost() == 7 + 1 + 1
