"""Observe IAM Identity Center incrementally: the ``observe_idc`` step's one domain call.

Starts from the cache of the last observed state (``idc_sync.observed_cache``) and re-reads only what may
differ from it:

* every run: the instance, the organization (accounts joined, left or moved; OU targets expand on it),
  the list of permission set ARNs (sets created or deleted by hand);
* new items: permission sets and (account, permission set) pairs the cache does not know;
* the **sweep**: the oldest-read items within a budget of calls sized so that everything is re-read
  within ``sweep_period_minutes`` (hand-made drift is found within that period);
* the **confirmation**: the plan is computed on the result (``plan_touches``) and every pair it would
  delete from and every permission set it would update or delete is re-read in this run, then planned
  again, until those were read fresh. A cached view never causes a deletion: every deletion stands on a
  read of its pair in this run (``ObservedState.confirmed_pairs``; apply checks it again). Creations need
  no fresh read (creating what exists is a no-op), so a 50,000-assignment cold sync deferred over many
  runs costs no re-reads.

Apply folds what it did into the cache (``observed_cache.record_applied``). ``full`` (the ``full_resync`` trigger param, or no usable cache) reads everything. A scoped
run reads everything in its scope, as before.
"""

from __future__ import annotations

import dataclasses as dc
import logging
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor

from idc_sync.aws_clients import IdcClients
from idc_sync.config import SyncConfig
from idc_sync.model import (
    AssignmentOp,
    DesiredState,
    ObservedState,
    OpKind,
    OrgSnapshot,
    Plan,
    Scope,
    pair_key,
    principal_key,
    split_pair,
)
from idc_sync.observed_cache import (
    UNREAD,
    CachedPair,
    CachedPermissionSet,
    ObservedCache,
    assignments_of,
    describe_age,
    in_scope_states,
    managed_pairs,
    pick_sweep,
    sweep_budget,
    sweep_period_holds,
)
from idc_sync.snapshot import (
    DEFAULT_MAX_WORKERS,
    PermissionSetReader,
    PrincipalResolver,
    desired_principals,
    paginate,
    read_instance,
    read_organization,
    run_all,
)

log = logging.getLogger(__name__)

MAX_CONFIRM_ROUNDS = 4


@dc.dataclass(frozen=True)
class Touches:
    """What a plan would change: permission set ARNs and pair keys ("account|ARN")."""

    arns: frozenset[str] = frozenset()
    pairs: frozenset[str] = frozenset()


def plan_touches(plan: Plan, observed: ObservedState) -> Touches:
    """Items of ``observed`` whose change in ``plan`` must stand on a read made in this run: the pairs
    with an assignment deletion, the permission sets updated or deleted. (A creation needs no fresh
    read: creating what exists is a no-op that apply reports "already in place"; a stale cache costs a
    call, never access.)"""
    by_name = {name: s.arn for name, s in observed.permission_sets.items()}
    arns: set[str] = set()
    pairs: set[str] = set()
    for op in plan.operations:
        arn = op.permission_set_arn or by_name.get(op.permission_set_name)
        if not arn:
            continue  # a set still to be created: nothing to confirm
        if isinstance(op, AssignmentOp) and op.kind is OpKind.DELETE_ASSIGNMENT:
            pairs.add(pair_key(op.account_id, arn))
        elif op.kind in (OpKind.UPDATE_PERMISSION_SET, OpKind.DELETE_PERMISSION_SET):
            arns.add(arn)
    return Touches(frozenset(arns), frozenset(pairs))


PlanTouches = Callable[[ObservedState], Touches]


@dc.dataclass
class ObserveStats:
    """What a run read, for the log, the audit and the benchmark."""

    mode: str = "incremental"  # incremental | full | scoped
    permission_sets_read: int = 0
    pairs_read: int = 0
    new_items: int = 0
    sweep_permission_sets: int = 0
    sweep_pairs: int = 0
    sweep_budget: int = 0
    confirmed_pairs: int = 0
    confirm_rounds: int = 0
    principals_listed: bool = False
    cached_pairs: int = 0
    sweep_period_holds: bool = True
    oldest: str = ""

    def as_dict(self) -> dict[str, object]:
        return dc.asdict(self)


@dc.dataclass(frozen=True)
class ObserveOptions:
    full: bool = False
    max_workers: int = DEFAULT_MAX_WORKERS
    principal_list_threshold: int = 200
    now: Callable[[], float] = time.time


class _Observer:
    def __init__(
        self,
        clients: IdcClients,
        desired: DesiredState,
        config: SyncConfig,
        scope: Scope,
        cache: ObservedCache,
        options: ObserveOptions,
        pool: ThreadPoolExecutor,
    ) -> None:
        self.clients = clients
        self.desired = desired
        self.config = config
        self.scope = scope
        self.cache = cache
        self.options = options
        self.pool = pool
        self.now = options.now()
        self.stats = ObserveStats()
        self.fresh_arns: set[str] = set()
        self.fresh_pairs: set[str] = set()
        self.desired_names = set(desired.permission_sets) | {
            a.permission_set_name for a in desired.assignments
        }

    # ------------------------------------------------------------------ reads
    def read_permission_sets(self, arns: Iterable[str], reader: PermissionSetReader) -> None:
        todo = sorted(set(arns) - self.fresh_arns)
        if not todo:
            return
        for arn, state in zip(todo, run_all(self.pool, reader.read, todo, "permission sets"), strict=True):
            self.fresh_arns.add(arn)
            if state is None:  # outside the scope: only described; keep what the cache had
                continue
            detailed = state.managed or state.name in self.desired_names
            self.cache.permission_sets[arn] = CachedPermissionSet(
                state=state, read_at=self.now, detailed=detailed
            )
        self.stats.permission_sets_read += len(todo)

    def read_pairs(self, keys: Iterable[str], reader: PermissionSetReader) -> None:
        todo = sorted(set(keys) - self.fresh_pairs)
        if not todo:
            return
        found = run_all(
            self.pool, lambda k: reader.assignments(split_pair(k)), todo, "account assignment lists"
        )
        for key, group in zip(todo, found, strict=True):
            self.fresh_pairs.add(key)
            self.cache.pairs[key] = CachedPair(
                principals=sorted((a.principal_type, a.principal_id) for a in group), read_at=self.now
            )
        self.stats.pairs_read += len(todo)

    # ------------------------------------------------------------------ the run
    def observe(self, plan_touches: PlanTouches | None) -> ObservedState:
        sso = self.clients.sso_admin
        instance_arn, store_id = read_instance(sso)
        full = self.options.full or not self.cache.usable_for(instance_arn)
        if not self.cache.usable_for(instance_arn):
            self.cache = ObservedCache(instance_arn=instance_arn, identity_store_id=store_id)
        self.stats.mode = "full" if full else ("scoped" if not self.scope.is_full else "incremental")
        arns = list(paginate(sso, "list_permission_sets", "PermissionSets", InstanceArn=instance_arn))
        for gone in set(self.cache.permission_sets) - set(arns):
            del self.cache.permission_sets[gone]  # deleted (by hand or by us)
        reader = PermissionSetReader(
            self.clients, instance_arn, self.config, self.desired_names, self.scope, ""
        )
        incremental = not full and self.scope.is_full
        # Organizations and identitystore are quota families of their own: their reads run in the
        # background, beside the sso-admin reads.
        with ThreadPoolExecutor(max_workers=2, thread_name_prefix="observe-bg") as background:
            org_future = background.submit(read_organization, self.clients.organizations, None)

            # 1. permission sets: new ones, invalidated ones (``ObservedCache.invalidate``: written by a run
            #    that could not tell the cache), ones whose cached read lacks what kintone now needs, every
            #    one in a full or scoped read; then the sweep's share (oldest first).
            cached = self.cache.permission_sets
            needs = [
                arn
                for arn in arns
                if not incremental
                or arn not in cached
                or cached[arn].read_at == UNREAD
                or (not cached[arn].detailed and cached[arn].state.name in self.desired_names)
            ]
            self.stats.new_items += sum(1 for arn in needs if arn not in cached)
            self.read_permission_sets(needs, reader)
            sweep_arns, sweep_keys = self._pick_sweep() if incremental else ([], [])
            self.read_permission_sets(sweep_arns, reader)

            org = org_future.result()
            mgmt = org.management_account_id
            names_future = background.submit(self._resolve_names, org, store_id, full)

            # 2. pairs of managed sets (the provisioned accounts say which exist): new pairs and the sweep's
            #    are read now; pairs of sets no longer managed or provisioned leave the cache.
            wanted = managed_pairs((c.state for c in self.cache.permission_sets.values()), mgmt, Scope())
            if self.scope.is_full:
                for gone in set(self.cache.pairs) - wanted:
                    del self.cache.pairs[gone]
            in_scope = self._in_scope_pairs(wanted, mgmt)
            new_pairs = {k for k in in_scope if k not in self.cache.pairs}
            self.stats.new_items += len(new_pairs)
            new_pairs |= {
                k for k in in_scope if k in self.cache.pairs and self.cache.pairs[k].read_at == UNREAD
            }
            if incremental:
                self.read_pairs(sorted(new_pairs) + [k for k in sweep_keys if k in wanted], reader)
            else:
                self.read_pairs(in_scope, reader)
            missing = names_future.result()

        # 3. names of the principals met in assignments (ids the cache does not know yet)
        principal_ids, principal_names = self._name_ids(store_id)

        observed = self._assemble(instance_arn, store_id, org, principal_ids, principal_names, missing)
        # 5. confirm what the plan touches on fresh reads, then plan again (a fresh read may show more).
        if plan_touches is not None and not (full or not self.scope.is_full):
            for _ in range(MAX_CONFIRM_ROUNDS):
                touches = plan_touches(observed)
                stale_arns = set(touches.arns) - self.fresh_arns
                stale_pairs = set(touches.pairs) - self.fresh_pairs
                if not stale_arns and not stale_pairs:
                    break
                self.stats.confirm_rounds += 1
                self.read_permission_sets(stale_arns, reader)
                wanted = managed_pairs((c.state for c in self.cache.permission_sets.values()), mgmt, Scope())
                for gone in set(self.cache.pairs) - wanted:
                    del self.cache.pairs[gone]
                in_scope = self._in_scope_pairs(wanted, mgmt)
                new_pairs = {k for k in in_scope if k not in self.cache.pairs}
                self.read_pairs((stale_pairs & wanted) | new_pairs, reader)
                observed = self._assemble(
                    instance_arn, store_id, org, principal_ids, principal_names, missing
                )
            else:
                log.warning("the plan kept touching unread items after %d rounds", MAX_CONFIRM_ROUNDS)
            touches = plan_touches(observed)
            confirmed = sorted(set(touches.pairs) & self.fresh_pairs)
            observed = observed.model_copy(update={"complete": False, "confirmed_pairs": confirmed})
            self.stats.confirmed_pairs = len(confirmed)
        self.stats.cached_pairs = len(self.cache.pairs)
        self.stats.oldest = describe_age(self.cache.oldest_read(), self.now)
        return observed

    def _in_scope_pairs(self, wanted: set[str], mgmt: str) -> set[str]:
        if self.scope.is_full:
            return wanted
        names = {arn: c.state.name for arn, c in self.cache.permission_sets.items()}
        return {
            k
            for k in wanted
            if self.scope.includes_account(split_pair(k)[0])
            and self.scope.includes_permission_set(names.get(split_pair(k)[1], ""))
        }

    def _pick_sweep(self) -> tuple[list[str], list[str]]:
        """The sweep's share of this run: the oldest items within the budget (``sweep_budget``)."""
        cfg = self.config
        total = self.cache.sweep_cost()
        budget = sweep_budget(
            total,
            period_minutes=cfg.sweep_period_minutes,
            cadence_minutes=cfg.run_cadence_minutes,
            floor=cfg.sweep_min_calls_per_run,
            cap=cfg.sweep_max_calls_per_run,
        )
        self.stats.sweep_budget = budget
        self.stats.sweep_period_holds = sweep_period_holds(
            total, budget, period_minutes=cfg.sweep_period_minutes, cadence_minutes=cfg.run_cadence_minutes
        )
        if not self.stats.sweep_period_holds:
            log.warning(
                "the sweep cannot re-read everything within %s min: %s calls to read all, at most %s a run; "
                "raise sweep_max_calls_per_run or sweep_period_minutes",
                f"{cfg.sweep_period_minutes:,.0f}",
                f"{total:,}",
                f"{budget:,}",
            )
        arns, keys = pick_sweep(
            self.cache.permission_sets,
            self.cache.pairs,
            budget,
            exclude_arns=self.fresh_arns,
            exclude_pairs=self.fresh_pairs,
        )
        self.stats.sweep_permission_sets, self.stats.sweep_pairs = len(arns), len(keys)
        return arns, keys

    def _resolver(self, store_id: str) -> PrincipalResolver:
        return PrincipalResolver(self.clients.identitystore, store_id, self.options.principal_list_threshold)

    def _resolve_names(self, org: OrgSnapshot, store_id: str, full: bool) -> list[str]:
        """Ids of the names kintone mentions: from the cache, every user and group listed when the list
        is older than ``principal_refresh_minutes``, unknown names looked up. Returns the missing ones."""
        resolver = self._resolver(store_id)
        cache = self.cache
        if self.scope.is_full and (
            full or self.now - cache.principals_read_at > self.config.principal_refresh_minutes * 60
        ):
            ids: dict[str, str] = {}
            for ptype in ("USER", "GROUP"):
                ids.update({principal_key(ptype, n): pid for n, pid in resolver.list_all(ptype).items()})
            cache.principal_ids = dict(sorted(ids.items()))
            cache.principal_names = {pid: key for key, pid in ids.items()}
            cache.principals_read_at = self.now
            self.stats.principals_listed = True
        wanted = desired_principals(self.desired, self.scope, org)
        todo = {
            t: {n for n in names if principal_key(t, n) not in cache.principal_ids}
            for t, names in wanted.items()
        }
        found, by_id, missing = resolver.resolve(self.pool, todo)
        cache.principal_ids.update(found)
        cache.principal_names.update(by_id)
        return missing

    def _name_ids(self, store_id: str) -> tuple[dict[str, str], dict[str, str]]:
        cache = self.cache
        met = {(t, pid) for entry in cache.pairs.values() for t, pid in entry.principals}
        unknown = {(t, pid) for t, pid in met if pid not in cache.principal_names}
        if unknown:
            for pid, key in self._resolver(store_id).names_of(self.pool, unknown).items():
                cache.principal_names[pid] = key
                cache.principal_ids.setdefault(key, pid)
        return dict(cache.principal_ids), dict(cache.principal_names)

    def _assemble(
        self,
        instance_arn: str,
        store_id: str,
        org: OrgSnapshot,
        principal_ids: dict[str, str],
        principal_names: dict[str, str],
        missing: list[str],
    ) -> ObservedState:
        states = in_scope_states(self.cache.permission_sets, self.scope)
        pairs = self._in_scope_pairs(
            managed_pairs(states.values(), org.management_account_id, Scope()), org.management_account_id
        )
        assignments = assignments_of(self.cache.pairs, sorted(pairs))
        met = {a.principal_id for a in assignments}
        wanted = desired_principals(self.desired, self.scope, org)
        named = {principal_key(t, n) for t, names in wanted.items() for n in names}
        return ObservedState(
            instance_arn=instance_arn,
            identity_store_id=store_id,
            org=org,
            permission_sets=states,
            assignments=assignments,
            # only what this plan needs: the names kintone mentions and the principals met in assignments
            principal_ids={k: v for k, v in sorted(principal_ids.items()) if k in named or v in met},
            principal_names={k: v for k, v in sorted(principal_names.items()) if k in met or v in named},
            missing_principals=sorted(set(missing)),
            scoped=not self.scope.is_full,
            scope=None if self.scope.is_full else self.scope,
        )


def observe(
    clients: IdcClients,
    desired: DesiredState,
    config: SyncConfig,
    cache: ObservedCache | None,
    *,
    scope: Scope | None = None,
    plan_touches: PlanTouches | None = None,
    options: ObserveOptions | None = None,
) -> tuple[ObservedState, ObservedCache, ObserveStats]:
    """The observed state for this run's plan, the cache to save, and what was read.

    ``plan_touches`` computes the plan on a candidate state and returns what it would change (the DAG
    passes ``compute_plan`` with this run's params); without it nothing is confirmed and the result is
    only complete when the read was full. ``cache`` None or unusable (another instance, an old version):
    a full read.
    """
    options = options or ObserveOptions()
    scope = scope or Scope()
    with ThreadPoolExecutor(max_workers=max(1, options.max_workers), thread_name_prefix="observe") as pool:
        observer = _Observer(
            clients, desired, config, scope, (cache or ObservedCache()).model_copy(deep=True), options, pool
        )
        observed = observer.observe(plan_touches)
    stats = observer.stats
    if stats.mode in ("full", "scoped"):
        observed = observed.model_copy(update={"complete": True, "confirmed_pairs": []})
    log.info(
        "observe (%s): read %s permission set(s) and %s pair(s) (%s new; sweep %s sets + %s pairs within %s "
        "calls); %s pair(s) the plan touches confirmed in %d round(s); %s pairs cached, %s",
        stats.mode,
        f"{stats.permission_sets_read:,}",
        f"{stats.pairs_read:,}",
        f"{stats.new_items:,}",
        f"{stats.sweep_permission_sets:,}",
        f"{stats.sweep_pairs:,}",
        f"{stats.sweep_budget:,}",
        f"{stats.confirmed_pairs:,}",
        stats.confirm_rounds,
        f"{stats.cached_pairs:,}",
        stats.oldest,
    )
    return observed, observer.cache, stats
