"""Unit tests of idc_sync.idc_fields: each IdC/IAM/Organizations input rule at its edges."""

from __future__ import annotations

import pytest

from idc_sync import idc_fields as f

FULLWIDTH_4 = "\uff14"
ARABIC_INDIC_4 = "\u0664"


# --------------------------------------------------------------------------- permission set name
@pytest.mark.parametrize("name", ["a", "a" * 32, "Dev+Ops=,.@-_1", "ReadOnly"])
def test_valid_permission_set_names(name: str) -> None:
    assert f.is_permission_set_name(name)


@pytest.mark.parametrize(
    "name", ["", "a" * 33, "dev team", "開発", "dev/ops", "dev:ops", "caf\u00e9", "Dev\n", " Dev"]
)
def test_invalid_permission_set_names(name: str) -> None:
    assert not f.is_permission_set_name(name)


# --------------------------------------------------------------------------- description
def test_description_length_and_charset() -> None:
    assert f.is_description("") and f.is_description("x" * 700)
    assert not f.is_description("x" * 701)
    assert f.is_description("Caf\u00e9 \u00a1ol\u00e9!\ttab\nnew line\r")  # Latin-1 and tab/CR/LF
    assert not f.is_description("開発者用")
    assert not f.is_description("\u00a0")  # no-break space: between \x7e and \xa1, not allowed
    assert not f.is_description("\x00") and not f.is_description("\x7f")


def test_description_bad_characters_are_distinct_sorted_and_at_most_ten() -> None:
    assert f.description_bad_characters("ok") == ""
    assert f.description_bad_characters("開発開発 ok 🚀") == "".join(sorted({"開", "発", "🚀"}))
    many = "".join(chr(0x3041 + i) for i in range(15))
    assert f.description_bad_characters(many) == many[:10]


# --------------------------------------------------------------------------- session duration
@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("PT1H", 3600),
        ("PT12H", 43200),
        ("PT90M", 5400),
        ("PT1H30M", 5400),
        ("PT3600S", 3600),
        ("PT1H0M1S", 3601),
        ("PT0H", 0),
        ("PT13H", 46800),
    ],
)
def test_duration_seconds(value: str, seconds: int) -> None:
    assert f.duration_seconds(value) == seconds


@pytest.mark.parametrize(
    "value",
    ["", "PT", "P", "1H", "pt1h", "PT1h", "P1D", "P0DT1H", "PT1.5H", "PT1H ", f"PT{FULLWIDTH_4}H", "PT1H\n"],
)
def test_not_a_duration(value: str) -> None:
    assert f.duration_seconds(value) is None
    assert not f.is_session_duration(value)


@pytest.mark.parametrize("value", ["PT1H", "PT12H", "PT60M", "PT720M", "PT2H30M", "PT3600S", "PT43200S"])
def test_session_durations_idc_accepts(value: str) -> None:
    assert f.is_session_duration(value)


@pytest.mark.parametrize("value", ["PT0H", "PT0M", "PT59M", "PT3599S", "PT13H", "PT12H1S", "PT721M", "PT99H"])
def test_session_durations_out_of_range(value: str) -> None:
    assert not f.is_session_duration(value)


@pytest.mark.parametrize(
    ("typed", "stored"),
    [
        ("PT4H", "PT4H"),
        ("pt4h", "PT4H"),  # what a person types: upper-cased, as IdC stores it
        ("  Pt1h30m \n", "PT1H30M"),
        ("pt3600s", "PT3600S"),
        ("pt13h", None),
        ("PT0H", None),
        (f"PT{FULLWIDTH_4}H", None),
        (f"PT{ARABIC_INDIC_4}H", None),
        ("", None),
    ],
)
def test_normalise_session_duration(typed: str, stored: str | None) -> None:
    assert f.normalise_session_duration(typed) == stored


def test_default_session_duration_is_valid() -> None:
    assert f.is_session_duration(f.SESSION_DURATION_DEFAULT)


# --------------------------------------------------------------------------- relay state
def test_relay_state() -> None:
    url = "https://console.aws.amazon.com/ec2/home?region=ap-northeast-1#Instances:"
    assert f.is_relay_state(url)
    assert f.is_relay_state("https://x/" + "a" * 230) and len("https://x/" + "a" * 230) == 240
    assert not f.is_relay_state("https://x/" + "a" * 231)
    assert not f.is_relay_state("")  # min length 1
    assert not f.is_relay_state("https://console.aws.amazon.com/<script>")
    assert not f.is_relay_state("https://例え.jp/")
    assert not f.is_relay_state("https://x/\n")
    assert f.is_relay_state("https://x/a b(c){d}[e]|f!g'h\"i")  # the pattern allows these
    assert not f.is_relay_state("javascript:alert(1)")  # IdC's pattern takes it; the portal would open it
    assert not f.is_relay_state("http://console.aws.amazon.com/")  # https only


# --------------------------------------------------------------------------- inline policy
def test_inline_policy_size_limits() -> None:
    assert not f.inline_policy_too_large("{" + " " * 32_766 + "}")  # 32,768 characters
    assert f.inline_policy_too_large("{" + " " * 32_767 + "}")
    assert not f.inline_policy_too_large("x" * 10_240)
    assert f.inline_policy_too_large("x" * 10_241)
    assert f.inline_policy_non_whitespace(" a\tb\nc\r ") == 3


def test_inline_policy_characters() -> None:
    assert f.inline_policy_bad_characters('{"Sid": "caf\u00e9"}\n') == ""
    assert f.inline_policy_bad_characters('{"Sid": "読み取り"}') == "".join(sorted(set("読み取り")))
    assert f.inline_policy_bad_characters("\x00{}") == "\x00"


# --------------------------------------------------------------------------- attached policies
def test_policy_names_and_paths() -> None:
    assert f.is_policy_name("Team.Policy_1+=,@-") and f.is_policy_name("n" * 128)
    assert not f.is_policy_name("n" * 129) and not f.is_policy_name("") and not f.is_policy_name("a b")
    assert f.is_policy_path("/") and f.is_policy_path("/team/a/")
    assert not f.is_policy_path("team/") and not f.is_policy_path("/team") and not f.is_policy_path("")
    assert not f.is_policy_path("//")
    assert f.is_policy_path("/" + "p" * 510 + "/") and not f.is_policy_path("/" + "p" * 511 + "/")


@pytest.mark.parametrize(
    "arn",
    [
        "arn:aws:iam::aws:policy/ReadOnlyAccess",
        "arn:aws:iam::aws:policy/job-function/ViewOnlyAccess",
        "arn:aws:iam::aws:policy/service-role/AWSLambdaRole",
        "arn:aws-cn:iam::aws:policy/ReadOnlyAccess",
        "arn:aws-us-gov:iam::aws:policy/ReadOnlyAccess",
        "arn:aws:iam::aws:policy/" + "N" * 128,
    ],
)
def test_managed_policy_arns(arn: str) -> None:
    assert f.is_managed_policy_arn(arn)


@pytest.mark.parametrize(
    "arn",
    [
        "arn:aws:iam::123456789012:policy/Mine",  # a customer managed policy
        "ReadOnlyAccess",
        "arn:aws:iam::aws:policy/",
        "arn:aws:iam::aws:policy/a b",
        "arn:aws:iam::aws:policy/" + "N" * 129,
        "arn:aws-toolong:iam::aws:policy/X",
        "arn:aws:iam::aws:role/X",
    ],
)
def test_not_managed_policy_arns(arn: str) -> None:
    assert not f.is_managed_policy_arn(arn)


def test_attached_policy_limits() -> None:
    assert f.IAM_ROLE_POLICIES_DEFAULT_QUOTA < f.ATTACHED_POLICIES_MAX == 20
    assert "2012-10-17" in f.POLICY_VERSIONS


# --------------------------------------------------------------------------- account, OU and root ids
def test_account_ids() -> None:
    assert f.is_account_id("123456789012") and f.is_account_id("012345678901")
    for value in ("12345678901", "1234567890123", "1234-5678-9012", "\uff11" * 12, "123456789012\n", ""):
        assert not f.is_account_id(value), value


def test_ou_and_root_ids() -> None:
    assert f.is_ou_id("ou-ab12-cdefgh34") and f.is_ou_id("ou-" + "a" * 32 + "-" + "b" * 32)
    for value in (
        "ou-ab1-cdefgh34",
        "ou-ab12-cdefgh3",
        "OU-AB12-CDEFGH34",
        "ou-ab12-\u212adefgh34",
        "r-ab12",
    ):
        assert not f.is_ou_id(value), value
    assert f.is_root_id("r-ab12") and f.is_root_id("r-" + "z" * 32)
    for value in ("r-ab1", "r-AB12", "r-" + "z" * 33, "ou-ab12-cdefgh34", "root"):
        assert not f.is_root_id(value), value


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("123456789012", "123456789012"),
        (" 1234-5678-9012 ", "123456789012"),
        ("ou-ab12-cdefgh34", "ou-ab12-cdefgh34"),
        ("Ou-AB12-CDEFGH34", "ou-ab12-cdefgh34"),
        ("r-ab12", None),  # a root is not a target a record may name
        ("12345", None),
        ("\uff11" * 12, None),
        ("ou-ab12-\u212adefgh34", None),  # KELVIN SIGN: .lower() would make it an ASCII "k"
    ],
)
def test_normalise_target(value: str, expected: str | None) -> None:
    assert f.normalise_target(value) == expected
