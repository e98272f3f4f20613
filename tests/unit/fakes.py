"""The unit tests' fakes of AWS: one sso-admin (``FakeSso``), iam and Access Analyzer, the client bundle
and a clock. Each fakes only the calls the code under test makes, with scripted faults."""

from __future__ import annotations

import itertools
import threading
import time
from collections import Counter, defaultdict
from typing import Any

from botocore.exceptions import ClientError


def client_error(code: str, message: str | None = None, op: str = "Op", status: int = 400) -> ClientError:
    """The ClientError botocore raises for an AWS error ``code``."""
    return ClientError(
        {
            "Error": {"Code": code, "Message": message or f"{code} message"},
            "ResponseMetadata": {"RequestId": "r", "HTTPStatusCode": status},
        },
        op,
    )


class FakeTime:
    """Clock advanced by sleep; sleep also yields for real (1 ms) so threads interleave."""

    def __init__(self, real_sleep: float = 0.001) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []
        self.real = real_sleep
        self._lock = threading.Lock()

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        with self._lock:
            self.sleeps.append(seconds)
            self.now += seconds
        if self.real:
            time.sleep(self.real)


class FakeSso:
    """A tiny sso-admin with scripted faults. Thread-safe; records concurrency per account and overall."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.ids = itertools.count(1)
        # world
        self.permission_sets: dict[
            str, dict[str, Any]
        ] = {}  # arn -> {Name, Description, ..., tags, managed, ...}
        self.assignments: set[tuple[str, str, str, str]] = set()
        self.requests: dict[str, dict[str, Any]] = {}
        # scripting
        self.polls_in_progress = 2  # looks (Describe, or a List*Status round) answered IN_PROGRESS
        self.list_recent: int | None = None  # List*Status shows only this many most recent requests
        self.list_newest_first = False  # List*Status order (the API documents none)
        self.errors: dict[str, list[str]] = defaultdict(list)  # operation -> queue of error codes to raise
        self.always: dict[str, str] = {}  # operation -> error code raised every time
        self.fail_accounts: dict[str, str] = {}  # account -> FailureReason (async ends FAILED)
        self.never_finish = False
        self.call_delay = 0.001  # real seconds spent in mutating calls (lets threads overlap)
        # concurrency book-keeping (an async request is outstanding until its terminal status is read)
        self.outstanding_by_account: Counter[str] = Counter()
        self.max_by_account: Counter[str] = Counter()
        self.outstanding = 0
        self.max_outstanding = 0
        self.provision_outstanding = 0
        self.max_provision = 0
        # set by tests that need proof of parallelism: the first ``parties`` async starts wait for each
        # other, so they are outstanding together by construction (no reliance on threads overlapping
        # within a millisecond); a serial apply breaks the barrier and fails those operations
        self.rendezvous: threading.Barrier | None = None
        self._rendezvous_left = 0

    # -------------------------------------------------------------- helpers
    def _enter(self, op: str, params: dict[str, Any]) -> None:
        with self.lock:
            self.calls.append((op, params))
            if op in self.always:
                raise client_error(self.always[op], f"{op} always fails", op)
            if self.errors.get(op):
                code = self.errors[op].pop(0)
                raise client_error(
                    code,
                    "There is a conflicting operation in process." if code == "ConflictException" else code,
                    op,
                )

    def count(self, op: str) -> int:
        return sum(1 for name, _ in self.calls if name == op)

    def seed_ps(self, name: str, *, managed: bool = True, **attrs: Any) -> str:
        arn = f"arn:aws:sso:::permissionSet/ssoins-0000000000000001/ps-{next(self.ids):016x}"
        self.permission_sets[arn] = {
            "Name": name,
            "Description": attrs.get("Description", ""),
            "SessionDuration": attrs.get("SessionDuration", "PT1H"),
            "managed": set(attrs.get("managed_policies", [])),
            "customer": set(attrs.get("customer", [])),
            "inline": attrs.get("inline"),
            "boundary": attrs.get("boundary"),
            "tags": {"managed-by": "idc-sync"} if managed else {"owner": "terraform"},
        }
        return arn

    def meet(self, parties: int) -> None:
        self.rendezvous = threading.Barrier(parties, timeout=30)
        self._rendezvous_left = parties

    def _start(self, kind: str, account: str, payload: dict[str, Any]) -> dict[str, Any]:
        time.sleep(self.call_delay)
        rid = f"req-{next(self.ids)}"
        with self.lock:
            meet = self._rendezvous_left > 0
            self._rendezvous_left -= 1 if meet else 0
            self.outstanding_by_account[account] += 1
            self.max_by_account[account] = max(
                self.max_by_account[account], self.outstanding_by_account[account]
            )
            self.outstanding += 1
            self.max_outstanding = max(self.max_outstanding, self.outstanding)
            if kind == "provision":
                self.provision_outstanding += 1
                self.max_provision = max(self.max_provision, self.provision_outstanding)
            self.requests[rid] = {
                "kind": kind,
                "account": account,
                "payload": payload,
                "polls": self.polls_in_progress,
                "status": "IN_PROGRESS",
                "reason": None,
                "seq": len(self.requests),
            }
        if meet and self.rendezvous is not None:
            self.rendezvous.wait()  # outstanding together with the other parties
        return self._status(rid, first=True)

    def _look(self, rid: str, *, count: bool = True) -> None:
        """One look at a request (under the lock): the n-th look (n = polls_in_progress) ends it."""
        req = self.requests[rid]
        if req["status"] != "IN_PROGRESS":
            return
        if count:
            req["polls"] -= 1
        if self.never_finish or req["polls"] > 0:
            return
        reason = self.fail_accounts.get(req["account"])
        if reason:
            req.update(status="FAILED", reason=reason)
        else:
            req["status"] = "SUCCEEDED"
            if req["kind"] == "create":
                self.assignments.add(req["payload"])
            elif req["kind"] == "delete":
                self.assignments.discard(req["payload"])
        self.outstanding_by_account[req["account"]] -= 1
        self.outstanding -= 1
        if req["kind"] == "provision":
            self.provision_outstanding -= 1

    def _status(self, rid: str, first: bool = False) -> dict[str, Any]:
        """The creating call answers IN_PROGRESS; the n-th look (Describe or List round) is terminal."""
        with self.lock:
            self._look(rid, count=not first)
            req = self.requests[rid]
            out = {"Status": req["status"], "RequestId": rid}
            if req["reason"]:
                out["FailureReason"] = req["reason"]
            return out

    def _list_status(self, kind: str, p: dict[str, Any], key: str) -> dict[str, Any]:
        """List*Status: every listed call is one look at each outstanding request of that kind."""
        with self.lock:
            mine = [rid for rid, req in self.requests.items() if req["kind"] == kind]
            for rid in mine:
                self._look(rid)
            if self.list_recent is not None:
                mine = mine[-self.list_recent :] if self.list_recent else []
            if self.list_newest_first:
                mine.reverse()
            wanted = (p.get("Filter") or {}).get("Status")
            items = [
                {"Status": self.requests[rid]["status"], "RequestId": rid, "CreatedDate": 0}
                for rid in mine
                if wanted is None or self.requests[rid]["status"] == wanted
            ]
        start = int(p.get("NextToken") or 0)
        size = int(p.get("MaxResults") or 100)
        out: dict[str, Any] = {key: items[start : start + size]}
        if start + size < len(items):
            out["NextToken"] = str(start + size)
        return out

    # -------------------------------------------------------------- assignments
    def create_account_assignment(self, **p: Any) -> dict[str, Any]:
        self._enter("CreateAccountAssignment", p)
        key = (p["TargetId"], p["PermissionSetArn"], p["PrincipalType"], p["PrincipalId"])
        return {"AccountAssignmentCreationStatus": self._start("create", p["TargetId"], key)}

    def describe_account_assignment_creation_status(self, **p: Any) -> dict[str, Any]:
        self._enter("DescribeAccountAssignmentCreationStatus", p)
        return {"AccountAssignmentCreationStatus": self._status(p["AccountAssignmentCreationRequestId"])}

    def list_account_assignment_creation_status(self, **p: Any) -> dict[str, Any]:
        self._enter("ListAccountAssignmentCreationStatus", p)
        return self._list_status("create", p, "AccountAssignmentsCreationStatus")

    def list_account_assignment_deletion_status(self, **p: Any) -> dict[str, Any]:
        self._enter("ListAccountAssignmentDeletionStatus", p)
        return self._list_status("delete", p, "AccountAssignmentsDeletionStatus")

    def delete_account_assignment(self, **p: Any) -> dict[str, Any]:
        self._enter("DeleteAccountAssignment", p)
        key = (p["TargetId"], p["PermissionSetArn"], p["PrincipalType"], p["PrincipalId"])
        if key not in self.assignments:
            raise client_error("ResourceNotFoundException", "assignment not found", "DeleteAccountAssignment")
        return {"AccountAssignmentDeletionStatus": self._start("delete", p["TargetId"], key)}

    def describe_account_assignment_deletion_status(self, **p: Any) -> dict[str, Any]:
        self._enter("DescribeAccountAssignmentDeletionStatus", p)
        return {"AccountAssignmentDeletionStatus": self._status(p["AccountAssignmentDeletionRequestId"])}

    # -------------------------------------------------------------- provisioning
    def provision_permission_set(self, **p: Any) -> dict[str, Any]:
        self._enter("ProvisionPermissionSet", p)
        account = p.get("TargetId") or "ALL"
        return {"PermissionSetProvisioningStatus": self._start("provision", account, p["PermissionSetArn"])}

    def describe_permission_set_provisioning_status(self, **p: Any) -> dict[str, Any]:
        self._enter("DescribePermissionSetProvisioningStatus", p)
        return {"PermissionSetProvisioningStatus": self._status(p["ProvisionPermissionSetRequestId"])}

    # -------------------------------------------------------------- permission sets
    def create_permission_set(self, **p: Any) -> dict[str, Any]:
        self._enter("CreatePermissionSet", p)
        with self.lock:
            if any(ps["Name"] == p["Name"] for ps in self.permission_sets.values()):
                raise client_error(
                    "ConflictException", f"Permission set {p['Name']} already exists", "CreatePermissionSet"
                )
        arn = self.seed_ps(p["Name"], managed=False, Description=p.get("Description", ""))
        self.permission_sets[arn]["tags"] = {t["Key"]: t["Value"] for t in p.get("Tags", [])}
        return {"PermissionSet": {"Name": p["Name"], "PermissionSetArn": arn}}

    def _ps(self, p: dict[str, Any]) -> dict[str, Any]:
        ps = self.permission_sets.get(p["PermissionSetArn"])
        if ps is None:
            raise client_error("ResourceNotFoundException", "permission set not found")
        return ps

    def list_permission_sets(self, **p: Any) -> dict[str, Any]:
        self._enter("ListPermissionSets", p)
        return {"PermissionSets": list(self.permission_sets)}

    def describe_permission_set(self, **p: Any) -> dict[str, Any]:
        self._enter("DescribePermissionSet", p)
        ps = self._ps(p)
        return {
            "PermissionSet": {
                "Name": ps["Name"],
                "PermissionSetArn": p["PermissionSetArn"],
                "Description": ps["Description"],
                "SessionDuration": ps["SessionDuration"],
            }
        }

    def list_tags_for_resource(self, **p: Any) -> dict[str, Any]:
        self._enter("ListTagsForResource", p)
        ps = self._ps({"PermissionSetArn": p["ResourceArn"]})
        return {"Tags": [{"Key": k, "Value": v} for k, v in ps["tags"].items()]}

    def update_permission_set(self, **p: Any) -> dict[str, Any]:
        self._enter("UpdatePermissionSet", p)
        ps = self._ps(p)
        ps["Description"] = p.get("Description", ps["Description"])
        ps["SessionDuration"] = p.get("SessionDuration", ps["SessionDuration"])
        return {}

    def list_managed_policies_in_permission_set(self, **p: Any) -> dict[str, Any]:
        self._enter("ListManagedPoliciesInPermissionSet", p)
        return {
            "AttachedManagedPolicies": [
                {"Arn": a, "Name": a.rsplit("/", 1)[1]} for a in self._ps(p)["managed"]
            ]
        }

    def attach_managed_policy_to_permission_set(self, **p: Any) -> dict[str, Any]:
        self._enter("AttachManagedPolicyToPermissionSet", p)
        ps = self._ps(p)
        if p["ManagedPolicyArn"] in ps["managed"]:
            raise client_error(
                "ConflictException", "Policy is already attached", "AttachManagedPolicyToPermissionSet"
            )
        ps["managed"].add(p["ManagedPolicyArn"])
        return {}

    def detach_managed_policy_from_permission_set(self, **p: Any) -> dict[str, Any]:
        self._enter("DetachManagedPolicyFromPermissionSet", p)
        ps = self._ps(p)
        if p["ManagedPolicyArn"] not in ps["managed"]:
            raise client_error("ResourceNotFoundException", "not attached")
        ps["managed"].discard(p["ManagedPolicyArn"])
        return {}

    def list_customer_managed_policy_references_in_permission_set(self, **p: Any) -> dict[str, Any]:
        self._enter("ListCustomerManagedPolicyReferencesInPermissionSet", p)
        return {
            "CustomerManagedPolicyReferences": [{"Name": n, "Path": pa} for n, pa in self._ps(p)["customer"]]
        }

    def attach_customer_managed_policy_reference_to_permission_set(self, **p: Any) -> dict[str, Any]:
        self._enter("AttachCustomerManagedPolicyReferenceToPermissionSet", p)
        ref = p["CustomerManagedPolicyReference"]
        key = (ref["Name"], ref.get("Path", "/"))
        ps = self._ps(p)
        if key in ps["customer"]:
            raise client_error("ConflictException", "already attached")
        ps["customer"].add(key)
        return {}

    def detach_customer_managed_policy_reference_from_permission_set(self, **p: Any) -> dict[str, Any]:
        self._enter("DetachCustomerManagedPolicyReferenceFromPermissionSet", p)
        ref = p["CustomerManagedPolicyReference"]
        self._ps(p)["customer"].discard((ref["Name"], ref.get("Path", "/")))
        return {}

    def get_inline_policy_for_permission_set(self, **p: Any) -> dict[str, Any]:
        self._enter("GetInlinePolicyForPermissionSet", p)
        return {"InlinePolicy": self._ps(p)["inline"] or ""}

    def put_inline_policy_to_permission_set(self, **p: Any) -> dict[str, Any]:
        self._enter("PutInlinePolicyToPermissionSet", p)
        self._ps(p)["inline"] = p["InlinePolicy"]
        return {}

    def delete_inline_policy_from_permission_set(self, **p: Any) -> dict[str, Any]:
        self._enter("DeleteInlinePolicyFromPermissionSet", p)
        self._ps(p)["inline"] = None
        return {}

    def get_permissions_boundary_for_permission_set(self, **p: Any) -> dict[str, Any]:
        self._enter("GetPermissionsBoundaryForPermissionSet", p)
        b = self._ps(p)["boundary"]
        if b is None:
            raise client_error("ResourceNotFoundException", "no boundary")
        return {"PermissionsBoundary": b}

    def put_permissions_boundary_to_permission_set(self, **p: Any) -> dict[str, Any]:
        self._enter("PutPermissionsBoundaryToPermissionSet", p)
        self._ps(p)["boundary"] = p["PermissionsBoundary"]
        return {}

    def delete_permissions_boundary_from_permission_set(self, **p: Any) -> dict[str, Any]:
        self._enter("DeletePermissionsBoundaryFromPermissionSet", p)
        self._ps(p)["boundary"] = None
        return {}

    def delete_permission_set(self, **p: Any) -> dict[str, Any]:
        self._enter("DeletePermissionSet", p)
        with self.lock:
            if p["PermissionSetArn"] not in self.permission_sets:
                raise client_error("ResourceNotFoundException", "gone")
            if any(a[1] == p["PermissionSetArn"] for a in self.assignments):
                raise client_error("ConflictException", "permission set has assignments")
            del self.permission_sets[p["PermissionSetArn"]]
        return {}


class FakeIam:
    """iam:GetPolicy over a set of existing policy ARNs; ``down`` answers AccessDenied to every call."""

    def __init__(self, existing: set[str], down: bool = False) -> None:
        self.existing = existing
        self.down = down
        self.calls: list[str] = []

    def get_policy(self, PolicyArn: str) -> dict[str, Any]:
        self.calls.append(PolicyArn)
        if self.down:
            raise client_error("AccessDenied", status=403)
        if PolicyArn not in self.existing:
            raise client_error("NoSuchEntity", status=404)
        return {"Policy": {"Arn": PolicyArn}}


class FakeAnalyzer:
    def __init__(
        self,
        pages: list[list[dict[str, Any]]] | None = None,
        errors: list[str] | None = None,
        always: str | None = None,
    ) -> None:
        self.pages = pages or [[]]
        self.errors = list(errors or [])  # raised once each, in order
        self.always = always  # raised by every call
        self.calls: list[dict[str, Any]] = []

    def validate_policy(self, **params: Any) -> dict[str, Any]:
        self.calls.append(params)
        if self.always:
            raise client_error(self.always)
        if self.errors:
            raise client_error(self.errors.pop(0))
        index = int(params.get("nextToken", "0"))
        out: dict[str, Any] = {"findings": self.pages[index]}
        if index + 1 < len(self.pages):
            out["nextToken"] = str(index + 1)
        return out


class FakeClients:
    """The ``IdcClients`` bundle with only the fakes a test needs (the others None)."""

    def __init__(
        self,
        sso_admin: FakeSso | None = None,
        *,
        iam: FakeIam | None = None,
        accessanalyzer: FakeAnalyzer | None = None,
    ) -> None:
        self.sso_admin = sso_admin
        self.iam = iam
        self.accessanalyzer = accessanalyzer
        self.identitystore = self.organizations = None
