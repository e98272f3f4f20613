"""The sandbox for the benchmark, in its own process (so its CPU and memory do not blur the DAG's figures).

    python scripts/bench/sandbox_proc.py --port N

Serves the unchanged sandbox app (include/idc_sandbox) on 127.0.0.1 plus one extra route, ``POST /_bench/rpc``
(``{"fn": name, "args": {...}}``), which calls a function of this module on the live ``Sandbox``: seed, switch
limits, count calls, make kintone edits and hand-made IdC changes, check outcomes. Nothing in include/ changes.
"""

from __future__ import annotations

import argparse
import collections
import random
import sys
import traceback
from typing import Any

import uvicorn
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from idc_sandbox import kintone as kintone_api
from idc_sandbox.core import Sandbox, SandboxConfig
from idc_sandbox.seed import generate_seed
from idc_sandbox.server import build_app
from idc_sandbox.state import Assignment

PS_APP, ASG_APP = 1, 2
REAL_LATENCY = 2.0  # SandboxConfig.async_latency_seconds is one number: the middle of AWS's 1-3 s


def _ic(sb: Sandbox) -> Any:
    return sb.world.identity_center


def _managed_arns(sb: Sandbox) -> set[str]:
    return {arn for arn, ps in _ic(sb).permission_sets.items() if ps.tags.get("managed-by") == "idc-sync"}


# --------------------------------------------------------------------------- set-up
def seed(sb: Sandbox, params: dict[str, Any]) -> dict[str, Any]:
    summary = generate_seed(sb, **params)
    sb.world.kintone.daily_limit = 10**9  # the bench counts kintone requests itself; never warn
    return summary


def limits(sb: Sandbox, mode: str, outstanding: int = 10) -> dict[str, Any]:
    """``real``: the services' documented limits (rate, 2 s async latency, ``outstanding`` assignment ops,
    3 provisionings). ``raised``: unlimited rates, ~0 latency, generous concurrency (set-up phases only)."""
    base = SandboxConfig()
    with sb.lock:
        cfg = sb.config
        if mode == "real":
            cfg.rate_limits = dict(base.rate_limits)
            cfg.async_latency_seconds = REAL_LATENCY
            cfg.max_outstanding_assignment_ops = int(outstanding)
            cfg.max_concurrent_provisioning = base.max_concurrent_provisioning
        else:
            cfg.rate_limits = {k: 0.0 for k in base.rate_limits}
            cfg.async_latency_seconds = 0.0
            cfg.max_outstanding_assignment_ops = 10_000
            cfg.max_concurrent_provisioning = 10_000
        sb._buckets.clear()
    return {
        "mode": mode,
        "rate_limits": cfg.rate_limits,
        "async_latency_seconds": cfg.async_latency_seconds,
        "max_outstanding_assignment_ops": cfg.max_outstanding_assignment_ops,
        "max_concurrent_provisioning": cfg.max_concurrent_provisioning,
    }


def clear_calls(sb: Sandbox) -> dict[str, Any]:
    sb.calls.clear()
    return {}


def stats(sb: Sandbox, latency: float = REAL_LATENCY) -> dict[str, Any]:
    """Calls since the last ``clear_calls``: by service and operation, errors, kintone per app, and the
    timing of the async assignment operations (for the cold-sync throughput)."""
    calls = sb.calls.calls()
    by_op: dict[str, dict[str, int]] = {}
    errors: dict[str, int] = collections.Counter()
    kintone_apps: dict[str, int] = collections.Counter()
    ok_ops: list[float] = []
    polls = 0
    for c in calls:
        by_op.setdefault(c.service, collections.Counter())[c.operation] += 1
        if c.error or c.status >= 400:
            errors[f"{c.service}:{c.operation}:{c.error or c.status}"] += 1
        if c.service == "kintone":
            kintone_apps[str(c.params.get("app", "-"))] += 1
        if c.service == "sso-admin" and c.status < 400:
            if c.operation in ("CreateAccountAssignment", "DeleteAccountAssignment"):
                ok_ops.append(c.at)
            elif c.operation in (
                "DescribeAccountAssignmentCreationStatus",
                "DescribeAccountAssignmentDeletionStatus",
            ):
                polls += 1
    window = (max(ok_ops) - min(ok_ops) + latency) if ok_ops else 0.0
    return {
        "by_operation": {s: dict(sorted(ops.items())) for s, ops in sorted(by_op.items())},
        "totals": {s: sum(ops.values()) for s, ops in by_op.items()},
        "errors": dict(sorted(errors.items())),
        "kintone_by_app": dict(kintone_apps),
        "assignment_ops_ok": len(ok_ops),
        "assignment_status_polls_ok": polls,
        "assignment_ops_window_s": round(window, 3),
    }


def world_summary(sb: Sandbox) -> dict[str, Any]:
    ic = _ic(sb)
    managed = _managed_arns(sb)
    return {
        "assignments": len(ic.assignments),
        "managed_assignments": sum(1 for a in ic.assignments if a.permission_set_arn in managed),
        "permission_sets": len(ic.permission_sets),
        "managed_permission_sets": len(managed),
        "kintone_records": {str(a.id): len(a.records) for a in sb.world.kintone.apps.values()},
    }


def make_cold(sb: Sandbox) -> dict[str, Any]:
    """IdC as on day one: every assignment of a managed permission set gone and those sets provisioned
    nowhere (kintone keeps its records; permission sets keep existing)."""
    with sb.lock:
        ic = _ic(sb)
        managed = _managed_arns(sb)
        before = len(ic.assignments)
        ic.assignments = {a for a in ic.assignments if a.permission_set_arn not in managed}
        ic.provisioned = {k: v for k, v in ic.provisioned.items() if k[1] not in managed}
        return {"removed": before - len(ic.assignments)}


# --------------------------------------------------------------------------- expectations
_CACHE: dict[str, dict[str, str]] = {}  # name -> id maps, rebuilt for every RPC call


def _lookup(sb: Sandbox, kind: str) -> dict[str, str]:
    if kind not in _CACHE:
        if kind == "user":
            _CACHE[kind] = {u.user_name: u.user_id for u in sb.world.identity_store.users.values()}
        elif kind == "group":
            _CACHE[kind] = {g.display_name: g.group_id for g in sb.world.identity_store.groups.values()}
        else:
            _CACHE[kind] = {ps.name: arn for arn, ps in _ic(sb).permission_sets.items()}
    return _CACHE[kind]


def _user_id(sb: Sandbox, name: str) -> str:
    return _lookup(sb, "user")[name]


def _group_id(sb: Sandbox, name: str) -> str:
    return _lookup(sb, "group")[name]


def _ps_arn(sb: Sandbox, name: str) -> str:
    return _lookup(sb, "ps")[name]


def _record_assignments(sb: Sandbox, rec: dict[str, Any]) -> list[list[str]]:
    """The IdC assignments a generated assignment record stands for (account targets only)."""
    arn = _ps_arn(sb, rec["permission_set"]["value"])
    ptype = rec["principal_type"]["value"]
    if ptype == "USER":
        pids = [_user_id(sb, u["code"]) for u in rec["users"]["value"]]
    else:
        pids = [_group_id(sb, rec["group_name"]["value"])]
    accounts = [t.strip() for t in rec["targets"]["value"].splitlines() if t.strip()]
    out = []
    for acct in accounts:
        # an OU target stands for the ACTIVE accounts below it
        acct_list = [acct] if acct.isdigit() else _accounts_below(sb, acct)
        for a in acct_list:
            out += [[a, arn, ptype, pid] for pid in pids]
    return out


def _accounts_below(sb: Sandbox, ou: str) -> list[str]:
    org = sb.world.organization
    out = []
    for a in org.accounts.values():
        if a.state != "ACTIVE" or a.id == org.management_account_id:
            continue
        parent = a.parent_id
        while parent in org.ous:
            if parent == ou:
                out.append(a.id)
                break
            parent = org.ous[parent].parent_id
    return out


def _member_accounts(sb: Sandbox) -> list[str]:
    """The ACTIVE accounts other than the management account, sorted."""
    org = sb.world.organization
    return sorted(
        a.id for a in org.accounts.values() if a.state == "ACTIVE" and a.id != org.management_account_id
    )


def _free_pair(sb: Sandbox, rng: random.Random, managed: list[str]) -> tuple[str, str, str]:
    """(account, permission set name, user name) of a USER assignment neither IdC nor kintone has."""
    ic = _ic(sb)
    active = _member_accounts(sb)
    users = sorted(sb.world.identity_store.users.values(), key=lambda u: u.user_name)
    names = {arn: ps.name for arn, ps in ic.permission_sets.items()}
    while True:
        acct, arn, user = rng.choice(active), rng.choice(managed), rng.choice(users)
        if Assignment(acct, arn, "USER", user.user_id) not in ic.assignments:
            return acct, names[arn], user.user_name


def _add_user_record(sb: Sandbox, acct: str, ps_name: str, user: str, reason: str) -> tuple[int, list[str]]:
    """A kintone assignment record of one user on one account; its id and the IdC assignment it asks for."""
    rid = kintone_api.add_record(
        sb,
        ASG_APP,
        {
            "principal_type": "USER",
            "users": [user],
            "targets": acct,
            "permission_set": ps_name,
            "reason": reason,
        },
        user_code=user,
    )
    return rid, [acct, _ps_arn(sb, ps_name), "USER", _user_id(sb, user)]


def add_assignment_record(sb: Sandbox, seed: int = 7) -> dict[str, Any]:
    """One new kintone assignment record (one user, one account) that IdC does not have yet."""
    rng = random.Random(seed)
    with sb.lock:
        managed = sorted(_managed_arns(sb))
        rid, expected = _add_user_record(sb, *_free_pair(sb, rng, managed), reason="bench: new request")
    return {"record": rid, "present": [expected], "absent": []}


def churn(sb: Sandbox, ratio: float = 0.01, seed: int = 11) -> dict[str, Any]:
    """``ratio`` of the assignment records changed in kintone: a third added, a third edited (new target
    account), a third deleted. Returns the IdC assignments that must then exist / be gone."""
    rng = random.Random(seed)
    present: list[list[str]] = []
    absent: list[list[str]] = []
    with sb.lock:
        app = sb.world.kintone.apps[ASG_APP]
        managed = sorted(_managed_arns(sb))
        n = max(3, round(len(app.records) * ratio))
        n_add, n_edit = n // 3, n // 3
        n_del = n - n_add - n_edit
        # only records with account targets and a USER principal (simple, unambiguous expectations)
        simple = [
            rid
            for rid, rec in app.records.items()
            if rec["principal_type"]["value"] == "USER"
            and all(t.strip().isdigit() for t in rec["targets"]["value"].splitlines() if t.strip())
        ]
        picked = rng.sample(simple, min(len(simple), n_edit + n_del))
        edits, deletes = picked[:n_edit], picked[n_edit:]
        claimed: set[tuple[str, str, str]] = set()
        for rid in deletes:
            absent += _record_assignments(sb, app.records[rid])
            kintone_api.delete_record(sb, ASG_APP, rid)
        for rid in edits:
            rec = app.records[rid]
            old = _record_assignments(sb, rec)
            user = rec["users"]["value"][0]["code"]
            ps_name = rec["permission_set"]["value"]
            arn = _ps_arn(sb, ps_name)
            uid = _user_id(sb, user)
            accounts = [t.strip() for t in rec["targets"]["value"].splitlines() if t.strip()]
            # replace the first target account by one this (ps, user) does not have yet
            active = _member_accounts(sb)
            for _ in range(100):
                new_acct = rng.choice(active)
                if (
                    new_acct not in accounts
                    and Assignment(new_acct, arn, "USER", uid) not in _ic(sb).assignments
                    and (new_acct, ps_name, user) not in claimed
                ):
                    break
            claimed.add((new_acct, ps_name, user))
            new_targets = [new_acct, *accounts[1:]]
            kintone_api.update_record(sb, ASG_APP, rid, {"targets": "\n".join(new_targets)}, user_code=user)
            new = _record_assignments(sb, app.records[rid])
            absent += [a for a in old if a not in new]
            present += new
        for _ in range(n_add):
            while True:
                acct, ps_name, user = _free_pair(sb, rng, managed)
                if (acct, ps_name, user) not in claimed:
                    break
            claimed.add((acct, ps_name, user))
            present.append(_add_user_record(sb, acct, ps_name, user, reason="bench: churn")[1])
    # an assignment another record still wants is not expected to go
    wanted = {tuple(x) for rec in app.records.values() for x in _safe_record_assignments(sb, rec)}
    absent = [a for a in absent if tuple(a) not in wanted]
    return {
        "added": n_add,
        "edited": len(edits),
        "deleted": len(deletes),
        "present": present,
        "absent": absent,
    }


def _safe_record_assignments(sb: Sandbox, rec: dict[str, Any]) -> list[list[str]]:
    try:
        return _record_assignments(sb, rec)
    except (KeyError, StopIteration):
        return []


def check(sb: Sandbox, present: list[list[str]], absent: list[list[str]]) -> dict[str, Any]:
    """How many expected assignments are missing / still there."""
    with sb.lock:
        have = _ic(sb).assignments
        missing = [p for p in present if Assignment(*p) not in have]
        lingering = [a for a in absent if Assignment(*a) in have]
    return {
        "expected_present": len(present),
        "missing": len(missing),
        "expected_absent": len(absent),
        "lingering": len(lingering),
        "done": not missing and not lingering,
    }


def edit_policy(sb: Sandbox, seed: int = 5) -> dict[str, Any]:
    """Edit a managed permission set's managed policies in kintone (the median one by account count);
    returns what must follow: the new policy attached and every account provisioned at the new version."""
    rng = random.Random(seed)
    with sb.lock:
        ic = _ic(sb)
        managed = sorted(_managed_arns(sb))
        counts = collections.Counter(arn for (_acct, arn) in ic.provisioned if arn in managed)
        ranked = sorted(managed, key=lambda a: (counts.get(a, 0), a))
        arn = ranked[len(ranked) // 2]
        ps = ic.permission_sets[arn]
        have = {p.split(":policy/", 1)[1] for p in ps.managed_policies}
        candidates = [
            p for p in ("AWSSupportAccess", "CloudWatchReadOnlyAccess", "SecurityAudit") if p not in have
        ]
        new_policy = rng.choice(candidates)
        app = sb.world.kintone.apps[PS_APP]
        rid = next(r for r, rec in app.records.items() if rec["name"]["value"] == ps.name)
        text = app.records[rid]["managed_policies"]["value"].rstrip("\n") + "\n" + new_policy
        kintone_api.update_record(sb, PS_APP, rid, {"managed_policies": text}, user_code="Administrator")
    return {"permission_set": ps.name, "arn": arn, "policy": new_policy, "accounts": counts.get(arn, 0)}


def check_policy(sb: Sandbox, arn: str, policy: str) -> dict[str, Any]:
    with sb.lock:
        ic = _ic(sb)
        ps = ic.permission_sets[arn]
        attached = any(p.endswith(":policy/" + policy) for p in ps.managed_policies)
        accounts = [acct for (acct, a) in ic.provisioned if a == arn]
        stale = [acct for acct in accounts if ic.provisioned[(acct, arn)] < ps.version]
    return {
        "attached": attached,
        "accounts": len(accounts),
        "stale": len(stale),
        "done": attached and not stale,
    }


def handmade_targets(sb: Sandbox, seed: int = 13) -> dict[str, Any]:
    """What the bench changes by hand (through boto3): an assignment no kintone record asks for, and an
    extra managed policy on a managed permission set."""
    rng = random.Random(seed)
    with sb.lock:
        managed = sorted(_managed_arns(sb))
        acct, ps_name, user = _free_pair(sb, rng, managed)
        arn = _ps_arn(sb, ps_name)
        target = _ic(sb).permission_sets[rng.choice(managed)]
        have = {p.split(":policy/", 1)[1] for p in target.managed_policies}
        extra = next(
            p for p in ("AmazonDynamoDBReadOnlyAccess", "AWSSupportAccess", "SecurityAudit") if p not in have
        )
        return {
            "instance_arn": _ic(sb).instance_arn,
            "assignment": [acct, arn, "USER", _user_id(sb, user)],
            "policy_ps_arn": target.arn,
            "policy_ps_name": target.name,
            "policy_arn": f"arn:aws:iam::aws:policy/{extra}",
        }


def check_handmade(sb: Sandbox, assignment: list[str], policy_ps_arn: str, policy_arn: str) -> dict[str, Any]:
    with sb.lock:
        ic = _ic(sb)
        present = Assignment(*assignment) in ic.assignments
        ps = ic.permission_sets.get(policy_ps_arn)
        attached = bool(ps and policy_arn in ps.managed_policies)
    return {"assignment_present": present, "policy_attached": attached}


def settle(sb: Sandbox) -> dict[str, Any]:
    from idc_sandbox.aws_sso_admin import settle_requests

    settle_requests(sb)
    return {}


FUNCTIONS = {
    f.__name__: f
    for f in (
        seed,
        limits,
        clear_calls,
        stats,
        world_summary,
        make_cold,
        add_assignment_record,
        churn,
        check,
        edit_policy,
        check_policy,
        handmade_targets,
        check_handmade,
        settle,
    )
}


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    sandbox = Sandbox(SandboxConfig())
    app = build_app(sandbox)

    async def rpc(request: Request) -> JSONResponse:
        body = await request.json()
        fn = FUNCTIONS.get(body.get("fn"))
        if fn is None:
            return JSONResponse({"error": f"unknown fn {body.get('fn')!r}"}, status_code=404)
        _CACHE.clear()
        try:
            # handlers run on the event loop like the sandbox's own: no request is served meanwhile
            return JSONResponse({"result": fn(sandbox, **(body.get("args") or {}))})
        except Exception as exc:  # the bench shows it
            return JSONResponse({"error": f"{exc!r}", "trace": traceback.format_exc()}, status_code=500)

    app.router.routes.insert(0, Route("/_bench/rpc", rpc, methods=["POST"]))
    uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning", lifespan="off")
    return 0


if __name__ == "__main__":
    sys.exit(main())
