"""Every problem code in one table: its params, who reads it, and what it says in Japanese and English.

Why one table: a code used to be a string written where the problem is found, with params each module
named its own way and texts kept elsewhere. Here a code is one :class:`ProblemSpec`. A
:class:`~idc_sync.model.Problem` whose code is not in :data:`REGISTRY` cannot be built; a problem whose
params do not fit its code's model is rendered as its English ``message`` (:mod:`idc_sync.messages`).
"""

from __future__ import annotations

import dataclasses
import string
from collections.abc import Mapping
from functools import cache
from typing import TYPE_CHECKING, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, field_validator

if TYPE_CHECKING:
    from idc_sync.model import Severity

LANGUAGES = ("ja", "en")
Sink = Literal["record", "admin"]  # record: a comment on the problem's record; admin: Slack and the run note


def registered(code: str) -> str:
    """``Problem.code``'s validator: a code without a spec (so without a template) is a programming error."""
    if code not in REGISTRY:
        raise ValueError(f"unknown problem code {code!r}: add it to idc_sync.problems.REGISTRY")
    return code


class Params(BaseModel):
    """``Problem.params`` of one code, with the canonical names; validated when the problem is rendered.

    Templates use the fields and the ``str | None`` properties (language-specific fragments, suffixed
    ``_ja``/``_en``); a ``None`` value counts as missing and the English message is used instead."""

    model_config = ConfigDict(extra="forbid", frozen=True, coerce_numbers_to_str=True)
    VARIANTS: ClassVar[tuple[str, ...]] = ()  # values of ``variant`` that have their own wording

    @property
    def variant(self) -> str | None:
        """A key of ``ProblemSpec.variants`` that wins over the severity (e.g. USER vs GROUP wording)."""
        return None


@cache
def placeholders(params: type[Params]) -> frozenset[str]:
    """The names a template of a code with these params may use: fields and fragment properties."""
    names = set(params.model_fields)
    for klass in params.__mro__[: params.__mro__.index(Params)]:
        names |= {name for name, value in vars(klass).items() if isinstance(value, property)}
    return frozenset(n for n in names if not n.startswith("_") and n != "variant")


def template_fields(template: str) -> set[str]:
    """The placeholders of a ``str.format`` template."""
    return {name for _, name, _, _ in string.Formatter().parse(template) if name is not None}


@dataclasses.dataclass(frozen=True)
class ProblemSpec:
    """One code: its params, the severities it is used with, who reads it, and its texts.

    ``variants`` (key: a severity, or the params' ``variant``) replace ``ja``/``en`` for that case."""

    params: type[Params]
    ja: str
    en: str
    severities: tuple[Severity, ...] = ("error",)
    sink: Sink = "record"
    variants: Mapping[str, Mapping[str, str]] = dataclasses.field(default_factory=dict)

    def parse(self, params: Mapping[str, object]) -> Params:
        """The params as this code's model (``None`` values are left out); raises ValidationError."""
        return self.params.model_validate({k: v for k, v in params.items() if v is not None})

    def template(self, language: str, severity: str, variant: str | None = None) -> str:
        """The text for ``language`` ("ja" or "en"): the variant's, else the severity's, else the default."""
        for key in (variant, severity):
            if key is not None and key in self.variants:
                return self.variants[key][language]
        return self.ja if language == "ja" else self.en


# --------------------------------------------------------------------------- params models
class OfPermissionSet(Params):
    """Context: the permission set the problem is about (validation.py adds it to every problem of a set)."""

    permission_set: str | None = None


# records.py
class FieldOnly(Params):
    field: str


class FieldValue(Params):
    field: str
    value: str


_APP_LABEL = {
    "permission_sets": {"ja": "権限セット", "en": "permission sets"},
    "assignments": {"ja": "割り当て", "en": "assignments"},
}


class MissingField(Params):
    field: str  # ``table.code`` for a subtable cell
    app: str  # AppKey
    records: int

    @property
    def app_label_ja(self) -> str:
        return _APP_LABEL.get(self.app, {}).get("ja", self.app)

    @property
    def app_label_en(self) -> str:
        return _APP_LABEL.get(self.app, {}).get("en", self.app)


class UnreadableRecord(Params):
    error: str


class DuplicatePermissionSetName(Params):
    name: str
    first_record_id: str


class InvalidDescription(Params):
    field: str
    length: int
    max: int
    characters: str = ""

    @property
    def chars_ja(self) -> str:
        return f"。使えない文字: {self.characters}" if self.characters else ""

    @property
    def chars_en(self) -> str:
        return f"; unsupported characters: {self.characters}" if self.characters else ""


class InvalidSessionDuration(OfPermissionSet):
    field: str = "session_duration"  # validation.py does not know the field code
    value: str


class InvalidManagedPolicy(FieldValue):
    line: int


class InvalidCustomerManagedPolicy(Params):
    field: str
    name: str
    path: str = "/"
    row: int

    @field_validator("path")
    @classmethod
    def _root(cls, path: str) -> str:
        return path or "/"


class InvalidRelayState(OfPermissionSet):
    field: str = "relay_state"  # validation.py does not know the field code
    value: str
    max: int | None = None


class NoPrincipals(Params):
    VARIANTS = ("USER",)
    field: str
    principal_type: str | None = None

    @property
    def variant(self) -> str | None:
        return "USER" if self.principal_type == "USER" else None


class InvalidUserNameTemplate(Params):
    template: str
    error: str


class IgnoredField(Params):
    field: str
    principal_type: str


class InvalidTarget(Params):
    field: str = "targets"  # plan.py does not know the field code
    value: str
    line: int | None = None

    @property
    def line_ja(self) -> str:
        return f" {self.line} 行目" if self.line is not None else ""

    @property
    def line_en(self) -> str:
        return f"Line {self.line}: " if self.line is not None else ""

    @property
    def digits_ja(self) -> str:
        if self._other_digits:
            return "ID は半角数字（0-9）で書いてください（全角数字などは使えません）。"
        return (
            "アカウント ID はちょうど 12 桁です（先頭の 0 が消えていないか確認）。"
            if self.value.isdigit()
            else ""
        )

    @property
    def digits_en(self) -> str:
        if self._other_digits:
            return " Write ids with ASCII digits 0-9 (not full-width or other scripts' digits)."
        return (
            " An account id has exactly 12 digits; check that a leading zero was not lost."
            if self.value.isdigit()
            else ""
        )

    @property
    def _other_digits(self) -> bool:
        """Full-width or Arabic-Indic digits, say."""
        return not self.value.isascii() and any(ch.isdigit() for ch in self.value)


class DuplicateAssignment(Params):
    count: int
    first_record_ids: str
    example: str


# isolation.py
class RecordInternalError(OfPermissionSet):
    step: str | None = None  # parse, plan, validate
    error: str


# validation.py
class InvalidName(OfPermissionSet):
    name: str
    max: int


class DuplicateName(OfPermissionSet):
    name: str
    other: str  # the name it differs from only in case


class Length(OfPermissionSet):
    length: int
    max: int


class Characters(OfPermissionSet):
    characters: str


class InlinePolicyNotJson(OfPermissionSet):
    error: str
    line: int
    column: int


class InlinePolicyTooDeep(OfPermissionSet):
    max_depth: int
    line: int
    column: int


class MoreFindings(OfPermissionSet):
    count: int
    shown: int


class InlinePolicyNotObject(OfPermissionSet):
    type: str


class InlinePolicyInvalidVersion(OfPermissionSet):
    value: str


class Statement(OfPermissionSet):
    statement: str  # "2 (Sid Bad)"


class InlinePolicyInvalidEffect(Statement):
    value: str | None = None

    @property
    def value_json_ja(self) -> str:
        return f'"{self.value}"' if self.value is not None else "null（未指定）"

    @property
    def value_json_en(self) -> str:
        return f'"{self.value}"' if self.value is not None else "null"


class InlinePolicyTooLarge(OfPermissionSet):
    chars: int
    max_chars: int
    non_whitespace: int
    max_non_whitespace: int


class TooManyPolicies(OfPermissionSet):
    count: int
    max: int


class ManyPoliciesQuota(OfPermissionSet):
    count: int
    default_quota: int


class CustomerPolicy(OfPermissionSet):
    name: str
    path: str


class Policy(OfPermissionSet):
    policy: str


class PolicyNotFound(Policy):
    arn: str | None = None
    suggestions: str = ""  # comma-separated

    @property
    def did_you_mean_ja(self) -> str:
        names = self._names
        return f"{' か '.join(names)} の誤りではありませんか。" if names else ""

    @property
    def did_you_mean_en(self) -> str:
        names = self._names
        return f" Did you mean {' or '.join(names)}?" if names else ""

    @property
    def _names(self) -> list[str]:
        return [s.strip() for s in self.suggestions.split(",") if s.strip()]


class Finding(OfPermissionSet):
    """An IAM Access Analyzer finding on the inline policy."""

    issue_code: str
    line: int | None = None
    column: int | None = None
    details: str = ""
    learn_more: str = ""

    @property
    def where_ja(self) -> str:
        return f"（{self.line} 行目 {self.column} 列目）" if self.line is not None else ""

    @property
    def where_en(self) -> str:
        return f" at line {self.line}, column {self.column}" if self.line is not None else ""

    @property
    def learn_ja(self) -> str:
        return f" 詳細: {self.learn_more}" if self.learn_more else ""

    @property
    def learn_en(self) -> str:
        return f" See {self.learn_more}" if self.learn_more else ""


class InlinePolicyRejected(OfPermissionSet):
    error: str


class Unavailable(Params):
    error: str
    unchecked: int


# plan.py
class PermissionSetNotManaged(Params):
    permission_set: str


class ProvisionedToManagementAccount(Params):
    permission_set: str
    account_id: str


class AccountId(Params):
    account_id: str


class Target(Params):
    target: str


class AccountNotActive(Params):
    account_id: str
    state: str


class UnknownPermissionSet(OfPermissionSet):
    name: str
    field: str = "permission_set"


class PermissionSetRenamed(Params):
    old_name: str
    new_name: str
    field: str


class PrincipalNotFound(Params):
    principal_type: str | None = None
    principal_name: str

    @property
    def principal_label_ja(self) -> str:
        return "ユーザー" if self.principal_type == "USER" else "グループ"

    @property
    def principal_label_en(self) -> str:
        return "User" if self.principal_type == "USER" else "Group"


class AccessExpiring(Params):
    date: str  # the expires_on of the record, ISO
    accounts: str
    principal: str | None = None  # "USER:alice"
    permission_set: str

    @property
    def principal_label_ja(self) -> str | None:
        return self._label({"USER": "ユーザー", "GROUP": "グループ"})

    @property
    def principal_label_en(self) -> str | None:
        return self._label({"USER": "User", "GROUP": "Group"})

    def _label(self, names: dict[str, str]) -> str | None:
        ptype, _, pname = (self.principal or "").partition(":")
        return f"{names.get(ptype, ptype)} {pname}" if pname else None


# outcome.py
class ApplyFailed(Params):
    operation: str = ""
    key: str | None = None  # with operation: the fingerprint (feedback.py), the error text varies
    error: str


class DeletionsWithheld(Params):
    count: int


class TaskFailed(Params):
    task_id: str


# --------------------------------------------------------------------------- the registry
def _finding(kind_ja: str, kind_en: str, severity: Severity) -> ProblemSpec:
    """An Access Analyzer finding: errors block the permission set, warnings are advice."""
    if severity == "error":
        todo_ja = "インラインポリシーを修正してください。修正されるまでこの権限セットは変更されません。"
        todo_en = "Fix the inline policy; this permission set is not changed until then."
    else:
        todo_ja = "インラインポリシーの見直しをおすすめします（助言です。反映は止まりません）。"
        todo_en = "Consider improving the inline policy (advice only; nothing is blocked)."
    return ProblemSpec(
        Finding,
        severities=(severity,),
        ja=f"IAM Access Analyzer の{kind_ja} {{issue_code}}{{where_ja}}: {{details}} {todo_ja}{{learn_ja}}",
        en=f"IAM Access Analyzer {kind_en} {{issue_code}} in the inline policy{{where_en}}: {{details}} "
        f"{todo_en}{{learn_en}}",
    )


REGISTRY: dict[Code, ProblemSpec] = {
    # ------------------------------------------------------------------ records.py: permission set records
    "missing_field": ProblemSpec(
        MissingField,
        sink="admin",
        ja="{app_label_ja}アプリ（ID {app}）にフィールドコード「{field}」のフィールドがありません（{records} 件の"
        "レコードを処理できませんでした）。アプリのフォームか idc_sync の設定（permission_set_fields / "
        "assignment_fields）のフィールドコードを直してください。",
        en="The {app_label_en} app has no field with code '{field}' ({records} records skipped). Fix the field "
        "code in the app's form or in the idc_sync configuration (permission_set_fields / assignment_fields).",
    ),
    "unreadable_record": ProblemSpec(
        UnreadableRecord,
        ja="idc-sync がこのレコードを読み取れませんでした（{error}）。各フィールドがアプリ定義どおりの形式か"
        "確認してください。問題なければプラットフォーム管理者に連絡してください。",
        en="idc-sync could not read this record ({error}). Check that its fields have the types of the app "
        "definition; if they do, tell the platform administrators.",
    ),
    "missing_name": ProblemSpec(
        FieldOnly,
        ja="権限セット名がありません。「{field}」に 1〜32 文字の名前（英数字と + = , . @ - _）を入力してください。",
        en="The permission set has no name. Fill in '{field}' (1-32 characters: letters, digits and "
        "+ = , . @ - _).",
    ),
    "duplicate_permission_set_name": ProblemSpec(
        DuplicatePermissionSetName,
        ja="権限セット名「{name}」はレコード {first_record_id} ですでに使われています（大文字・小文字は区別"
        "されません）。このレコードの名前を変えるか、重複したレコードを削除してください。",
        en="The permission set name '{name}' is already used by record {first_record_id} (names are "
        "case-insensitive). Rename this one or delete the duplicate record.",
    ),
    "invalid_description": ProblemSpec(
        InvalidDescription,
        ja="「{field}」の説明は IAM Identity Center で使えません（{length} 文字。最大 {max} 文字の半角英数字・"
        "記号のみで、日本語や絵文字は使えません{chars_ja}）。短くするか英語で書き直してください。",
        en="The description in '{field}' cannot be used by IAM Identity Center ({length} characters; at "
        "most {max} characters of Latin-1 text, no Japanese or emoji{chars_en}). Shorten or rewrite it.",
    ),
    "invalid_session_duration": ProblemSpec(
        InvalidSessionDuration,
        ja="セッション時間「{value}」は無効です。「{field}」で PT1H〜PT12H（例: PT4H）を選んでください。",
        en="The session duration '{value}' is not valid. Choose an ISO-8601 duration from PT1H to PT12H "
        "(for example PT4H) in '{field}'.",
    ),
    "invalid_managed_policy": ProblemSpec(
        InvalidManagedPolicy,
        ja="「{field}」の {line} 行目「{value}」は AWS 管理ポリシーではありません。名前（ReadOnlyAccess）、"
        "パス付きの名前（job-function/ViewOnlyAccess）、または ARN（arn:aws:iam::aws:policy/...）で書いて"
        "ください。カスタマー管理ポリシーはテーブル「customer_managed_policies」に書きます。",
        en="Line {line} of '{field}' ('{value}') is not an AWS managed policy. Write its name "
        "(ReadOnlyAccess), path and name (job-function/ViewOnlyAccess) or ARN (arn:aws:iam::aws:policy/...); "
        "customer managed policies go in the table 'customer_managed_policies'.",
    ),
    "invalid_customer_managed_policy": ProblemSpec(
        InvalidCustomerManagedPolicy,
        ja="「{field}」の {row} 行目（名前「{name}」、パス「{path}」）は有効な IAM ポリシー参照ではありません。"
        "名前は 128 文字以内の英数字と + = , . @ - _、パスは / や /team/ の形式で入力してください"
        "（名前が空の行は削除してください）。",
        en="Row {row} of '{field}' (name '{name}', path '{path}') is not a valid IAM policy reference. The "
        "name is up to 128 letters, digits and + = , . @ - _; the path looks like / or /team/ (delete rows "
        "without a name).",
    ),
    "invalid_permissions_boundary": ProblemSpec(
        FieldValue,
        ja="「{field}」のアクセス許可の境界「{value}」を解釈できません。AWS 管理ポリシーの名前か ARN"
        "（PowerUserAccess）、またはカスタマー管理ポリシーを customer:/パス/名前 の形式で書いてください。",
        en="The permissions boundary '{value}' in '{field}' is not understood. Write an AWS managed policy "
        "name or ARN (PowerUserAccess), or a customer managed policy as customer:/path/Name.",
    ),
    "invalid_relay_state": ProblemSpec(
        InvalidRelayState,
        ja="リレーステート「{value}」は使えません。「{field}」には 240 文字以内で空白や日本語を含まない"
        "https:// で始まるコンソールの URL（例: https://console.aws.amazon.com/ec2/）を入力してください。",
        en="The relay state '{value}' cannot be used. Put an https:// console URL of at most 240 characters "
        "without spaces or non-ASCII characters in '{field}' (for example https://console.aws.amazon.com/ec2/).",
    ),
    # ------------------------------------------------------------------ records.py: assignment records
    "invalid_principal_type": ProblemSpec(
        FieldValue,
        ja="「{field}」が「{value}」になっています。USER か GROUP を選んでください。",
        en="'{field}' is '{value}'; choose USER or GROUP.",
    ),
    "no_principals": ProblemSpec(
        NoPrincipals,
        ja="グループ名がありません。「{field}」に IAM Identity Center のグループ表示名を入力するか、種別を USER "
        "にしてユーザーを選んでください。",
        en="No group is named. Fill in '{field}' with the group's display name in IAM Identity Center (or "
        "set the type to USER and select users).",
        variants={
            "USER": {
                "ja": "ユーザーが選ばれていません。「{field}」で 1 人以上選ぶか、種別を GROUP にしてグループ名を入力して"
                "ください。",
                "en": "No user is selected. Choose at least one user in '{field}' (or set the type to GROUP and fill "
                "in the group name).",
            }
        },
    ),
    "invalid_user_name_template": ProblemSpec(
        InvalidUserNameTemplate,
        ja="idc-sync の設定 user_name_template「{template}」を適用できません（{error}）。管理者が設定を直す"
        "必要があります（使えるのは {{code}} のみです）。",
        en="The idc-sync setting user_name_template '{template}' cannot be applied ({error}). An "
        "administrator must fix it; only {{code}} is available.",
    ),
    "ignored_field": ProblemSpec(
        IgnoredField,
        severities=("warning",),
        ja="種別が {principal_type} のため「{field}」は無視されます。「{field}」を空にするか、種別を変えて"
        "ください。",
        en="'{field}' is ignored because the type is {principal_type}. Clear it, or change the type.",
    ),
    "no_targets": ProblemSpec(
        FieldOnly,
        ja="対象がありません。「{field}」に 12 桁の AWS アカウント ID か OU ID（ou-...）を 1 行に 1 つずつ"
        "書いてください。",
        en="No target is given. Write one 12-digit AWS account id or OU id (ou-...) per line in '{field}'.",
    ),
    "invalid_target": ProblemSpec(
        InvalidTarget,
        ja="「{field}」の{line_ja}「{value}」は 12 桁の AWS アカウント ID でも OU ID（ou-xxxx-xxxxxxxx）でも"
        "ありません。この行は無視され、他の対象には反映されます。{digits_ja}正しい ID に直してください。",
        en="{line_en}'{value}' in '{field}' is neither a 12-digit AWS account id nor an OU id "
        "(ou-xxxx-xxxxxxxx); it is skipped, the other targets still apply.{digits_en} Fix the id.",
    ),
    "missing_permission_set": ProblemSpec(
        FieldOnly,
        ja="権限セットが選ばれていません。「{field}」で選んでください。",
        en="No permission set is chosen. Pick one in '{field}'.",
    ),
    "invalid_expires_on": ProblemSpec(
        FieldValue,
        ja="「{field}」の「{value}」は日付ではありません。YYYY-MM-DD の形式で入力するか、無期限なら空にして"
        "ください。",
        en="'{field}' is '{value}', not a date. Write it as YYYY-MM-DD, or leave it empty for permanent access.",
    ),
    "duplicate_assignment": ProblemSpec(
        DuplicateAssignment,
        severities=("warning",),
        ja="このレコードの割り当てのうち {count} 件（例: {example}）はレコード {first_record_ids} ですでに"
        "与えられています。問題はありませんが、重複の削除をご検討ください（アクセスは、それを与える"
        "すべてのレコードが削除されるまで残ります）。",
        en="{count} of this record's assignments (for example {example}) are already given by record(s) "
        "{first_record_ids}. Nothing is wrong, but consider removing the duplicate; access stays until every "
        "record that gives it is removed.",
    ),
    # ------------------------------------------------------------------ isolation.py: an unexpected error on one record
    "record_internal_error": ProblemSpec(
        RecordInternalError,
        ja="idc-sync がこのレコードの処理中に内部エラーになりました（{error}）。このレコードは今回反映されず、"
        "他のレコードは処理されました。レコードに異常な内容がないか確認し、問題なければプラットフォーム管理者に"
        "連絡してください（詳細はタスクログにあります）。",
        en="idc-sync hit an internal error on this record ({error}); it is left unchanged this run and the "
        "other records were processed. Check the record for unusual content; if it looks right, tell the "
        "platform administrators (the task log has the details).",
    ),
    # ------------------------------------------------------------------ validation.py
    "invalid_name": ProblemSpec(
        InvalidName,
        ja="権限セット名「{name}」は使えません。1〜{max} 文字の英数字と + = , . @ - _ で付けてください"
        "（空白や日本語は使えません）。",
        en="The permission set name '{name}' is not valid: use 1-{max} characters of letters, digits and "
        "+ = , . @ - _ (no spaces or Japanese).",
    ),
    "duplicate_name": ProblemSpec(
        DuplicateName,
        ja="権限セット名「{name}」は「{other}」と大文字・小文字の違いしかなく、IAM Identity Center では同じ"
        "名前として扱われます。どちらかの名前を変えてください。",
        en="The permission set name '{name}' differs from '{other}' only in upper/lower case; IAM Identity "
        "Center treats them as the same name. Rename one of them.",
    ),
    "description_too_long": ProblemSpec(
        Length,
        ja="説明が {length} 文字あります。IAM Identity Center の上限は {max} 文字です。短くしてください。",
        en="The description has {length} characters; IAM Identity Center allows at most {max}. Shorten it.",
    ),
    "description_invalid_characters": ProblemSpec(
        Characters,
        ja="説明に IAM Identity Center で使えない文字（{characters}）が含まれています。半角英数字・記号で書き"
        "直してください（日本語や絵文字は使えません）。",
        en="The description contains characters IAM Identity Center does not accept ({characters}); only "
        "Latin-1 text is allowed (no Japanese or emoji). Rewrite it.",
    ),
    "inline_policy_invalid_characters": ProblemSpec(
        Characters,
        ja="インラインポリシーに IAM Identity Center で使えない文字（{characters}）が含まれています。Sid や"
        "条件の値などから日本語などを取り除いてください。",
        en="The inline policy contains characters IAM Identity Center does not accept ({characters}); only "
        "Latin-1 text is allowed. Remove them (for example from Sid or condition values).",
    ),
    "inline_policy_not_json": ProblemSpec(
        InlinePolicyNotJson,
        ja="インラインポリシーが正しい JSON ではありません（{line} 行目 {column} 列目: {error}）。引用符・"
        "カンマ・括弧を確認して JSON を直してください。",
        en="The inline policy is not valid JSON: {error} at line {line}, column {column}. Fix the JSON "
        "(check quotes, commas and brackets).",
    ),
    "inline_policy_too_deep": ProblemSpec(
        InlinePolicyTooDeep,
        ja="インラインポリシーの括弧の入れ子が深すぎます（{line} 行目 {column} 列目で {max_depth} 段を超えました。"
        "IAM ポリシーは 6 段程度で足ります）。余分な [ や {{ がないか確認し、Version とステートメントの一覧の形で"
        "書き直してください。",
        en="The inline policy nests brackets more than {max_depth} levels deep (at line {line}, column "
        "{column}); an IAM policy needs about 6. Check for stray or repeated [ and {{ and rewrite it as Version "
        "plus a list of statements.",
    ),
    "more_findings": ProblemSpec(
        MoreFindings,
        severities=("error", "warning"),
        ja="…ほかに {count} 件の指摘があります（1 レコードにつき {shown} 件まで表示）。表示された指摘を直すと、"
        "残りが表示されます。",
        en="... and {count} more finding(s) are not listed (at most {shown} per record). Fix the listed "
        "ones; the rest are reported once they are fixed.",
    ),
    "inline_policy_not_object": ProblemSpec(
        InlinePolicyNotObject,
        ja='インラインポリシーは JSON オブジェクト（{{"Version": "2012-10-17", "Statement": [...]}}）で'
        "なければなりません（いまは {type}）。全体を {{ }} で囲んだ形に直してください。",
        en='The inline policy must be a JSON object ({{"Version": "2012-10-17", "Statement": [...]}}), '
        "not a JSON {type}. Rewrite it in that shape.",
    ),
    "inline_policy_missing_version": ProblemSpec(
        OfPermissionSet,
        ja='インラインポリシーに "Version" がありません。先頭に "Version": "2012-10-17" を追加してください。',
        en='The inline policy has no "Version". Add "Version": "2012-10-17" at the top.',
    ),
    "inline_policy_invalid_version": ProblemSpec(
        InlinePolicyInvalidVersion,
        ja='インラインポリシーの "Version" が {value} です。"2012-10-17" にしてください（ポリシーを書いた日付'
        "ではなく固定の値です）。",
        en='The inline policy has "Version": {value}; it must be "2012-10-17" (a fixed date, not the date '
        "you wrote the policy).",
    ),
    "inline_policy_missing_statement": ProblemSpec(
        OfPermissionSet,
        ja='インラインポリシーに "Statement" がありません。Effect・Action・Resource を持つステートメントの'
        "リストを追加してください。",
        en='The inline policy has no "Statement". Add a list of statements, each with Effect, Action and '
        "Resource.",
    ),
    "inline_policy_invalid_statement": ProblemSpec(
        Statement,
        ja="インラインポリシーのステートメント {statement} が JSON オブジェクトではありません。各ステートメント"
        'は {{"Effect": ..., "Action": ..., "Resource": ...}} の形で書いてください。',
        en="Statement {statement} of the inline policy is not a JSON object. Each statement is "
        '{{"Effect": ..., "Action": ..., "Resource": ...}}.',
    ),
    "inline_policy_invalid_effect": ProblemSpec(
        InlinePolicyInvalidEffect,
        ja='インラインポリシーのステートメント {statement} の "Effect" が {value_json_ja} です。"Allow" か "Deny"'
        "（大文字・小文字を区別）にしてください。",
        en='Statement {statement} of the inline policy has "Effect": {value_json_en}; it must be "Allow" or '
        '"Deny" (case-sensitive).',
    ),
    "inline_policy_missing_action": ProblemSpec(
        Statement,
        ja='インラインポリシーのステートメント {statement} に "Action"（または "NotAction"）がありません。'
        '許可・拒否するアクションを追加してください（例: "Action": ["s3:GetObject"]）。',
        en='Statement {statement} of the inline policy has no "Action" (or "NotAction"). Add the actions it '
        'allows or denies, for example "Action": ["s3:GetObject"].',
    ),
    "inline_policy_action_and_notaction": ProblemSpec(
        Statement,
        ja='インラインポリシーのステートメント {statement} に "Action" と "NotAction" の両方があります。'
        "どちらか一方だけにしてください。",
        en='Statement {statement} of the inline policy has both "Action" and "NotAction"; keep only one.',
    ),
    "inline_policy_missing_resource": ProblemSpec(
        Statement,
        ja='インラインポリシーのステートメント {statement} に "Resource" がありません。"Resource": "*" か'
        "対象の ARN を追加してください。",
        en='Statement {statement} of the inline policy has no "Resource". Add "Resource": "*" or the ARNs '
        "it applies to.",
    ),
    "inline_policy_too_large": ProblemSpec(
        InlinePolicyTooLarge,
        ja="インラインポリシーが大きすぎます（{chars} 文字、空白を除き {non_whitespace} 文字）。上限は "
        "{max_chars} 文字、空白以外 {max_non_whitespace} 文字です。ワイルドカードの利用やステートメントの"
        "整理で短くするか、一部をカスタマー管理ポリシーに移してください。",
        en="The inline policy is too large: {chars} characters ({non_whitespace} not counting whitespace); "
        "IAM Identity Center allows {max_chars} characters of which at most {max_non_whitespace} "
        "non-whitespace. Shorten it (wildcards, fewer statements) or move part of it to a customer managed "
        "policy.",
    ),
    "too_many_policies": ProblemSpec(
        TooManyPolicies,
        ja="管理ポリシーとカスタマー管理ポリシーが合計 {count} 個あります。IAM Identity Center の上限は {max} "
        "個です。いくつかをカスタマー管理ポリシーかインラインポリシーにまとめてください。",
        en="There are {count} managed and customer managed policies; IAM Identity Center allows at most "
        "{max}. Combine some of them into a customer managed policy or the inline policy.",
    ),
    "many_policies_quota": ProblemSpec(
        ManyPoliciesQuota,
        severities=("warning",),
        ja="ポリシーが {count} 個あります。{default_quota} 個を超える場合、対象のすべてのアカウントで IAM の"
        "クォータ「ロールあたりの管理ポリシー数」を引き上げておく必要があります（引き上げていないアカウント"
        "ではプロビジョニングが失敗します）。不要なポリシーを減らすことをおすすめします。",
        en="There are {count} managed and customer managed policies. More than {default_quota} works only "
        "where the IAM quota 'managed policies per role' has been raised in every target account; otherwise "
        "provisioning fails there. Consider removing some.",
    ),
    "invalid_customer_policy_name": ProblemSpec(
        CustomerPolicy,
        ja="カスタマー管理ポリシー名「{name}」（パス {path}）は使えません。128 文字以内の英数字と "
        "+ = , . @ - _ で書いてください。",
        en="The customer managed policy name '{name}' (path {path}) is not valid: use 1-128 letters, digits "
        "and + = , . @ - _.",
    ),
    "invalid_customer_policy_path": ProblemSpec(
        CustomerPolicy,
        ja="カスタマー管理ポリシー「{name}」のパス「{path}」は使えません。/ や /team/ のように / で始まり / で"
        "終わる形にしてください。",
        en="The path '{path}' of customer managed policy '{name}' is not valid: it starts and ends with '/', "
        "for example / or /team/.",
    ),
    "duplicate_policy": ProblemSpec(
        Policy,
        severities=("warning",),
        ja="{policy} が 2 回書かれています（アタッチは 1 回だけです）。重複した行を削除してください。",
        en="{policy} is listed twice; it is attached once. Remove the duplicate line.",
    ),
    "invalid_managed_policy_arn": ProblemSpec(
        Policy,
        ja="「{policy}」は AWS 管理ポリシーではありません。名前（ReadOnlyAccess）、パス付きの名前"
        "（job-function/ViewOnlyAccess）または ARN で書いてください。カスタマー管理ポリシーは専用の"
        "テーブルに書きます。",
        en="'{policy}' is not an AWS managed policy. Write its name (ReadOnlyAccess), path and name "
        "(job-function/ViewOnlyAccess) or ARN; customer managed policies go in their own table.",
    ),
    "managed_policy_not_found": ProblemSpec(
        PolicyNotFound,
        ja="AWS 管理ポリシー「{policy}」は存在しません。{did_you_mean_ja}レコードのポリシー名を直してください"
        "（大文字・小文字は区別されます。カスタマー管理ポリシーは専用のテーブルに書きます）。",
        en="The AWS managed policy {policy} does not exist.{did_you_mean_en} Fix the name in the record "
        "(names are case-sensitive; customer managed policies go in their own table).",
    ),
    "permissions_boundary_not_found": ProblemSpec(
        PolicyNotFound,
        ja="アクセス許可の境界に指定した AWS 管理ポリシー「{policy}」は存在しません。{did_you_mean_ja}"
        "レコードのポリシー名を直してください（大文字・小文字は区別されます）。",
        en="The AWS managed policy {policy} used as permissions boundary does not exist.{did_you_mean_en} "
        "Fix the name in the record (names are case-sensitive).",
    ),
    "policy_finding_error": _finding("エラー", "error", "error"),
    "policy_finding_security_warning": _finding("セキュリティ警告", "security warning", "error"),
    "policy_finding_warning": _finding("警告", "warning", "warning"),
    "policy_finding_suggestion": _finding("提案", "suggestion", "warning"),
    "inline_policy_rejected": ProblemSpec(
        InlinePolicyRejected,
        ja="IAM Access Analyzer がインラインポリシーを受け付けませんでした（{error}）。ポリシー文書を直して"
        "ください。",
        en="IAM Access Analyzer rejected the inline policy ({error}). Fix the policy document.",
    ),
    "access_analyzer_unavailable": ProblemSpec(
        Unavailable,
        severities=("warning",),
        sink="admin",
        ja="IAM Access Analyzer で {unchecked} 件のインラインポリシーを検証できませんでした（{error}）。"
        "ローカルの検査のみで反映しました。パイプラインのロールの access-analyzer:ValidatePolicy 権限と"
        "サービスの状態を確認してください。",
        en="IAM Access Analyzer could not validate {unchecked} inline policies ({error}); they were applied "
        "after the local checks only. Check the pipeline role's access-analyzer:ValidatePolicy permission "
        "and the service's health.",
    ),
    "managed_policy_check_unavailable": ProblemSpec(
        Unavailable,
        severities=("warning",),
        sink="admin",
        ja="iam:GetPolicy で {unchecked} 件の AWS 管理ポリシーを確認できませんでした（{error}）。ブロックは"
        "していません。パイプラインのロールの iam:GetPolicy 権限と IAM の状態を確認してください。",
        en="Could not check {unchecked} AWS managed policies with iam:GetPolicy ({error}); they were not "
        "blocked. Check the pipeline role's iam:GetPolicy permission and IAM's health.",
    ),
    # ------------------------------------------------------------------ plan.py
    "permission_set_not_managed": ProblemSpec(
        PermissionSetNotManaged,
        ja="権限セット「{permission_set}」は IAM Identity Center にすでに存在し、このパイプラインの管理対象"
        "（所有タグ付き）ではないため変更しません。別の名前にするか、管理者に移管を依頼してください。",
        en="Permission set {permission_set} already exists in IAM Identity Center and is not managed by this "
        "pipeline (it lacks the ownership tag), so it is left unchanged. Choose another name, or ask an admin "
        "to hand it over.",
    ),
    "provisioned_to_management_account": ProblemSpec(
        ProvisionedToManagementAccount,
        ja="権限セット「{permission_set}」は管理アカウント {account_id} にプロビジョニングされているため、委任"
        "管理者からは変更・削除できません。メンバーアカウント用には別の権限セットを使ってください（管理"
        "アカウントのアクセスは別の仕組みで管理されています）。",
        en="Permission set {permission_set} is provisioned to the management account {account_id}, so it "
        "cannot be changed or deleted from the delegated administrator. Use a separate permission set for "
        "member accounts (the management account's access is managed elsewhere).",
    ),
    "management_account_target": ProblemSpec(
        AccountId,
        ja="アカウント {account_id} は管理アカウントです。管理アカウントのアクセスはこのパイプラインでは"
        "管理しません。対象から削除してください。",
        en="Account {account_id} is the management account: its access is not managed by this pipeline. "
        "Remove it from targets.",
    ),
    "unknown_account": ProblemSpec(
        Target,
        ja="アカウント {target} は組織に存在しません。対象のアカウント ID を確認してください（12 桁、先頭の 0 "
        "の欠落に注意）。",
        en="Account {target} is not in the organization. Check the account id in targets (12 digits; watch "
        "for a lost leading zero).",
    ),
    "account_not_active": ProblemSpec(
        AccountNotActive,
        severities=("warning",),
        ja="アカウント {account_id} は {state} で ACTIVE ではないため、割り当ては行いません。不要なら対象から"
        "削除してください。",
        en="Account {account_id} is {state}, not ACTIVE: no assignment is made there. Remove it from targets "
        "if it is no longer needed.",
    ),
    "unknown_ou": ProblemSpec(
        Target,
        ja="組織単位（OU）{target} は組織に存在しません。対象の OU ID を確認してください。",
        en="Organizational unit {target} does not exist in the organization. Check the OU id in targets.",
    ),
    "ou_without_active_accounts": ProblemSpec(
        Target,
        severities=("warning",),
        ja="組織単位（OU）{target} には ACTIVE なメンバーアカウントがないため、何も割り当てられません。"
        "対象が正しいか確認してください。",
        en="Organizational unit {target} has no ACTIVE member account: nothing is assigned. Check the target.",
    ),
    "unknown_permission_set": ProblemSpec(
        UnknownPermissionSet,
        ja="権限セット「{name}」は権限セットアプリにありません。「{field}」のルックアップで既存の権限セットを"
        "選ぶか、先に権限セットのレコードを作成してください。",
        en="The permission set '{name}' does not exist in the permission sets app. Pick an existing one in "
        "'{field}' (use the lookup) or create its record first.",
    ),
    "permission_set_renamed": ProblemSpec(
        PermissionSetRenamed,
        severities=("warning",),
        ja="権限セット「{old_name}」は「{new_name}」に名前が変わりました。このレコードの「{field}」は古い名前の"
        "ままです（ルックアップは保存時の値をコピーします）。アクセスは「{new_name}」で維持されています。"
        "「{field}」のルックアップで権限セットを選び直して保存してください。",
        en="The permission set '{old_name}' was renamed to '{new_name}'; '{field}' on this record still shows "
        "the old name (a lookup copies the value when the record is saved). The access is kept under "
        "'{new_name}': re-select the permission set in '{field}' (the lookup) and save the record.",
    ),
    "principal_not_found": ProblemSpec(
        PrincipalNotFound,
        severities=("pending", "error"),
        ja="{principal_label_ja} {principal_name} が IAM Identity Center に見つかりません（同期の猶予時間を"
        "過ぎました）。名前の誤りがないか、Entra ID のエンタープライズアプリケーションに割り当てられているか"
        "確認してください。",
        en="{principal_label_en} {principal_name} is not in IAM Identity Center and the provisioning grace "
        "period has passed. Check the name, and that it is assigned to the Entra ID enterprise application.",
        variants={
            "pending": {
                "ja": "{principal_label_ja} {principal_name} は IAM Identity Center にまだ同期されていません（Entra ID "
                "からの同期は約 40 分ごと）。同期され次第、自動で割り当てます。対応は不要です。",
                "en": "{principal_label_en} {principal_name} is not in IAM Identity Center yet (provisioning from Entra "
                "ID runs about every 40 minutes); the assignment is made automatically once it arrives. Nothing to do.",
            }
        },
    ),
    "access_expiring": ProblemSpec(
        AccessExpiring,
        severities=("info",),
        ja="アクセスの期限が近づいています: {principal_label_ja} の {permission_set}（{accounts}）は {date} "
        "を過ぎると自動で削除されます。継続が必要なら有効期限（expires_on）を延ばしてください。",
        en="Access ends soon: {principal_label_en} with {permission_set} in {accounts} is removed after "
        "{date}. To keep it, move expires_on later.",
    ),
    # ------------------------------------------------------------------ outcome.py (notify)
    "apply_failed": ProblemSpec(
        ApplyFailed,
        ja="AWS への反映（{operation}）に失敗しました: {error}。次回の同期で自動的に再試行します。続く場合は"
        "プラットフォーム管理者に連絡してください。",
        en="Applying this record to AWS ({operation}) failed: {error}. The next sync retries automatically; "
        "if it keeps failing, tell the platform administrators.",
    ),
    "deletions_withheld": ProblemSpec(
        DeletionsWithheld,
        severities=("warning",),
        sink="admin",
        ja="削除ガードにより {count} 件の削除を保留しました。判断は DAG idc_sync_approval の承認待ち（または却下済み）"
        "です。承認されるまで、または allow_mass_delete を付けて実行するまで削除しません。",
        en="{count} deletion(s) were withheld by the deletion guard: they wait for a decision in the DAG "
        "idc_sync_approval (or were rejected there); nothing is deleted until it is approved or a run is "
        "triggered with allow_mass_delete.",
    ),
    "task_failed": ProblemSpec(
        TaskFailed,
        sink="admin",
        ja="タスク {task_id} が失敗したか結果がありません。ログを確認してください。",
        en="Task {task_id} failed or produced nothing: see its log.",
    ),
}

# The codes as a type, so mypy catches a mistyped one where a producer declares ``code: Code``; a test
# keeps it equal to the keys of REGISTRY.
Code = Literal[
    "missing_field",
    "unreadable_record",
    "missing_name",
    "duplicate_permission_set_name",
    "invalid_description",
    "invalid_session_duration",
    "invalid_managed_policy",
    "invalid_customer_managed_policy",
    "invalid_permissions_boundary",
    "invalid_relay_state",
    "invalid_principal_type",
    "no_principals",
    "invalid_user_name_template",
    "ignored_field",
    "no_targets",
    "invalid_target",
    "missing_permission_set",
    "invalid_expires_on",
    "duplicate_assignment",
    "record_internal_error",
    "invalid_name",
    "duplicate_name",
    "description_too_long",
    "description_invalid_characters",
    "inline_policy_invalid_characters",
    "inline_policy_not_json",
    "inline_policy_too_deep",
    "more_findings",
    "inline_policy_not_object",
    "inline_policy_missing_version",
    "inline_policy_invalid_version",
    "inline_policy_missing_statement",
    "inline_policy_invalid_statement",
    "inline_policy_invalid_effect",
    "inline_policy_missing_action",
    "inline_policy_action_and_notaction",
    "inline_policy_missing_resource",
    "inline_policy_too_large",
    "too_many_policies",
    "many_policies_quota",
    "invalid_customer_policy_name",
    "invalid_customer_policy_path",
    "duplicate_policy",
    "invalid_managed_policy_arn",
    "managed_policy_not_found",
    "permissions_boundary_not_found",
    "policy_finding_error",
    "policy_finding_security_warning",
    "policy_finding_warning",
    "policy_finding_suggestion",
    "inline_policy_rejected",
    "access_analyzer_unavailable",
    "managed_policy_check_unavailable",
    "permission_set_not_managed",
    "provisioned_to_management_account",
    "management_account_target",
    "unknown_account",
    "account_not_active",
    "unknown_ou",
    "ou_without_active_accounts",
    "unknown_permission_set",
    "permission_set_renamed",
    "principal_not_found",
    "access_expiring",
    "apply_failed",
    "deletions_withheld",
    "task_failed",
]
