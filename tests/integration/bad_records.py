"""A catalog of bad kintone records, one per kind of mistake, each with the feedback it must produce.

Loaded into the sandbox's kintone (``add_record``) on top of the demo seed by ``test_feedback_catalog``.
Each entry: ``app`` ("permission_sets" | "assignments"), ``by`` (the user who saves the record, its last
modifier), ``fields``, the expected problem ``code``, a fragment of the Japanese comment (``ja``: the
default language, what the requester reads) and, for records that must be created "long ago",
``age_days``. ``check_lookup=False`` saves a lookup value the kintone UI would refuse (API imports do it).

Mentions expected on the comment: the last modifier, then for permission set records the ``owners``
(deduplicated, at most 10, only users kintone knows).

``GOOD``: records without mistakes that must be synced in the same runs.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any
from zoneinfo import ZoneInfo

PS = "permission_sets"
ASG = "assignments"


def _policy(*statements: dict[str, Any], version: str | None = "2012-10-17") -> str:
    doc: dict[str, Any] = {} if version is None else {"Version": version}
    doc["Statement"] = list(statements)
    return json.dumps(doc, indent=2, ensure_ascii=False)


_ALLOW_S3 = {"Effect": "Allow", "Action": "s3:GetObject", "Resource": "*"}
_REAL_POLICIES = [
    "ReadOnlyAccess",
    "PowerUserAccess",
    "SecurityAudit",
    "AmazonS3ReadOnlyAccess",
    "AmazonEC2ReadOnlyAccess",
    "AmazonDynamoDBReadOnlyAccess",
    "AmazonRDSReadOnlyAccess",
    "AmazonSQSReadOnlyAccess",
    "AmazonSNSReadOnlyAccess",
    "CloudWatchReadOnlyAccess",
    "AWSLambda_ReadOnlyAccess",
    "AmazonVPCReadOnlyAccess",
    "IAMReadOnlyAccess",
    "AWSCloudTrail_ReadOnlyAccess",
    "AmazonRoute53ReadOnlyAccess",
    "AmazonAthenaFullAccess",
    "AWSBillingReadOnlyAccess",
    "AmazonECS_FullAccess",
    "AmazonKinesisReadOnlyAccess",
    "AmazonElastiCacheReadOnlyAccess",
    "AWSCodeCommitReadOnly",
]
_TOO_LARGE = _policy(
    *[
        {
            "Sid": f"Bucket{i}",
            "Effect": "Allow",
            "Action": "s3:GetObject",
            "Resource": f"arn:aws:s3:::b-{i}/*",
        }
        for i in range(160)
    ]
)
_MANY_OWNERS = [
    "alice@example.com",
    "bob@example.com",
    "carol@example.com",
    "dave@example.com",
    "erin@example.com",
    "frank@example.com",
    "grace@example.com",
    "heidi@example.com",
    "ivan@example.com",
    "judy@example.com",
    "mallory@example.com",
    "niaj@example.com",
]


def _ps(name: str, owners: list[str], **fields: Any) -> dict[str, Any]:
    return {"name": name, "session_duration": "PT1H", "owners": owners, **fields}


def expiring_date() -> str:
    """Inside the expiry reminder window (3 days) in the configured timezone."""
    return (dt.datetime.now(ZoneInfo("Asia/Tokyo")).date() + dt.timedelta(days=2)).isoformat()


CATALOG: list[dict[str, Any]] = [
    # ------------------------------------------------------------ permission set records (records.py)
    {
        "key": "description_japanese",
        "app": PS,
        "by": "kenji.sato@example.com",
        "fields": _ps("CatDescJa", ["hanako.suzuki@example.com"], description="本番環境の読み取り専用"),
        "code": "invalid_description",
        "ja": "日本語や絵文字は使えません",
    },
    {
        "key": "managed_policy_customer_arn",
        "app": PS,
        "by": "bob@example.com",
        "fields": _ps(
            "CatCustArn", ["carol@example.com"], managed_policies="arn:aws:iam::123456789012:policy/Team"
        ),
        "code": "invalid_managed_policy",
        "ja": "1 行目「arn:aws:iam::123456789012:policy/Team」は AWS 管理ポリシーではありません",
    },
    {
        "key": "customer_policy_bad_name",
        "app": PS,
        "by": "carol@example.com",
        "fields": _ps(
            "CatCmpName",
            ["dave@example.com"],
            customer_managed_policies=[{"cmp_name": "team policy!", "cmp_path": "/"}],
        ),
        "code": "invalid_customer_managed_policy",
        "ja": "1 行目（名前「team policy!」",
    },
    {
        "key": "boundary_unparseable",
        "app": PS,
        "by": "dave@example.com",
        "fields": _ps("CatBoundaryBad", ["erin@example.com"], permissions_boundary="customer:bad name!"),
        "code": "invalid_permissions_boundary",
        "ja": "アクセス許可の境界「customer:bad name!」を解釈できません",
    },
    {
        "key": "relay_state_non_ascii",
        "app": PS,
        "by": "erin@example.com",
        "fields": _ps(
            "CatRelay", ["frank@example.com"], relay_state="https://console.aws.amazon.com/ec2/ホーム"
        ),
        "code": "invalid_relay_state",
        "ja": "リレーステート「https://console.aws.amazon.com/ec2/ホーム」は使えません",
    },
    {
        "key": "duplicate_name_other_case",
        "app": PS,
        "by": "frank@example.com",
        "fields": _ps("readonly", ["grace@example.com"], managed_policies="ReadOnlyAccess"),
        "code": "duplicate_permission_set_name",
        "ja": "権限セット名「readonly」はレコード 1 ですでに使われています",
    },
    # ------------------------------------------------------------ permission set records (validation.py)
    {
        "key": "managed_policy_typo",  # fixed in the fourth run
        "app": PS,
        "by": "grace@example.com",
        "fields": _ps("CatTypo", ["heidi@example.com"], managed_policies="PowerUserAcess"),
        "code": "managed_policy_not_found",
        "ja": "「PowerUserAcess」は存在しません。PowerUserAccess か",
    },
    {
        "key": "boundary_typo",
        "app": PS,
        "by": "heidi@example.com",
        "fields": _ps(
            "CatBoundaryTypo",
            ["ivan@example.com"],
            managed_policies="ReadOnlyAccess",
            permissions_boundary="PowerUserAcces",
        ),
        "code": "permissions_boundary_not_found",
        "ja": "アクセス許可の境界に指定した AWS 管理ポリシー「PowerUserAcces」は存在しません",
    },
    {
        "key": "invalid_name",
        "app": PS,
        "by": "ivan@example.com",
        "fields": _ps("Cat Data Team", ["judy@example.com"], managed_policies="ReadOnlyAccess"),
        "code": "invalid_name",
        "ja": "権限セット名「Cat Data Team」は使えません",
    },
    {
        "key": "policy_not_json",
        "app": PS,
        "by": "judy@example.com",
        "fields": _ps(
            "CatNotJson",
            ["mallory@example.com"],
            inline_policy='{\n  "Version": "2012-10-17",\n  "Statement": [\n    {"Effect": "Allow", '
            '"Action": "s3:*", "Resource": "*",}\n  ]\n}',
        ),
        "code": "inline_policy_not_json",
        "ja": "正しい JSON ではありません（4 行目",
    },
    {
        "key": "policy_not_object",
        "app": PS,
        "by": "mallory@example.com",
        "fields": _ps("CatNotObject", ["niaj@example.com"], inline_policy='["s3:GetObject"]'),
        "code": "inline_policy_not_object",
        "ja": "JSON オブジェクト",
    },
    {
        "key": "policy_missing_version",
        "app": PS,
        "by": "niaj@example.com",
        "fields": _ps("CatNoVersion", ["olivia@example.com"], inline_policy=_policy(_ALLOW_S3, version=None)),
        "code": "inline_policy_missing_version",
        "ja": '"Version" がありません',
    },
    {
        "key": "policy_bad_version",
        "app": PS,
        "by": "olivia@example.com",
        "fields": _ps(
            "CatBadVersion", ["peggy@example.com"], inline_policy=_policy(_ALLOW_S3, version="2024-04-01")
        ),
        "code": "inline_policy_invalid_version",
        "ja": '"Version" が 2024-04-01 です',
    },
    {
        "key": "policy_missing_statement",
        "app": PS,
        "by": "peggy@example.com",
        "fields": _ps("CatNoStatement", ["rupert@example.com"], inline_policy='{"Version": "2012-10-17"}'),
        "code": "inline_policy_missing_statement",
        "ja": '"Statement" がありません',
    },
    {
        "key": "policy_statement_not_object",
        "app": PS,
        "by": "rupert@example.com",
        "fields": _ps(
            "CatStatementStr",
            ["sybil@example.com"],
            inline_policy='{"Version": "2012-10-17", "Statement": ["s3:GetObject"]}',
        ),
        "code": "inline_policy_invalid_statement",
        "ja": "ステートメント 1 が JSON オブジェクトではありません",
    },
    {
        "key": "policy_effect_lowercase",
        "app": PS,
        "by": "sybil@example.com",
        "fields": _ps(
            "CatEffect",
            ["alice@example.com"],
            inline_policy=_policy({"Effect": "allow", "Action": "s3:GetObject", "Resource": "*"}),
        ),
        "code": "inline_policy_invalid_effect",
        "ja": '"Effect" が "allow" です',
    },
    {
        "key": "policy_missing_action",
        "app": PS,
        "by": "alice@example.com",
        "fields": _ps(
            "CatNoAction",
            ["bob@example.com"],
            inline_policy=_policy({"Sid": "Read", "Effect": "Allow", "Resource": "*"}),
        ),
        "code": "inline_policy_missing_action",
        "ja": 'ステートメント 1 (Sid Read) に "Action"',
    },
    {
        "key": "policy_missing_resource",
        "app": PS,
        "by": "bob@example.com",
        "fields": _ps(
            "CatNoResource",
            ["carol@example.com"],
            inline_policy=_policy({"Effect": "Allow", "Action": "s3:*"}),
        ),
        "code": "inline_policy_missing_resource",
        "ja": '"Resource" がありません',
    },
    {
        "key": "policy_action_and_notaction",
        "app": PS,
        "by": "carol@example.com",
        "fields": _ps(
            "CatBothActions",
            ["dave@example.com"],
            inline_policy=_policy(
                {"Effect": "Allow", "Action": "s3:*", "NotAction": "iam:*", "Resource": "*"}
            ),
        ),
        "code": "inline_policy_action_and_notaction",
        "ja": '"Action" と "NotAction" の両方があります',
    },
    {
        "key": "policy_too_large",
        "app": PS,
        "by": "dave@example.com",
        "fields": _ps("CatTooLarge", ["erin@example.com"], inline_policy=_TOO_LARGE),
        "code": "inline_policy_too_large",
        "ja": "インラインポリシーが大きすぎます",
    },
    {
        "key": "policy_japanese_sid",
        "app": PS,
        "by": "erin@example.com",
        "fields": _ps(
            "CatPolicyJa",
            ["frank@example.com"],
            inline_policy=_policy(
                {"Sid": "読み取り", "Effect": "Allow", "Action": "s3:GetObject", "Resource": "*"}
            ),
        ),
        "code": "inline_policy_invalid_characters",
        "ja": "インラインポリシーに IAM Identity Center で使えない文字",
    },
    {
        "key": "too_many_policies",
        "app": PS,
        "by": "frank@example.com",
        "fields": _ps("CatTooMany", ["grace@example.com"], managed_policies="\n".join(_REAL_POLICIES)),
        "code": "too_many_policies",
        "ja": "合計 21 個あります。IAM Identity Center の上限は 20 個です",
    },
    {
        "key": "many_policies_quota",  # a warning: the permission set is still created
        "app": PS,
        "by": "grace@example.com",
        "fields": _ps(
            "CatElevenPolicies", ["heidi@example.com"], managed_policies="\n".join(_REAL_POLICIES[:11])
        ),
        "code": "many_policies_quota",
        "ja": "ポリシーが 11 個あります",
        "synced": "CatElevenPolicies",
    },
    # ------------------------------------------------------------ Access Analyzer findings
    {
        "key": "analyzer_error",
        "app": PS,
        "by": "heidi@example.com",
        "fields": _ps(
            "CatAnalyzerError",
            ["ivan@example.com"],
            inline_policy=_policy({"Effect": "Allow", "Action": "s4:GetObject", "Resource": "*"}),
        ),
        "code": "policy_finding_error",
        "ja": "IAM Access Analyzer のエラー INVALID_SERVICE_IN_ACTION（6 行目",
        "link": True,
    },
    {
        "key": "analyzer_security_warning",
        "app": PS,
        "by": "ivan@example.com",
        "fields": _ps(
            "CatPassRole",
            ["judy@example.com"],
            inline_policy=_policy({"Effect": "Allow", "Action": "iam:PassRole", "Resource": "*"}),
        ),
        "code": "policy_finding_security_warning",
        "ja": "IAM Access Analyzer のセキュリティ警告 PASS_ROLE_WITH_STAR_IN_RESOURCE",
        "link": True,
    },
    {
        "key": "analyzer_warning",  # advice only: created anyway
        "app": PS,
        "by": "judy@example.com",
        "fields": _ps(
            "CatSlr",
            ["mallory@example.com"],
            inline_policy=_policy(
                {"Effect": "Allow", "Action": "iam:CreateServiceLinkedRole", "Resource": "*"}
            ),
        ),
        "code": "policy_finding_warning",
        "ja": "IAM Access Analyzer の警告 CREATE_SLR_WITH_STAR_IN_RESOURCE",
        "synced": "CatSlr",
        "link": True,
    },
    {
        "key": "analyzer_suggestion",  # advice only: created anyway
        "app": PS,
        "by": "mallory@example.com",
        "fields": _ps(
            "CatRedundant",
            ["niaj@example.com"],
            inline_policy=_policy({"Effect": "Allow", "Action": ["s3:GetObject", "s3:*"], "Resource": "*"}),
        ),
        "code": "policy_finding_suggestion",
        "ja": "IAM Access Analyzer の提案 REDUNDANT_ACTION",
        "synced": "CatRedundant",
        "link": True,
    },
    # ------------------------------------------------------------ plan.py (permission sets)
    {
        "key": "not_managed",
        "app": PS,
        "by": "niaj@example.com",
        "fields": _ps("AWSReadOnlyAccess", ["olivia@example.com"], managed_policies="ReadOnlyAccess"),
        "code": "permission_set_not_managed",
        "ja": "権限セット「AWSReadOnlyAccess」は IAM Identity Center にすでに存在し",
    },
    # ------------------------------------------------------------ mentions: more than 10 people, duplicates
    {
        "key": "many_owners",
        "app": PS,
        "by": "kenji.sato@example.com",
        "fields": _ps(
            "CatManyOwners",
            ["kenji.sato@example.com", *_MANY_OWNERS],
            customer_managed_policies=[{"cmp_name": "", "cmp_path": "/team/"}],
        ),
        "code": "invalid_customer_managed_policy",
        "ja": "名前が空の行は削除してください",
    },
    # ------------------------------------------------------------ assignment records (records.py)
    {
        "key": "no_users",
        "app": ASG,
        "by": "olivia@example.com",
        "fields": {
            "principal_type": "USER",
            "users": [],
            "targets": "666666666666",
            "permission_set": "ReadOnly",
        },
        "code": "no_principals",
        "ja": "ユーザーが選ばれていません",
    },
    {
        "key": "group_name_ignored",  # a warning: alice's assignment is still made
        "app": ASG,
        "by": "peggy@example.com",
        "fields": {
            "principal_type": "USER",
            "users": ["alice@example.com"],
            "group_name": "developers",
            "targets": "777777777777",
            "permission_set": "ReadOnly",
        },
        "code": "ignored_field",
        "ja": "種別が USER のため「group_name」は無視されます",
        "synced": ("777777777777", "ReadOnly", "USER", "alice@example.com"),
    },
    {
        "key": "blank_targets",
        "app": ASG,
        "by": "rupert@example.com",
        "fields": {
            "principal_type": "USER",
            "users": ["bob@example.com"],
            "targets": " \n ",
            "permission_set": "ReadOnly",
        },
        "code": "no_targets",
        "ja": "対象がありません",
    },
    {
        "key": "eleven_digit_target",  # the bad line is reported, the good line applies
        "app": ASG,
        "by": "sybil@example.com",
        "fields": {
            "principal_type": "USER",
            "users": ["carol@example.com"],
            "targets": "77777777777\n101010101010",
            "permission_set": "ReadOnly",
        },
        "code": "invalid_target",
        "ja": "1 行目「77777777777」は 12 桁の AWS アカウント ID でも",
        "synced": ("101010101010", "ReadOnly", "USER", "carol@example.com"),
    },
    {
        "key": "unknown_permission_set",
        "app": ASG,
        "by": "alice@example.com",
        "fields": {
            "principal_type": "USER",
            "users": ["dave@example.com"],
            "targets": "666666666666",
            "permission_set": "NoSuchSet",
        },
        "check_lookup": False,
        "code": "unknown_permission_set",
        "ja": "権限セット「NoSuchSet」は権限セットアプリにありません",
    },
    {
        "key": "duplicate_assignment",  # a warning: the demo record 1 already gives this
        "app": ASG,
        "by": "bob@example.com",
        "fields": {
            "principal_type": "USER",
            "users": ["alice@example.com"],
            "targets": "101010101010",
            "permission_set": "ReadOnly",
        },
        "code": "duplicate_assignment",
        "ja": "レコード 1 ですでに与えられています",
    },
    # ------------------------------------------------------------ assignment records (plan.py)
    {
        "key": "management_account",
        "app": ASG,
        "by": "carol@example.com",
        "fields": {
            "principal_type": "USER",
            "users": ["carol@example.com"],
            "targets": "111111111111",
            "permission_set": "ReadOnly",
        },
        "code": "management_account_target",
        "ja": "アカウント 111111111111 は管理アカウントです",
    },
    {
        "key": "unknown_account",
        "app": ASG,
        "by": "dave@example.com",
        "fields": {
            "principal_type": "USER",
            "users": ["dave@example.com"],
            "targets": "123456789013",
            "permission_set": "ReadOnly",
        },
        "code": "unknown_account",
        "ja": "アカウント 123456789013 は組織に存在しません",
    },
    {
        "key": "suspended_account",
        "app": ASG,
        "by": "erin@example.com",
        "fields": {
            "principal_type": "USER",
            "users": ["erin@example.com"],
            "targets": "999999999999",
            "permission_set": "ReadOnly",
        },
        "code": "account_not_active",
        "ja": "アカウント 999999999999 は SUSPENDED で ACTIVE ではない",
    },
    {
        "key": "unknown_ou",
        "app": ASG,
        "by": "frank@example.com",
        "fields": {
            "principal_type": "GROUP",
            "group_name": "developers",
            "targets": "ou-ab12-99999999",
            "permission_set": "ReadOnly",
        },
        "code": "unknown_ou",
        "ja": "組織単位（OU）ou-ab12-99999999 は組織に存在しません",
    },
    {
        "key": "user_not_provisioned_yet",  # pending, phrased as waiting
        "app": ASG,
        "by": "grace@example.com",
        "fields": {
            "principal_type": "USER",
            "users": ["walter@example.com"],
            "targets": "666666666666",
            "permission_set": "ReadOnly",
        },
        "code": "principal_not_found",
        "severity": "pending",
        "ja": "ユーザー walter@example.com は IAM Identity Center にまだ同期されていません",
    },
    {
        "key": "group_missing_for_days",  # past the SCIM grace period: an error
        "app": ASG,
        "by": "heidi@example.com",
        "age_days": 3,
        "fields": {
            "principal_type": "GROUP",
            "group_name": "cat-ghost-team",
            "targets": "666666666666",
            "permission_set": "ReadOnly",
        },
        "code": "principal_not_found",
        "severity": "error",
        "ja": "グループ cat-ghost-team が IAM Identity Center に見つかりません",
    },
    {
        "key": "access_expiring",  # a note (info): said once, access is given
        "app": ASG,
        "by": "ivan@example.com",
        "fields": {
            "principal_type": "USER",
            "users": ["ivan@example.com"],
            "targets": "666666666666",
            "permission_set": "ReadOnly",
            "expires_on": "@expiring",
        },
        "code": "access_expiring",
        "severity": "info",
        "ja": "アクセスの期限が近づいています",
        "synced": ("666666666666", "ReadOnly", "USER", "ivan@example.com"),
    },
]

# An owner who leaves kintone after saving the record: the comment still goes out, without that mention.
GHOST = {
    "key": "owner_left_kintone",
    "app": PS,
    "by": "hanako.suzuki@example.com",
    "fields": _ps("CatGhostOwner", ["cat.ghost@example.com"], relay_state="ftp://intranet <home>"),
    "code": "invalid_relay_state",
    "ja": "リレーステート「ftp://intranet <home>」は使えません",
    "ghost": "cat.ghost@example.com",
}
CATALOG.append(GHOST)

GOOD: list[dict[str, Any]] = [
    {
        "app": PS,
        "by": "kenji.sato@example.com",
        "fields": _ps(
            "CatGood",
            ["hanako.suzuki@example.com"],
            managed_policies="ReadOnlyAccess",
            inline_policy=_policy(
                {"Sid": "Logs", "Effect": "Allow", "Action": "logs:GetLogEvents", "Resource": "*"}
            ),
        ),
    },
    {
        "app": ASG,
        "by": "kenji.sato@example.com",
        "fields": {
            "principal_type": "USER",
            "users": ["kenji.sato@example.com", "hanako.suzuki@example.com"],
            "targets": "777777777777",
            "permission_set": "CatGood",
        },
        "synced": [
            ("777777777777", "CatGood", "USER", "kenji.sato@example.com"),
            ("777777777777", "CatGood", "USER", "hanako.suzuki@example.com"),
        ],
    },
    {
        "app": ASG,
        "by": "judy@example.com",
        "fields": {
            "principal_type": "GROUP",
            "group_name": "developers",
            "targets": "101010101010",
            "permission_set": "CatSlr",  # its permission set has only a warning: created, assigned
        },
        "synced": [("101010101010", "CatSlr", "GROUP", "developers")],
    },
]


def expected_mentions(entry: dict[str, Any]) -> list[str]:
    """Last modifier first, then (permission set records) the owners; deduplicated; at most 10; known users."""
    people = [entry["by"]]
    if entry["app"] == PS:
        people += entry["fields"].get("owners", [])
    out: list[str] = []
    for p in people:
        if p not in out and p != entry.get("ghost"):
            out.append(p)
    return out[:10]


def kinds() -> set[tuple[str, str]]:
    return {(e["code"], e.get("severity", "")) for e in CATALOG}
