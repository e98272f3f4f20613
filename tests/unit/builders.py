"""Hand-built desired and observed states for the unit tests of the plan and what follows from it: an
organization (management account, a root account, Prod and a nested OU with a suspended account), specs,
states and assignments."""

from __future__ import annotations

import datetime as dt

from idc_sync.config import SyncConfig
from idc_sync.model import (
    Account,
    AssignmentSpec,
    AssignmentState,
    DesiredState,
    ObservedState,
    OpKind,
    OrganizationalUnit,
    OrgSnapshot,
    PermissionSetSpec,
    PermissionSetState,
    Plan,
    Problem,
    RecordRef,
)
from idc_sync.plan import compute_plan

MGMT = "111111111111"
A1 = "200000000001"  # root
A2 = "200000000002"  # Prod
A3 = "200000000003"  # Prod/Nested
A4 = "200000000004"  # Prod/Nested, SUSPENDED
A5 = "200000000005"  # Prod
PROD = "ou-ab12-aaaaaaaa"
NESTED = "ou-ab12-bbbbbbbb"
TODAY = dt.date(2025, 6, 15)
INST = "arn:aws:sso:::instance/ssoins-72230e6a59fa4ba3"
TAG = {"managed-by": "idc-sync"}
RO = "arn:aws:iam::aws:policy/ReadOnlyAccess"


def ps_arn(n: int) -> str:
    return f"arn:aws:sso:::permissionSet/ssoins-72230e6a59fa4ba3/ps-{n:016x}"


def ps_rec(rid: str) -> RecordRef:
    return RecordRef(app="permission_sets", app_id="1", record_id=rid)


def asg_rec(rid: str) -> RecordRef:
    return RecordRef(app="assignments", app_id="2", record_id=rid)


def org() -> OrgSnapshot:
    return OrgSnapshot(
        management_account_id=MGMT,
        root_id="r-ab12",
        ous={
            PROD: OrganizationalUnit(id=PROD, name="Prod", parent_id="r-ab12"),
            NESTED: OrganizationalUnit(id=NESTED, name="Nested", parent_id=PROD),
        },
        accounts={
            MGMT: Account(id=MGMT, name="mgmt", parent_id="r-ab12"),
            A1: Account(id=A1, name="a1", parent_id="r-ab12"),
            A2: Account(id=A2, name="a2", parent_id=PROD),
            A3: Account(id=A3, name="a3", parent_id=NESTED),
            A4: Account(id=A4, name="a4", parent_id=NESTED, state="SUSPENDED"),
            A5: Account(id=A5, name="a5", parent_id=PROD),
        },
    )


def spec(name: str = "Dev", **kw: object) -> PermissionSetSpec:
    base: dict[str, object] = {"name": name, "managed_policies": [RO], "record": ps_rec(f"ps-{name}")}
    base.update(kw)
    return PermissionSetSpec.model_validate(base)


def state(name: str = "Dev", n: int = 1, *, managed: bool = True, **kw: object) -> PermissionSetState:
    base: dict[str, object] = {
        "arn": ps_arn(n),
        "name": name,
        "managed_policies": [RO],
        "tags": dict(TAG) if managed else {},
        "managed": managed,
    }
    base.update(kw)
    return PermissionSetState.model_validate(base)


def asg(
    target: str,
    ps: str = "Dev",
    name: str = "alice",
    ptype: str = "USER",
    rid: str = "10",
    expires_on: dt.date | None = None,
) -> AssignmentSpec:
    return AssignmentSpec(
        principal_type=ptype,  # type: ignore[arg-type]
        principal_name=name,
        target=target,
        permission_set_name=ps,
        expires_on=expires_on,
        record=asg_rec(rid),
    )


def observed(
    permission_sets: list[PermissionSetState] | None = None,
    assignments: list[AssignmentState] | None = None,
    *,
    missing: list[str] | None = None,
    **kw: object,
) -> ObservedState:
    ids = {"USER:alice": "u-alice", "USER:bob": "u-bob", "GROUP:Admins": "g-admins"}
    return ObservedState(
        instance_arn=INST,
        identity_store_id="d-9067a1b2c3",
        org=org(),
        permission_sets={s.name: s for s in permission_sets or []},
        assignments=assignments or [],
        principal_ids=ids,
        principal_names={v: k for k, v in ids.items()},
        missing_principals=missing or [],
        **kw,  # type: ignore[arg-type]
    )


def held(account: str, n: int = 1, pid: str = "u-alice", ptype: str = "USER") -> AssignmentState:
    return AssignmentState(
        account_id=account, permission_set_arn=ps_arn(n), principal_type=ptype, principal_id=pid
    )  # type: ignore[arg-type]


def plan_of(desired: DesiredState, obs: ObservedState, **kw: object) -> tuple[Plan, list[Problem]]:
    kw.setdefault("today", TODAY)
    return compute_plan(desired, obs, SyncConfig(), **kw)  # type: ignore[arg-type]


def keys(plan: Plan, kind: OpKind | None = None) -> list[str]:
    return [op.key for op in plan.operations if kind is None or op.kind is kind]


def codes(problems: list[Problem]) -> list[str]:
    return [p.code for p in problems]


def all_accounts(plan: Plan) -> set[str | None]:
    return {op.account_id for op in plan.operations}
