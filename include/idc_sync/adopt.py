"""Hand an existing, untagged permission set over to the pipeline (DESIGN safety rule 2, "adopt").

The pipeline only ever changes permission sets carrying its ownership tag. When a kintone record names a
permission set that already exists without the tag (made by hand, by Terraform...), the record is told
"exists and is not managed by this pipeline" and the set is left alone. An admin who decides that kintone
should own it from now on *adopts* it: the ownership tag is added, and from then on the pipeline makes
it, and its assignments, equal to kintone (assignments no record asks for are then deleted, within the
deletion guard).

Two ways, same rules:

* the trigger parameter ``adopt_permission_sets`` (names): before the plan, only names that a kintone
  record defines; the result is logged and written to the run's audit artifact;
* the command ``python -m idc_sync.adopt --name NAME [--name ...] [--dry-run]`` with boto3's default
  credentials (and ``AWS_ENDPOINT_URL`` for the sandbox), run from the delegated administrator account.

Never adopted: a set provisioned to the management account (IdC refuses any change to it from the
delegated administrator; its access is managed elsewhere).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Iterable, Sequence
from typing import Literal

from pydantic import BaseModel

from idc_sync.aws_clients import IdcClients
from idc_sync.config import SyncConfig
from idc_sync.model import AssignmentState, DesiredState, ObservedState
from idc_sync.snapshot import (
    SsoReads,
    account_assignments,
    paginate,
    permission_set_tags,
    provisioned_accounts,
)

log = logging.getLogger(__name__)

AdoptStatus = Literal["adopted", "would_adopt", "already_managed", "refused", "not_found"]


class AdoptResult(BaseModel):
    name: str
    status: AdoptStatus
    message: str
    permission_set_arn: str | None = None


def _find_arn(clients: IdcClients, instance_arn: str, name: str) -> str | None:
    for arn in paginate(
        clients.sso_admin, "list_permission_sets", "PermissionSets", InstanceArn=instance_arn
    ):
        desc = clients.sso_admin.describe_permission_set(InstanceArn=instance_arn, PermissionSetArn=arn)
        if desc["PermissionSet"]["Name"] == name:
            return str(arn)
    return None


def _provisioned_accounts(clients: IdcClients, instance_arn: str, arn: str) -> list[str]:
    """Accounts the set is provisioned to, up to date or not."""
    reads = SsoReads.of_client(clients.sso_admin)
    accounts: set[str] = set()
    for status in ("LATEST_PERMISSION_SET_PROVISIONED", "LATEST_PERMISSION_SET_NOT_PROVISIONED"):
        accounts.update(provisioned_accounts(reads, instance_arn, arn, status))
    return sorted(accounts)


def adopt_permission_set(
    clients: IdcClients,
    name: str,
    config: SyncConfig,
    *,
    instance_arn: str | None = None,
    management_account_id: str | None = None,
    permission_set_arn: str | None = None,
    dry_run: bool = False,
) -> AdoptResult:
    """Tag the permission set ``name`` with the ownership tag (live reads; idempotent)."""
    sso = clients.sso_admin
    if instance_arn is None:
        instance_arn = sso.list_instances()["Instances"][0]["InstanceArn"]
    if management_account_id is None:
        management_account_id = clients.organizations.describe_organization()["Organization"][
            "MasterAccountId"
        ]
    arn = permission_set_arn or _find_arn(clients, instance_arn, name)
    if arn is None:
        return AdoptResult(
            name=name,
            status="not_found",
            message=f"no permission set named {name} in IAM Identity Center (the pipeline creates it)",
        )
    tags = permission_set_tags(SsoReads.of_client(sso), instance_arn, arn)
    if tags.get(config.ownership_tag_key) == config.ownership_tag_value:
        return AdoptResult(
            name=name, status="already_managed", message="already managed", permission_set_arn=arn
        )
    if config.ownership_tag_key in tags:
        return AdoptResult(
            name=name,
            status="refused",
            message=f"it carries {config.ownership_tag_key}={tags[config.ownership_tag_key]}: another tool owns it",
            permission_set_arn=arn,
        )
    if management_account_id in _provisioned_accounts(clients, instance_arn, arn):
        return AdoptResult(
            name=name,
            status="refused",
            message=f"it is provisioned to the management account {management_account_id}: the delegated "
            "administrator cannot change it; use a separate permission set for member accounts",
            permission_set_arn=arn,
        )
    tag = f"{config.ownership_tag_key}={config.ownership_tag_value}"
    if dry_run:
        return AdoptResult(
            name=name, status="would_adopt", message=f"dry run: would tag {tag}", permission_set_arn=arn
        )
    sso.tag_resource(
        InstanceArn=instance_arn,
        ResourceArn=arn,
        Tags=[{"Key": k, "Value": v} for k, v in config.ownership_tag.items()],
    )
    return AdoptResult(
        name=name,
        status="adopted",
        message=f"tagged {tag}: managed by idc-sync from now on",
        permission_set_arn=arn,
    )


def adopt_into_observed(
    clients: IdcClients,
    observed: ObservedState,
    desired: DesiredState,
    names: Iterable[str],
    config: SyncConfig,
    *,
    dry_run: bool = False,
) -> tuple[ObservedState, list[AdoptResult]]:
    """The ``adopt_permission_sets`` trigger parameter: adopt the named sets that a kintone record defines
    and return the observed state as if the snapshot had been taken after it (the set is managed and its
    assignments are read), so this run's plan already manages it. A dry run plans the same but tags
    nothing."""
    results: list[AdoptResult] = []
    observed = observed.model_copy(deep=True)
    for name in dict.fromkeys(n.strip() for n in names if n and n.strip()):
        state = observed.permission_sets.get(name)
        if name not in desired.permission_sets:
            results.append(
                AdoptResult(
                    name=name,
                    status="refused",
                    message=f"no kintone record defines {name}: only a permission set kintone describes can be adopted",
                    permission_set_arn=state.arn if state else None,
                )
            )
            continue
        if state is None:
            results.append(
                AdoptResult(
                    name=name,
                    status="not_found",
                    message="not in IAM Identity Center: the pipeline creates it",
                )
            )
            continue
        result = adopt_permission_set(
            clients,
            name,
            config,
            instance_arn=observed.instance_arn,
            management_account_id=observed.org.management_account_id,
            permission_set_arn=state.arn,
            dry_run=dry_run,
        )
        results.append(result)
        if result.status in ("adopted", "would_adopt"):
            state.tags = {**state.tags, **config.ownership_tag}
            state.managed = True
            observed.assignments += _assignments_of(clients, observed.instance_arn, state.arn, observed)
    return observed, results


def _assignments_of(
    clients: IdcClients, instance_arn: str, arn: str, observed: ObservedState
) -> list[AssignmentState]:
    """The adopted set's assignments (the snapshot reads those of managed sets only)."""
    reads = SsoReads.of_client(clients.sso_admin)
    out: list[AssignmentState] = []
    for account in _provisioned_accounts(clients, instance_arn, arn):
        if account == observed.org.management_account_id:
            continue
        if not observed.scope or observed.scope.includes_account(account):
            out += account_assignments(reads, instance_arn, account, arn)
    return out


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m idc_sync.adopt --name NAME``: tag existing permission sets so idc-sync manages them."""
    import boto3

    parser = argparse.ArgumentParser(
        prog="python -m idc_sync.adopt",
        description="Hand existing untagged permission sets over to idc-sync (adds the ownership tag). "
        "Run with the delegated administrator's credentials (boto3 default chain; AWS_ENDPOINT_URL for "
        "the sandbox). The next sync makes each adopted set and its assignments equal to kintone.",
    )
    parser.add_argument("--name", action="append", required=True, help="permission set name (repeatable)")
    parser.add_argument("--dry-run", action="store_true", help="check and say what would be tagged")
    parser.add_argument("--config", default=None, help="SyncConfig JSON (default: $IDC_SYNC_CONFIG)")
    args = parser.parse_args(argv)
    config = SyncConfig.from_json(args.config) if args.config else SyncConfig.from_env()
    clients = IdcClients.from_session(boto3.Session(), endpoint_url=os.environ.get("AWS_ENDPOINT_URL"))
    results = [adopt_permission_set(clients, n, config, dry_run=args.dry_run) for n in args.name]
    for r in results:
        print(json.dumps(r.model_dump(mode="json"), ensure_ascii=False))
    return 1 if any(r.status in ("refused", "not_found") for r in results) else 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
