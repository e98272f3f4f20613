"""The message catalog: what a requester reads about each :class:`~idc_sync.model.Problem`, in their language.

Why a catalog: ``Problem.message`` is English and written where the problem is found; the people reading
kintone comments mostly read Japanese. Every problem ``code`` (stable, see the codes tables in
``records.py``, ``validation.py``, ``plan.py`` and the ones ``steps.py`` adds) has a template per language
that uses the problem's ``params`` and says both *what is wrong* and *what to do*. A code without a
template, or a template whose params are missing (a problem built by code that changed), falls back to the
English ``Problem.message``: a requester always gets a useful sentence, never a crash or a ``{name}``.

Lookup order: ``<code>.<severity>`` (e.g. ``principal_not_found.pending`` is phrased as waiting, not as an
error), then ``<code>``. Params are first completed by :func:`_derive` (aliases between modules that emit
the same code with different param names, optional fragments such as "did you mean ...").
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from idc_sync.model import Problem

LANGUAGES = ("ja", "en")

# Default field codes, used when a problem comes from validation.py (which does not know the field).
_DEFAULT_FIELDS = {
    "invalid_session_duration": "session_duration",
    "invalid_relay_state": "relay_state",
    "invalid_target": "targets",
    "unknown_permission_set": "permission_set",
}

_AA_TODO = {
    "ja": {
        "error": "インラインポリシーを修正してください。修正されるまでこの権限セットは変更されません。",
        "warning": "インラインポリシーの見直しをおすすめします（助言です。反映は止まりません）。",
    },
    "en": {
        "error": "Fix the inline policy; this permission set is not changed until then.",
        "warning": "Consider improving the inline policy (advice only; nothing is blocked).",
    },
}

_AA_FINDING = {
    "ja": "IAM Access Analyzer の{kind} {issue_code}{where}: {details} {todo}{learn}",
    "en": "IAM Access Analyzer {kind} {issue_code} in the inline policy{where}: {details} {todo}{learn}",
}
_AA_KIND = {
    "policy_finding_error": {"ja": "エラー", "en": "error"},
    "policy_finding_security_warning": {"ja": "セキュリティ警告", "en": "security warning"},
    "policy_finding_warning": {"ja": "警告", "en": "warning"},
    "policy_finding_suggestion": {"ja": "提案", "en": "suggestion"},
}

# code -> {language: template}. Every template names the problem and the fix.
CATALOG: dict[str, dict[str, str]] = {
    # ------------------------------------------------------------------ records.py: permission set records
    "missing_field": {
        "ja": "{app_label}アプリ（ID {app}）にフィールドコード「{field}」のフィールドがありません（{records} 件の"
        "レコードを処理できませんでした）。アプリのフォームか idc_sync の設定（permission_set_fields / "
        "assignment_fields）のフィールドコードを直してください。",
        "en": "The {app_label} app has no field with code '{field}' ({records} records skipped). Fix the field "
        "code in the app's form or in the idc_sync configuration (permission_set_fields / assignment_fields).",
    },
    "unreadable_record": {
        "ja": "idc-sync がこのレコードを読み取れませんでした（{error}）。各フィールドがアプリ定義どおりの形式か"
        "確認してください。問題なければプラットフォーム管理者に連絡してください。",
        "en": "idc-sync could not read this record ({error}). Check that its fields have the types of the app "
        "definition; if they do, tell the platform administrators.",
    },
    "record_internal_error": {
        "ja": "idc-sync がこのレコードの処理中に内部エラーになりました（{error}）。このレコードは今回反映されず、"
        "他のレコードは処理されました。レコードに異常な内容がないか確認し、問題なければプラットフォーム管理者に"
        "連絡してください（詳細はタスクログにあります）。",
        "en": "idc-sync hit an internal error on this record ({error}); it is left unchanged this run and the "
        "other records were processed. Check the record for unusual content; if it looks right, tell the "
        "platform administrators (the task log has the details).",
    },
    "missing_name": {
        "ja": "権限セット名がありません。「{field}」に 1〜32 文字の名前（英数字と + = , . @ - _）を入力してください。",
        "en": "The permission set has no name. Fill in '{field}' (1-32 characters: letters, digits and "
        "+ = , . @ - _).",
    },
    "duplicate_permission_set_name": {
        "ja": "権限セット名「{name}」はレコード {first_record_id} ですでに使われています（大文字・小文字は区別"
        "されません）。このレコードの名前を変えるか、重複したレコードを削除してください。",
        "en": "The permission set name '{name}' is already used by record {first_record_id} (names are "
        "case-insensitive). Rename this one or delete the duplicate record.",
    },
    "invalid_description": {
        "ja": "「{field}」の説明は IAM Identity Center で使えません（{length} 文字。最大 {max} 文字の半角英数字・"
        "記号のみで、日本語や絵文字は使えません{chars_ja}）。短くするか英語で書き直してください。",
        "en": "The description in '{field}' cannot be used by IAM Identity Center ({length} characters; at "
        "most {max} characters of Latin-1 text, no Japanese or emoji{chars_en}). Shorten or rewrite it.",
    },
    "invalid_session_duration": {
        "ja": "セッション時間「{value}」は無効です。「{field}」で PT1H〜PT12H（例: PT4H）を選んでください。",
        "en": "The session duration '{value}' is not valid. Choose an ISO-8601 duration from PT1H to PT12H "
        "(for example PT4H) in '{field}'.",
    },
    "invalid_managed_policy": {
        "ja": "「{field}」の {line} 行目「{value}」は AWS 管理ポリシーではありません。名前（ReadOnlyAccess）、"
        "パス付きの名前（job-function/ViewOnlyAccess）、または ARN（arn:aws:iam::aws:policy/...）で書いて"
        "ください。カスタマー管理ポリシーはテーブル「customer_managed_policies」に書きます。",
        "en": "Line {line} of '{field}' ('{value}') is not an AWS managed policy. Write its name "
        "(ReadOnlyAccess), path and name (job-function/ViewOnlyAccess) or ARN (arn:aws:iam::aws:policy/...); "
        "customer managed policies go in the table 'customer_managed_policies'.",
    },
    "invalid_customer_managed_policy": {
        "ja": "「{field}」の {row} 行目（名前「{name}」、パス「{path}」）は有効な IAM ポリシー参照ではありません。"
        "名前は 128 文字以内の英数字と + = , . @ - _、パスは / や /team/ の形式で入力してください"
        "（名前が空の行は削除してください）。",
        "en": "Row {row} of '{field}' (name '{name}', path '{path}') is not a valid IAM policy reference. The "
        "name is up to 128 letters, digits and + = , . @ - _; the path looks like / or /team/ (delete rows "
        "without a name).",
    },
    "invalid_permissions_boundary": {
        "ja": "「{field}」のアクセス許可の境界「{value}」を解釈できません。AWS 管理ポリシーの名前か ARN"
        "（PowerUserAccess）、またはカスタマー管理ポリシーを customer:/パス/名前 の形式で書いてください。",
        "en": "The permissions boundary '{value}' in '{field}' is not understood. Write an AWS managed policy "
        "name or ARN (PowerUserAccess), or a customer managed policy as customer:/path/Name.",
    },
    "invalid_relay_state": {
        "ja": "リレーステート「{value}」は使えません。「{field}」には 240 文字以内で空白や日本語を含まない"
        "コンソールの URL（例: https://console.aws.amazon.com/ec2/）を入力してください。",
        "en": "The relay state '{value}' cannot be used. Put a console URL of at most 240 characters without "
        "spaces or non-ASCII characters in '{field}' (for example https://console.aws.amazon.com/ec2/).",
    },
    # ------------------------------------------------------------------ records.py: assignment records
    "invalid_principal_type": {
        "ja": "「{field}」が「{value}」になっています。USER か GROUP を選んでください。",
        "en": "'{field}' is '{value}'; choose USER or GROUP.",
    },
    "no_principals.USER": {
        "ja": "ユーザーが選ばれていません。「{field}」で 1 人以上選ぶか、種別を GROUP にしてグループ名を入力して"
        "ください。",
        "en": "No user is selected. Choose at least one user in '{field}' (or set the type to GROUP and fill "
        "in the group name).",
    },
    "no_principals": {
        "ja": "グループ名がありません。「{field}」に IAM Identity Center のグループ表示名を入力するか、種別を USER "
        "にしてユーザーを選んでください。",
        "en": "No group is named. Fill in '{field}' with the group's display name in IAM Identity Center (or "
        "set the type to USER and select users).",
    },
    "invalid_user_name_template": {
        "ja": "idc-sync の設定 user_name_template「{template}」を適用できません（{error}）。管理者が設定を直す"
        "必要があります（使えるのは {{code}} のみです）。",
        "en": "The idc-sync setting user_name_template '{template}' cannot be applied ({error}). An "
        "administrator must fix it; only {{code}} is available.",
    },
    "ignored_field": {
        "ja": "種別が {principal_type} のため「{field}」は無視されます。「{field}」を空にするか、種別を変えて"
        "ください。",
        "en": "'{field}' is ignored because the type is {principal_type}. Clear it, or change the type.",
    },
    "no_targets": {
        "ja": "対象がありません。「{field}」に 12 桁の AWS アカウント ID か OU ID（ou-...）を 1 行に 1 つずつ"
        "書いてください。",
        "en": "No target is given. Write one 12-digit AWS account id or OU id (ou-...) per line in '{field}'.",
    },
    "invalid_target": {
        "ja": "「{field}」の{line_ja}「{value}」は 12 桁の AWS アカウント ID でも OU ID（ou-xxxx-xxxxxxxx）でも"
        "ありません。この行は無視され、他の対象には反映されます。{digits_ja}正しい ID に直してください。",
        "en": "{line_en}'{value}' in '{field}' is neither a 12-digit AWS account id nor an OU id "
        "(ou-xxxx-xxxxxxxx); it is skipped, the other targets still apply.{digits_en} Fix the id.",
    },
    "missing_permission_set": {
        "ja": "権限セットが選ばれていません。「{field}」で選んでください。",
        "en": "No permission set is chosen. Pick one in '{field}'.",
    },
    "unknown_permission_set": {
        "ja": "権限セット「{name}」は権限セットアプリにありません。「{field}」のルックアップで既存の権限セットを"
        "選ぶか、先に権限セットのレコードを作成してください。",
        "en": "The permission set '{name}' does not exist in the permission sets app. Pick an existing one in "
        "'{field}' (use the lookup) or create its record first.",
    },
    "invalid_expires_on": {
        "ja": "「{field}」の「{value}」は日付ではありません。YYYY-MM-DD の形式で入力するか、無期限なら空にして"
        "ください。",
        "en": "'{field}' is '{value}', not a date. Write it as YYYY-MM-DD, or leave it empty for permanent access.",
    },
    "duplicate_assignment": {
        "ja": "このレコードの割り当てのうち {count} 件（例: {example}）はレコード {first_record_ids} ですでに"
        "与えられています。問題はありませんが、重複の削除をご検討ください（アクセスは、それを与える"
        "すべてのレコードが削除されるまで残ります）。",
        "en": "{count} of this record's assignments (for example {example}) are already given by record(s) "
        "{first_record_ids}. Nothing is wrong, but consider removing the duplicate; access stays until every "
        "record that gives it is removed.",
    },
    # ------------------------------------------------------------------ validation.py
    "invalid_name": {
        "ja": "権限セット名「{name}」は使えません。1〜{max} 文字の英数字と + = , . @ - _ で付けてください"
        "（空白や日本語は使えません）。",
        "en": "The permission set name '{name}' is not valid: use 1-{max} characters of letters, digits and "
        "+ = , . @ - _ (no spaces or Japanese).",
    },
    "duplicate_name": {
        "ja": "権限セット名「{name}」は「{other}」と大文字・小文字の違いしかなく、IAM Identity Center では同じ"
        "名前として扱われます。どちらかの名前を変えてください。",
        "en": "The permission set name '{name}' differs from '{other}' only in upper/lower case; IAM Identity "
        "Center treats them as the same name. Rename one of them.",
    },
    "description_too_long": {
        "ja": "説明が {length} 文字あります。IAM Identity Center の上限は {max} 文字です。短くしてください。",
        "en": "The description has {length} characters; IAM Identity Center allows at most {max}. Shorten it.",
    },
    "description_invalid_characters": {
        "ja": "説明に IAM Identity Center で使えない文字（{characters}）が含まれています。半角英数字・記号で書き"
        "直してください（日本語や絵文字は使えません）。",
        "en": "The description contains characters IAM Identity Center does not accept ({characters}); only "
        "Latin-1 text is allowed (no Japanese or emoji). Rewrite it.",
    },
    "relay_state_too_long": {
        "ja": "リレーステートが {length} 文字あります（上限 {max} 文字）。短いコンソール URL にしてください。",
        "en": "The relay state has {length} characters; at most {max} are allowed. Use a shorter console URL.",
    },
    "inline_policy_invalid_characters": {
        "ja": "インラインポリシーに IAM Identity Center で使えない文字（{characters}）が含まれています。Sid や"
        "条件の値などから日本語などを取り除いてください。",
        "en": "The inline policy contains characters IAM Identity Center does not accept ({characters}); only "
        "Latin-1 text is allowed. Remove them (for example from Sid or condition values).",
    },
    "inline_policy_not_json": {
        "ja": "インラインポリシーが正しい JSON ではありません（{line} 行目 {column} 列目: {error}）。引用符・"
        "カンマ・括弧を確認して JSON を直してください。",
        "en": "The inline policy is not valid JSON: {error} at line {line}, column {column}. Fix the JSON "
        "(check quotes, commas and brackets).",
    },
    "inline_policy_too_deep": {
        "ja": "インラインポリシーの括弧の入れ子が深すぎます（{line} 行目 {column} 列目で {max_depth} 段を超えました。"
        "IAM ポリシーは 6 段程度で足ります）。余分な [ や {{ がないか確認し、Version とステートメントの一覧の形で"
        "書き直してください。",
        "en": "The inline policy nests brackets more than {max_depth} levels deep (at line {line}, column "
        "{column}); an IAM policy needs about 6. Check for stray or repeated [ and {{ and rewrite it as Version "
        "plus a list of statements.",
    },
    "more_findings": {
        "ja": "…ほかに {count} 件の指摘があります（1 レコードにつき {shown} 件まで表示）。表示された指摘を直すと、"
        "残りが表示されます。",
        "en": "... and {count} more finding(s) are not listed (at most {shown} per record). Fix the listed "
        "ones; the rest are reported once they are fixed.",
    },
    "inline_policy_not_object": {
        "ja": 'インラインポリシーは JSON オブジェクト（{{"Version": "2012-10-17", "Statement": [...]}}）で'
        "なければなりません（いまは {type}）。全体を {{ }} で囲んだ形に直してください。",
        "en": 'The inline policy must be a JSON object ({{"Version": "2012-10-17", "Statement": [...]}}), '
        "not a JSON {type}. Rewrite it in that shape.",
    },
    "inline_policy_missing_version": {
        "ja": 'インラインポリシーに "Version" がありません。先頭に "Version": "2012-10-17" を追加してください。',
        "en": 'The inline policy has no "Version". Add "Version": "2012-10-17" at the top.',
    },
    "inline_policy_invalid_version": {
        "ja": 'インラインポリシーの "Version" が {value} です。"2012-10-17" にしてください（ポリシーを書いた日付'
        "ではなく固定の値です）。",
        "en": 'The inline policy has "Version": {value}; it must be "2012-10-17" (a fixed date, not the date '
        "you wrote the policy).",
    },
    "inline_policy_missing_statement": {
        "ja": 'インラインポリシーに "Statement" がありません。Effect・Action・Resource を持つステートメントの'
        "リストを追加してください。",
        "en": 'The inline policy has no "Statement". Add a list of statements, each with Effect, Action and '
        "Resource.",
    },
    "inline_policy_invalid_statement": {
        "ja": "インラインポリシーのステートメント {statement} が JSON オブジェクトではありません。各ステートメント"
        'は {{"Effect": ..., "Action": ..., "Resource": ...}} の形で書いてください。',
        "en": "Statement {statement} of the inline policy is not a JSON object. Each statement is "
        '{{"Effect": ..., "Action": ..., "Resource": ...}}.',
    },
    "inline_policy_invalid_effect": {
        "ja": 'インラインポリシーのステートメント {statement} の "Effect" が {value_json} です。"Allow" か "Deny"'
        "（大文字・小文字を区別）にしてください。",
        "en": 'Statement {statement} of the inline policy has "Effect": {value_json}; it must be "Allow" or '
        '"Deny" (case-sensitive).',
    },
    "inline_policy_missing_action": {
        "ja": 'インラインポリシーのステートメント {statement} に "Action"（または "NotAction"）がありません。'
        '許可・拒否するアクションを追加してください（例: "Action": ["s3:GetObject"]）。',
        "en": 'Statement {statement} of the inline policy has no "Action" (or "NotAction"). Add the actions it '
        'allows or denies, for example "Action": ["s3:GetObject"].',
    },
    "inline_policy_action_and_notaction": {
        "ja": 'インラインポリシーのステートメント {statement} に "Action" と "NotAction" の両方があります。'
        "どちらか一方だけにしてください。",
        "en": 'Statement {statement} of the inline policy has both "Action" and "NotAction"; keep only one.',
    },
    "inline_policy_missing_resource": {
        "ja": 'インラインポリシーのステートメント {statement} に "Resource" がありません。"Resource": "*" か'
        "対象の ARN を追加してください。",
        "en": 'Statement {statement} of the inline policy has no "Resource". Add "Resource": "*" or the ARNs '
        "it applies to.",
    },
    "inline_policy_too_large": {
        "ja": "インラインポリシーが大きすぎます（{chars} 文字、空白を除き {non_whitespace} 文字）。上限は "
        "{max_chars} 文字、空白以外 {max_non_whitespace} 文字です。ワイルドカードの利用やステートメントの"
        "整理で短くするか、一部をカスタマー管理ポリシーに移してください。",
        "en": "The inline policy is too large: {chars} characters ({non_whitespace} not counting whitespace); "
        "IAM Identity Center allows {max_chars} characters of which at most {max_non_whitespace} "
        "non-whitespace. Shorten it (wildcards, fewer statements) or move part of it to a customer managed "
        "policy.",
    },
    "too_many_policies": {
        "ja": "管理ポリシーとカスタマー管理ポリシーが合計 {count} 個あります。IAM Identity Center の上限は {max} "
        "個です。いくつかをカスタマー管理ポリシーかインラインポリシーにまとめてください。",
        "en": "There are {count} managed and customer managed policies; IAM Identity Center allows at most "
        "{max}. Combine some of them into a customer managed policy or the inline policy.",
    },
    "many_policies_quota": {
        "ja": "ポリシーが {count} 個あります。{default_quota} 個を超える場合、対象のすべてのアカウントで IAM の"
        "クォータ「ロールあたりの管理ポリシー数」を引き上げておく必要があります（引き上げていないアカウント"
        "ではプロビジョニングが失敗します）。不要なポリシーを減らすことをおすすめします。",
        "en": "There are {count} managed and customer managed policies. More than {default_quota} works only "
        "where the IAM quota 'managed policies per role' has been raised in every target account; otherwise "
        "provisioning fails there. Consider removing some.",
    },
    "invalid_customer_policy_name": {
        "ja": "カスタマー管理ポリシー名「{name}」（パス {path}）は使えません。128 文字以内の英数字と "
        "+ = , . @ - _ で書いてください。",
        "en": "The customer managed policy name '{name}' (path {path}) is not valid: use 1-128 letters, digits "
        "and + = , . @ - _.",
    },
    "invalid_customer_policy_path": {
        "ja": "カスタマー管理ポリシー「{name}」のパス「{path}」は使えません。/ や /team/ のように / で始まり / で"
        "終わる形にしてください。",
        "en": "The path '{path}' of customer managed policy '{name}' is not valid: it starts and ends with '/', "
        "for example / or /team/.",
    },
    "duplicate_policy": {
        "ja": "{policy} が 2 回書かれています（アタッチは 1 回だけです）。重複した行を削除してください。",
        "en": "{policy} is listed twice; it is attached once. Remove the duplicate line.",
    },
    "invalid_managed_policy_arn": {
        "ja": "「{policy}」は AWS 管理ポリシーではありません。名前（ReadOnlyAccess）、パス付きの名前"
        "（job-function/ViewOnlyAccess）または ARN で書いてください。カスタマー管理ポリシーは専用の"
        "テーブルに書きます。",
        "en": "'{policy}' is not an AWS managed policy. Write its name (ReadOnlyAccess), path and name "
        "(job-function/ViewOnlyAccess) or ARN; customer managed policies go in their own table.",
    },
    "managed_policy_not_found": {
        "ja": "AWS 管理ポリシー「{policy}」は存在しません。{did_you_mean_ja}レコードのポリシー名を直してください"
        "（大文字・小文字は区別されます。カスタマー管理ポリシーは専用のテーブルに書きます）。",
        "en": "The AWS managed policy {policy} does not exist.{did_you_mean_en} Fix the name in the record "
        "(names are case-sensitive; customer managed policies go in their own table).",
    },
    "permissions_boundary_not_found": {
        "ja": "アクセス許可の境界に指定した AWS 管理ポリシー「{policy}」は存在しません。{did_you_mean_ja}"
        "レコードのポリシー名を直してください（大文字・小文字は区別されます）。",
        "en": "The AWS managed policy {policy} used as permissions boundary does not exist.{did_you_mean_en} "
        "Fix the name in the record (names are case-sensitive).",
    },
    "policy_finding_error": _AA_FINDING,
    "policy_finding_security_warning": _AA_FINDING,
    "policy_finding_warning": _AA_FINDING,
    "policy_finding_suggestion": _AA_FINDING,
    "inline_policy_rejected": {
        "ja": "IAM Access Analyzer がインラインポリシーを受け付けませんでした（{error}）。ポリシー文書を直して"
        "ください。",
        "en": "IAM Access Analyzer rejected the inline policy ({error}). Fix the policy document.",
    },
    "access_analyzer_unavailable": {
        "ja": "IAM Access Analyzer で {unchecked} 件のインラインポリシーを検証できませんでした（{error}）。"
        "ローカルの検査のみで反映しました。パイプラインのロールの access-analyzer:ValidatePolicy 権限と"
        "サービスの状態を確認してください。",
        "en": "IAM Access Analyzer could not validate {unchecked} inline policies ({error}); they were applied "
        "after the local checks only. Check the pipeline role's access-analyzer:ValidatePolicy permission "
        "and the service's health.",
    },
    "managed_policy_check_unavailable": {
        "ja": "iam:GetPolicy で {unchecked} 件の AWS 管理ポリシーを確認できませんでした（{error}）。ブロックは"
        "していません。パイプラインのロールの iam:GetPolicy 権限と IAM の状態を確認してください。",
        "en": "Could not check {unchecked} AWS managed policies with iam:GetPolicy ({error}); they were not "
        "blocked. Check the pipeline role's iam:GetPolicy permission and IAM's health.",
    },
    # ------------------------------------------------------------------ plan.py
    "permission_set_not_managed": {
        "ja": "権限セット「{permission_set}」は IAM Identity Center にすでに存在し、このパイプラインの管理対象"
        "（所有タグ付き）ではないため変更しません。別の名前にするか、管理者に移管を依頼してください。",
        "en": "Permission set {permission_set} already exists in IAM Identity Center and is not managed by this "
        "pipeline (it lacks the ownership tag), so it is left unchanged. Choose another name, or ask an admin "
        "to hand it over.",
    },
    "provisioned_to_management_account": {
        "ja": "権限セット「{permission_set}」は管理アカウント {account_id} にプロビジョニングされているため、委任"
        "管理者からは変更・削除できません。メンバーアカウント用には別の権限セットを使ってください（管理"
        "アカウントのアクセスは別の仕組みで管理されています）。",
        "en": "Permission set {permission_set} is provisioned to the management account {account_id}, so it "
        "cannot be changed or deleted from the delegated administrator. Use a separate permission set for "
        "member accounts (the management account's access is managed elsewhere).",
    },
    "management_account_target": {
        "ja": "アカウント {account_id} は管理アカウントです。管理アカウントのアクセスはこのパイプラインでは"
        "管理しません。対象から削除してください。",
        "en": "Account {account_id} is the management account: its access is not managed by this pipeline. "
        "Remove it from targets.",
    },
    "unknown_account": {
        "ja": "アカウント {target} は組織に存在しません。対象のアカウント ID を確認してください（12 桁、先頭の 0 "
        "の欠落に注意）。",
        "en": "Account {target} is not in the organization. Check the account id in targets (12 digits; watch "
        "for a lost leading zero).",
    },
    "account_not_active": {
        "ja": "アカウント {account_id} は {state} で ACTIVE ではないため、割り当ては行いません。不要なら対象から"
        "削除してください。",
        "en": "Account {account_id} is {state}, not ACTIVE: no assignment is made there. Remove it from targets "
        "if it is no longer needed.",
    },
    "unknown_ou": {
        "ja": "組織単位（OU）{target} は組織に存在しません。対象の OU ID を確認してください。",
        "en": "Organizational unit {target} does not exist in the organization. Check the OU id in targets.",
    },
    "ou_without_active_accounts": {
        "ja": "組織単位（OU）{target} には ACTIVE なメンバーアカウントがないため、何も割り当てられません。"
        "対象が正しいか確認してください。",
        "en": "Organizational unit {target} has no ACTIVE member account: nothing is assigned. Check the target.",
    },
    "principal_not_found.pending": {
        "ja": "{principal_label_ja} {principal_name} は IAM Identity Center にまだ同期されていません（Entra ID "
        "からの同期は約 40 分ごと）。同期され次第、自動で割り当てます。対応は不要です。",
        "en": "{principal_label_en} {principal_name} is not in IAM Identity Center yet (provisioning from Entra "
        "ID runs about every 40 minutes); the assignment is made automatically once it arrives. Nothing to do.",
    },
    "principal_not_found": {
        "ja": "{principal_label_ja} {principal_name} が IAM Identity Center に見つかりません（同期の猶予時間を"
        "過ぎました）。名前の誤りがないか、Entra ID のエンタープライズアプリケーションに割り当てられているか"
        "確認してください。",
        "en": "{principal_label_en} {principal_name} is not in IAM Identity Center and the provisioning grace "
        "period has passed. Check the name, and that it is assigned to the Entra ID enterprise application.",
    },
    # ------------------------------------------------------------------ steps.py
    "apply_failed": {
        "ja": "AWS への反映（{operation}）に失敗しました: {error}。次回の同期で自動的に再試行します。続く場合は"
        "プラットフォーム管理者に連絡してください。",
        "en": "Applying this record to AWS ({operation}) failed: {error}. The next sync retries automatically; "
        "if it keeps failing, tell the platform administrators.",
    },
    "deletions_withheld": {
        "ja": "削除ガードにより {count} 件の削除を保留しました。判断は DAG idc_sync_approval の承認待ち（または却下済み）"
        "です。承認されるまで、または allow_mass_delete を付けて実行するまで削除しません。",
        "en": "{count} deletion(s) were withheld by the deletion guard: they wait for a decision in the DAG "
        "idc_sync_approval (or were rejected there); nothing is deleted until it is approved or a run is "
        "triggered with allow_mass_delete.",
    },
    "scim_unhealthy": {
        "ja": "Entra ID の SCIM プロビジョニングが正常ではありません: {reason}",
        "en": "Entra SCIM provisioning is unhealthy: {reason}",
    },
    "task_failed": {
        "ja": "タスク {task_id} が失敗したか結果がありません。ログを確認してください。",
        "en": "Task {task_id} failed or produced nothing: see its log.",
    },
    # ------------------------------------------------------------------ renamed permission set (issue 9)
    "permission_set_renamed": {
        "ja": "権限セット「{old_name}」は「{new_name}」に名前が変わりました。このレコードの「{field}」は古い名前の"
        "ままです（ルックアップは保存時の値をコピーします）。アクセスは「{new_name}」で維持されています。"
        "「{field}」のルックアップで権限セットを選び直して保存してください。",
        "en": "The permission set '{old_name}' was renamed to '{new_name}'; '{field}' on this record still shows "
        "the old name (a lookup copies the value when the record is saved). The access is kept under "
        "'{new_name}': re-select the permission set in '{field}' (the lookup) and save the record.",
    },
    # ------------------------------------------------------------------ expiry (issue 4)
    "access_expiring": {
        "ja": "アクセスの期限が近づいています: {principal_label} の {permission_set}（{accounts}）は {expires_on} "
        "を過ぎると自動で削除されます。継続が必要なら有効期限（expires_on）を延ばしてください。",
        "en": "Access ends soon: {principal_label} with {permission_set} in {accounts} is removed after "
        "{expires_on}. To keep it, move expires_on later.",
    },
}

_APP_LABEL = {
    "permission_sets": {"ja": "権限セット", "en": "permission sets"},
    "assignments": {"ja": "割り当て", "en": "assignments"},
}


class _Missing(KeyError):
    pass


class _Params(dict[str, Any]):
    def __missing__(self, key: str) -> Any:
        raise _Missing(key)


def _derive(problem: Problem, language: str) -> dict[str, Any]:
    """Params completed with aliases and language-specific optional fragments."""
    p: dict[str, Any] = {k: v for k, v in problem.params.items() if v is not None}
    code = problem.code
    if code in _DEFAULT_FIELDS:
        p.setdefault("field", _DEFAULT_FIELDS[code])
    if code == "unknown_permission_set" and "name" not in p and "permission_set" in p:
        p["name"] = p["permission_set"]
    if code == "invalid_target":
        if "value" not in p and "target" in p:
            p["value"] = p["target"]
        line = p.get("line")
        p["line_ja"] = f" {line} 行目" if line is not None else ""
        p["line_en"] = f"Line {line}: " if line is not None else ""
        written = str(p.get("value", ""))
        digits = written.isdigit()
        p["digits_ja"] = (
            "アカウント ID はちょうど 12 桁です（先頭の 0 が消えていないか確認）。" if digits else ""
        )
        p["digits_en"] = (
            " An account id has exactly 12 digits; check that a leading zero was not lost." if digits else ""
        )
        if not written.isascii() and any(ch.isdigit() for ch in written):  # full-width, Arabic-Indic digits
            p["digits_ja"] = "ID は半角数字（0-9）で書いてください（全角数字などは使えません）。"
            p["digits_en"] = " Write ids with ASCII digits 0-9 (not full-width or other scripts' digits)."
    if code == "invalid_description":
        chars = p.get("characters") or ""
        p["chars_ja"] = f"。使えない文字: {chars}" if chars else ""
        p["chars_en"] = f"; unsupported characters: {chars}" if chars else ""
    if code in ("managed_policy_not_found", "permissions_boundary_not_found"):
        names = [s.strip() for s in str(p.get("suggestions") or "").split(",") if s.strip()]
        p["did_you_mean_ja"] = f"{' か '.join(names)} の誤りではありませんか。" if names else ""
        p["did_you_mean_en"] = f" Did you mean {' or '.join(names)}?" if names else ""
    if code == "inline_policy_invalid_effect":
        value = problem.params.get("value")
        p["value_json"] = (
            f'"{value}"' if value is not None else "null（未指定）" if language == "ja" else "null"
        )
    if code == "missing_field":
        p["app_label"] = _APP_LABEL.get(str(p.get("app")), {}).get(language, p.get("app", ""))
    if code == "principal_not_found":
        user = p.get("principal_type") == "USER"
        p["principal_label_ja"] = "ユーザー" if user else "グループ"
        p["principal_label_en"] = "User" if user else "Group"
    if code == "invalid_customer_managed_policy":
        p.setdefault("path", "/")
        p["path"] = p["path"] or "/"
    if code.startswith("policy_finding_"):
        severity = "error" if problem.severity == "error" else "warning"
        line, column = p.get("line"), p.get("column")
        if line is not None:
            p["where"] = (
                f"（{line} 行目 {column} 列目）" if language == "ja" else f" at line {line}, column {column}"
            )
        else:
            p["where"] = ""
        p["kind"] = _AA_KIND[code][language]
        p["todo"] = _AA_TODO[language][severity]
        link = p.get("learn_more")
        p["learn"] = (f" 詳細: {link}" if language == "ja" else f" See {link}") if link else ""
        p.setdefault("details", "")
    if code == "access_expiring":
        ptype, _, pname = str(p.get("principal", "")).partition(":")
        if pname:
            label = {"USER": ("ユーザー", "User"), "GROUP": ("グループ", "Group")}.get(ptype, (ptype, ptype))
            p["principal_label"] = f"{label[0] if language == 'ja' else label[1]} {pname}"
        p.setdefault("expires_on", p.get("date"))
    if code == "apply_failed":
        p.setdefault("operation", "")
    return p


def template_for(code: str, severity: str, language: str) -> str | None:
    for key in (f"{code}.{severity}", code):
        entry = CATALOG.get(key)
        if entry and language in entry:
            return entry[language]
    return None


def _template_key_for(problem: Problem) -> str:
    """Special case: no_principals has one wording per principal type."""
    if problem.code == "no_principals" and problem.params.get("principal_type") == "USER":
        return "no_principals.USER"
    return problem.code


def render_problem(problem: Problem, language: str) -> str:
    """The problem in ``language`` ("ja" or "en"); the English ``message`` when no template fits."""
    if language not in LANGUAGES:
        return problem.message
    template = template_for(_template_key_for(problem), problem.severity, language)
    if template is None:
        return problem.message
    try:
        return template.format_map(_Params(_derive(problem, language))).strip()
    except (_Missing, KeyError, IndexError, ValueError):
        return problem.message


def catalog_codes() -> set[str]:
    """Problem codes (without the ``.variant`` suffix) that have templates."""
    return {key.split(".", 1)[0] for key in CATALOG}


def missing_templates(codes: Mapping[str, object] | set[str]) -> dict[str, list[str]]:
    """For tests and CI: code -> languages without a template."""
    out: dict[str, list[str]] = {}
    for code in codes:
        langs = [lang for lang in LANGUAGES if template_for(code, "error", lang) is None]
        if langs:
            out[code] = langs
    return out
