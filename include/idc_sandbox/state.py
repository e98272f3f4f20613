"""The sandbox's world: one in-memory model of the organization, IdC, Entra, kintone and Slack.

Every service module reads and writes these dataclasses under ``Sandbox.lock``; cross-service semantics
(SCIM filling the identity store, sso-admin refusing the management account) fall out of sharing them.
"""

from __future__ import annotations

import dataclasses as dc
import datetime as dt
from typing import Any


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


# --------------------------------------------------------------------------- AWS Organizations
@dc.dataclass
class Account:
    id: str  # 12 digits
    name: str
    email: str
    parent_id: str  # root id or OU id
    state: str = "ACTIVE"  # PENDING_ACTIVATION | ACTIVE | SUSPENDED | PENDING_CLOSURE | CLOSED
    joined: dt.datetime = dc.field(default_factory=utcnow)


@dc.dataclass
class OrganizationalUnit:
    id: str  # ou-<root4>-<8>
    name: str
    parent_id: str


@dc.dataclass
class Organization:
    id: str = "o-exampleorg1"
    management_account_id: str = "111111111111"
    root_id: str = "r-ab12"
    accounts: dict[str, Account] = dc.field(default_factory=dict)
    ous: dict[str, OrganizationalUnit] = dc.field(default_factory=dict)


# --------------------------------------------------------------------------- identity store
@dc.dataclass
class User:
    user_id: str
    user_name: str
    display_name: str
    email: str = ""
    given_name: str = ""
    family_name: str = ""
    external_id: str = ""  # Entra object id when provisioned by SCIM


@dc.dataclass
class Group:
    group_id: str
    display_name: str
    description: str = ""
    external_id: str = ""
    members: set[str] = dc.field(default_factory=set)  # user ids


@dc.dataclass
class IdentityStore:
    id: str = "d-9067a1b2c3"
    users: dict[str, User] = dc.field(default_factory=dict)  # by user id
    groups: dict[str, Group] = dc.field(default_factory=dict)  # by group id


# --------------------------------------------------------------------------- IAM Identity Center
@dc.dataclass
class PermissionSet:
    arn: str
    name: str
    description: str = ""
    session_duration: str = "PT1H"
    relay_state: str | None = None
    created: dt.datetime = dc.field(default_factory=utcnow)
    managed_policies: list[str] = dc.field(default_factory=list)  # ARNs in attach order
    customer_managed: list[tuple[str, str]] = dc.field(default_factory=list)  # (name, path)
    inline_policy: str | None = None
    boundary: dict[str, Any] | None = None  # PermissionsBoundary wire shape
    tags: dict[str, str] = dc.field(default_factory=dict)
    version: int = 1  # bumped by every change that needs ProvisionPermissionSet


@dc.dataclass(frozen=True)
class Assignment:
    account_id: str
    permission_set_arn: str
    principal_type: str  # USER | GROUP
    principal_id: str


@dc.dataclass
class AsyncRequest:
    """One CreateAccountAssignment / DeleteAccountAssignment / ProvisionPermissionSet request."""

    request_id: str
    kind: str  # "create_assignment" | "delete_assignment" | "provision"
    status: str  # IN_PROGRESS | SUCCEEDED | FAILED
    created: dt.datetime
    completes_at: float  # monotonic time when it reaches a terminal state
    payload: dict[str, Any]
    failure_reason: str | None = None
    will_fail: str | None = None  # failure reason decided at creation (fault injection)


@dc.dataclass
class IdentityCenter:
    instance_arn: str = "arn:aws:sso:::instance/ssoins-72230e6a59fa4ba3"
    owner_account_id: str = "222222222222"  # the delegated administrator account
    permission_sets: dict[str, PermissionSet] = dc.field(default_factory=dict)  # by ARN
    assignments: set[Assignment] = dc.field(default_factory=set)
    provisioned: dict[tuple[str, str], int] = dc.field(default_factory=dict)  # (account, ps arn) -> version
    requests: dict[str, AsyncRequest] = dc.field(default_factory=dict)


# --------------------------------------------------------------------------- Microsoft Entra ID
@dc.dataclass
class EntraUser:
    id: str
    user_principal_name: str  # becomes the IdC UserName
    display_name: str
    mail: str = ""
    given_name: str = ""
    surname: str = ""
    assigned_to_app: bool = True  # in scope of the AWS IAM Identity Center enterprise app


@dc.dataclass
class EntraGroup:
    id: str
    display_name: str
    members: list[str] = dc.field(default_factory=list)  # Entra user ids
    assigned_to_app: bool = True


@dc.dataclass
class SyncJob:
    """A synchronizationJob of the IdC enterprise app's service principal (Graph shape built on read)."""

    id: str = "AWSSingleSignOn.e0bd3d1f7c2c4ae3b2a0f6c1b3d3e6a1.3c2b6f7a-1b2c-4d5e-8f90-a1b2c3d4e5f6"
    template_id: str = "AWSSingleSignOn"
    interval: str = "PT40M"
    schedule_state: str = "Active"  # Active | Disabled | Paused
    status_code: str = "Active"  # NotConfigured | NotRun | Active | Paused | Quarantine
    quarantine: dict[str, Any] | None = None
    successive_failures: int = 0
    last_execution: dict[str, Any] | None = None
    last_successful_execution: dict[str, Any] | None = None
    steady_state_last_achieved: dt.datetime | None = None
    fail_next_cycles: int = 0  # fault: the next N cycles fail
    fail_error_code: str = "SystemForCrossDomainIdentityManagementInvalidCredentials"


@dc.dataclass
class Entra:
    tenant_id: str = "8f3c5a4e-1d2b-4c6a-9e7f-0a1b2c3d4e5f"
    service_principal_id: str = "5b2f8e0c-7a41-4d6e-9c3b-2e1f0a9d8c7b"
    clients: dict[str, str] = dc.field(default_factory=dict)  # client_id -> client_secret
    tokens: dict[str, float] = dc.field(default_factory=dict)  # access token -> expiry (epoch seconds)
    users: dict[str, EntraUser] = dc.field(default_factory=dict)
    groups: dict[str, EntraGroup] = dc.field(default_factory=dict)
    jobs: list[SyncJob] = dc.field(default_factory=list)


# --------------------------------------------------------------------------- kintone
@dc.dataclass
class KintoneComment:
    id: int
    text: str
    mentions: list[dict[str, str]]
    creator: dict[str, str]
    created_at: dt.datetime


@dc.dataclass
class KintoneApp:
    id: int
    name: str
    api_tokens: list[str] = dc.field(default_factory=list)
    fields: dict[str, dict[str, Any]] = dc.field(default_factory=dict)  # form properties by field code
    records: dict[int, dict[str, Any]] = dc.field(default_factory=dict)  # record id -> full record JSON
    next_record_id: int = 1
    comments: dict[int, list[KintoneComment]] = dc.field(default_factory=dict)
    next_comment_id: int = 1
    revision: int = 1  # app settings revision
    requests_today: int = 0


@dc.dataclass
class KintoneCursor:
    id: str
    app_id: int
    record_ids: list[int]
    fields: list[str] | None
    position: int
    total: int
    expires_at: float  # monotonic
    size: int = 100  # records per page


@dc.dataclass
class KintoneWebhook:
    """A webhook registered in app settings: where kintone POSTs, for which apps and events (None: all)."""

    id: str
    url: str
    apps: list[int] | None = None
    events: list[str] | None = None


@dc.dataclass
class Kintone:
    domain: str = "example.cybozu.com"
    users: dict[str, str] = dc.field(default_factory=dict)  # user code -> display name
    logins: dict[str, str] = dc.field(default_factory=dict)  # login name -> password (password auth)
    apps: dict[int, KintoneApp] = dc.field(default_factory=dict)
    next_app_id: int = 1
    cursors: dict[str, KintoneCursor] = dc.field(default_factory=dict)
    daily_limit: int = 10_000
    # Real kintone does not reject requests above the daily limit (it e-mails the store administrator);
    # "warn" marks them in the call log, "error" makes the sandbox refuse them (to test budgets).
    daily_limit_mode: str = "warn"  # "warn" | "error"
    max_concurrent_requests: int = 100  # per domain (429 GAIA_TO04 above)
    max_cursors: int = 10
    cursor_ttl_seconds: float = 600.0
    # webhooks (idc_sandbox.kintone_webhooks): registrations, what was sent or dropped, and the send times
    # (monotonic) of the last minute for the per-domain rate limit; part of the world so a reset clears them
    webhooks: list[KintoneWebhook] = dc.field(default_factory=list)
    webhook_deliveries: list[dict[str, Any]] = dc.field(default_factory=list)
    webhook_sent_at: list[float] = dc.field(default_factory=list)
    next_webhook_id: int = 1


# --------------------------------------------------------------------------- Slack
@dc.dataclass
class SlackMessage:
    path: str  # /services/T.../B.../xxx
    payload: dict[str, Any]
    received_at: dt.datetime = dc.field(default_factory=utcnow)


@dc.dataclass
class Slack:
    webhooks: set[str] = dc.field(default_factory=set)  # accepted paths; empty = accept any
    messages: list[SlackMessage] = dc.field(default_factory=list)


@dc.dataclass
class World:
    organization: Organization = dc.field(default_factory=Organization)
    identity_store: IdentityStore = dc.field(default_factory=IdentityStore)
    identity_center: IdentityCenter = dc.field(default_factory=IdentityCenter)
    entra: Entra = dc.field(default_factory=Entra)
    kintone: Kintone = dc.field(default_factory=Kintone)
    slack: Slack = dc.field(default_factory=Slack)
