"""Read what IAM Identity Center looks like now into an ``ObservedState``: the readers ``observe`` uses.

What is read, and why only that:

* **Organization**: DescribeOrganization (the management account, which is never touched), ListRoots, the
  OU tree (ListOrganizationalUnitsForParent from the root down) and the accounts of every parent
  (ListAccountsForParent), because OU targets expand to the ACTIVE accounts below an OU, nested.
* **Instance**: ListInstances (instance ARN, identity store id).
* **Permission sets**: all of them are listed and described (there is no lookup by name), with their tags
  (the ownership tag decides what the pipeline may touch). Policies (managed, customer managed, inline,
  boundary) are read only for managed permission sets and names kintone mentions. Provisioned accounts are
  read for those too (a permission set provisioned to the management account cannot be changed from the
  delegated administrator); stale accounts (``LATEST_PERMISSION_SET_NOT_PROVISIONED``) and the assignments
  (ListAccountAssignments per provisioned account) only for managed ones.
* **Principals**: the ids met in managed assignments (DescribeUser/DescribeGroup) so a deletion in the plan
  names a person, not a UUID; and the users/groups kintone names (GetUserId/GetGroupId; a miss is a
  *missing* principal, pending until SCIM brings it). In the DAG the snapshot runs in parallel with the
  kintone read (``desired=None``), so the names are looked up afterwards by ``resolve_principals`` in
  ``compute_diff`` (only those not already known). Above ``principal_list_threshold`` ids/names of one type
  it is cheaper to page through ListUsers/ListGroups (100 per call) than to look them up one by one.

Scope (trigger params): permission sets outside ``scope.permission_sets`` are described (needed to learn
their name) but not otherwise read and not returned; with ``scope.accounts`` only those accounts'
assignments are read. ``observed.scoped`` is then True and the plan never deletes outside what was read.

Cost of a full run at the design scale (2,000 accounts in ~200 OUs, 500 permission sets of which ~450
managed, 50,000 assignments over ~20,000 (account, permission set) pairs, 10,000 users):

* organizations: ~1 + 1 + 200 (OU tree) + ~300 (accounts per parent, 20 a page) = ~500 calls (10 rps: ~50 s,
  overlapping with the rest);
* sso-admin: 5 (list) + 1,000 (describe + tags) + ~2,000 (4 policy reads x managed/desired) + ~1,000
  (provisioned + stale lists) + ~20,000 (ListAccountAssignments, one per pair, more for pairs > 100)
  = ~24,000 calls: at IdC's 20 requests/s that is ~20 minutes, longer than the 10-minute cadence;
* identitystore: ~100 ListUsers pages + a few ListGroups pages (list mode), or one call per name.

The per-pair ListAccountAssignments is the floor of a *full* read (ListAccountAssignmentsForPrincipal is
management-account only). ``take_snapshot`` is that full read (``full_resync``, the benchmark's "naive
scan"); each run reads incrementally through ``idc_sync.observe``, which reuses these readers.
"""

from __future__ import annotations

import dataclasses as dc
import logging
import threading
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, TypeVar

from botocore.exceptions import ClientError

from idc_sync import idc_fields
from idc_sync.aws_clients import IdcClients, error_code, snake_case
from idc_sync.aws_responses import guard_pages
from idc_sync.config import SyncConfig
from idc_sync.model import (
    Account,
    AssignmentState,
    CustomerPolicyRef,
    DesiredState,
    ObservedState,
    OrganizationalUnit,
    OrgSnapshot,
    PermissionsBoundary,
    PermissionSetState,
    Scope,
    principal_key,
)

log = logging.getLogger(__name__)

T = TypeVar("T")

DEFAULT_MAX_WORKERS = 4


class SnapshotError(RuntimeError):
    """IdC cannot be read in a way that makes a plan meaningful (no instance, access denied, ...)."""


def paginate(client: Any, operation: str, result_key: str, **params: Any) -> Iterator[Any]:
    """Items of every page (empty pages with a NextToken are followed by botocore's paginator; a service
    that loops is stopped by :func:`aws_responses.guard_pages`)."""
    service = client.meta.service_model.service_id.hyphenize()
    api_name = client.meta.method_to_api_mapping.get(operation, operation)
    pages = client.get_paginator(operation).paginate(**params)
    for page in guard_pages(pages, service, api_name, items_key=result_key):
        yield from page.get(result_key, []) or []


class _Progress:
    """Logs ``read 120/500 permission sets`` about every 10% (and at the end), thread-safe."""

    def __init__(self, what: str, total: int) -> None:
        self.what, self.total, self.done = what, total, 0
        self.step = max(1, total // 10)
        self._lock = threading.Lock()

    def tick(self) -> None:
        with self._lock:
            self.done += 1
            if self.done == self.total or (self.total >= 20 and self.done % self.step == 0):
                log.info("read %d/%d %s", self.done, self.total, self.what)


def run_all(pool: ThreadPoolExecutor, fn: Callable[..., T], items: Iterable[Any], what: str) -> list[T]:
    items = list(items)
    progress = _Progress(what, len(items))

    def run(item: Any) -> T:
        result = fn(item)
        progress.tick()
        return result

    futures: list[Future[T]] = [pool.submit(run, item) for item in items]
    return [f.result() for f in futures]


# --------------------------------------------------------------------------- organizations
def read_organization(organizations: Any, pool: ThreadPoolExecutor | None = None) -> OrgSnapshot:
    """The management account id, the OU tree and every account with its parent."""
    org = organizations.describe_organization()["Organization"]
    mgmt = org.get("MasterAccountId") or org.get("ManagementAccountId") or ""
    roots = list(paginate(organizations, "list_roots", "Roots"))
    if not roots:
        raise SnapshotError("organizations ListRoots returned no root")
    root_id = roots[0]["Id"]

    ous: dict[str, OrganizationalUnit] = {}
    level = [root_id]
    while level:  # breadth first: each level's parents in parallel

        def children(parent: str) -> list[OrganizationalUnit]:
            return [
                OrganizationalUnit(id=ou["Id"], name=ou.get("Name", ""), parent_id=parent)
                for ou in paginate(
                    organizations,
                    "list_organizational_units_for_parent",
                    "OrganizationalUnits",
                    ParentId=parent,
                )
            ]

        found = list(pool.map(children, level)) if pool else [children(p) for p in level]
        level = []
        for group in found:
            for ou in group:
                ous[ou.id] = ou
                level.append(ou.id)

    def accounts_of(parent: str) -> list[Account]:
        return [
            Account(
                id=a["Id"],
                name=a.get("Name", ""),
                state=a.get("State") or a.get("Status") or "ACTIVE",
                parent_id=parent,
            )
            for a in paginate(organizations, "list_accounts_for_parent", "Accounts", ParentId=parent)
        ]

    parents = [root_id, *ous]
    found_accounts = list(pool.map(accounts_of, parents)) if pool else [accounts_of(p) for p in parents]
    accounts = {a.id: a for group in found_accounts for a in group}
    log.info("read organization: %d accounts, %d OUs, management account %s", len(accounts), len(ous), mgmt)
    return OrgSnapshot(management_account_id=mgmt, root_id=root_id, accounts=accounts, ous=ous)


# --------------------------------------------------------------------------- sso-admin
def read_instance(sso_admin: Any) -> tuple[str, str]:
    instances = list(paginate(sso_admin, "list_instances", "Instances"))
    if not instances:
        raise SnapshotError(
            "no IAM Identity Center instance is visible to this role (sso-admin ListInstances)"
        )
    if len(instances) > 1:
        log.warning(
            "%d IdC instances visible; using the first (%s)", len(instances), instances[0]["InstanceArn"]
        )
    return instances[0]["InstanceArn"], instances[0]["IdentityStoreId"]


# --------------------------------------------------------------------------- one permission set
@dc.dataclass(frozen=True)
class SsoReads:
    """How the permission set readers below reach sso-admin, by API operation name ("DescribePermissionSet"):
    ``call(operation, **params)`` returns the response, ``pages(operation, result_key, **params)`` the
    items of every page. The snapshot calls a boto3 client directly (``of_client``); apply passes its own
    calls (its retries and request ids)."""

    call: Callable[..., dict[str, Any]]
    pages: Callable[..., list[Any]]

    @classmethod
    def of_client(cls, sso: Any) -> SsoReads:
        return cls(
            call=lambda operation, **params: getattr(sso, snake_case(operation))(**params),
            pages=lambda operation, key, **params: list(paginate(sso, snake_case(operation), key, **params)),
        )


def read_permission_set(
    reads: SsoReads, instance_arn: str, arn: str, config: SyncConfig
) -> PermissionSetState:
    """One permission set as IdC has it now: attributes, tags (``managed``: the ownership tag) and policies
    (not its provisioned accounts)."""
    desc = reads.call("DescribePermissionSet", InstanceArn=instance_arn, PermissionSetArn=arn)[
        "PermissionSet"
    ]
    state = permission_set_state(reads, instance_arn, arn, desc, config)
    read_policies(reads, instance_arn, state)
    return state


def permission_set_state(
    reads: SsoReads, instance_arn: str, arn: str, description: dict[str, Any], config: SyncConfig
) -> PermissionSetState:
    """A permission set's attributes (from its DescribePermissionSet ``description``) and tags."""
    tags = permission_set_tags(reads, instance_arn, arn)
    return PermissionSetState(
        arn=arn,
        name=description["Name"],
        description=description.get("Description") or "",
        session_duration=description.get("SessionDuration") or "PT1H",
        relay_state=description.get("RelayState") or None,
        tags=tags,
        managed=tags.get(config.ownership_tag_key) == config.ownership_tag_value,
    )


def permission_set_tags(reads: SsoReads, instance_arn: str, arn: str) -> dict[str, str]:
    items = reads.pages("ListTagsForResource", "Tags", InstanceArn=instance_arn, ResourceArn=arn)
    return {t["Key"]: t.get("Value", "") for t in items}


def read_policies(reads: SsoReads, instance_arn: str, state: PermissionSetState) -> None:
    """Fill in ``state``'s policies: AWS managed, customer managed, inline and the permissions boundary."""
    args = {"InstanceArn": instance_arn, "PermissionSetArn": state.arn}
    state.managed_policies = managed_policy_arns(reads, instance_arn, state.arn)
    state.customer_managed_policies = customer_policy_refs(reads, instance_arn, state.arn)
    state.inline_policy = reads.call("GetInlinePolicyForPermissionSet", **args).get("InlinePolicy") or None
    try:
        raw = reads.call("GetPermissionsBoundaryForPermissionSet", **args).get("PermissionsBoundary")
    except ClientError as exc:
        if error_code(exc) != "ResourceNotFoundException":  # AWS answers "no boundary" with a 404
            raise
        raw = None
    state.permissions_boundary = _boundary(raw)


def managed_policy_arns(reads: SsoReads, instance_arn: str, arn: str) -> list[str]:
    operation = "ListManagedPoliciesInPermissionSet"
    items = reads.pages(operation, "AttachedManagedPolicies", InstanceArn=instance_arn, PermissionSetArn=arn)
    return sorted(p["Arn"] for p in items)


def customer_policy_refs(reads: SsoReads, instance_arn: str, arn: str) -> list[CustomerPolicyRef]:
    operation, key = "ListCustomerManagedPolicyReferencesInPermissionSet", "CustomerManagedPolicyReferences"
    items = reads.pages(operation, key, InstanceArn=instance_arn, PermissionSetArn=arn)
    refs = (CustomerPolicyRef(name=r["Name"], path=r.get("Path") or "/") for r in items)
    return sorted(refs, key=lambda r: (r.path, r.name))


def _boundary(raw: dict[str, Any] | None) -> PermissionsBoundary | None:
    if not raw:
        return None
    if raw.get("ManagedPolicyArn"):
        return PermissionsBoundary(managed_policy_arn=raw["ManagedPolicyArn"])
    ref = raw.get("CustomerManagedPolicyReference")
    if ref:
        return PermissionsBoundary(
            customer_managed_policy=CustomerPolicyRef(name=ref["Name"], path=ref.get("Path") or "/")
        )
    return None


class PermissionSetReader:
    def __init__(
        self,
        clients: IdcClients,
        instance_arn: str,
        config: SyncConfig,
        desired_names: set[str],
        scope: Scope,
        management_account_id: str,
    ) -> None:
        self.sso = clients.sso_admin
        self.reads = SsoReads.of_client(self.sso)
        self.instance = instance_arn
        self.config = config
        self.desired_names = desired_names
        self.scope = scope
        self.mgmt = management_account_id

    def read(self, arn: str) -> PermissionSetState | None:
        """One permission set; None when it is outside the scope (then only described)."""
        ps = self.reads.call("DescribePermissionSet", InstanceArn=self.instance, PermissionSetArn=arn)[
            "PermissionSet"
        ]
        if not self.scope.includes_permission_set(ps["Name"]):
            return None
        state = permission_set_state(self.reads, self.instance, arn, ps, self.config)
        if not (state.managed or state.name in self.desired_names):
            return state
        read_policies(self.reads, self.instance, state)
        state.provisioned_accounts = self._accounts(arn)
        if state.managed:
            state.stale_accounts = self._accounts(arn, "LATEST_PERMISSION_SET_NOT_PROVISIONED")
        return state

    def _accounts(self, arn: str, status: str | None = None) -> list[str]:
        return provisioned_accounts(self.reads, self.instance, arn, status)

    def assignments(self, pair: tuple[str, str]) -> list[AssignmentState]:
        account_id, arn = pair
        return account_assignments(self.reads, self.instance, account_id, arn)


def provisioned_accounts(
    reads: SsoReads, instance_arn: str, arn: str, status: str | None = None
) -> list[str]:
    """Accounts the permission set is provisioned to (all, or those of one ``ProvisioningStatus``), sorted."""
    params: dict[str, Any] = {"InstanceArn": instance_arn, "PermissionSetArn": arn}
    if status:
        params["ProvisioningStatus"] = status
    return sorted(set(reads.pages("ListAccountsForProvisionedPermissionSet", "AccountIds", **params)))


def account_assignments(
    reads: SsoReads, instance_arn: str, account_id: str, arn: str
) -> list[AssignmentState]:
    """The assignments of one (account, permission set) pair."""
    items = reads.pages(
        "ListAccountAssignments",
        "AccountAssignments",
        InstanceArn=instance_arn,
        AccountId=account_id,
        PermissionSetArn=arn,
    )
    return [
        AssignmentState(
            account_id=account_id,
            permission_set_arn=arn,
            principal_type=a["PrincipalType"],
            principal_id=a["PrincipalId"],
        )
        for a in items
    ]


# --------------------------------------------------------------------------- identity store
class PrincipalResolver:
    def __init__(self, identitystore: Any, identity_store_id: str, list_threshold: int) -> None:
        self.ids = identitystore
        self.store = identity_store_id
        self.list_threshold = list_threshold

    def resolve(
        self, pool: ThreadPoolExecutor, names: dict[str, set[str]]
    ) -> tuple[dict[str, str], dict[str, str], list[str]]:
        """principal_ids ("USER:alice" -> id), principal_names (id -> "USER:alice"), missing keys."""
        found: dict[str, str] = {}
        by_id: dict[str, str] = {}
        missing: list[str] = []
        for ptype in ("USER", "GROUP"):
            wanted = sorted(names.get(ptype, set()))
            if not wanted:
                continue
            if len(wanted) > self.list_threshold:
                listing = self.list_all(ptype)
                by_id.update({pid: principal_key(ptype, n) for n, pid in listing.items()})
                results = [(n, listing.get(n)) for n in wanted]
            else:
                results = list(
                    zip(
                        wanted,
                        run_all(
                            pool, lambda n, t=ptype: self._lookup(t, n), wanted, f"{ptype.lower()} names"
                        ),
                        strict=True,
                    )
                )
            for name, pid in results:
                key = principal_key(ptype, name)
                if pid is None:
                    missing.append(key)
                else:
                    found[key] = pid
                    by_id[pid] = key
        return found, by_id, sorted(missing)

    def _lookup(self, ptype: str, name: str) -> str | None:
        try:
            if ptype == "USER":
                resp = self.ids.get_user_id(
                    IdentityStoreId=self.store,
                    AlternateIdentifier={
                        "UniqueAttribute": {"AttributePath": "userName", "AttributeValue": name}
                    },
                )
                return str(resp["UserId"])
            resp = self.ids.get_group_id(
                IdentityStoreId=self.store,
                AlternateIdentifier={
                    "UniqueAttribute": {"AttributePath": "displayName", "AttributeValue": name}
                },
            )
            return str(resp["GroupId"])
        except ClientError as exc:
            if error_code(exc) == "ResourceNotFoundException":
                return None
            raise

    def list_all(self, ptype: str) -> dict[str, str]:
        if ptype == "USER":
            return {
                u["UserName"]: u["UserId"]
                for u in paginate(self.ids, "list_users", "Users", IdentityStoreId=self.store)
            }
        return {
            g["DisplayName"]: g["GroupId"]
            for g in paginate(self.ids, "list_groups", "Groups", IdentityStoreId=self.store)
        }

    def describe(self, item: tuple[str, str]) -> tuple[str, str | None]:
        ptype, pid = item
        try:
            if ptype == "USER":
                return pid, principal_key(
                    "USER", self.ids.describe_user(IdentityStoreId=self.store, UserId=pid)["UserName"]
                )
            return pid, principal_key(
                "GROUP", self.ids.describe_group(IdentityStoreId=self.store, GroupId=pid)["DisplayName"]
            )
        except ClientError as exc:
            if error_code(exc) == "ResourceNotFoundException":
                return pid, None  # deleted from the identity store; the plan shows the id
            raise

    def names_of(self, pool: ThreadPoolExecutor, ids: Iterable[tuple[str, str]]) -> dict[str, str]:
        """id -> "USER:alice" for principal ids met in assignments (deleted principals are left out)."""
        out: dict[str, str] = {}
        for ptype in ("USER", "GROUP"):
            wanted = sorted({pid for t, pid in ids if t == ptype})
            if not wanted:
                continue
            if len(wanted) > self.list_threshold:
                listing = {pid: principal_key(ptype, n) for n, pid in self.list_all(ptype).items()}
                out.update({pid: listing[pid] for pid in wanted if pid in listing})
                continue
            items = [(ptype, pid) for pid in wanted]
            for pid, key in run_all(pool, self.describe, items, f"{ptype.lower()}s of managed assignments"):
                if key is not None:
                    out[pid] = key
        return out


# --------------------------------------------------------------------------- the snapshot
def desired_principals(desired: DesiredState, scope: Scope, org: OrgSnapshot) -> dict[str, set[str]]:
    """Principal names the desired state needs, limited to the scope (so a scoped run reads less)."""
    names: dict[str, set[str]] = {"USER": set(), "GROUP": set()}
    for a in desired.assignments:
        if not scope.includes_permission_set(a.permission_set_name):
            continue
        if scope.accounts:
            if idc_fields.is_account_id(a.target):
                if a.target not in scope.accounts:
                    continue
            elif a.target.startswith(("ou-", "r-")) and not set(org.active_accounts_under(a.target)) & set(
                scope.accounts
            ):
                continue
        names.setdefault(a.principal_type, set()).add(a.principal_name)
    return names


def take_snapshot(
    clients: IdcClients,
    desired: DesiredState | None,
    config: SyncConfig,
    scope: Scope | None = None,
    *,
    max_workers: int = DEFAULT_MAX_WORKERS,
    principal_list_threshold: int = 200,
) -> ObservedState:
    """Read the organization, the IdC instance, permission sets, managed assignments and principals.

    ``desired`` may be None: the DAG reads kintone and IdC in parallel tasks. Then only the principals of
    managed assignments are named here, and ``resolve_principals`` looks up the names kintone mentions
    once both are known (``compute_diff``). With a desired state, both happen here.
    ``max_workers`` bounds concurrent reads (each client is also paced, see ``aws_clients``); throttling
    is retried by botocore. See the module docstring for what is read and what a run costs.
    """
    scope = scope or Scope()
    desired_names: set[str] = set()
    if desired is not None:
        desired_names = set(desired.permission_sets) | {a.permission_set_name for a in desired.assignments}
    workers = max(1, max_workers)
    # Separate pools per quota family: sso-admin/organizations reads in ``pool``, identitystore lookups in
    # ``ids_pool`` (driven from one background thread), so neither waits on a task queued behind the other.
    with (
        ThreadPoolExecutor(max_workers=workers, thread_name_prefix="snapshot") as pool,
        ThreadPoolExecutor(max_workers=workers, thread_name_prefix="snapshot-ids") as ids_pool,
        ThreadPoolExecutor(max_workers=1, thread_name_prefix="snapshot-principals") as background,
    ):
        instance_arn, store_id = read_instance(clients.sso_admin)
        org = read_organization(clients.organizations, pool)
        mgmt = org.management_account_id

        # Principals named by kintone: identitystore is a separate quota, so overlap with sso-admin reads.
        resolver = PrincipalResolver(clients.identitystore, store_id, principal_list_threshold)
        wanted = desired_principals(desired, scope, org) if desired is not None else {}
        principals_future = background.submit(resolver.resolve, ids_pool, wanted)

        arns = list(
            paginate(clients.sso_admin, "list_permission_sets", "PermissionSets", InstanceArn=instance_arn)
        )
        log.info("%d permission sets in %s", len(arns), instance_arn)
        reader = PermissionSetReader(clients, instance_arn, config, desired_names, scope, mgmt)
        states = [s for s in run_all(pool, reader.read, arns, "permission sets") if s is not None]
        permission_sets = {s.name: s for s in states}
        managed = [s for s in states if s.managed]

        pairs = [
            (account, s.arn)
            for s in managed
            for account in s.provisioned_accounts
            if account != mgmt and scope.includes_account(account)
        ]
        log.info(
            "%d managed permission sets (%d unmanaged read); reading assignments of %d (account, permission set) pairs",
            len(managed),
            len(states) - len(managed),
            len(pairs),
        )
        assignments = [
            a for group in run_all(pool, reader.assignments, pairs, "account assignment lists") for a in group
        ]

        principal_ids, principal_names, missing = principals_future.result()
        unknown = {
            (a.principal_type, a.principal_id) for a in assignments if a.principal_id not in principal_names
        }
        for pid, key in resolver.names_of(ids_pool, unknown).items():
            principal_names[pid] = key
            principal_ids.setdefault(key, pid)

    log.info(
        "snapshot: %d permission sets (%d managed), %d managed assignments, %d principals resolved, %d missing",
        len(permission_sets),
        len(managed),
        len(assignments),
        len(principal_ids),
        len(missing),
    )
    return ObservedState(
        instance_arn=instance_arn,
        identity_store_id=store_id,
        org=org,
        permission_sets=dict(sorted(permission_sets.items())),
        assignments=sorted(
            assignments, key=lambda a: (a.account_id, a.permission_set_arn, a.principal_type, a.principal_id)
        ),
        principal_ids=dict(sorted(principal_ids.items())),
        principal_names=dict(sorted(principal_names.items())),
        missing_principals=missing,
        scoped=not scope.is_full,
        scope=None if scope.is_full else scope,
    )


def resolve_principals(
    clients: IdcClients,
    observed: ObservedState,
    desired: DesiredState,
    scope: Scope | None = None,
    *,
    max_workers: int = DEFAULT_MAX_WORKERS,
    principal_list_threshold: int = 200,
) -> ObservedState:
    """``observed`` plus the ids of the principals ``desired`` names (and which of them are missing).

    For a snapshot taken without the desired state (parallel tasks): looks up only names not already known
    from managed assignments, within ``scope`` (default: the snapshot's). Returns a new ObservedState.
    """
    scope = scope or observed.scope or Scope()
    wanted = desired_principals(desired, scope, observed.org)
    known = set(observed.principal_ids)
    todo = {t: {n for n in names if principal_key(t, n) not in known} for t, names in wanted.items()}
    resolver = PrincipalResolver(clients.identitystore, observed.identity_store_id, principal_list_threshold)
    with ThreadPoolExecutor(max_workers=max(1, max_workers), thread_name_prefix="principals") as pool:
        found, by_id, missing = resolver.resolve(pool, todo)
    principal_ids = {**observed.principal_ids, **found}
    principal_names = {**observed.principal_names, **by_id}
    log.info(
        "resolved %d principal name(s) kintone mentions: %d found, %d missing (not in IdC yet)",
        sum(len(v) for v in todo.values()),
        len(found),
        len(missing),
    )
    return observed.model_copy(
        update={
            "principal_ids": dict(sorted(principal_ids.items())),
            "principal_names": dict(sorted(principal_names.items())),
            "missing_principals": sorted(set(missing)),
        }
    )
