"""idc_sync.adopt against the sandbox: the CLI and the trigger-parameter path tag only what they may."""

from __future__ import annotations

import json

import pytest

from idc_sandbox.aws_sso_admin import add_assignment_direct, create_permission_set_direct
from idc_sandbox.core import Sandbox
from idc_sandbox.seed import load_named_seed, load_seed
from idc_sync import adopt
from idc_sync.aws_clients import IdcClients
from idc_sync.config import SyncConfig
from idc_sync.model import (
    DesiredState,
    ObservedState,
    OrgSnapshot,
    PermissionSetSpec,
    PermissionSetState,
)

MGMT = "111111111111"


@pytest.fixture
def demo(sandbox: Sandbox) -> Sandbox:
    load_seed(sandbox, load_named_seed("demo"))
    return sandbox


@pytest.fixture
def clients(sandbox_url: str, demo: Sandbox) -> IdcClients:
    import boto3

    session = boto3.Session(
        aws_access_key_id="testing", aws_secret_access_key="testing", region_name="us-east-1"
    )
    return IdcClients.from_session(session, endpoint_url=sandbox_url)


def _ps(sandbox: Sandbox, name: str):
    return next(p for p in sandbox.world.identity_center.permission_sets.values() if p.name == name)


def test_cli_tags_an_untagged_set_and_refuses_one_on_the_management_account(
    demo: Sandbox, sandbox_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    create_permission_set_direct(demo, "HandMade")
    monkeypatch.setenv("AWS_ENDPOINT_URL", sandbox_url)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")

    assert adopt.main(["--name", "HandMade", "--dry-run"]) == 0
    assert _ps(demo, "HandMade").tags == {}
    assert adopt.main(["--name", "HandMade"]) == 0
    assert _ps(demo, "HandMade").tags == {"managed-by": "idc-sync"}
    assert adopt.main(["--name", "HandMade"]) == 0  # idempotent: already managed
    # AWSAdministratorAccess is provisioned to the management account: never adopted
    assert adopt.main(["--name", "AWSAdministratorAccess", "--name", "Nope"]) == 1
    assert _ps(demo, "AWSAdministratorAccess").tags == {}
    out = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["status"] for r in out] == ["would_adopt", "adopted", "already_managed", "refused", "not_found"]


def test_param_path_needs_a_kintone_record_and_reads_the_adopted_assignments(
    demo: Sandbox, clients: IdcClients
) -> None:
    arn = create_permission_set_direct(demo, "HandMade")
    other = create_permission_set_direct(demo, "NoRecord")
    user = next(iter(demo.world.identity_store.users.values())).user_id
    add_assignment_direct(demo, "444444444444", arn, "USER", user)
    observed = ObservedState(
        instance_arn=demo.world.identity_center.instance_arn,
        identity_store_id="d-1",
        org=OrgSnapshot(management_account_id=MGMT),
        permission_sets={
            "HandMade": PermissionSetState(arn=arn, name="HandMade", provisioned_accounts=["444444444444"]),
            "NoRecord": PermissionSetState(arn=other, name="NoRecord"),
        },
    )
    desired = DesiredState(permission_sets={"HandMade": PermissionSetSpec(name="HandMade")})
    new, results = adopt.adopt_into_observed(
        clients, observed, desired, ["HandMade", "NoRecord"], SyncConfig()
    )
    assert {r.name: r.status for r in results} == {"HandMade": "adopted", "NoRecord": "refused"}
    assert new.permission_sets["HandMade"].managed and not new.permission_sets["NoRecord"].managed
    assert [(a.account_id, a.principal_id) for a in new.assignments] == [("444444444444", user)]
    assert not observed.permission_sets["HandMade"].managed  # the input is not changed
    assert _ps(demo, "NoRecord").tags == {}
