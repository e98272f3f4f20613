"""Settings of one deployment: kintone field codes, ownership tag, safety thresholds, locale.

Loaded from a JSON object (an Airflow Variable ``idc_sync_config`` in production, or the environment
variable ``IDC_SYNC_CONFIG``); every key is optional and defaults to DESIGN.md. Secrets never live here:
they are in Airflow connections.
"""

from __future__ import annotations

import json
import os
from typing import Any, Literal

from pydantic import BaseModel, Field


class PermissionSetFields(BaseModel):
    name: str = "name"
    description: str = "description"
    session_duration: str = "session_duration"
    managed_policies: str = "managed_policies"
    customer_managed_policies: str = "customer_managed_policies"
    cmp_name: str = "cmp_name"
    cmp_path: str = "cmp_path"
    inline_policy: str = "inline_policy"
    permissions_boundary: str = "permissions_boundary"
    relay_state: str = "relay_state"
    owners: str = "owners"


class AssignmentFields(BaseModel):
    principal_type: str = "principal_type"
    users: str = "users"
    group_name: str = "group_name"
    targets: str = "targets"
    permission_set: str = "permission_set"
    expires_on: str = "expires_on"
    reason: str = "reason"


class SyncConfig(BaseModel):
    permission_sets_app_id: str = "1"
    assignments_app_id: str = "2"
    permission_set_fields: PermissionSetFields = Field(default_factory=PermissionSetFields)
    assignment_fields: AssignmentFields = Field(default_factory=AssignmentFields)
    user_name_template: str = "{code}"  # kintone user code -> IdC UserName
    ownership_tag_key: str = "managed-by"
    ownership_tag_value: str = "idc-sync"
    max_deletions: int = 20
    max_deletion_ratio: float = 0.10
    # The ratio rule only counts from this many deletions on: in a small estate one deletion is a
    # large share but never a "mass" deletion worth waking someone for.
    deletion_ratio_floor: int = 5
    # How long approve_deletions waits for a human before its default (Reject) applies. Read when the DAG
    # is parsed (from $IDC_SYNC_CONFIG or $IDC_SYNC_APPROVAL_TIMEOUT_MINUTES, never the Variable).
    approval_timeout_minutes: float = 240
    # An Approve answer lets later runs delete exactly that set for this long (the run it triggers may
    # queue behind a running one); checked against the DAG timings when the DAG file is parsed.
    approval_grant_hours: float = 24
    # Airflow user ids (usernames) who may answer the approval of withheld deletions; empty: anyone who can
    # use the idc_sync_approval DAG. Read when the DAG file is parsed, like approval_timeout_minutes.
    approvers: list[str] = Field(default_factory=list)
    # Apply refuses a plan computed from reads older than this (a UI "clear" re-running apply or the plan
    # on old XComs): re-run the DAG from extract_kintone.
    max_plan_age_minutes: float = 20
    timezone: str = "Asia/Tokyo"  # the day in which expires_on ends
    expiry_reminder_days: int = 3
    # Requesters' comments: "ja", "en", or "ja+en" (both, Japanese first, for mixed teams).
    language: Literal["ja", "en", "ja+en"] = "ja"
    scim_max_staleness_minutes: int = 90
    scim_grace_cycles: int = 2  # a missing principal stays pending this many SCIM intervals
    # Incremental kintone reads (idc_sync.kintone_incremental): every record id is listed this often (it
    # finds what counts cannot); 120 keeps 50,000 records under 2,500 requests per app per day at a
    # 10-minute cadence (60 would be ~2,700). The changed-records query starts the overlap before the
    # newest update time seen (kintone stamps to the minute, when a save starts).
    kintone_id_pass_minutes: float = 120
    kintone_overlap_minutes: float = 5
    audit_path: str = "audit"  # local folder or object storage URL (s3://conn@bucket/prefix)
    # audit_path is a folder every worker mounts (NFS, EFS, one machine): Celery/Kubernetes may use it.
    state_store_shared: bool = False
    assignment_concurrency: int = 10  # outstanding async assignment operations (IdC limit)
    provisioning_concurrency: int = 3
    async_timeout_seconds: int = 300
    # Time budget of apply_assignments (seconds from its start, or the deadline the task passes): no new
    # assignment operation starts after it; those not started are "deferred" to the next run (the ones in
    # flight are awaited). Keep it under the schedule's interval. None: no budget.
    apply_budget_seconds: float | None = 480
    # The observed-state cache learns what apply did this often during a long apply (``apply_journal``).
    apply_checkpoint_seconds: float = 60
    portal_url: str | None = None  # https://<portal>.awsapps.com/start, for shortcut links
    # Incremental observation (idc_sync.observe): every cached item is re-read within the sweep period;
    # each run spends what that takes (at least the floor, at most the cap) of its sso-admin calls on it.
    sweep_period_minutes: float = 360
    run_cadence_minutes: float = 10  # the schedule's interval: how many runs share the sweep
    sweep_min_calls_per_run: int = 300
    sweep_max_calls_per_run: int = 2000
    principal_refresh_minutes: float = 60  # users and groups listed in full this often (ids cached between)
    # Client-side pacing in requests/s per client ("sso_admin", "identitystore", "organizations", "iam",
    # "accessanalyzer"; None = unpaced) over the defaults of idc_sync.aws_clients (a little under AWS's
    # quotas). Lower it when other tools share the account's quota.
    client_max_rps: dict[str, float | None] = Field(default_factory=dict)

    @classmethod
    def from_json(cls, raw: str | dict[str, Any] | None) -> SyncConfig:
        if raw is None or raw == "":
            return cls()
        data = json.loads(raw) if isinstance(raw, str) else raw
        return cls.model_validate(data)

    @classmethod
    def from_env(cls) -> SyncConfig:
        return cls.from_json(os.environ.get("IDC_SYNC_CONFIG"))

    @property
    def api_language(self) -> str:
        """The language kintone answers API errors in: the first of ``language``."""
        return self.language.split("+")[0]

    @property
    def ownership_tag(self) -> dict[str, str]:
        return {self.ownership_tag_key: self.ownership_tag_value}
