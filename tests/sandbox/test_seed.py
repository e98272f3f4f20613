"""Seeds: the demo world is consistent with itself; the generator builds a large, consistent org."""

from __future__ import annotations

import boto3
import pytest

from idc_sandbox import seed as seeding
from idc_sandbox.core import Sandbox


def test_demo_seed_is_consistent() -> None:
    sb = Sandbox()
    summary = seeding.load_seed(sb, seeding.load_named_seed("demo"))
    w = sb.world
    org = w.organization
    assert org.management_account_id == "111111111111"
    assert w.identity_center.owner_account_id == "222222222222"
    assert summary["accounts"] == 10 and summary["ous"] == 5
    assert [a.id for a in org.accounts.values() if a.state == "SUSPENDED"] == ["999999999999"]
    assert org.ous["ou-ab12-33333333"].parent_id == "ou-ab12-22222222"  # nested OU
    for acct in org.accounts.values():
        assert acct.parent_id == org.root_id or acct.parent_id in org.ous
    # principals: SCIM-provisioned users are linked to Entra; two assigned users are still pending
    store = w.identity_store
    entra_ids = set(w.entra.users)
    assert all(u.external_id in entra_ids for u in store.users.values())
    names = {u.user_name for u in store.users.values()}
    assert "taro.tanaka@example.com" not in names and "victor@example.com" not in names
    assert {g.display_name for g in store.groups.values()} == {"platform-admins", "developers", "auditors"}
    # kintone user codes == IdC user names (template "{code}")
    assert names <= set(w.kintone.users)
    # kintone apps: ids/tokens fixed, lookup wired to the permission sets app
    ps_app, asg_app = w.kintone.apps[1], w.kintone.apps[2]
    assert ps_app.api_tokens == [seeding.CREDENTIALS["kintone"]["tokens"]["1"]]
    assert asg_app.fields["permission_set"]["lookup"]["relatedApp"]["app"] == "1"
    ps_names = {r["name"]["value"] for r in ps_app.records.values()}
    for rec in asg_app.records.values():
        assert rec["permission_set"]["value"] in ps_names
    # the mistakes are there
    texts = {r["name"]["value"]: r for r in ps_app.records.values()}
    assert "ReadOnlyAcess" in texts["DataAnalyst"]["managed_policies"]["value"]
    targets = "\n".join(r["targets"]["value"] for r in asg_app.records.values())
    assert "123456789012" in targets and "111111111111" in targets and "999999999999" in targets
    # unmanaged permission sets and their assignments exist alongside managed ones
    ic = w.identity_center
    unmanaged = [p for p in ic.permission_sets.values() if not p.tags]
    assert {p.name for p in unmanaged} == {"AWSAdministratorAccess", "AWSReadOnlyAccess"}
    assert any(a.account_id == "111111111111" for a in ic.assignments)
    for a in ic.assignments:
        assert (a.account_id, a.permission_set_arn) in ic.provisioned
        assert a.principal_id in (store.users if a.principal_type == "USER" else store.groups)
    for arn in ic.permission_sets:
        assert (
            arn.startswith("arn:aws:sso:::permissionSet/ssoins-72230e6a59fa4ba3/ps-")
            and len(arn.rsplit("/", 1)[1]) == 19
        )


def test_seed_errors_name_the_item() -> None:
    sb = Sandbox()
    with pytest.raises(seeding.SeedError, match="unknown parent"):
        seeding.load_seed(
            sb, {"organization": {"ous": [{"id": "ou-ab12-1", "name": "x", "parent": "ou-nope"}]}}
        )
    with pytest.raises(seeding.SeedError, match="unknown USER"):
        seeding.load_seed(
            sb,
            {
                "identity_center": {
                    "permission_sets": [{"name": "P"}],
                    "assignments": [{"account": "111111111111", "permission_set": "P", "principal": "ghost"}],
                }
            },
        )
    with pytest.raises(seeding.SeedError, match="no seed named"):
        seeding.load_named_seed("missing")


def test_load_spec_forms(tmp_path: pytest.TempPathFactory) -> None:
    sb = Sandbox()
    assert seeding.load_spec(sb, "demo")["accounts"] == 10
    assert (
        seeding.load_spec(sb, "gen:accounts=30,users=20,groups=2,permission_sets=3,assignments=40")[
            "accounts"
        ]
        == 30
    )


def test_generator_large_org_is_consistent() -> None:
    """Correctness at DESIGN's full scale; its speed is measured by scripts/bench_sandbox.py, not here
    (an "under N seconds" assert fails on a loaded machine)."""
    sb = Sandbox()
    summary = seeding.generate_seed(sb, accounts=2000, users=10_000, permission_sets=500, assignments=50_000)
    w = sb.world
    assert summary["accounts"] == 2000 and summary["users"] == 10_000
    managed = {arn for arn, p in w.identity_center.permission_sets.items() if p.tags}
    assert len(managed) == 500
    managed_assignments = [a for a in w.identity_center.assignments if a.permission_set_arn in managed]
    assert len(managed_assignments) >= 50_000
    mgmt = w.organization.management_account_id
    assert all(
        a.account_id != mgmt and w.organization.accounts[a.account_id].state == "ACTIVE"
        for a in managed_assignments
    )
    assert len(w.kintone.apps[1].records) == 500
    assert len(w.kintone.apps[2].records) > 5_000


def test_list_accounts_pages_through_a_large_org(sandbox: Sandbox, sandbox_url: str) -> None:
    seeding.generate_seed(sandbox, accounts=2000, users=500, groups=10, permission_sets=20, assignments=1000)
    sandbox.config.rate_limits["organizations"] = 0  # measure the emulator, not the throttle
    org = boto3.client(
        "organizations",
        endpoint_url=sandbox_url,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    ids = []
    for page in org.get_paginator("list_accounts").paginate(PaginationConfig={"PageSize": 20}):
        ids += [a["Id"] for a in page["Accounts"]]
    assert len(ids) == len(set(ids)) == 2000
