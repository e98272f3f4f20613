"""What the demo seed's kintone assignment records ask for (include/idc_sandbox/seeds/demo.json), as the
IdC assignments a sync must leave: (account, permission set name, principal type, principal name), the
shape ``granted`` reads from the sandbox.

Written out from the records, not computed by idc_sync: a test compares the sandbox's IdC with these
sets exactly, so an assignment too many or too few fails it. The seed's deliberate mistakes (its
``_comment``) grant nothing; the users SCIM has not provisioned yet wait until a cycle brings them.
"""

from __future__ import annotations

from idc_sandbox.core import Sandbox

Grant = tuple[str, str, str, str]


def granted(sandbox: Sandbox) -> set[Grant]:
    """The assignments in the sandbox's IdC, named like the records name them ("?": unknown principal)."""
    w = sandbox.world
    names = {arn: ps.name for arn, ps in w.identity_center.permission_sets.items()}
    users = {u.user_id: u.user_name for u in w.identity_store.users.values()}
    groups = {g.group_id: g.display_name for g in w.identity_store.groups.values()}
    return {
        (
            a.account_id,
            names.get(a.permission_set_arn, a.permission_set_arn),
            a.principal_type,
            (users if a.principal_type == "USER" else groups).get(a.principal_id) or "?",
        )
        for a in w.identity_center.assignments
    }


MANAGEMENT = "111111111111"
PRODUCTION = ("444444444444", "555555555555")  # ou-ab12-33333333
DEVELOPMENT = ("666666666666", "777777777777", "101010101010")  # ou-ab12-44444444
WORKLOADS = PRODUCTION + DEVELOPMENT  # ou-ab12-22222222: Production and Development
SANDBOX = ("888888888888",)  # ou-ab12-55555555 without 999999999999 (SUSPENDED)


def grants(
    permission_set: str, principal_type: str, principals: tuple[str, ...], accounts: tuple[str, ...]
) -> set[Grant]:
    return {(account, permission_set, principal_type, p) for account in accounts for p in principals}


# The IdC assignments before any sync (the seed's identity_center): unmanaged Control-Tower sets, alice's
# ReadOnly (a record asks for it too) and the managed LegacyDeveloper no record wants any more.
SEEDED: frozenset[Grant] = frozenset(
    grants(
        "AWSAdministratorAccess", "GROUP", ("platform-admins",), (MANAGEMENT, "222222222222", "333333333333")
    )
    | grants("AWSReadOnlyAccess", "GROUP", ("auditors",), (MANAGEMENT, "444444444444"))
    | grants("ReadOnly", "USER", ("alice@example.com",), ("444444444444",))
    | grants("LegacyDeveloper", "USER", ("bob@example.com",), ("666666666666",))
)
LEGACY = ("666666666666", "LegacyDeveloper", "USER", "bob@example.com")

# Per assignment record (its id in the seed's app 2); the records not listed grant nothing: 6 NetworkAdmin
# (broken inline policy), 8 unknown account, 9 the management account, 11 DataAnalyst (misspelt managed
# policy), 12 expired, 16 unknown group; 10 and 15 wait for SCIM (below).
BY_RECORD: dict[int, set[Grant]] = {
    1: grants("ReadOnly", "USER", ("alice@example.com", "bob@example.com"), (*PRODUCTION, "101010101010")),
    2: grants("Developer", "GROUP", ("developers",), DEVELOPMENT),
    3: grants("Developer", "USER", ("carol@example.com",), ("888888888888",)),
    4: grants("SecurityAudit", "GROUP", ("auditors",), WORKLOADS),
    5: grants("BillingViewer", "USER", ("dave@example.com", "erin@example.com"), ("444444444444",)),
    7: grants("ReadOnly", "USER", ("frank@example.com",), ("666666666666",)),  # not the SUSPENDED account
    13: grants("ReadOnly", "USER", ("peggy@example.com",), ("888888888888",)),
    14: grants("ReadOnly", "GROUP", ("developers",), ("666666666666",)),
    17: grants(
        "BillingViewer", "USER", ("mallory@example.com", "niaj@example.com", "sybil@example.com"), SANDBOX
    ),
}
WANTED: frozenset[Grant] = frozenset().union(*BY_RECORD.values())

# Records 10 and 15: their users are assigned in Entra but not provisioned yet; a SCIM cycle brings them.
AFTER_SCIM_CYCLE: frozenset[Grant] = frozenset(
    grants("Developer", "USER", ("taro.tanaka@example.com",), ("666666666666",))
    | grants("SecurityAudit", "USER", ("victor@example.com",), ("555555555555",))
)
