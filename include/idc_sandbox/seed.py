"""Seeding the sandbox world: a JSON seed format, the named seeds in ``seeds/``, and a large-org generator.

Why a declarative seed: the demo, the tests and a newcomer's first ``make sandbox`` all need the same
believable organization (with its traps) without knowing the dataclasses; a seed file says *what exists*
in people's terms (user names, permission set names) and the loader derives the ids and cross-links.

Seed format (every section and key optional; ``load_seed`` starts from an empty world)::

    {
      "organization": {
        "id": "o-exampleorg1", "management_account_id": "111111111111", "root_id": "r-ab12",
        "ous": [{"id": "ou-ab12-11111111", "name": "Security", "parent": "r-ab12"}],     # parents first
        "accounts": [{"id": "222222222222", "name": "security", "email": "...", "parent": "ou-...",
                      "state": "ACTIVE" | "SUSPENDED" | ...}]
      },
      "identity_center": {
        "instance_arn": "arn:aws:sso:::instance/ssoins-<16 hex>", "owner_account_id": "222222222222",
        "permission_sets": [{"name": "AWSAdministratorAccess", "id": "ps-<16 hex>" (default: from name),
                             "description": "", "session_duration": "PT1H", "relay_state": null,
                             "managed_policies": ["AdministratorAccess" | "job-function/X" | ARN],
                             "customer_managed": [{"name": "X", "path": "/"}],
                             "inline_policy": "<json text>" | {object}, "boundary": {PermissionsBoundary},
                             "tags": {"managed-by": "idc-sync"},
                             "provisioned_to": ["<account>"],   # besides the accounts of its assignments
                             "stale_in": ["<account>"]}],       # provisioned, but an older version
        "assignments": [{"accounts": ["<id>"] | "account": "<id>", "permission_set": "<name>",
                         "principal_type": "USER" | "GROUP", "principal": "<UserName | group DisplayName>"}]
      },
      "identity_store": {"id": "d-...", "users": [{"user_name", "display_name", "email", ...}],   # made by hand
                         "groups": [{"display_name", "description", "members": ["<user_name>"]}]},
      "entra": {
        "tenant_id": "...", "service_principal_id": "...", "clients": {"<client id>": "<secret>"},
        "users": [{"upn": "alice@example.com", "display_name": "Alice", "mail": "...",
                   "assigned": true,        # in scope of the IdC enterprise app
                   "provisioned": true}],   # already copied to the identity store by SCIM
        "groups": [{"display_name": "developers", "members": ["<upn>"], "assigned": true, "provisioned": true}],
        "jobs": [{"last_success_minutes_ago": 12, ...SyncJob fields...}]
      },
      "kintone": {
        "domain": "example.cybozu.com",
        "users": {"<code>": "<display name>"},    # default: the Entra users (code = UPN = IdC UserName)
        "logins": {"<code>": "<password>"},      # password auth (X-Cybozu-Authorization)
        "daily_limit": 10000, "cursor_ttl_seconds": 600,
        "apps": [{"key": "permission_sets" | "assignments",   # field definitions from idc_sync.kintone_apps
                  "id": 1, "name": "...", "tokens": ["..."], "fields": {properties} (default: by key),
                  "records": [{"by": "<user code>", "modified_by": "<code>", "created_minutes_ago": 600,
                               "updated_minutes_ago": 30, "fields": {"<code>": <plain value>}}]}]
      },
      "slack": {"webhooks": ["/services/T.../B.../..."]}
    }

Plain record values: text as strings, USER_SELECT as a list of codes, SUBTABLE as a list of row dicts.

Entry points: :func:`load_seed` (a dict), :func:`load_named_seed` (``seeds/<name>.json``),
:func:`generate_seed` (builds a large consistent world straight into dataclasses: 2,000 accounts / 50,000
assignments in about a second), :func:`load_spec` (the CLI's ``demo | FILE | gen:k=v,...``).
The fixed sandbox credentials (``CREDENTIALS``) are applied to every seed so tools can rely on them.
"""

from __future__ import annotations

import dataclasses as dc
import datetime as dt
import hashlib
import json
import pathlib
import random
import time
import uuid
from typing import Any

from idc_sandbox import kintone as kintone_api
from idc_sandbox.core import Sandbox
from idc_sandbox.state import (
    Account,
    Assignment,
    EntraGroup,
    EntraUser,
    Group,
    KintoneApp,
    OrganizationalUnit,
    PermissionSet,
    SyncJob,
    User,
    World,
    utcnow,
)

SEEDS_DIR = pathlib.Path(__file__).with_name("seeds")
OWNERSHIP_TAG_KEY, OWNERSHIP_TAG_VALUE = "managed-by", "idc-sync"  # SyncConfig defaults
OWNERSHIP_TAG = {OWNERSHIP_TAG_KEY: OWNERSHIP_TAG_VALUE}

# Sandbox-only fake secrets, fixed so that README, Airflow connections and scripts can name them.
CREDENTIALS: dict[str, Any] = {
    "kintone": {
        "permission_sets_app": 1,
        "assignments_app": 2,
        "tokens": {
            "1": "sandbox-kintone-token-permission-sets",
            "2": "sandbox-kintone-token-assignments",
        },
        "login": "admin",
        "password": "sandbox-admin-password",
    },
    "graph": {
        "tenant_id": "8f3c5a4e-1d2b-4c6a-9e7f-0a1b2c3d4e5f",
        "client_id": "6a4c9e2b-1f3d-4b5a-8c7e-9d0f1a2b3c4d",
        "client_secret": "sandbox-graph-client-secret",
        "service_principal_id": "5b2f8e0c-7a41-4d6e-9c3b-2e1f0a9d8c7b",
    },
    "slack": {"webhook_path": "/services/T0SANDBOX/B0SANDBOX/sandboxwebhooksecret0001"},
}

_ENTRA_NS = uuid.UUID("0b7f3a52-6c1d-4e8f-9a2b-3c4d5e6f7a8b")


class SeedError(ValueError):
    """The seed is inconsistent (unknown OU parent, unknown principal, ...): says which item."""


# --------------------------------------------------------------------------- helpers
def managed_policy_arn(name: str) -> str:
    if name.startswith("arn:"):
        return name
    return f"arn:aws:iam::aws:policy/{name.strip('/')}"


def permission_set_arn(instance_arn: str, ps_id: str) -> str:
    return f"arn:aws:sso:::permissionSet/{instance_arn.rsplit('/', 1)[1]}/{ps_id}"


def ps_id_for(name: str) -> str:
    return "ps-" + hashlib.sha256(name.encode()).hexdigest()[:16]


def entra_id_for(key: str) -> str:
    return str(uuid.uuid5(_ENTRA_NS, key))


def _store_id(rng: random.Random) -> str:
    """Identity store user/group ids look like ``<10 hex>-<uuid>``."""
    return f"{rng.getrandbits(40):010x}-{uuid.UUID(int=rng.getrandbits(128), version=4)}"


def _ago(minutes: float | None, default: float) -> dt.datetime:
    return utcnow() - dt.timedelta(minutes=default if minutes is None else minutes)


def _apply_credentials(sandbox: Sandbox) -> None:
    """Fixed Graph client, Slack webhook and kintone login, present in every seeded world."""
    world = sandbox.world
    graph = CREDENTIALS["graph"]
    world.entra.tenant_id = graph["tenant_id"]
    world.entra.service_principal_id = graph["service_principal_id"]
    world.entra.clients.setdefault(graph["client_id"], graph["client_secret"])
    world.slack.webhooks.add(CREDENTIALS["slack"]["webhook_path"])
    kc = CREDENTIALS["kintone"]
    world.kintone.logins.setdefault(kc["login"], kc["password"])
    world.kintone.users.setdefault(kc["login"], "kintone administrator")


def _new_world(sandbox: Sandbox) -> None:
    sandbox.reset()
    sandbox.world = World()


def _set_job(sandbox: Sandbox, spec: dict[str, Any]) -> None:
    spec = dict(spec)
    minutes = spec.pop("last_success_minutes_ago", None)
    known = {f.name for f in dc.fields(SyncJob)}
    unknown = set(spec) - known
    if unknown:
        raise SeedError(f"entra.jobs: unknown SyncJob fields {sorted(unknown)}")
    try:
        from idc_sandbox import graph

        graph.set_job(sandbox, spec.get("id"), last_success_minutes_ago=minutes, **spec)
    except (ImportError, AttributeError):  # graph.py not available: plain dataclass
        job = SyncJob(**spec)
        sandbox.world.entra.jobs.append(job)


# --------------------------------------------------------------------------- load_seed
def load_seed(sandbox: Sandbox, seed: dict[str, Any]) -> dict[str, Any]:
    """Replaces the sandbox's world with ``seed`` (format in the module docstring); returns a summary."""
    started = time.perf_counter()
    with sandbox.lock:
        _new_world(sandbox)
        rng = random.Random(str(seed.get("seed", 7)))
        world = sandbox.world
        _load_organization(world, seed.get("organization") or {})
        users_by_name, groups_by_name = _load_principals(sandbox, seed, rng)
        _load_identity_center(sandbox, seed.get("identity_center") or {}, users_by_name, groups_by_name)
        for job in (seed.get("entra") or {}).get("jobs") or []:
            _set_job(sandbox, job)
        _load_kintone(sandbox, seed.get("kintone") or {})
        for path in (seed.get("slack") or {}).get("webhooks") or []:
            world.slack.webhooks.add(path)
        _apply_credentials(sandbox)
        return {**summary(sandbox), "seconds": round(time.perf_counter() - started, 3)}


def _load_organization(world: World, spec: dict[str, Any]) -> None:
    org = world.organization
    org.id = spec.get("id", org.id)
    org.management_account_id = spec.get("management_account_id", org.management_account_id)
    org.root_id = spec.get("root_id", org.root_id)
    for ou in spec.get("ous") or []:
        parent = ou.get("parent", org.root_id)
        if parent != org.root_id and parent not in org.ous:
            raise SeedError(f"OU {ou['id']}: unknown parent {parent} (list parents first)")
        org.ous[ou["id"]] = OrganizationalUnit(ou["id"], ou["name"], parent)
    now = utcnow()
    for acct in spec.get("accounts") or []:
        parent = acct.get("parent", org.root_id)
        if parent != org.root_id and parent not in org.ous:
            raise SeedError(f"account {acct['id']}: unknown parent {parent}")
        org.accounts[acct["id"]] = Account(
            id=acct["id"],
            name=acct.get("name", acct["id"]),
            email=acct.get("email", f"aws+{acct['id']}@example.com"),
            parent_id=parent,
            state=acct.get("state", "ACTIVE"),
            joined=now - dt.timedelta(days=int(acct.get("joined_days_ago", 365))),
        )
    if org.management_account_id not in org.accounts:
        org.accounts[org.management_account_id] = Account(
            org.management_account_id, "management", "aws+management@example.com", org.root_id
        )


def _load_principals(
    sandbox: Sandbox, seed: dict[str, Any], rng: random.Random
) -> tuple[dict[str, User], dict[str, Group]]:
    world = sandbox.world
    entra_spec = seed.get("entra") or {}
    store_spec = seed.get("identity_store") or {}
    entra = world.entra
    entra.tenant_id = entra_spec.get("tenant_id", entra.tenant_id)
    entra.service_principal_id = entra_spec.get("service_principal_id", entra.service_principal_id)
    entra.clients.update(entra_spec.get("clients") or {})
    store = world.identity_store
    store.id = store_spec.get("id", store.id)
    users_by_name: dict[str, User] = {}
    groups_by_name: dict[str, Group] = {}
    entra_by_upn: dict[str, EntraUser] = {}
    for u in entra_spec.get("users") or []:
        eu = EntraUser(
            id=u.get("id") or entra_id_for(u["upn"]),
            user_principal_name=u["upn"],
            display_name=u.get("display_name", u["upn"].split("@")[0]),
            mail=u.get("mail", u["upn"]),
            given_name=u.get("given_name", ""),
            surname=u.get("surname", ""),
            assigned_to_app=u.get("assigned", True),
        )
        entra.users[eu.id] = eu
        entra_by_upn[eu.user_principal_name] = eu
        if u.get("provisioned", eu.assigned_to_app):
            user = User(
                user_id=_store_id(rng),
                user_name=eu.user_principal_name,
                display_name=eu.display_name,
                email=eu.mail,
                given_name=eu.given_name,
                family_name=eu.surname,
                external_id=eu.id,
            )
            store.users[user.user_id] = user
            users_by_name[user.user_name] = user
    for u in store_spec.get("users") or []:
        user = User(
            user_id=_store_id(rng),
            user_name=u["user_name"],
            display_name=u.get("display_name", u["user_name"]),
            email=u.get("email", ""),
            given_name=u.get("given_name", ""),
            family_name=u.get("family_name", ""),
        )
        store.users[user.user_id] = user
        users_by_name[user.user_name] = user
    for g in entra_spec.get("groups") or []:
        members = []
        for upn in g.get("members") or []:
            if upn not in entra_by_upn:
                raise SeedError(f"entra group {g['display_name']}: unknown member {upn}")
            members.append(entra_by_upn[upn].id)
        eg = EntraGroup(
            id=g.get("id") or entra_id_for("group:" + g["display_name"]),
            display_name=g["display_name"],
            members=members,
            assigned_to_app=g.get("assigned", True),
        )
        entra.groups[eg.id] = eg
        if g.get("provisioned", eg.assigned_to_app):
            group = Group(
                group_id=_store_id(rng),
                display_name=eg.display_name,
                description=g.get("description", ""),
                external_id=eg.id,
                members={
                    users_by_name[upn].user_id for upn in g.get("members") or [] if upn in users_by_name
                },
            )
            store.groups[group.group_id] = group
            groups_by_name[group.display_name] = group
    for g in store_spec.get("groups") or []:
        unknown = [m for m in g.get("members") or [] if m not in users_by_name]
        if unknown:
            raise SeedError(f"identity store group {g['display_name']}: unknown members {unknown}")
        group = Group(
            group_id=_store_id(rng),
            display_name=g["display_name"],
            description=g.get("description", ""),
            members={users_by_name[m].user_id for m in g.get("members") or []},
        )
        store.groups[group.group_id] = group
        groups_by_name[group.display_name] = group
    return users_by_name, groups_by_name


def _load_identity_center(
    sandbox: Sandbox, spec: dict[str, Any], users: dict[str, User], groups: dict[str, Group]
) -> None:
    world = sandbox.world
    ic = world.identity_center
    ic.instance_arn = spec.get("instance_arn", ic.instance_arn)
    ic.owner_account_id = spec.get("owner_account_id", ic.owner_account_id)
    by_name: dict[str, PermissionSet] = {}
    extra_provisioned: list[tuple[str, PermissionSet, bool]] = []
    for p in spec.get("permission_sets") or []:
        inline = p.get("inline_policy")
        if isinstance(inline, dict | list):
            inline = json.dumps(inline)
        ps = PermissionSet(
            arn=permission_set_arn(ic.instance_arn, p.get("id") or ps_id_for(p["name"])),
            name=p["name"],
            description=p.get("description", ""),
            session_duration=p.get("session_duration", "PT1H"),
            relay_state=p.get("relay_state"),
            created=utcnow() - dt.timedelta(days=int(p.get("created_days_ago", 90))),
            managed_policies=[managed_policy_arn(m) for m in p.get("managed_policies") or []],
            customer_managed=[(c["name"], c.get("path", "/")) for c in p.get("customer_managed") or []],
            inline_policy=inline or None,
            boundary=p.get("boundary"),
            tags=dict(p.get("tags") or {}),
            version=int(p.get("version", 1)),
        )
        if ps.name in by_name:
            raise SeedError(f"duplicate permission set name {ps.name}")
        ic.permission_sets[ps.arn] = ps
        by_name[ps.name] = ps
        extra_provisioned += [(a, ps, False) for a in p.get("provisioned_to") or []]
        extra_provisioned += [(a, ps, True) for a in p.get("stale_in") or []]
    org = world.organization
    for i, a in enumerate(spec.get("assignments") or []):
        ps_ = by_name.get(a.get("permission_set", ""))
        if ps_ is None:
            raise SeedError(
                f"identity_center.assignments[{i}]: unknown permission set {a.get('permission_set')}"
            )
        ptype = a.get("principal_type", "USER")
        principal = (users if ptype == "USER" else groups).get(a.get("principal", ""))
        if principal is None:
            raise SeedError(f"identity_center.assignments[{i}]: unknown {ptype} {a.get('principal')}")
        pid = principal.user_id if isinstance(principal, User) else principal.group_id
        accounts = a.get("accounts") or [a["account"]]
        for acct in accounts:
            if acct not in org.accounts:
                raise SeedError(f"identity_center.assignments[{i}]: unknown account {acct}")
            ic.assignments.add(Assignment(acct, ps_.arn, ptype, pid))
            ic.provisioned[(acct, ps_.arn)] = ps_.version
    for acct, ps, stale in extra_provisioned:
        ic.provisioned[(acct, ps.arn)] = ps.version - 1 if stale else ps.version
        if stale and ps.version < 2:
            ps.version = 2
            ic.provisioned[(acct, ps.arn)] = 1


def _load_kintone(sandbox: Sandbox, spec: dict[str, Any]) -> None:
    world = sandbox.world
    k = world.kintone
    k.domain = spec.get("domain", k.domain)
    k.daily_limit = int(spec.get("daily_limit", k.daily_limit))
    k.cursor_ttl_seconds = float(spec.get("cursor_ttl_seconds", k.cursor_ttl_seconds))
    users = spec.get("users")
    if users is None:
        users = {u.user_principal_name: u.display_name for u in world.entra.users.values()}
    k.users.update(users)
    k.logins.update(spec.get("logins") or {})
    apps = spec.get("apps") or []
    ids = {a.get("key"): int(a["id"]) for a in apps if a.get("id") is not None}
    for a in sorted(apps, key=lambda a: int(a.get("id") or 10**6)):
        key = a.get("key")
        fields = a.get("fields")
        name = a.get("name")
        if fields is None and key:
            definition = _app_definition(key, ids.get("permission_sets"))
            fields, name = definition["properties"], name or definition["name"]
        app_id = int(a.get("id") or k.next_app_id)
        k.next_app_id = app_id
        app = kintone_api.create_app(sandbox, name or f"app {app_id}", fields=fields)
        app.api_tokens = list(a.get("tokens") or [])
        app.revision = int(a.get("revision", 5))
        for i, rec in enumerate(a.get("records") or []):
            try:
                kintone_api.build_record(
                    sandbox,
                    app,
                    rec.get("fields") or {},
                    user_code=rec.get("by", "Administrator"),
                    at=_ago(rec.get("created_minutes_ago"), 60 * 24 * 7),
                    modified_by=rec.get("modified_by"),
                    updated_at=_ago(rec["updated_minutes_ago"], 0) if "updated_minutes_ago" in rec else None,
                    revision=int(rec.get("revision", 1)),
                )
            except kintone_api.KintoneError as err:
                raise SeedError(
                    f"kintone app {app_id} record {i}: {err.code} {err.errors or err.text('en')}"
                ) from err


def _app_definition(key: str, permission_sets_app_id: int | None) -> dict[str, Any]:
    from idc_sync.kintone_apps import load_app_definition

    if key not in ("permission_sets", "assignments"):
        raise SeedError(f"unknown kintone app key {key!r}")
    return load_app_definition(
        key,  # type: ignore[arg-type]
        permission_sets_app_id=str(permission_sets_app_id) if permission_sets_app_id else None,
    )


def summary(sandbox: Sandbox) -> dict[str, Any]:
    w = sandbox.world
    return {
        "accounts": len(w.organization.accounts),
        "ous": len(w.organization.ous),
        "users": len(w.identity_store.users),
        "groups": len(w.identity_store.groups),
        "entra_users": len(w.entra.users),
        "permission_sets": len(w.identity_center.permission_sets),
        "assignments": len(w.identity_center.assignments),
        "kintone_records": {str(a.id): len(a.records) for a in w.kintone.apps.values()},
    }


def load_named_seed(name: str) -> dict[str, Any]:
    """The seed dict stored as ``seeds/<name>.json``."""
    path = SEEDS_DIR / f"{name}.json"
    if not path.is_file():
        known = sorted(p.stem for p in SEEDS_DIR.glob("*.json"))
        raise SeedError(f"no seed named {name!r}; known: {known}")
    data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return data


def load_spec(sandbox: Sandbox, spec: str) -> dict[str, Any]:
    """CLI form: ``demo`` (a named seed), ``path/to/seed.json`` or ``gen:accounts=2000,users=10000,...``."""
    if spec.startswith("gen:") or spec == "gen":
        params: dict[str, Any] = {}
        for part in spec[4:].split(","):
            if part.strip():
                key, _, value = part.partition("=")
                params[key.strip()] = float(value) if "." in value else int(value)
        return generate_seed(sandbox, **params)
    path = pathlib.Path(spec)
    if path.suffix == ".json" or path.is_file():
        return load_seed(sandbox, json.loads(path.read_text(encoding="utf-8")))
    return load_seed(sandbox, load_named_seed(spec))


# --------------------------------------------------------------------------- generator
_POLICIES = [
    "ReadOnlyAccess",
    "PowerUserAccess",
    "job-function/ViewOnlyAccess",
    "job-function/Billing",
    "job-function/DatabaseAdministrator",
    "job-function/NetworkAdministrator",
    "SecurityAudit",
    "AmazonS3ReadOnlyAccess",
    "AmazonEC2ReadOnlyAccess",
    "AWSSupportAccess",
    "CloudWatchReadOnlyAccess",
    "AmazonDynamoDBReadOnlyAccess",
]


def generate_seed(
    sandbox: Sandbox,
    *,
    accounts: int = 2000,
    ous: int = 60,
    users: int = 10_000,
    groups: int = 200,
    permission_sets: int = 500,
    assignments: int = 50_000,
    unmanaged_permission_sets: int = 5,
    suspended_ratio: float = 0.01,
    ou_target_ratio: float = 0.02,
    seed: int = 1,
) -> dict[str, Any]:
    """A large organization in steady state: kintone records and IdC agree exactly (a run should plan nothing).

    Built straight into the dataclasses (no JSON round trip) so 2,000 accounts / 50,000 assignments load in
    about a second. Account ids are ``100000000000 + n``; users ``user00001@example.com``; groups
    ``group-0001``; permission sets ``ps-0001`` (managed, tagged) plus a few unmanaged ``Legacy-*`` ones.
    """
    started = time.perf_counter()
    rng = random.Random(seed)
    with sandbox.lock:
        _new_world(sandbox)
        world = sandbox.world
        org = world.organization
        now = utcnow()
        mgmt, admin = org.management_account_id, world.identity_center.owner_account_id
        # OUs: a two-level tree (top-level OUs with children)
        top = max(1, ous // 10)
        ou_ids: list[str] = []
        for i in range(ous):
            oid = f"ou-{org.root_id[2:]}-{i:08x}"
            parent = org.root_id if i < top else ou_ids[i % top]
            org.ous[oid] = OrganizationalUnit(oid, f"ou-{i:03d}", parent)
            ou_ids.append(oid)
        leaves = ou_ids[top:] or ou_ids or [org.root_id]
        org.accounts[mgmt] = Account(
            mgmt, "management", "aws+management@example.com", org.root_id, joined=now
        )
        org.accounts[admin] = Account(
            admin, "identity-admin", "aws+admin@example.com", ou_ids[0] if ou_ids else org.root_id, joined=now
        )
        for n in range(max(0, accounts - 2)):
            aid = f"{100000000000 + n}"
            state = "SUSPENDED" if rng.random() < suspended_ratio else "ACTIVE"
            org.accounts[aid] = Account(
                aid, f"account-{n:05d}", f"aws+{aid}@example.com", leaves[n % len(leaves)], state, now
            )
        active = [a.id for a in org.accounts.values() if a.state == "ACTIVE" and a.id != mgmt]
        # OU -> active accounts below it (nested), for OU targets
        below: dict[str, list[str]] = {oid: [] for oid in ou_ids}
        for a in org.accounts.values():
            if a.state != "ACTIVE" or a.id == mgmt:
                continue
            parent = a.parent_id
            while parent in below:
                below[parent].append(a.id)
                parent = org.ous[parent].parent_id
        # principals: Entra users/groups all provisioned; kintone users = UPNs
        store, entra = world.identity_store, world.entra
        user_ids: list[str] = []
        user_names: list[str] = []
        for n in range(users):
            upn = f"user{n:05d}@example.com"
            eid = entra_id_for(upn)
            entra.users[eid] = EntraUser(eid, upn, f"User {n:05d}", upn, "User", f"{n:05d}")
            uid = _store_id(rng)
            store.users[uid] = User(uid, upn, f"User {n:05d}", upn, "User", f"{n:05d}", eid)
            world.kintone.users[upn] = f"User {n:05d}"
            user_ids.append(uid)
            user_names.append(upn)
        group_ids: list[str] = []
        group_names: list[str] = []
        entra_user_ids = list(entra.users)
        for n in range(groups):
            name = f"group-{n:04d}"
            members_idx = rng.sample(range(len(user_ids)), min(20, len(user_ids)))
            eid = entra_id_for("group:" + name)
            entra.groups[eid] = EntraGroup(eid, name, [entra_user_ids[i] for i in members_idx])
            gid = _store_id(rng)
            store.groups[gid] = Group(gid, name, "", eid, {user_ids[i] for i in members_idx})
            group_ids.append(gid)
            group_names.append(name)
        _set_job(sandbox, {"last_success_minutes_ago": 15})
        # permission sets (managed + a few unmanaged)
        ic = world.identity_center
        managed: list[PermissionSet] = []
        for n in range(permission_sets + unmanaged_permission_sets):
            is_managed = n < permission_sets
            name = f"ps-{n:04d}" if is_managed else f"Legacy-{n - permission_sets:03d}"
            policies = sorted({managed_policy_arn(p) for p in rng.sample(_POLICIES, rng.randint(1, 2))})
            ps = PermissionSet(
                arn=permission_set_arn(ic.instance_arn, ps_id_for(name)),
                name=name,
                description=f"generated permission set {name}",
                session_duration=rng.choice(["PT1H", "PT4H", "PT8H"]),
                created=now - dt.timedelta(days=30),
                managed_policies=policies,
                tags=dict(OWNERSHIP_TAG) if is_managed else {},
            )
            ic.permission_sets[ps.arn] = ps
            if is_managed:
                managed.append(ps)
        # kintone apps
        k = world.kintone
        ps_app = kintone_api.create_app(
            sandbox, "IdC permission sets", fields=_app_definition("permission_sets", 1)["properties"]
        )
        asg_app = kintone_api.create_app(
            sandbox, "IdC assignments", fields=_app_definition("assignments", 1)["properties"]
        )
        ps_app.api_tokens = [CREDENTIALS["kintone"]["tokens"]["1"]]
        asg_app.api_tokens = [CREDENTIALS["kintone"]["tokens"]["2"]]
        owner_pool = user_names[: max(1, min(50, len(user_names)))]
        for ps in managed:
            _fast_record(
                ps_app,
                {
                    "name": ps.name,
                    "description": ps.description,
                    "session_duration": ps.session_duration,
                    "managed_policies": "\n".join(a.split(":policy/", 1)[1] for a in ps.managed_policies),
                    "owners": [rng.choice(owner_pool)],
                },
                k.users,
                now - dt.timedelta(days=20),
            )
        # assignment records, expanded into IdC assignments until the target count is reached
        seen: set[Assignment] = ic.assignments
        guard = 0
        while len(seen) < assignments and managed and active and guard < assignments * 4:
            guard += 1
            ps = rng.choice(managed)
            if rng.random() < 0.8 or not group_ids:
                i = rng.randrange(len(user_ids))
                ptype, pid, fields = "USER", user_ids[i], {"principal_type": "USER", "users": [user_names[i]]}
            else:
                i = rng.randrange(len(group_ids))
                ptype, pid, fields = (
                    "GROUP",
                    group_ids[i],
                    {"principal_type": "GROUP", "group_name": group_names[i]},
                )
            if rng.random() < ou_target_ratio and leaves and leaves[0] in below:
                target = rng.choice(leaves)
                targets, accts = [target], below.get(target, [])
            else:
                accts = rng.sample(active, min(len(active), rng.randint(1, 8)))
                targets = accts
            new = [Assignment(a, ps.arn, ptype, pid) for a in accts]
            new = [x for x in new if x not in seen]
            if not new or len(new) != len(accts):
                continue  # keep records and assignments one-to-one (no overlapping records)
            seen.update(new)
            for x in new:
                ic.provisioned[(x.account_id, ps.arn)] = ps.version
            fields.update({"targets": "\n".join(targets), "permission_set": ps.name, "reason": "generated"})
            _fast_record(asg_app, fields, k.users, now - dt.timedelta(days=rng.randint(1, 300)))
        # unmanaged assignments (e.g. Control Tower) on a few accounts, incl. the management account
        for ps in ic.permission_sets.values():
            if ps.tags:
                continue
            for acct in [mgmt, *rng.sample(active, min(3, len(active)))]:
                if group_ids:
                    seen.add(Assignment(acct, ps.arn, "GROUP", group_ids[0]))
                    ic.provisioned[(acct, ps.arn)] = ps.version
        _apply_credentials(sandbox)
        return {**summary(sandbox), "seconds": round(time.perf_counter() - started, 3)}


def _fast_record(app: KintoneApp, fields: dict[str, Any], users: dict[str, str], at: dt.datetime) -> int:
    """A record written straight in kintone's wire shape (the generator's values are valid by construction)."""
    rid = app.next_record_id
    stamp = at.replace(second=0, microsecond=0).strftime("%Y-%m-%dT%H:%M:%SZ")
    author = {"code": "Administrator", "name": "Administrator"}
    record: dict[str, Any] = {
        "$id": {"type": "__ID__", "value": str(rid)},
        "$revision": {"type": "__REVISION__", "value": "1"},
    }
    for code, prop in app.fields.items():
        ftype = prop["type"]
        if ftype == "RECORD_NUMBER":
            value: Any = str(rid)
        elif ftype in ("CREATOR", "MODIFIER"):
            value = dict(author)
        elif ftype in ("CREATED_TIME", "UPDATED_TIME"):
            value = stamp
        elif code in fields:
            value = fields[code]
            if ftype == "USER_SELECT":
                value = [{"code": c, "name": users.get(c, c)} for c in value]
        elif ftype in ("USER_SELECT", "SUBTABLE", "CHECK_BOX", "MULTI_SELECT"):
            value = []
        elif ftype in ("DATE", "DROP_DOWN"):
            value = prop.get("defaultValue") or None
        else:
            value = prop.get("defaultValue", "")
        record[code] = {"type": ftype, "value": value}
    app.records[rid] = record
    app.next_record_id = rid + 1
    return rid
