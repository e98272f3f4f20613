"""Typed domain state shared by every step: desired (kintone), observed (AWS), the plan and its results.

Everything here is a pydantic model so that it crosses Airflow XComs as plain JSON
(``model_dump(mode="json")`` / ``model_validate``) and prints readably in the audit artifact.
No Airflow import, no I/O.
"""

from __future__ import annotations

import datetime as dt
from enum import StrEnum
from typing import Annotated, Literal, TypeVar

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, RootModel, computed_field

from idc_sync.problems import registered

PrincipalType = Literal["USER", "GROUP"]
# Tag written on every permission set the pipeline creates: the id of the kintone record that defines it, so
# a record renamed in place is recognised as a rename, not as a deletion plus a new set.
RECORD_ID_TAG = "idc-sync:kintone-record-id"
AppKey = Literal["permission_sets", "assignments"]
Severity = Literal["error", "warning", "pending", "info"]


class Frozen(BaseModel):
    model_config = ConfigDict(frozen=True)


# --------------------------------------------------------------------------- records and problems
class RecordRef(Frozen):
    """Where a piece of desired state came from, so feedback reaches the right kintone record."""

    app: AppKey
    app_id: str
    record_id: str
    revision: str = ""
    mentions: tuple[str, ...] = ()  # kintone user codes to @mention (last modifier, owners)
    created_at: dt.datetime | None = None
    updated_at: dt.datetime | None = None

    @property
    def key(self) -> str:
        return f"{self.app}:{self.record_id}"


class Problem(BaseModel):
    """One thing wrong with a record or the run. ``code`` is stable (fingerprints, translations) and one of
    ``idc_sync.problems.REGISTRY`` (checked here), which also names its ``params`` and holds its texts."""

    code: Annotated[str, AfterValidator(registered)]
    message: str  # English, self-contained, says what to do
    severity: Severity = "error"
    record: RecordRef | None = None
    params: dict[str, str | int | float | None] = Field(default_factory=dict)

    @property
    def fingerprint(self) -> str:
        return f"{self.severity}:{self.code}:{self.message}"


# --------------------------------------------------------------------------- desired state
class CustomerPolicyRef(Frozen):
    name: str
    path: str = "/"


class PermissionsBoundary(Frozen):
    """Exactly one of the two is set (mirrors sso-admin's PermissionsBoundary)."""

    managed_policy_arn: str | None = None
    customer_managed_policy: CustomerPolicyRef | None = None


class PermissionSetSpec(BaseModel):
    name: str
    description: str = ""
    session_duration: str = "PT1H"
    relay_state: str | None = None
    managed_policies: list[str] = Field(default_factory=list)  # full ARNs, sorted, unique
    customer_managed_policies: list[CustomerPolicyRef] = Field(default_factory=list)  # sorted, unique
    inline_policy: str | None = None  # the JSON text the user wrote (validated/canonicalised later)
    permissions_boundary: PermissionsBoundary | None = None
    record: RecordRef | None = None


class AssignmentSpec(Frozen):
    """One principal x one target (account id or OU id, as written) x one permission set."""

    principal_type: PrincipalType
    principal_name: str  # IdC UserName (after the user name template) or group DisplayName
    target: str
    permission_set_name: str
    expires_on: dt.date | None = None
    record: RecordRef


class DesiredState(BaseModel):
    permission_sets: dict[str, PermissionSetSpec] = Field(default_factory=dict)
    assignments: list[AssignmentSpec] = Field(default_factory=list)
    problems: list[Problem] = Field(default_factory=list)
    records_read: dict[str, int] = Field(default_factory=dict)  # app key -> number of records read
    # Permission sets whose kintone record exists but has errors: keep them as they are in IdC (neither
    # update nor delete them or their assignments) until the record is fixed. Never in permission_sets.
    held_permission_sets: list[str] = Field(default_factory=list)
    read_at: dt.datetime | None = None  # when extract_kintone started reading (plan staleness)


# --------------------------------------------------------------------------- observed state
class Account(Frozen):
    id: str
    name: str = ""
    state: str = "ACTIVE"  # PENDING_ACTIVATION | ACTIVE | SUSPENDED | PENDING_CLOSURE | CLOSED
    parent_id: str = ""


class OrganizationalUnit(Frozen):
    id: str
    name: str = ""
    parent_id: str = ""


class OrgSnapshot(BaseModel):
    management_account_id: str
    root_id: str = ""
    accounts: dict[str, Account] = Field(default_factory=dict)
    ous: dict[str, OrganizationalUnit] = Field(default_factory=dict)

    def ous_below(self, ou_id: str) -> set[str]:
        """``ou_id`` and every OU nested anywhere below it."""
        below = {ou_id}
        changed = True
        while changed:
            changed = False
            for ou in self.ous.values():
                if ou.parent_id in below and ou.id not in below:
                    below.add(ou.id)
                    changed = True
        return below

    def active_accounts_under(self, ou_id: str) -> list[str]:
        """ACTIVE accounts anywhere below ``ou_id`` (nested OUs included), sorted."""
        below = self.ous_below(ou_id)
        return sorted(a.id for a in self.accounts.values() if a.parent_id in below and a.state == "ACTIVE")


class PermissionSetState(BaseModel):
    arn: str
    name: str
    description: str = ""
    session_duration: str = "PT1H"
    relay_state: str | None = None
    managed_policies: list[str] = Field(default_factory=list)
    customer_managed_policies: list[CustomerPolicyRef] = Field(default_factory=list)
    inline_policy: str | None = None
    permissions_boundary: PermissionsBoundary | None = None
    tags: dict[str, str] = Field(default_factory=dict)
    managed: bool = False  # carries the ownership tag
    provisioned_accounts: list[str] = Field(default_factory=list)
    stale_accounts: list[str] = Field(default_factory=list)  # LATEST_PERMISSION_SET_NOT_PROVISIONED


class AssignmentState(Frozen):
    account_id: str
    permission_set_arn: str
    principal_type: PrincipalType
    principal_id: str


class ObservedState(BaseModel):
    instance_arn: str
    identity_store_id: str
    org: OrgSnapshot
    permission_sets: dict[str, PermissionSetState] = Field(default_factory=dict)  # by name
    assignments: list[AssignmentState] = Field(default_factory=list)  # of managed permission sets only
    principal_ids: dict[str, str] = Field(default_factory=dict)  # "USER:alice" / "GROUP:Admins" -> id
    principal_names: dict[str, str] = Field(default_factory=dict)  # id -> "USER:alice"
    missing_principals: list[str] = Field(default_factory=list)  # "USER:bob" named in kintone, absent in IdC
    scoped: bool = False  # True when only part of IdC was read (scope params): never delete outside it
    scope: Scope | None = None  # the scope the snapshot was taken with (compute_plan falls back to it)
    read_at: dt.datetime | None = None  # when snapshot_idc started reading (plan staleness)
    # Incremental observation (``idc_sync.observe``): True when every item was read in this run (a full
    # read); otherwise ``confirmed_pairs`` ("account|permission set ARN") lists the pairs the plan touches,
    # each re-read in this run. Apply deletes only on a complete read or a confirmed pair.
    complete: bool = True
    confirmed_pairs: list[str] = Field(default_factory=list)

    def confirms(self, account_id: str | None, permission_set_arn: str | None) -> bool:
        """Was this pair read fresh in this run (so a deletion on it stands on a fresh read)?"""
        if self.complete:
            return True
        return pair_key(account_id or "", permission_set_arn or "") in set(self.confirmed_pairs)


def principal_key(principal_type: str, name: str) -> str:
    return f"{principal_type}:{name}"


def pair_key(account_id: str, permission_set_arn: str) -> str:
    """``"<account>|<permission set ARN>"``: one (account, permission set) pair, whose assignments are read
    by one ListAccountAssignments (observed cache, confirmed pairs, apply journal)."""
    return f"{account_id}|{permission_set_arn}"


def split_pair(key: str) -> tuple[str, str]:
    account, arn = key.split("|", 1)
    return account, arn


# --------------------------------------------------------------------------- plan
class OpKind(StrEnum):
    CREATE_PERMISSION_SET = "create_permission_set"
    UPDATE_PERMISSION_SET = "update_permission_set"
    PROVISION_PERMISSION_SET = "provision_permission_set"
    CREATE_ASSIGNMENT = "create_assignment"
    DELETE_ASSIGNMENT = "delete_assignment"
    DELETE_PERMISSION_SET = "delete_permission_set"


OP_ORDER = list(OpKind)
ASSIGNMENT_KINDS = (OpKind.CREATE_ASSIGNMENT, OpKind.DELETE_ASSIGNMENT)


def op_key(
    kind: OpKind,
    permission_set_name: str,
    *,
    account_id: str | None = None,
    principal_type: str | None = None,
    principal_name: str | None = None,
) -> str:
    """The key of an operation: stable across runs (results, retries, feedback fingerprints, the state files
    and the audit use it), so its format never changes:

    * ``<kind>:<permission set>`` (create/update/delete permission set),
    * ``provision_permission_set:<permission set>:<account>``,
    * ``<kind>:<account>:<permission set>:<USER|GROUP>:<principal name>`` (create/delete assignment; a
      deletion of a principal whose name is unknown names its id).
    """
    if kind in ASSIGNMENT_KINDS:
        if account_id is None or principal_type is None or principal_name is None:
            raise ValueError(f"a {kind} key needs the account and the principal")
        return f"{kind}:{account_id}:{permission_set_name}:{principal_key(principal_type, principal_name)}"
    if kind is OpKind.PROVISION_PERMISSION_SET:
        if account_id is None:
            raise ValueError(f"a {kind} key needs the account")
        return f"{kind}:{permission_set_name}:{account_id}"
    return f"{kind}:{permission_set_name}"


def op_key_permission_set(key: str, kind: OpKind) -> str | None:
    """The permission set named by an ``op_key`` of ``kind`` (None: ``key`` is no key of that kind)."""
    head, sep, rest = key.partition(":")
    if head != kind or not sep:
        return None
    parts = rest.split(":", 3)
    if kind in ASSIGNMENT_KINDS:
        return parts[1] if len(parts) == 4 else None
    return parts[0]


class Cause(StrEnum):
    """Why an operation is planned (or, for ``DRIFT_REPORTED``, not planned): what code branches on.

    ``reason_text`` renders it with its ``detail`` into the sentence people read (plan log, Slack, approval
    table, audit), e.g. ``MOVED`` + ``"NewName"`` -> ``"moved to NewName (renamed)"``.
    """

    NEW_RECORD = "new_record"  # create set / assignment
    RENAMED_FROM = "renamed_from"  # create set; detail: the old name
    DIFFERS = "differs_from_kintone"  # update set: the kintone record was edited
    DRIFT_CHANGED = "drift_changed"  # update set: changed by hand in IdC; detail: the fields
    UPDATED = "updated"  # provision: the set's definition changes in this plan
    STALE = "stale_provisioning"  # provision: the account runs an old definition
    FULL_RESYNC = "full_resync"  # provision: the full_resync trigger param
    EXPIRED = "expired"  # delete assignment: its record's expires_on has passed
    NOT_IN_KINTONE = "not_in_kintone"  # delete assignment / set: no record asks for it any more
    DRIFT_ADDED = "drift_added"  # delete assignment: added by hand in IdC, never asked for in kintone
    MOVED = "moved"  # delete assignment: the renamed set takes it over; detail: the new name
    RENAMED_TO = "renamed_to"  # delete set; detail: the new name
    DRIFT_REPORTED = "drift_reported"  # Skipped only: drift in report mode, listed and not changed


DRIFT_CAUSES = frozenset({Cause.DRIFT_CHANGED, Cause.DRIFT_ADDED, Cause.DRIFT_REPORTED})

_CAUSE_TEXT = {
    Cause.NEW_RECORD: "new record",
    Cause.RENAMED_FROM: "renamed from {detail}",
    Cause.DIFFERS: "differs from kintone",
    Cause.DRIFT_CHANGED: "drift: changed by hand in IAM Identity Center ({detail})",
    Cause.UPDATED: "updated",
    Cause.STALE: "stale provisioning",
    Cause.FULL_RESYNC: "full resync",
    Cause.EXPIRED: "expired",
    Cause.NOT_IN_KINTONE: "not in kintone",
    Cause.DRIFT_ADDED: "drift: added by hand in IAM Identity Center (no kintone record asks for it)",
    Cause.MOVED: "moved to {detail} (renamed)",
    Cause.RENAMED_TO: "renamed to {detail}",
    Cause.DRIFT_REPORTED: "drift (report mode)",
}


def reason_text(cause: Cause | None, detail: str = "") -> str:
    """The sentence for a cause ("" for none)."""
    return _CAUSE_TEXT[cause].format(detail=detail) if cause is not None else ""


class OpBase(BaseModel):
    """What every operation has: one idempotent change, identified by ``key`` (see ``op_key``)."""

    key: str
    kind: OpKind
    permission_set_name: str
    permission_set_arn: str | None = None  # None until the permission set exists
    cause: Cause | None = None  # why it is planned; ``reason`` is its text
    detail: str = ""  # what completes the reason's sentence (a name, the changed fields)
    records: list[RecordRef] = Field(default_factory=list)
    # Keys of operations of this plan that must succeed in the same run before this one may run (e.g. the
    # removal of a renamed set's assignment waits for the new set's assignment): otherwise it is skipped and
    # a later run does it.
    depends_on: list[str] = Field(default_factory=list)

    @computed_field  # type: ignore[prop-decorator]
    @property
    def reason(self) -> str:
        """Why, as people read it ("new record", "expired", "drift: ..."): in the JSON too, for the audit."""
        return reason_text(self.cause, self.detail)

    @property
    def is_drift(self) -> bool:
        return self.cause in DRIFT_CAUSES

    @property
    def record(self) -> RecordRef | None:
        """The record feedback about this operation goes to (the first that asked for it)."""
        return self.records[0] if self.records else None


class PermissionSetOp(OpBase):
    """Create, update or delete a permission set."""

    kind: Literal[OpKind.CREATE_PERMISSION_SET, OpKind.UPDATE_PERMISSION_SET, OpKind.DELETE_PERMISSION_SET]
    spec: PermissionSetSpec | None = None  # create/update: the definition to make it equal to
    changes: dict[str, dict[str, object]] = Field(default_factory=dict)  # field -> {"from": .., "to": ..}
    # Rename of a permission set record (same kintone record id, new name): on a creation the old name, on a
    # deletion the new name that keeps this access.
    renamed_from: str | None = None
    moved_to: str | None = None

    @property
    def record(self) -> RecordRef | None:
        return self.records[0] if self.records else (self.spec.record if self.spec is not None else None)


class ProvisionOp(OpBase):
    """Push a permission set's definition to an account (None: to every account it is provisioned to)."""

    kind: Literal[OpKind.PROVISION_PERMISSION_SET] = OpKind.PROVISION_PERMISSION_SET
    account_id: str | None = None


class AssignmentOp(OpBase):
    """Create or delete one account assignment (account x permission set x principal)."""

    kind: Literal[OpKind.CREATE_ASSIGNMENT, OpKind.DELETE_ASSIGNMENT]
    account_id: str
    principal_type: PrincipalType
    principal_id: str
    principal_name: str  # the IdC user/group name; the id when IdC no longer knows it (a deletion)
    moved_to: str | None = None  # a deletion the renamed set takes over: its new name (``depends_on``)


# One change of a plan: the kind says which of the three it is (JSON: the "kind" field).
Operation = Annotated[PermissionSetOp | ProvisionOp | AssignmentOp, Field(discriminator="kind")]
_OpT = TypeVar("_OpT", bound=OpBase)


class Skipped(BaseModel):
    key: str
    reason: str
    record: RecordRef | None = None
    cause: Cause | None = None  # set by the plan where code branches on it (drift in report mode)

    @property
    def is_drift(self) -> bool:
        return self.cause in DRIFT_CAUSES


class Plan(BaseModel):
    operations: list[Operation] = Field(default_factory=list)
    skipped: list[Skipped] = Field(default_factory=list)
    managed_assignment_count: int = 0  # size of the managed estate, for the deletion ratio
    inputs_read_at: dt.datetime | None = None  # oldest read the plan stands on (apply refuses old plans)

    def of_kind(self, *kinds: OpKind) -> list[Operation]:
        return [op for op in self.operations if op.kind in kinds]

    def of_type(self, cls: type[_OpT], *kinds: OpKind) -> list[_OpT]:
        """The operations of class ``cls`` (and of ``kinds``, when given), in plan order."""
        return [op for op in self.operations if isinstance(op, cls) and (not kinds or op.kind in kinds)]

    def counts(self) -> dict[str, int]:
        out = {k.value: 0 for k in OpKind}
        for op in self.operations:
            out[op.kind.value] += 1
        return out

    def is_empty(self) -> bool:
        return not self.operations


class OpResult(BaseModel):
    key: str
    kind: OpKind
    # "already_in_place": nothing had to be done (an assignment that already exists, a deletion of
    # something already gone, an earlier try's create): counted apart so summaries stay true.
    # "deferred": not started because the run's time budget ran out (``ApplyOptions.deadline``); not a
    # failure: nothing was sent for it, and the next run plans it again from its fresh reads.
    status: Literal["succeeded", "already_in_place", "failed", "skipped", "deferred"]
    message: str = ""
    attempts: int = 1
    request_id: str | None = None
    permission_set_arn: str | None = None

    @property
    def done(self) -> bool:
        """The operation's outcome is in place (changed now or already): what later steps depend on."""
        return self.status in ("succeeded", "already_in_place")


class OpResults(RootModel[list[OpResult]]):
    """A list of results as one model (what apply_assignments writes by reference)."""


# --------------------------------------------------------------------------- run inputs and checks
class Scope(BaseModel):
    """Limits a run to some accounts / permission sets (trigger params). Empty lists mean everything."""

    accounts: list[str] = Field(default_factory=list)
    permission_sets: list[str] = Field(default_factory=list)

    @property
    def is_full(self) -> bool:
        return not self.accounts and not self.permission_sets

    def includes_account(self, account_id: str | None) -> bool:
        return not self.accounts or account_id is None or account_id in self.accounts

    def includes_permission_set(self, name: str) -> bool:
        return not self.permission_sets or name in self.permission_sets


class ValidationReport(BaseModel):
    """What validate_policies found: problems (errors block, warnings advise) and the blocked sets."""

    problems: list[Problem] = Field(default_factory=list)
    blocked: list[str] = Field(default_factory=list)  # permission set names whose operations are skipped
    checked: int = 0
