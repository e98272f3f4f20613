"""Desired (kintone) vs observed (IdC) -> an ordered, serializable ``Plan`` (the ``compute_diff`` step).

The plan is pure data: no AWS call happens here, so it can be shown in the Airflow UI, approved, stored in
the audit artifact and applied by later tasks. Every safety rule that can be decided from the two states
is decided here, once:

* the management account is never the target of an operation (rule 1); a managed permission set that is
  provisioned to it cannot be touched at all from the delegated administrator (IdC refuses every write on
  it, assignments in member accounts included), so *none* of its operations is planned (updates,
  provisioning, assignment creations and deletions, its deletion): they are skipped with reason
  ``"provisioned to the management account"`` and its record is told, once, to use a separate permission
  set for member accounts;
* only permission sets carrying the ownership tag, and their assignments, are created/changed/deleted
  (rule 2); a kintone record naming an existing unmanaged permission set gets a problem instead;
* principals not yet in IdC are *pending* (rule 4): skipped, never an error here;
* a scoped run plans nothing outside its scope and deletes nothing it did not read;
* a permission set whose kintone record has errors (``desired.held_permission_sets``, or a problem on a
  permission set record naming it) is neither updated nor deleted and loses no assignments; assignments
  of records that still name a non-ACTIVE account or an unknown permission set are not deleted either.

**Drift** (hand-made changes in IdC on managed permission sets) is told apart from kintone edits with a
small memory the caller keeps between runs (``PlanMemory``, built by ``next_memory``):

* assignments: the keys (account, permission set, principal) that kintone asked for in any earlier run
  and that still exist in IdC. A managed assignment that no record wants *and* that is not in that
  memory was never asked for in kintone: it was added by hand, so its deletion's cause is
  ``Cause.DRIFT_ADDED`` (reason ``"drift: ..."``). One that is in the memory lost its record (deleted
  record: ``NOT_IN_KINTONE``; expired record: ``EXPIRED``).
* permission sets: per name, a digest of the kintone definition that was last seen *in place* in IdC.
  When IdC differs from kintone while the kintone definition is still that one, someone changed the
  permission set by hand: the update's cause is ``Cause.DRIFT_CHANGED`` (reason ``"drift: ..."``);
  otherwise the record was edited (``DIFFERS``, "differs from kintone").

Without a memory (first run) nothing is called drift. ``feedback.slack_message`` lists drift operations
(``Operation.is_drift``, decided by the cause, never by the text).

**Expiring access**: an assignment record whose ``expires_on`` falls within ``config.expiry_reminder_days``
(today included) gets an ``info`` problem ``access_expiring`` (params ``date``, ``accounts``); its text
does not change from day to day, so the record is told exactly once (feedback fingerprints).

**Renames** (DESIGN safety rule 3: "the new set's assignments exist before the old ones go"): a managed
set no record names whose kintone record id (tag ``RECORD_ID_TAG``, else ``PlanMemory.permission_set_records``)
is the id of a record that now has another name was renamed. The new set is created (``renamed_from``);
assignment records whose lookup still holds the old name mean the new set (warning
``permission_set_renamed``); each old assignment the new set takes over is removed as a move
(``moved_to``, ``depends_on`` = the creation of its replacement, none when it exists already), and the old
set's deletion carries ``moved_to``. The deletion guard lets moves through; apply skips a move whose
replacement did not succeed in the run.

``full_resync=True`` additionally re-provisions every managed permission set to every (in-scope, member)
account it is provisioned to, with reason ``"full resync"``.

``drift_mode="report"``: assignment deletions, permission set updates (and the re-provisioning that would
follow them) and permission set deletions are not planned but listed in ``plan.skipped`` with reason
``"drift (report mode)"`` (cause ``DRIFT_REPORTED``); creations and the provisioning of stale accounts still happen. The deletion
guard (max deletions / ratio) is applied later, on this plan (``guard.py``).

Operation keys are stable across runs (results, retries, feedback fingerprints and the audit use them),
all built by ``model.op_key``: ``create_permission_set:<ps>``, ``update_permission_set:<ps>``,
``provision_permission_set:<ps>:<account>``, ``create_assignment:<account>:<ps>:<USER|GROUP>:<principal
name>``, ``delete_assignment:...`` (same shape, the principal id when its name is unknown),
``delete_permission_set:<ps>``.
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import json
import logging
from collections import defaultdict
from typing import Any
from zoneinfo import ZoneInfo

import pandas as pd
from pydantic import BaseModel, Field

from idc_sync import idc_fields
from idc_sync.config import SyncConfig
from idc_sync.isolation import run_isolated
from idc_sync.model import (
    OP_ORDER,
    RECORD_ID_TAG,
    AssignmentOp,
    AssignmentSpec,
    Cause,
    CustomerPolicyRef,
    DesiredState,
    ObservedState,
    Operation,
    OpKind,
    PermissionsBoundary,
    PermissionSetOp,
    PermissionSetSpec,
    PermissionSetState,
    Plan,
    Problem,
    ProvisionOp,
    RecordRef,
    Scope,
    Severity,
    Skipped,
    op_key,
    principal_key,
    reason_text,
)
from idc_sync.policy import canonical_policy, managed_policy_name
from idc_sync.problems import Code

DRIFT_REPORT = reason_text(Cause.DRIFT_REPORTED)  # "drift (report mode)"
PRINCIPAL_PENDING = "principal not in IAM Identity Center yet: waits for provisioning from Entra ID (SCIM)"
LOG = logging.getLogger(__name__)
# Why nothing of a managed permission set provisioned to the management account is planned (a skip reason).
MANAGEMENT_PROVISIONED = "provisioned to the management account"


class PlanMemory(BaseModel):
    """What earlier runs saw, to tell hand-made changes (drift) from kintone edits. JSON-serializable."""

    # "account:permission set name:USER|GROUP:principal id" kintone asked for and still in IdC
    assignments: list[str] = Field(default_factory=list)
    # permission set name -> digest of the kintone definition last seen in place in IdC
    permission_sets: dict[str, str] = Field(default_factory=dict)
    # permission set name -> kintone record id that defined it (renames: sets made before the record-id tag,
    # and old names that assignment records' lookups may still hold after the old set is gone). Never pruned:
    # kintone never reuses a record id, and one entry per name ever managed is small.
    permission_set_records: dict[str, str] = Field(default_factory=dict)


def assignment_memory_key(account_id: str, ps_name: str, principal_type: str, principal_id: str) -> str:
    return f"{account_id}:{ps_name}:{principal_type}:{principal_id}"


def spec_digest(spec: PermissionSetSpec) -> str:
    """Digest of a kintone permission set definition (record metadata excluded)."""
    data = spec.model_dump(mode="json", exclude={"record"})
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]


# --------------------------------------------------------------------------- field comparison
def _duration_seconds(value: str | None) -> int | str | None:
    if not value:
        return None
    seconds = idc_fields.duration_seconds(value.strip().upper())
    return value if seconds is None else seconds


def _norm_path(path: str | None) -> str:
    p = (path or "/").strip()
    if not p.startswith("/"):
        p = "/" + p
    if not p.endswith("/"):
        p += "/"
    return p


def _cmp_list(refs: list[CustomerPolicyRef]) -> list[str]:
    return sorted({f"{_norm_path(r.path)}{r.name}" for r in refs})


def _boundary_value(b: PermissionsBoundary | None) -> dict[str, str] | None:
    if b is None:
        return None
    if b.managed_policy_arn:
        return {"managed_policy_arn": b.managed_policy_arn}
    if b.customer_managed_policy:
        ref = b.customer_managed_policy
        return {"customer_managed_policy": f"{_norm_path(ref.path)}{ref.name}"}
    return None


def _inline_equal(desired: str | None, observed: str | None) -> bool:
    try:
        want = canonical_policy(desired)
    except ValueError:
        # Invalid JSON in kintone: validation reports and blocks it; here it only counts as a change.
        return False
    try:
        have = canonical_policy(observed)
    except ValueError:
        return False
    return want == have


def permission_set_changes(spec: PermissionSetSpec, state: PermissionSetState) -> dict[str, dict[str, Any]]:
    """Field -> {"from": observed, "to": desired} for every field that differs semantically."""
    changes: dict[str, dict[str, Any]] = {}

    def add(field: str, have: Any, want: Any) -> None:
        changes[field] = {"from": have, "to": want}

    if (spec.description or "") != (state.description or ""):
        add("description", state.description or "", spec.description or "")
    if _duration_seconds(spec.session_duration or "PT1H") != _duration_seconds(
        state.session_duration or "PT1H"
    ):
        add("session_duration", state.session_duration, spec.session_duration)
    if (spec.relay_state or None) != (state.relay_state or None):
        add("relay_state", state.relay_state, spec.relay_state)
    if sorted(set(spec.managed_policies)) != sorted(set(state.managed_policies)):
        add("managed_policies", sorted(set(state.managed_policies)), sorted(set(spec.managed_policies)))
    if _cmp_list(spec.customer_managed_policies) != _cmp_list(state.customer_managed_policies):
        add(
            "customer_managed_policies",
            _cmp_list(state.customer_managed_policies),
            _cmp_list(spec.customer_managed_policies),
        )
    if not _inline_equal(spec.inline_policy, state.inline_policy):
        add("inline_policy", state.inline_policy, spec.inline_policy)
    if _boundary_value(spec.permissions_boundary) != _boundary_value(state.permissions_boundary):
        add(
            "permissions_boundary",
            _boundary_value(state.permissions_boundary),
            _boundary_value(spec.permissions_boundary),
        )
    return changes


def _unique_records(values: Any) -> list[RecordRef]:
    out: list[RecordRef] = []
    for v in values:
        if v is not None and v not in out:
            out.append(v)
    return out


# --------------------------------------------------------------------------- the planner
class _Planner:
    def __init__(
        self,
        desired: DesiredState,
        observed: ObservedState,
        config: SyncConfig,
        scope: Scope,
        today: dt.date,
        drift_mode: str,
        full_resync: bool = False,
        memory: PlanMemory | None = None,
    ) -> None:
        if drift_mode not in ("enforce", "report"):
            raise ValueError(f"drift_mode must be 'enforce' or 'report', not {drift_mode!r}")
        self.desired = desired
        self.observed = observed
        self.config = config
        self.scope = scope
        self.today = today
        self.report = drift_mode == "report"
        self.full_resync = full_resync
        self.mgmt = observed.org.management_account_id
        self.ops: dict[str, Operation] = {}
        self.skipped: dict[str, Skipped] = {}
        self.problems: list[Problem] = []
        self._problem_keys: set[tuple[str, str, tuple[tuple[str, Any], ...]]] = set()
        self._desired_codes = {
            (p.code, p.record.key if p.record else "") for p in desired.problems
        }  # what records.py already said
        self.by_arn = {s.arn: s for s in observed.permission_sets.values()}
        # Permission set names whose kintone record has errors (so it may be missing from desired): never
        # delete them or their assignments because of a record someone is still fixing.
        self.protected_ps: set[str] = {
            str(v)
            for p in desired.problems
            if p.severity == "error" and p.record is not None and p.record.app == "permission_sets"
            for k, v in p.params.items()
            if k in ("name", "permission_set", "permission_set_name") and v
        }
        self.protected_ps |= set(desired.held_permission_sets)  # records.py: record exists, has errors
        # Managed permission sets provisioned to the management account: IdC refuses every write on them
        # from the delegated administrator, so none of their operations is planned.
        self.mgmt_provisioned: set[str] = {
            s.name
            for s in observed.permission_sets.values()
            if s.managed and (self.mgmt in s.provisioned_accounts or self.mgmt in s.stale_accounts)
        }
        self.memory = memory
        self.known_assignments = set(memory.assignments) if memory is not None else None
        self.renamed = self._detect_renames()  # old name -> new name
        # (account, ps, type, principal id) wanted -> key of the creation planned for it ("" = in place)
        self.wanted: dict[tuple[str, str, str, str], str] = {}

    def _detect_renames(self) -> dict[str, str]:
        """Old name -> new name of every permission set record renamed in place (same kintone record id).

        The record id of a set comes from its ``RECORD_ID_TAG`` (written at creation), else from the plan
        memory (sets created before the tag existed; old names whose set is already gone, which assignment
        records may still name because a kintone lookup copies the value at save time). Only an old name no
        record uses any more, whose record is not being fixed, counts.
        """
        by_record = {
            spec.record.record_id: name
            for name, spec in self.desired.permission_sets.items()
            if spec.record is not None and spec.record.app == "permission_sets"
        }
        known: dict[str, str] = dict(self.memory.permission_set_records) if self.memory else {}
        for name, st in self.observed.permission_sets.items():
            if st.managed and st.tags.get(RECORD_ID_TAG):
                known[name] = st.tags[RECORD_ID_TAG]
            elif not st.managed:
                known.pop(name, None)  # a set someone else owns is never "ours renamed"
        renamed: dict[str, str] = {}
        for old, record_id in sorted(known.items()):
            new = by_record.get(record_id)
            if new is None or new == old or old in self.desired.permission_sets:
                continue
            if old in self.protected_ps or old in self.desired.held_permission_sets:
                continue
            renamed[old] = new
        return renamed

    # ------------------------------------------------------------------ helpers
    def problem(
        self,
        code: Code,
        message: str,
        *,
        severity: Severity = "error",
        record: RecordRef | None = None,
        **params: str | int | float | None,
    ) -> None:
        rkey = record.key if record else ""
        if (code, rkey) in self._desired_codes:
            return  # records.py said it already
        key = (code, rkey, tuple(sorted(params.items())))
        if key in self._problem_keys:
            return
        self._problem_keys.add(key)
        self.problems.append(
            Problem(code=code, message=message, severity=severity, record=record, params=params)
        )

    def add_op(self, op: Operation) -> None:
        existing = self.ops.get(op.key)
        if existing is None:
            self.ops[op.key] = op
            return
        for r in op.records:  # the same change asked by several records
            if r not in existing.records:
                existing.records.append(r)

    def skip(
        self, key: str, reason: str, record: RecordRef | None = None, cause: Cause | None = None
    ) -> None:
        self.skipped.setdefault(key, Skipped(key=key, reason=reason, record=record, cause=cause))

    def account_in_scope(self, account_id: str) -> bool:
        return self.scope.includes_account(account_id)

    # ------------------------------------------------------------------ permission sets
    def plan_permission_sets(self, only: list[tuple[str, PermissionSetSpec]] | None = None) -> None:
        for name, spec in sorted(self.desired.permission_sets.items()) if only is None else only:
            if not self.scope.includes_permission_set(name):
                continue
            state = self.observed.permission_sets.get(name)
            records = [spec.record] if spec.record else []
            if state is None:
                old = next((o for o, n in sorted(self.renamed.items()) if n == name), None)
                self.add_op(
                    PermissionSetOp(
                        key=op_key(OpKind.CREATE_PERMISSION_SET, name),
                        kind=OpKind.CREATE_PERMISSION_SET,
                        permission_set_name=name,
                        spec=spec,
                        cause=Cause.RENAMED_FROM if old else Cause.NEW_RECORD,
                        detail=old or "",
                        records=records,
                        renamed_from=old,
                    )
                )
                continue
            if not state.managed:
                self.skip(f"permission_set:{name}", "exists and is not managed by this pipeline", spec.record)
                self.problem(
                    "permission_set_not_managed",
                    f"Permission set {name} already exists in IAM Identity Center and is not managed by this "
                    f"pipeline (it has no {self.config.ownership_tag_key}={self.config.ownership_tag_value} tag), "
                    "so it is left unchanged. Choose another name, or ask an admin to hand it over.",
                    record=spec.record,
                    permission_set=name,
                )
                continue
            self._plan_managed(name, spec, state, records)

    def _plan_managed(
        self, name: str, spec: PermissionSetSpec, state: PermissionSetState, records: list[RecordRef]
    ) -> None:
        changes = permission_set_changes(spec, state)
        stale = [a for a in state.stale_accounts if self.account_in_scope(a)]
        everywhere = sorted(set(state.provisioned_accounts) | set(state.stale_accounts))
        provision_to = everywhere if (changes or self.full_resync) else stale
        provision_to = [a for a in provision_to if self.account_in_scope(a) and a != self.mgmt]
        if name in self.mgmt_provisioned:
            self._skip_changes(name, bool(changes), provision_to, MANAGEMENT_PROVISIONED, spec.record)
            # Said on every run with the same text: the record is commented once (feedback fingerprints).
            self.problem(
                "provisioned_to_management_account",
                f"Permission set {name} is provisioned to the management account {self.mgmt}, so it cannot be "
                "changed, re-provisioned or assigned from the delegated administrator: its changes and "
                "assignments are skipped. Use a separate permission set for member accounts (the management "
                "account's access is managed elsewhere).",
                record=spec.record,
                permission_set=name,
                account_id=self.mgmt,
            )
            return
        known = self.memory.permission_sets.get(name) if self.memory is not None else None
        drift = bool(changes) and known is not None and known == spec_digest(spec)
        fields = ", ".join(sorted(changes))
        if changes and self.report:
            why = f"{DRIFT_REPORT}: changed by hand ({fields})" if drift else DRIFT_REPORT
            self._skip_changes(name, True, provision_to, DRIFT_REPORT, spec.record, Cause.DRIFT_REPORTED, why)
            return
        if changes:
            self.add_op(
                PermissionSetOp(
                    key=op_key(OpKind.UPDATE_PERMISSION_SET, name),
                    kind=OpKind.UPDATE_PERMISSION_SET,
                    permission_set_name=name,
                    permission_set_arn=state.arn,
                    spec=spec,
                    changes=changes,
                    cause=Cause.DRIFT_CHANGED if drift else Cause.DIFFERS,
                    detail=fields if drift else "",
                    records=records,
                )
            )
        for account in provision_to:
            cause = Cause.UPDATED if changes else (Cause.STALE if account in stale else Cause.FULL_RESYNC)
            self.add_op(
                ProvisionOp(
                    key=op_key(OpKind.PROVISION_PERMISSION_SET, name, account_id=account),
                    permission_set_name=name,
                    permission_set_arn=state.arn,
                    account_id=account,
                    cause=cause,
                    records=records,
                )
            )

    def _skip_changes(
        self,
        name: str,
        changed: bool,
        provision_to: list[str],
        reason: str,
        record: RecordRef | None,
        cause: Cause | None = None,
        update_reason: str | None = None,
    ) -> None:
        """Skip a managed set's update (when ``changed``) and its provisioning to ``provision_to``."""
        if changed:
            self.skip(op_key(OpKind.UPDATE_PERMISSION_SET, name), update_reason or reason, record, cause)
        for account in provision_to:
            self.skip(
                op_key(OpKind.PROVISION_PERMISSION_SET, name, account_id=account), reason, record, cause
            )

    # ------------------------------------------------------------------ assignments
    def _expand(self, a: AssignmentSpec) -> list[str]:
        """Accounts a target names (problems for unknown/inactive/management targets)."""
        org = self.observed.org
        target = a.target.strip()
        if idc_fields.is_account_id(target):
            if target == self.mgmt:
                self._skip_creations(a, [target], "management account")
                self.problem(
                    "management_account_target",
                    f"Account {target} is the management account: its access is not managed by this pipeline. "
                    "Remove it from targets.",
                    record=a.record,
                    account_id=target,
                )
                return []
            account = org.accounts.get(target)
            if account is None:
                self.problem(
                    "unknown_account",
                    f"Account {target} is not in the organization. Check the account id in targets.",
                    record=a.record,
                    target=target,
                )
                return []
            if account.state != "ACTIVE":
                self.problem(
                    "account_not_active",
                    f"Account {target} is {account.state}, not ACTIVE: no assignment is made there.",
                    severity="warning",
                    record=a.record,
                    account_id=target,
                    state=account.state,
                )
                return []
            return [target]
        if idc_fields.is_ou_id(target) or (idc_fields.is_root_id(target) and target == org.root_id):
            if target not in org.ous and target != org.root_id:
                self.problem(
                    "unknown_ou",
                    f"Organizational unit {target} does not exist in the organization. Check the OU id in targets.",
                    record=a.record,
                    target=target,
                )
                return []
            accounts = org.active_accounts_under(target)
            if self.mgmt in accounts:
                accounts = [x for x in accounts if x != self.mgmt]  # silently: the OU, not the record, has it
            if not accounts:
                self.problem(
                    "ou_without_active_accounts",
                    f"Organizational unit {target} has no ACTIVE member account: nothing is assigned.",
                    severity="warning",
                    record=a.record,
                    target=target,
                )
            return accounts
        self.problem(
            "invalid_target",
            f"Target {target!r} is neither a 12-digit account id nor an OU id (ou-...).",
            record=a.record,
            value=target,
        )
        return []

    def _inactive_named(self, target: str) -> list[str]:
        """Non-ACTIVE accounts a target names (the account itself, or any account below the OU)."""
        org = self.observed.org
        target = target.strip()
        if target in org.accounts:
            return [target] if org.accounts[target].state != "ACTIVE" else []
        if target not in org.ous and target != org.root_id:
            return []
        below = org.ous_below(target)
        return sorted(a.id for a in org.accounts.values() if a.parent_id in below and a.state != "ACTIVE")

    def _desired_rows(self) -> tuple[list[dict[str, Any]], set[tuple[str, str, str, str]]]:
        """One row per (account, permission set, principal) wanted by a record; plus names to protect."""
        rows: list[dict[str, Any]] = []
        protected: set[tuple[str, str, str, str]] = set()  # (account, ps, type, principal id) never deleted
        for a in self.desired.assignments:
            run_isolated(
                "plan",
                a.record,
                functools.partial(self._desired_row, a, rows, protected),
                on_error=functools.partial(self._assignment_failed, a),
                default=None,
                log=LOG,
            )
        return rows, protected

    def _desired_row(
        self, a: AssignmentSpec, rows: list[dict[str, Any]], protected: set[tuple[str, str, str, str]]
    ) -> None:
        """The rows one assignment record wants (``_desired_rows``)."""
        a = self._follow_rename(a)
        ps = a.permission_set_name
        if not self.scope.includes_permission_set(ps):
            return
        expired = a.expires_on is not None and a.expires_on < self.today
        accounts = [x for x in self._expand(a) if self.account_in_scope(x)]
        pkey = principal_key(a.principal_type, a.principal_name)
        pid = self.observed.principal_ids.get(pkey)
        if pid and not expired:
            # A record still names these accounts, which are not ACTIVE (suspended, closing): nothing is
            # created there, and an assignment that exists is not deleted as "not in kintone" either.
            protected.update((x, ps, a.principal_type, pid) for x in self._inactive_named(a.target))
        if not accounts or not self._assignable(a, accounts, pid, protected):
            return
        if pid is None:
            if not expired:  # expired: nothing to create, nothing that can exist
                self._principal_pending(a, accounts)
            return
        for x in accounts:
            rows.append(
                {
                    "account_id": x,
                    "ps_name": ps,
                    "principal_type": a.principal_type,
                    "principal_id": pid,
                    "principal_name": a.principal_name,
                    "expired": expired,
                    "record": a.record,
                }
            )
        self._remind_expiry(a, accounts, expired)

    def _follow_rename(self, a: AssignmentSpec) -> AssignmentSpec:
        """The record as it is served: a lookup that still holds a renamed set's old name (kintone copies
        it at save time) means the renamed set, under its new name; the requester is asked to re-select it."""
        ps = self.renamed.get(a.permission_set_name)
        if ps is None:
            return a
        self.problem(
            "permission_set_renamed",
            f"Permission set {a.permission_set_name} was renamed to {ps}; this record still shows the "
            f"old name. Its access is kept under {ps}: re-select the permission set in "
            f"'{self.config.assignment_fields.permission_set}' (the lookup) and save the record.",
            severity="warning",
            record=a.record,
            old_name=a.permission_set_name,
            new_name=ps,
            field=self.config.assignment_fields.permission_set,
        )
        return a.model_copy(update={"permission_set_name": ps})

    def _skip_creations(self, a: AssignmentSpec, accounts: list[str], reason: str) -> None:
        for x in accounts:
            key = op_key(
                OpKind.CREATE_ASSIGNMENT,
                a.permission_set_name,
                account_id=x,
                principal_type=a.principal_type,
                principal_name=a.principal_name,
            )
            self.skip(key, reason, a.record)

    def _assignable(
        self,
        a: AssignmentSpec,
        accounts: list[str],
        pid: str | None,
        protected: set[tuple[str, str, str, str]],
    ) -> bool:
        """Whether the record's permission set can take assignments now (else skips and problems)."""
        ps = a.permission_set_name
        if ps in self.desired.held_permission_sets and ps not in self.desired.permission_sets:
            # Its permission set record has errors (reported there). Existing managed permission set:
            # its assignments still follow kintone (deletions are held below); otherwise wait for the fix.
            held_state = self.observed.permission_sets.get(ps)
            if held_state is None or not held_state.managed:
                self._skip_creations(a, accounts, "its permission set record has errors")
                return False
        elif ps not in self.desired.permission_sets:
            self.problem(
                "unknown_permission_set",
                f"Permission set {ps} is not defined in the permission sets app. Add it there first or fix "
                "the name.",
                record=a.record,
                permission_set=ps,
                name=ps,
                field=self.config.assignment_fields.permission_set,
            )
            if pid:
                protected.update((x, ps, a.principal_type, pid) for x in accounts)
            return False
        state = self.observed.permission_sets.get(ps)
        if state is not None and not state.managed:
            self._skip_creations(a, accounts, "permission set not managed by this pipeline")
            return False
        return True

    def _principal_pending(self, a: AssignmentSpec, accounts: list[str]) -> None:
        """The principal is not in IdC yet (SCIM brings it): its creations wait, the record is told."""
        self._skip_creations(a, accounts, PRINCIPAL_PENDING)
        self.problem(
            "principal_not_found",
            f"{'User' if a.principal_type == 'USER' else 'Group'} {a.principal_name} is not in IAM Identity "
            "Center yet (provisioning from Entra ID runs about every 40 minutes); the assignment will be made "
            "once it arrives.",
            severity="pending",
            record=a.record,
            principal_type=a.principal_type,
            principal_name=a.principal_name,
        )

    def _assignment_failed(self, a: AssignmentSpec, problem: Problem) -> None:
        """Per-record isolation: an assignment record whose planning raised gets the problem; nothing of its
        permission set is deleted this run (which of its rows it wanted is unknown), the others go on."""
        self.problems.append(problem)
        self.protected_ps.add(self.renamed.get(a.permission_set_name, a.permission_set_name))

    def _remind_expiry(self, a: AssignmentSpec, accounts: list[str], expired: bool) -> None:
        """An ``info`` reminder on the record during the last ``expiry_reminder_days`` days (today included).

        The text only names the date and the accounts (never "in N days"), so it is the same on every run
        and the record is commented once.
        """
        if a.expires_on is None or expired or not accounts:
            return
        if (a.expires_on - self.today).days > self.config.expiry_reminder_days:
            return
        who = f"{'User' if a.principal_type == 'USER' else 'Group'} {a.principal_name}"
        where = ", ".join(accounts)
        self.problem(
            "access_expiring",
            f"Access ends soon: {who} with {a.permission_set_name} in {where} is removed after "
            f"{a.expires_on.isoformat()} ({self.config.timezone}). To keep it, move expires_on later.",
            severity="info",
            record=a.record,
            date=a.expires_on.isoformat(),
            accounts=where,
            principal=principal_key(a.principal_type, a.principal_name),
            permission_set=a.permission_set_name,
        )

    def _observed_rows(self) -> list[dict[str, Any]]:
        rows = []
        for s in self.observed.assignments:
            state = self.by_arn.get(s.permission_set_arn)
            if state is None or not state.managed or s.account_id == self.mgmt:
                continue  # never touch what is not ours, never the management account
            if not self.scope.includes_permission_set(state.name) or not self.account_in_scope(s.account_id):
                continue
            known = self.observed.principal_names.get(s.principal_id)
            name = known.split(":", 1)[1] if known else s.principal_id
            rows.append(
                {
                    "account_id": s.account_id,
                    "ps_name": state.name,
                    "principal_type": s.principal_type,
                    "principal_id": s.principal_id,
                    "observed_name": name,
                    "ps_arn": state.arn,
                }
            )
        return rows

    def plan_assignments(self) -> None:
        keys = ["account_id", "ps_name", "principal_type", "principal_id"]
        rows, protected = self._desired_rows()
        have = pd.DataFrame(self._observed_rows(), columns=[*keys, "observed_name", "ps_arn"])

        # Several records (or several targets) can ask for the same assignment: one row per key, active if
        # any non-expired record wants it; ``records`` lists the records behind the state that wins.
        # (Grouped in plain Python: a pandas groupby with Python aggregations took 2 s at 50,000 rows.)
        grouped: dict[tuple[Any, ...], dict[str, Any]] = {}
        for r in rows:
            k = tuple(r[c] for c in keys)
            g = grouped.get(k)
            if g is None:
                g = grouped[k] = {
                    **{c: r[c] for c in keys},
                    "principal_name": r["principal_name"],
                    "active": False,
                    "records": [],
                    "active_records": [],
                }
            active = not bool(r["expired"])
            g["active"] = g["active"] or active
            record = r["record"]
            if record is not None and record not in g["records"]:
                g["records"].append(record)
            if active and record is not None and record not in g["active_records"]:
                g["active_records"].append(record)
        want = pd.DataFrame(
            [grouped[k] for k in sorted(grouped)],
            columns=[*keys, "principal_name", "active", "records", "active_records"],
        )

        merged = want.merge(have, on=keys, how="outer", indicator=True, sort=True)
        columns = list(merged.columns)  # rows as dicts; column lists are ~3x faster than to_dict("records")
        column_values = [merged[c].tolist() for c in columns]
        for row in (dict(zip(columns, values, strict=True)) for values in zip(*column_values, strict=True)):
            where = row["_merge"]
            ps = row["ps_name"]
            account = row["account_id"]
            ptype = row["principal_type"]
            state = self.observed.permission_sets.get(ps)
            if where == "left_only":
                if not row["active"]:
                    continue  # expired and never created (or already removed)
                name = row["principal_name"]
                key = op_key(
                    OpKind.CREATE_ASSIGNMENT,
                    ps,
                    account_id=account,
                    principal_type=ptype,
                    principal_name=name,
                )
                if ps in self.mgmt_provisioned:
                    self.skip(key, MANAGEMENT_PROVISIONED, (list(row["active_records"]) or [None])[0])
                    continue
                self.wanted[(account, ps, ptype, row["principal_id"])] = key
                self.add_op(
                    AssignmentOp(
                        key=key,
                        kind=OpKind.CREATE_ASSIGNMENT,
                        permission_set_name=ps,
                        permission_set_arn=state.arn if state else None,
                        account_id=account,
                        principal_type=ptype,
                        principal_id=row["principal_id"],
                        principal_name=name,
                        cause=Cause.NEW_RECORD,
                        records=list(row["active_records"]),
                    )
                )
                continue
            if where == "both" and row["active"]:
                self.wanted[(account, ps, ptype, row["principal_id"])] = ""
                continue  # in place
            # Observed and not (or no longer) wanted.
            expired = where == "both"
            name = row["observed_name"]
            key = op_key(
                OpKind.DELETE_ASSIGNMENT, ps, account_id=account, principal_type=ptype, principal_name=name
            )
            records = list(row["records"]) if expired else []
            record = records[0] if records else None
            ident = (account, ps, ptype, row["principal_id"])
            drift = (
                not expired
                and self.known_assignments is not None
                and assignment_memory_key(*ident) not in self.known_assignments
            )
            if ps in self.mgmt_provisioned:
                self.skip(key, MANAGEMENT_PROVISIONED, record)
            elif ps in self.protected_ps:
                self.skip(key, "kept: its permission set record has errors", record)
            elif ident in protected:
                self.skip(
                    key,
                    "kept: a record still names it (account not ACTIVE or permission set unknown)",
                    record,
                )
            elif self.report:
                why = f"{DRIFT_REPORT}: added by hand" if drift else DRIFT_REPORT
                self.skip(key, why, record, Cause.DRIFT_REPORTED)
            else:
                cause = Cause.EXPIRED if expired else (Cause.DRIFT_ADDED if drift else Cause.NOT_IN_KINTONE)
                self.add_op(
                    AssignmentOp(
                        key=key,
                        kind=OpKind.DELETE_ASSIGNMENT,
                        permission_set_name=ps,
                        permission_set_arn=row["ps_arn"],
                        account_id=account,
                        principal_type=ptype,
                        principal_id=row["principal_id"],
                        principal_name=name,
                        cause=cause,
                        records=records,
                    )
                )

    def link_moves(self) -> None:
        """Assignment removals of a renamed set whose access the new set takes over become *moves*.

        Each one names the new set (``moved_to``) and, when the new assignment is created in this plan,
        depends on that creation: apply removes the old access only after the new one exists, so nobody
        loses access in between. A removal the new set does not replace stays a plain deletion.
        """
        for op in self.ops.values():
            new = self.renamed.get(op.permission_set_name)
            if not isinstance(op, AssignmentOp) or op.kind is not OpKind.DELETE_ASSIGNMENT or new is None:
                continue
            ident = (op.account_id, new, op.principal_type, op.principal_id)
            if ident not in self.wanted:
                continue
            create_key = self.wanted[ident]
            op.moved_to = new
            op.depends_on = [create_key] if create_key else []
            op.cause, op.detail = Cause.MOVED, new

    # ------------------------------------------------------------------ permission set deletions
    def plan_permission_set_deletions(self) -> None:
        deleting: dict[str, int] = defaultdict(int)
        for op in self.ops.values():
            if op.kind is OpKind.DELETE_ASSIGNMENT:
                deleting[op.permission_set_name] += 1
        counts: dict[str, int] = defaultdict(int)
        for s in self.observed.assignments:
            st = self.by_arn.get(s.permission_set_arn)
            if st is not None and s.account_id != self.mgmt:
                counts[st.name] += 1
        for name, state in sorted(self.observed.permission_sets.items()):
            if not state.managed or name in self.desired.permission_sets:
                continue
            if not self.scope.includes_permission_set(name):
                continue
            key = op_key(OpKind.DELETE_PERMISSION_SET, name)
            if self.scope.accounts:
                continue  # only some accounts' assignments were read: we cannot know it is unused
            if name in self.protected_ps:
                self.skip(key, "kept: its permission set record has errors")
                continue
            if name in self.mgmt_provisioned:
                self.skip(key, MANAGEMENT_PROVISIONED)
                self.problem(
                    "provisioned_to_management_account",
                    f"Managed permission set {name} is no longer in kintone but is provisioned to the management "
                    f"account {self.mgmt}, so it cannot be deleted from the delegated administrator. Remove it from "
                    "the management account (where that account's access is managed) or delete it there.",
                    permission_set=name,
                    account_id=self.mgmt,
                )
                continue
            if self.report:
                self.skip(key, DRIFT_REPORT, cause=Cause.DRIFT_REPORTED)
                continue
            if deleting[name] != counts[name]:
                self.skip(key, "some of its assignments are kept in this run")
                continue
            new = self.renamed.get(name)
            self.add_op(
                PermissionSetOp(
                    key=key,
                    kind=OpKind.DELETE_PERMISSION_SET,
                    permission_set_name=name,
                    permission_set_arn=state.arn,
                    cause=Cause.RENAMED_TO if new else Cause.NOT_IN_KINTONE,
                    detail=new or "",
                    moved_to=new,
                )
            )

    def _plan_each_permission_set(self) -> None:
        """Per-record isolation (:mod:`idc_sync.isolation`): a permission set whose planning raises gets a
        ``record_internal_error`` problem on its record and none of its operations, and is protected like a
        record with errors (nothing of it is deleted); the other permission sets are planned as usual."""
        self.failed_ps: set[str] = set()
        for name, spec in sorted(self.desired.permission_sets.items()):
            before = set(self.ops)
            run_isolated(
                "plan",
                spec.record,
                functools.partial(self.plan_permission_sets, [(name, spec)]),
                on_error=functools.partial(self._planning_failed, name, before),
                default=None,
                log=LOG,
                params={"permission_set": name},
            )

    def _planning_failed(self, name: str, before: set[str], problem: Problem) -> None:
        for key in set(self.ops) - before:  # half-planned operations of the failed set
            del self.ops[key]
        self.failed_ps.add(name)
        self.protected_ps.add(name)
        self.problems.append(problem)

    def _skip_failed(self) -> None:
        """Operations of permission sets whose planning failed (their assignments, too) are skipped."""
        for key, op in list(self.ops.items()):
            if op.permission_set_name in self.failed_ps:
                self.skip(key, f"planning permission set {op.permission_set_name} failed", op.record)
                del self.ops[key]

    def plan(self) -> Plan:
        self._plan_each_permission_set()
        self.plan_assignments()
        self.link_moves()
        self.plan_permission_set_deletions()
        self._skip_failed()
        order = {k: i for i, k in enumerate(OP_ORDER)}
        operations = sorted(self.ops.values(), key=lambda op: (order[op.kind], op.key))
        managed_arns = {s.arn for s in self.observed.permission_sets.values() if s.managed}
        return Plan(
            operations=operations,
            skipped=[self.skipped[k] for k in sorted(self.skipped)],
            managed_assignment_count=sum(
                1
                for a in self.observed.assignments
                if a.permission_set_arn in managed_arns and a.account_id != self.mgmt
            ),
        )


def today_in(timezone: str) -> dt.date:
    """The current day where ``expires_on`` is interpreted (an assignment lasts through its last day)."""
    return dt.datetime.now(ZoneInfo(timezone)).date()


def compute_plan(
    desired: DesiredState,
    observed: ObservedState,
    config: SyncConfig,
    *,
    scope: Scope | None = None,
    today: dt.date | None = None,
    drift_mode: str = "enforce",
    full_resync: bool = False,
    memory: PlanMemory | None = None,
) -> tuple[Plan, list[Problem]]:
    """The ordered plan (operations by ``OP_ORDER`` then key) and the problems found while planning.

    ``scope`` defaults to the scope the snapshot was taken with. ``today`` defaults to the current day in
    ``config.timezone``; an assignment whose ``expires_on`` is before it is no longer desired.
    ``full_resync`` re-provisions every managed permission set to every account it is provisioned to (in
    scope, never the management account), repairing changes made to the roles inside the accounts.
    ``memory`` (from ``next_memory`` of the previous run) lets the plan mark hand-made changes as drift.
    """
    effective = scope or observed.scope or Scope()
    if observed.scoped and effective.is_full:
        raise ValueError("the observed state was read with a scope; pass the same scope to compute_plan")
    planner = _Planner(
        desired,
        observed,
        config,
        effective,
        today or today_in(config.timezone),
        drift_mode,
        full_resync,
        memory,
    )
    plan = planner.plan()
    return plan, planner.problems


def next_memory(
    previous: PlanMemory | None,
    desired: DesiredState,
    observed: ObservedState,
    config: SyncConfig,
    *,
    scope: Scope | None = None,
    today: dt.date | None = None,
) -> PlanMemory:
    """The memory to keep for the next run (see the module docstring, "Drift").

    Assignments: what kintone asks for now (expired included) plus what earlier runs remembered and
    still exists in IdC. Permission sets: the kintone definition of every managed set that IdC matches
    now; others keep their previous entry. A scoped run only adds (it did not read everything).
    """
    effective = scope or observed.scope or Scope()
    # ``previous`` only for its rename links: a stale lookup's rows count under the renamed set's name
    planner = _Planner(
        desired, observed, config, effective, today or today_in(config.timezone), "enforce", False, previous
    )
    rows, _ = planner._desired_rows()
    wanted = {
        assignment_memory_key(r["account_id"], r["ps_name"], r["principal_type"], r["principal_id"])
        for r in rows
    }
    before = set(previous.assignments) if previous is not None else set()
    if effective.is_full and not observed.scoped:
        existing = {
            assignment_memory_key(s.account_id, st.name, s.principal_type, s.principal_id)
            for s in observed.assignments
            if (st := planner.by_arn.get(s.permission_set_arn)) is not None
        }
        kept = wanted | (before & existing)
    else:
        kept = wanted | before
    sets = dict(previous.permission_sets) if previous is not None else {}
    for name, spec in desired.permission_sets.items():
        state = observed.permission_sets.get(name)
        if state is not None and state.managed and not permission_set_changes(spec, state):
            sets[name] = spec_digest(spec)
    sets = {n: d for n, d in sets.items() if n in observed.permission_sets or n in desired.permission_sets}
    records = dict(previous.permission_set_records) if previous is not None else {}
    for name, state in observed.permission_sets.items():
        if state.managed and state.tags.get(RECORD_ID_TAG):
            records[name] = state.tags[RECORD_ID_TAG]
    for name, spec in desired.permission_sets.items():
        state = observed.permission_sets.get(name)
        if (
            state is not None
            and state.managed
            and spec.record is not None
            and not state.tags.get(RECORD_ID_TAG)
        ):
            records[name] = spec.record.record_id  # the record defining it now (tagged sets: the tag)
    return PlanMemory(assignments=sorted(kept), permission_sets=sets, permission_set_records=records)


def remember_applied(memory: PlanMemory, plan: Plan, succeeded: set[str]) -> PlanMemory:
    """After apply: the permission sets this run created or updated (op keys in ``succeeded``) are now
    in place as kintone defines them, so a hand-made change right after is drift on the next run."""
    sets = dict(memory.permission_sets)
    for op in plan.of_type(PermissionSetOp, OpKind.CREATE_PERMISSION_SET, OpKind.UPDATE_PERMISSION_SET):
        if op.key in succeeded and op.spec is not None:
            sets[op.permission_set_name] = spec_digest(op.spec)
    return memory.model_copy(update={"permission_sets": sets})


# --------------------------------------------------------------------------- rendering
def _short(value: Any, limit: int = 80) -> str:
    if value is None:
        return "(none)"
    if isinstance(value, list):
        text = ", ".join(managed_policy_name(str(v)) for v in value) or "(none)"
    elif isinstance(value, dict):
        text = ", ".join(f"{k}={v}" for k, v in value.items())
    elif isinstance(value, str):
        text = json.dumps(value, ensure_ascii=False)
    else:
        text = str(value)
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


_SYMBOL = {
    OpKind.CREATE_PERMISSION_SET: "+",
    OpKind.UPDATE_PERMISSION_SET: "~",
    OpKind.PROVISION_PERMISSION_SET: "~",
    OpKind.CREATE_ASSIGNMENT: "+",
    OpKind.DELETE_ASSIGNMENT: "-",
    OpKind.DELETE_PERMISSION_SET: "-",
}


def render_plan(plan: Plan, *, max_lines: int = 500) -> str:
    """Terraform-like text of the plan for the Airflow UI and task logs."""
    counts = plan.counts()
    create = counts[OpKind.CREATE_PERMISSION_SET] + counts[OpKind.CREATE_ASSIGNMENT]
    modify = counts[OpKind.UPDATE_PERMISSION_SET] + counts[OpKind.PROVISION_PERMISSION_SET]
    destroy = counts[OpKind.DELETE_ASSIGNMENT] + counts[OpKind.DELETE_PERMISSION_SET]
    lines = [
        f"Plan: {create} to create, {modify} to change, {destroy} to delete "
        f"({plan.managed_assignment_count} managed assignments, {len(plan.skipped)} skipped)",
        "  " + ", ".join(f"{k}: {n}" for k, n in counts.items()),
        "",
    ]
    if plan.is_empty():
        lines.append("No changes. IAM Identity Center matches kintone.")
    body = _rename_lines(plan)
    for op in plan.operations:
        body += _op_lines(op)
    if len(body) > max_lines:
        hidden = len(body) - max_lines
        body = [*body[:max_lines], f"  … {hidden} more lines (see the audit artifact)"]
    lines += body
    if plan.skipped:
        lines += ["", f"Skipped ({len(plan.skipped)}):"]
        shown = plan.skipped[:max_lines]
        lines += [f"  ! {s.key}: {s.reason}" for s in shown]
        if len(plan.skipped) > len(shown):
            lines.append(f"  … {len(plan.skipped) - len(shown)} more")
    return "\n".join(lines)


def _rename_lines(plan: Plan) -> list[str]:
    """One ``~ rename old -> new`` line per renamed set (its creation and its deletion say it once)."""
    renames: dict[tuple[str, str], str] = {}  # (old, new) -> " (record N)"
    for op in plan.of_type(PermissionSetOp, OpKind.CREATE_PERMISSION_SET, OpKind.DELETE_PERMISSION_SET):
        old: str | None
        new: str | None
        if op.kind is OpKind.CREATE_PERMISSION_SET:
            old, new = op.renamed_from, op.permission_set_name
        else:
            old, new = op.permission_set_name, op.moved_to
        if old and new:
            record = f" (record {op.records[0].record_id})" if op.records else ""
            renames[(old, new)] = renames.get((old, new)) or record
    return [f"  ~ rename {old} -> {new}{rec}" for (old, new), rec in renames.items()]


def _op_lines(op: Operation) -> list[str]:
    sym = _SYMBOL[op.kind]
    if isinstance(op, AssignmentOp):
        who = f"{op.principal_type} {op.principal_name or op.principal_id}"
        return [f"  {sym} assignment  {op.account_id}  {op.permission_set_name}  {who}  ({op.reason})"]
    if isinstance(op, ProvisionOp):
        return [f"  {sym} provision  {op.permission_set_name} -> {op.account_id}  ({op.reason})"]
    if op.kind is OpKind.UPDATE_PERMISSION_SET:
        return [f"  {sym} permission set  {op.permission_set_name}", *_change_lines(op.changes)]
    if op.kind is OpKind.CREATE_PERMISSION_SET:
        return [f"  {sym} permission set  {op.permission_set_name}{_spec_summary(op.spec)}"]
    return [f"  {sym} permission set  {op.permission_set_name}  ({op.reason})"]


def _change_lines(changes: dict[str, dict[str, Any]]) -> list[str]:
    out = []
    for field, change in sorted(changes.items()):
        if field == "inline_policy":
            out.append(f"        inline_policy: changed ({len(str(change.get('to') or ''))} chars)")
        else:
            out.append(f"        {field}: {_short(change.get('from'))} -> {_short(change.get('to'))}")
    return out


def _spec_summary(spec: PermissionSetSpec | None) -> str:
    if spec is None:
        return ""
    detail = f"  session {spec.session_duration}, {len(spec.managed_policies)} managed policies"
    if spec.customer_managed_policies:
        detail += f", {len(spec.customer_managed_policies)} customer managed"
    if spec.inline_policy:
        detail += ", inline policy"
    if spec.permissions_boundary:
        detail += ", boundary"
    return detail
