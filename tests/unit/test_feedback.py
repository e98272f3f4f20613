"""Feedback to requesters: the problem registry (every code's params and ja/en templates), comment
rendering, mentions, and plan_feedback's no-spam rules (appear / change / resolved once; notes once; admin
problems never on a record)."""

from __future__ import annotations

import re
from typing import get_args

import pytest
from pydantic import ValidationError

from idc_sync import feedback, messages, problems
from idc_sync.feedback import INFO_PREFIX, RESOLVED, plan_feedback, render_comment
from idc_sync.model import Problem, RecordRef
from idc_sync.problems import LANGUAGES, REGISTRY


def _ref(app: str = "permission_sets", rid: str = "7", mentions: tuple[str, ...] = ("alice",)) -> RecordRef:
    return RecordRef(
        app=app, app_id="1" if app == "permission_sets" else "2", record_id=rid, mentions=mentions
    )  # type: ignore[arg-type]


def _p(code: str, severity: str = "error", ref: RecordRef | None = None, **params: object) -> Problem:
    return Problem(
        code=code, message=f"English {code} {params}", severity=severity, record=ref, params=params
    )  # type: ignore[arg-type]


# --------------------------------------------------------------------------- the registry
def test_code_type_lists_exactly_the_registry():
    assert sorted(get_args(problems.Code)) == sorted(REGISTRY)


def test_every_code_has_ja_and_en_templates_for_each_severity_it_is_used_with():
    wrong = []
    for code, spec in REGISTRY.items():
        allowed = problems.placeholders(spec.params)
        if not set(spec.variants) <= {*spec.severities, *spec.params.VARIANTS}:
            wrong.append(f"{code}: variants {set(spec.variants)} are neither severities nor param variants")
        if any(set(texts) != set(LANGUAGES) for texts in spec.variants.values()):
            wrong.append(f"{code}: a variant lacks a language")
        for severity in spec.severities:
            for variant in (None, *spec.params.VARIANTS):
                for language in LANGUAGES:
                    template = spec.template(language, severity, variant)
                    unknown = problems.template_fields(template) - allowed
                    if not template.strip() or unknown:
                        wrong.append(
                            f"{code} ({severity}, {variant}, {language}): empty or unknown {unknown}"
                        )
    assert not wrong, "\n".join(wrong)


def test_a_problem_with_an_unregistered_code_cannot_be_built():
    with pytest.raises(ValidationError, match="unknown problem code 'brand_new_code'"):
        _p("brand_new_code")
    with pytest.raises(ValidationError, match="unknown problem code"):  # nor read back from an XCom
        Problem.model_validate({"code": "invalid_targte", "message": "x"})
    p = _p("invalid_name", name="a b", max=32)
    assert Problem.model_validate(p.model_dump(mode="json")) == p and type(p.code) is str


# Each code rendered with the params its producers give (canonical names: the params model validates them).
PARAMS: dict[str, dict[str, object]] = {
    "missing_field": {"field": "owner", "app": "permission_sets", "records": 3},
    "unreadable_record": {"error": "TypeError: x"},
    "missing_name": {"field": "name"},
    "duplicate_permission_set_name": {"name": "Dev", "first_record_id": "3"},
    "invalid_description": {"field": "description", "length": 5, "max": 700, "characters": "日本"},
    "invalid_session_duration": {"field": "session_duration", "value": "PT13H"},
    "invalid_managed_policy": {"field": "managed_policies", "value": "arn:aws:iam::1:policy/X", "line": 2},
    "invalid_customer_managed_policy": {"field": "cmp", "name": "a b", "path": "", "row": 1},
    "invalid_permissions_boundary": {"field": "permissions_boundary", "value": "customer:a b"},
    "invalid_relay_state": {"field": "relay_state", "value": "https://x/ y", "max": 240},
    "invalid_principal_type": {"field": "principal_type", "value": "ROLE"},
    "no_principals": {"field": "users", "principal_type": "USER"},
    "invalid_user_name_template": {"template": "%(code)s", "error": "KeyError"},
    "ignored_field": {"field": "group_name", "principal_type": "USER"},
    "no_targets": {"field": "targets"},
    "invalid_target": {"field": "targets", "value": "12345", "line": 1},
    "missing_permission_set": {"field": "permission_set"},
    "unknown_permission_set": {"field": "permission_set", "name": "Nope"},
    "permission_set_renamed": {"field": "permission_set", "old_name": "Developer", "new_name": "Developer2"},
    "invalid_expires_on": {"field": "expires_on", "value": "tomorrow"},
    "duplicate_assignment": {"count": 1, "first_record_ids": "3", "example": "USER:a -> 1 (X)"},
    "invalid_name": {"permission_set": "a b", "name": "a b", "max": 32},
    "duplicate_name": {"permission_set": "dev", "name": "dev", "other": "Dev"},
    "description_too_long": {"permission_set": "X", "length": 800, "max": 700},
    "description_invalid_characters": {"permission_set": "X", "characters": "日"},
    "inline_policy_invalid_characters": {"permission_set": "X", "characters": "日"},
    "inline_policy_not_json": {"permission_set": "X", "error": "Expecting ','", "line": 3, "column": 7},
    "inline_policy_too_deep": {"permission_set": "X", "max_depth": 32, "line": 1, "column": 33},
    "more_findings": {"permission_set": "X", "count": 29990, "shown": 20},
    "record_internal_error": {"step": "plan", "error": "RecursionError: maximum recursion depth exceeded"},
    "inline_policy_not_object": {"permission_set": "X", "type": "list"},
    "inline_policy_missing_version": {"permission_set": "X"},
    "inline_policy_invalid_version": {"permission_set": "X", "value": "2024-01-01"},
    "inline_policy_missing_statement": {"permission_set": "X"},
    "inline_policy_invalid_statement": {"permission_set": "X", "statement": "1"},
    "inline_policy_invalid_effect": {"permission_set": "X", "statement": "1", "value": "allow"},
    "inline_policy_missing_action": {"permission_set": "X", "statement": "1"},
    "inline_policy_action_and_notaction": {"permission_set": "X", "statement": "1"},
    "inline_policy_missing_resource": {"permission_set": "X", "statement": "1 (Sid A)"},
    "inline_policy_too_large": {
        "permission_set": "X",
        "chars": 40000,
        "max_chars": 32768,
        "non_whitespace": 11000,
        "max_non_whitespace": 10240,
    },
    "too_many_policies": {"permission_set": "X", "count": 21, "max": 20},
    "many_policies_quota": {"permission_set": "X", "count": 11, "default_quota": 10},
    "invalid_customer_policy_name": {"permission_set": "X", "name": "a b", "path": "/"},
    "invalid_customer_policy_path": {"permission_set": "X", "name": "a", "path": "x"},
    "duplicate_policy": {"permission_set": "X", "policy": "ReadOnlyAccess"},
    "invalid_managed_policy_arn": {"permission_set": "X", "policy": "arn:aws:iam::1:policy/X"},
    "managed_policy_not_found": {
        "permission_set": "X",
        "policy": "ReadOnlyAcess",
        "arn": "arn:aws:iam::aws:policy/ReadOnlyAcess",
        "suggestions": "ReadOnlyAccess",
    },
    "permissions_boundary_not_found": {"permission_set": "X", "policy": "P", "arn": "a", "suggestions": ""},
    "policy_finding_error": {
        "permission_set": "X",
        "issue_code": "INVALID_ACTION",
        "line": 5,
        "column": 17,
        "details": "The action s3:GetObjct does not exist.",
        "learn_more": "https://docs.aws.amazon.com/x",
    },
    "policy_finding_security_warning": {
        "permission_set": "X",
        "issue_code": "PASS_ROLE",
        "details": "d",
        "learn_more": "",
    },
    "policy_finding_warning": {
        "permission_set": "X",
        "issue_code": "MISSING_VERSION",
        "details": "d",
        "learn_more": "",
    },
    "policy_finding_suggestion": {
        "permission_set": "X",
        "issue_code": "REDUNDANT_ACTION",
        "line": 1,
        "column": 1,
        "details": "d",
        "learn_more": "",
    },
    "inline_policy_rejected": {"permission_set": "X", "error": "ValidationException: bad"},
    "access_analyzer_unavailable": {"error": "ThrottlingException", "unchecked": 2},
    "managed_policy_check_unavailable": {"error": "AccessDenied", "unchecked": 2},
    "permission_set_not_managed": {"permission_set": "AWSReadOnlyAccess"},
    "provisioned_to_management_account": {"permission_set": "X", "account_id": "111111111111"},
    "management_account_target": {"account_id": "111111111111"},
    "unknown_account": {"target": "123456789012"},
    "account_not_active": {"account_id": "999999999999", "state": "SUSPENDED"},
    "unknown_ou": {"target": "ou-ab12-99999999"},
    "ou_without_active_accounts": {"target": "ou-ab12-99999999"},
    "principal_not_found": {"principal_type": "USER", "principal_name": "walter@example.com"},
    "apply_failed": {"operation": "create_assignment", "key": "k", "error": "ConflictException"},
    "deletions_withheld": {"count": 2},
    "task_failed": {"task_id": "snapshot_idc"},
    "access_expiring": {
        "date": "2030-01-31",
        "accounts": "444444444444",
        "principal": "USER:peggy@example.com",
        "permission_set": "ReadOnly",
    },
}


def test_the_samples_cover_the_registry_with_canonical_params():
    assert set(PARAMS) == set(REGISTRY)
    for code, params in PARAMS.items():
        REGISTRY[code].parse(params)  # raises on a misnamed, missing or mistyped param


@pytest.mark.parametrize("language", ["ja", "en"])
def test_every_template_renders_with_its_params(language):
    for code, params in PARAMS.items():
        for severity in REGISTRY[code].severities:
            problem = _p(code, severity, **params)
            text = messages.render_problem(problem, language)
            assert text != problem.message, (code, language)  # the template, not the fallback
            assert not re.search(r"\{[a-z_]+\}", text.replace("{code}", "")), (code, text)
            if language == "ja":
                assert re.search(r"[\u3040-\u30ff]", text), (code, text)  # kana: really Japanese


def test_params_that_do_not_fit_give_the_english_message_and_a_warning(caplog):
    assert messages.render_problem(_p("managed_policy_not_found"), "ja").startswith("English")  # missing
    # an alias _derive used to accept (plan.py said "target"): not a param of invalid_target any more
    assert messages.render_problem(_p("invalid_target", target="12345"), "ja").startswith("English")
    assert messages.render_problem(_p("too_many_policies", count="many", max=20), "en").startswith("English")
    assert "too_many_policies problem: its params do not fit (count: int_parsing)" in caplog.text
    # an expiry note whose principal has no name: no half sentence
    half = dict(PARAMS["access_expiring"], principal="USER")
    assert messages.render_problem(_p("access_expiring", "info", **half), "en").startswith("English")
    assert messages.render_problem(_p("invalid_name", name="a b", max=32), "fr").startswith("English")


def test_defaults_stand_for_fields_a_producer_does_not_know():
    """validation.py and plan.py do not know the record's field codes; the default field names are said."""
    text = messages.render_problem(_p("invalid_target", value="12345"), "en")
    assert text.startswith("'12345' in 'targets' is neither") and "exactly 12 digits" in text
    assert "「permission_set」のルックアップ" in messages.render_problem(
        _p("unknown_permission_set", name="X"), "ja"
    )
    cmp = _p("invalid_customer_managed_policy", field="cmp", name="", path="", row=2)
    assert "path '/'" in messages.render_problem(cmp, "en")


def test_no_principals_is_worded_per_principal_type():
    user = messages.render_problem(_p("no_principals", field="users", principal_type="USER"), "ja")
    group = messages.render_problem(_p("no_principals", field="group_name", principal_type="GROUP"), "ja")
    assert user.startswith("ユーザーが選ばれていません") and group.startswith("グループ名がありません")


def test_fingerprints_keep_their_values():
    """Comments are de-duplicated across runs by these values: a change would post every comment again."""
    ref = _ref("assignments", "3")
    items = [
        Problem(
            code="invalid_target",
            message="Line 1 of 'targets' ('12345') is not an id.",
            record=ref,
            params={"field": "targets", "value": "12345", "line": 1},
        ),
        Problem(
            code="principal_not_found",
            message="User ghost is not in IAM Identity Center yet.",
            severity="pending",
            record=ref,
            params={"principal_type": "USER", "principal_name": "ghost"},
        ),
        Problem(
            code="apply_failed",
            message="create assignment failed: req 1",
            record=ref,
            params={"operation": "create_assignment", "key": "k", "error": "req 1"},
        ),
    ]
    assert [feedback.problem_fingerprint(p) for p in items] == [
        "error:invalid_target:Line 1 of 'targets' ('12345') is not an id.",
        "pending:principal_not_found:User ghost is not in IAM Identity Center yet.",
        "error:apply_failed:create_assignment|k",
    ]
    assert feedback.record_fingerprint(items) == "1b91f762d5f3e98f"
    assert feedback.record_fingerprint(items[:1]) == "554a3233cd64b084"


def test_access_analyzer_finding_shows_line_column_issue_and_link():
    p = _p("policy_finding_error", **PARAMS["policy_finding_error"])
    ja = messages.render_problem(p, "ja")
    assert "5 行目 17 列目" in ja and "INVALID_ACTION" in ja and "https://docs.aws.amazon.com/x" in ja
    en = messages.render_problem(p, "en")
    assert "line 5, column 17" in en and "INVALID_ACTION" in en and "See https://docs.aws.amazon.com/x" in en


def test_did_you_mean_and_pending_wording():
    p = _p("managed_policy_not_found", **PARAMS["managed_policy_not_found"])
    assert "ReadOnlyAccess の誤りではありませんか" in messages.render_problem(p, "ja")
    assert "Did you mean ReadOnlyAccess?" in messages.render_problem(p, "en")
    pending = _p("principal_not_found", "pending", _ref("assignments"), **PARAMS["principal_not_found"])
    text = render_comment(pending.record, [pending], "ja")
    assert "反映待ち" in text and "対応は不要" in text and "[エラー]" not in text
    en = render_comment(pending.record, [pending], "en")
    assert "waiting" in en and "Nothing to do" in en


# --------------------------------------------------------------------------- mentions
def test_mentions_deduplicated_and_at_most_ten():
    ref = _ref(mentions=("bob", "alice", "bob", " ", *[f"u{i}" for i in range(12)]))
    codes = [m["code"] for m in feedback.mentions_for(ref)]
    assert codes[:2] == ["bob", "alice"] and len(codes) == 10 and len(set(codes)) == 10


# --------------------------------------------------------------------------- plan_feedback
def test_comment_once_then_silence_then_change_then_resolved_once():
    ref = _ref()
    problems = [_p("managed_policy_not_found", ref=ref, **PARAMS["managed_policy_not_found"])]
    first = plan_feedback(problems, {}, language="ja", live_records={ref.key})
    assert len(first.comments) == 1 and first.comments[0].mentions == [{"code": "alice", "type": "USER"}]
    assert "ReadOnlyAcess" in first.comments[0].text
    second = plan_feedback(problems, first.state, language="ja", live_records={ref.key})
    assert second.comments == [] and second.state == first.state
    changed = [*problems, _p("invalid_name", ref=ref, name="a b", max=32)]
    third = plan_feedback(changed, second.state, language="ja", live_records={ref.key})
    assert len(third.comments) == 1 and third.state[ref.key] != first.state[ref.key]
    fixed = plan_feedback([], third.state, language="ja", live_records={ref.key}, refs={ref.key: ref})
    assert [c.fingerprint for c in fixed.comments] == [RESOLVED]
    assert fixed.comments[0].app_id == "1" and fixed.comments[0].record_id == "7"
    assert fixed.comments[0].mentions == [{"code": "alice", "type": "USER"}]
    assert "解消" in fixed.comments[0].text
    again = plan_feedback([], fixed.state, language="ja", live_records={ref.key})
    assert again.comments == [] and again.state == {ref.key: RESOLVED}
    # the record is deleted later: its marker is forgotten
    assert plan_feedback([], again.state, language="ja", live_records=set()).state == {}


def test_order_and_language_do_not_change_the_fingerprint():
    ref = _ref()
    a, b = _p("invalid_name", ref=ref, name="x y", max=32), _p("too_many_policies", ref=ref, count=21, max=20)
    s1 = plan_feedback([a, b], {}, language="ja").state
    assert plan_feedback([b, a], s1, language="en").comments == []


def test_deleted_record_gets_no_resolved_comment():
    ref = _ref()
    state = plan_feedback([_p("invalid_name", ref=ref, name="x y", max=32)], {}, language="ja").state
    out = plan_feedback([], state, language="ja", live_records=set())
    assert out.comments == [] and out.state == {}


def test_admin_problems_never_reach_a_record():
    ref = _ref()
    admin = [
        _p("access_analyzer_unavailable", "warning", None, error="x", unchecked=1),
        _p("task_failed", "error", None, task_id="snapshot_idc"),
        _p("managed_policy_check_unavailable", "warning", None, error="x", unchecked=1),
    ]
    out = plan_feedback(admin, {}, language="ja", live_records={ref.key})
    assert out.comments == [] and out.state == {}


def test_incomplete_run_says_nothing_resolved_and_keeps_state():
    ref = _ref()
    state = plan_feedback(
        [_p("policy_finding_error", ref=ref, **PARAMS["policy_finding_error"])], {}, language="ja"
    ).state
    out = plan_feedback([], state, language="ja", live_records={ref.key}, complete=False)
    assert out.comments == [] and out.state == state
    out = plan_feedback([], state, language="ja", live_records={ref.key}, complete=True)
    assert [c.fingerprint for c in out.comments] == [RESOLVED]


def test_info_only_is_said_once_and_disappears_silently():
    ref = _ref("assignments", "12")
    note = _p("access_expiring", "info", ref, **PARAMS["access_expiring"])
    first = plan_feedback([note], {}, language="ja", live_records={ref.key})
    assert len(first.comments) == 1 and first.state[ref.key].startswith(INFO_PREFIX)
    assert "2030-01-31" in first.comments[0].text and "お知らせ" in first.comments[0].text
    assert plan_feedback([note], first.state, language="ja", live_records={ref.key}).comments == []
    gone = plan_feedback([], first.state, language="ja", live_records={ref.key})
    assert gone.comments == [] and gone.state == {}


def test_errors_fixed_while_a_note_remains_say_resolved_with_the_note():
    ref = _ref("assignments", "12")
    error = _p("unknown_account", ref=ref, target="123456789012")
    note = _p("access_expiring", "info", ref, **PARAMS["access_expiring"])
    state = plan_feedback([error, note], {}, language="en").state
    out = plan_feedback([note], state, language="en", live_records={ref.key})
    assert len(out.comments) == 1
    assert out.comments[0].text.startswith("[idc-sync] Resolved") and "2030-01-31" in out.comments[0].text
    assert plan_feedback([note], out.state, language="en", live_records={ref.key}).comments == []


def test_apply_failed_with_a_changing_error_text_is_not_a_new_problem():
    ref = _ref("assignments", "3")
    one = Problem(
        code="apply_failed",
        message="failed: req 1",
        record=ref,
        params={"operation": "create_assignment", "key": "k", "error": "req 1"},
    )
    two = one.model_copy(update={"message": "failed: req 2", "params": {**one.params, "error": "req 2"}})
    state = plan_feedback([one], {}, language="ja").state
    assert plan_feedback([two], state, language="ja").comments == []


def test_waiting_is_the_headline_when_only_pending_and_warnings():
    ref = _ref("assignments", "9")
    items = [
        _p("principal_not_found", "pending", ref, principal_type="GROUP", principal_name="ops"),
        _p("account_not_active", "warning", ref, account_id="999999999999", state="SUSPENDED"),
    ]
    text = render_comment(ref, items, "ja")
    assert text.startswith("[idc-sync] このレコードの一部は反映待ちです") and "[注意]" in text


def test_one_record_whose_comment_cannot_be_built_never_stops_the_others(monkeypatch, caplog) -> None:
    """Issue 9 defect 2 (comment step): rendering one record's comment raising keeps the others going,
    and what was last said to that record is kept, so it is tried again next run (nothing lost)."""
    from idc_sync import feedback
    from idc_sync.model import Problem, RecordRef

    good = RecordRef(app="assignments", app_id="2", record_id="1")
    bad = RecordRef(app="assignments", app_id="2", record_id="2")
    problems = [
        Problem(code="invalid_target", message="x", record=good, params={"value": "a", "field": "targets"}),
        Problem(code="invalid_target", message="y", record=bad, params={"value": "b", "field": "targets"}),
    ]
    real = feedback.render_comment

    def render(ref, items, language, **kw):  # type: ignore[no-untyped-def]
        if ref is not None and ref.record_id == "2":
            raise RecursionError("maximum recursion depth exceeded")
        return real(ref, items, language, **kw)

    monkeypatch.setattr(feedback, "render_comment", render)
    fb = feedback.plan_feedback(problems, {"assignments:2": "old-fp"}, language="en")
    assert [c.record_key for c in fb.comments] == ["assignments:1"]
    assert fb.state["assignments:2"] == "old-fp"
    assert "assignments:2" in caplog.text


def test_bilingual_comments_say_everything_in_japanese_then_english_within_kintones_limit():
    ref = _ref()
    problem = _p("managed_policy_not_found", ref=ref, **PARAMS["managed_policy_not_found"])
    ja, en = render_comment(ref, [problem], "ja"), render_comment(ref, [problem], "en")
    assert render_comment(ref, [problem], "ja+en") == ja + feedback.BILINGUAL_RULE + en
    many = [_p("invalid_name", ref=ref, name=f"n{i} {'x' * 500}", max=32) for i in range(400)]
    both = render_comment(ref, many, "ja+en", run_url="https://airflow/run")
    assert len(both) <= feedback.KINTONE_COMMENT_LIMIT
    first, second = both.split(feedback.BILINGUAL_RULE)
    assert first.startswith(ja.splitlines()[0][:4]) and "and" in second and "more" in second
    state = plan_feedback([problem], {}, language="ja+en", live_records={ref.key}).state
    resolved = plan_feedback([], state, language="ja+en", live_records={ref.key}).comments[0].text
    assert "解消" in resolved and feedback.BILINGUAL_RULE in resolved
